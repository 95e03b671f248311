"""`metrics.json` and `examples/*.png` in a run's folder: what `python -m unfolded.training.compare` reads
to compare runs without wandb (status, validation history, final metrics, example test images).

Written atomically after training, after testing, and when a run fails (status `failed` and the error).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl

from .atomic import write_atomically
from .callbacks import MetricHistory
from .images import write_png

RECORD_FILE = "metrics.json"
EXAMPLES_DIR = "examples"


def _number(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf


class RunRecord(pl.Callback):
    def __init__(self, output_dir: str | None = None, monitor: str | None = "val/psnr_interior"):
        self.output_dir, self.monitor = output_dir, monitor
        self.fit_metrics: dict[str, float] = {}

    def _folder(self, trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir)

    def _write(self, trainer, pl_module, status: str, error: str | None = None) -> None:
        if not trainer.is_global_zero:  # one writer under DDP
            return
        history = next((cb for cb in trainer.callbacks if isinstance(cb, MetricHistory)), None)
        ckpt = trainer.checkpoint_callback
        best = None
        if ckpt is not None and ckpt.monitor == self.monitor and ckpt.best_model_score is not None:
            best = float(ckpt.best_model_score)
        elif self.monitor in self.fit_metrics:
            best = self.fit_metrics[self.monitor]
        record = {
            "status": status,
            "error": error,
            "global_step": int(pl_module.trained_steps) if hasattr(pl_module, "trained_steps") else None,
            "monitor": self.monitor,
            "best": None if best is None else _number(best),
            "metrics": {k: _number(v) for k, v in {**self.fit_metrics, **self._metrics(trainer)}.items()},
            "history": history.state_dict() if history else None,
        }
        text = json.dumps(record, indent=1).encode()
        write_atomically(self._folder(trainer) / RECORD_FILE, lambda f: f.write(text))

    @staticmethod
    def _metrics(trainer) -> dict[str, float]:
        return {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_metrics = self._metrics(trainer)
        self._write(trainer, pl_module, "trained")

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "completed")
        self._save_examples(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        lines = str(exception).strip().splitlines()
        name = type(exception).__name__
        status = "pruned" if name == "TrialPruned" else "failed"  # stopped by an Optuna sweep's pruner
        self._write(trainer, pl_module, status, f"{name}: {lines[-1] if lines else ''}")

    def _save_examples(self, trainer, pl_module) -> None:
        """The first test image of the report: measurement, reconstructions and target as PNGs."""
        rec = next((r for r in pl_module.results.test_records if "images" in r), None)
        if rec is None or not trainer.is_global_zero:
            return
        folder = self._folder(trainer) / EXAMPLES_DIR
        for name, img in rec["images"].items():
            write_png(folder / f"{name}.png", img)
        caption = {"image": rec["name"], **{k: _number(v) for k, v in rec.items() if k.endswith("psnr")}}
        text = json.dumps(caption, indent=1).encode()
        write_atomically(folder / "examples.json", lambda f: f.write(text))
