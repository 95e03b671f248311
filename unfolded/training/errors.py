"""The exception types a run reports as a single line: a configuration that cannot run, and a training
that diverged (a sweep catches the latter to mark its trial failed)."""


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line that names the offending key."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (with `module.on_nonfinite_loss=stop`, or too many skipped
    batches); the checkpoints on disk are the last good ones. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
