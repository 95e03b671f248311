"""Training progress that reads well in a terminal and in a file.

A terminal gets Lightning's rich bar. Output redirected to a file (`python train.py > run.log`, a cluster
job) gets plain lines instead: the rich bar draws nothing there until the end of the fit. Both write a line
per validation to `<run folder>/train.log`.

    [..][INFO] - step 40/500 | loss 0.00213 | psnr 26.32 | lr 0.00199 | 0.52 it/s | ETA 0:14:40
    [..][INFO] - validation at step 100/500: psnr 27.10 | psnr_interior 28.31 | ssim 0.8012
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time

from lightning.pytorch.callbacks import ModelSummary, RichModelSummary, RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from . import logs

log = logging.getLogger(__name__)


def progress_bar(every_n_steps: int = 10):
    """The rich bar when stdout is a terminal, else a line every `every_n_steps` training steps."""
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
        from .errors import ConfigError

        raise ConfigError(f"callbacks.rich_progress_bar.every_n_steps must be an integer >= 1, got {every_n_steps!r}")
    return RichBar() if sys.stdout.isatty() else TextProgress(every_n_steps)


def _number(v: float) -> str:
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.3g}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.4f}"


def _total_steps(trainer) -> int | None:
    total = trainer.estimated_stepping_batches
    return int(total) if math.isfinite(total) else None


def validation_line(trainer) -> str:
    """`validation at step 100/500: psnr 27.10 | psnr_interior 28.31 | ...` (the top-level val/* metrics)."""
    values = {k[len("val/"):]: float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("val/") and "/" not in k[len("val/"):]}
    total = _total_steps(trainer)
    step = f"{trainer.global_step}/{total}" if total else f"{trainer.global_step}"
    return f"validation at step {step}: " + " | ".join(f"{k} {_number(v)}" for k, v in sorted(values.items()))


def plain_model_summary(trainer) -> None:
    """Lightning adds RichModelSummary whenever rich is installed; it prints its table with rich, past
    logging, so the table was missing from train.log. The plain ModelSummary logs the same table."""
    for i, cb in enumerate(trainer.callbacks):
        if type(cb) is RichModelSummary:
            trainer.callbacks[i] = ModelSummary(max_depth=cb._max_depth)


class TextProgress(ProgressBar):
    """A log line every `every_n_steps` training steps (and at the first and last), one per validation."""

    def __init__(self, every_n_steps: int = 10):
        super().__init__()
        self.every_n_steps = int(every_n_steps)
        self._enabled = True
        self._total: int | None = None
        self._mark: tuple[int, float] | None = None  # (step, time) of the last line: the speed since then
        self._start: tuple[int, float] | None = None
        self._last_step = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        plain_model_summary(trainer)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._total = _total_steps(trainer)
        self._start = self._mark = (trainer.global_step, time.perf_counter())
        if self._enabled:
            log.info("training: steps %d to %s, a line every %d steps", trainer.global_step + 1,
                     self._total or "?", self.every_n_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self._enabled or step == self._last_step:
            return  # a skipped batch (no optimizer step)
        if step % self.every_n_steps and step != self._total and step != self._start[0] + 1:
            return
        self._last_step = step
        now = time.perf_counter()
        rate = (step - self._mark[0]) / max(now - self._mark[1], 1e-9)
        self._mark = (step, now)
        metrics = trainer.progress_bar_metrics
        parts = [f"step {step}/{self._total}" if self._total else f"step {step}"]
        parts += [f"{k.split('/')[-1]} {_number(float(metrics[k]))}" for k in ("train/loss", "train/psnr")
                  if k in metrics]
        if trainer.optimizers:
            parts.append(f"lr {_number(trainer.optimizers[0].param_groups[0]['lr'])}")
        parts.append(f"{rate:.2f} it/s")
        if self._total and rate > 0:
            parts.append(f"ETA {datetime.timedelta(seconds=round((self._total - step) / rate))}")
        log.info("%s", " | ".join(parts))

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._enabled and not trainer.sanity_checking and trainer.state.fn == "fit":
            log.info("%s", validation_line(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        if self._enabled and self._start is not None:
            steps = trainer.global_step - self._start[0]
            seconds = time.perf_counter() - self._start[1]
            log.info("training done: %d steps in %s (%.2f it/s)", steps,
                     datetime.timedelta(seconds=round(seconds)), steps / max(seconds, 1e-9))


class RichBar(RichProgressBar):
    """Lightning's rich bar, with a validation line above it and in train.log, "Epoch 0" instead of
    "Epoch 0/-2" when only max_steps bounds the run, and no finished test bar left under the results table."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        plain_model_summary(trainer)

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        # max_epochs=-1 (max_steps bounds the run): Lightning wrote "Epoch 0/-2"; padded like Lightning's
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.is_enabled and not trainer.sanity_checking and trainer.state.fn == "fit":
            logs.echo(validation_line(trainer))

    def on_test_end(self, trainer, pl_module) -> None:
        super().on_test_end(trainer, pl_module)
        # the Report callback prints the table next: take the test bar away first (Lightning stops the
        # display at teardown, which reprinted the finished bar under the table)
        if self.progress is not None and self.test_progress_bar_id is not None:
            self.progress.update(self.test_progress_bar_id, visible=False)
            self.refresh()
        self._stop_progress()
