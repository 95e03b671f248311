"""The one exception type for bad configurations, reported by `train.py` as a single line."""


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line that names the offending key."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
