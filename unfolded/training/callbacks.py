"""Callbacks: metric history (kept in checkpoints), image panels for the loggers, the final report,
and an atomic checkpoint writer."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import WandbLogger

from . import report
from .atomic import write_atomically
from .evaluation import learned_parameters
from .images import to_uint8
from .logs import echo
from .metrics import display_image, measures_kspace


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then `os.replace`: a checkpoint on disk is
    always complete, even if the run is killed while saving."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        write_atomically(path, lambda f: torch.save(checkpoint, f))


class MetricHistory(pl.Callback):
    """Training loss per step and validation metrics per validation run; saved in checkpoints, so that a
    resumed run continues its curves."""

    def __init__(self):
        self.train: list[tuple[int, float]] = []
        self.val: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # None: a skipped batch
        if loss is not None:
            self.train.append((trainer.global_step, float(loss)))

    def on_validation_end(self, trainer, pl_module) -> None:
        # not on_validation_epoch_end: the module logs the validation means in its own epoch-end hook,
        # which Lightning calls after the callbacks'
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"step": trainer.global_step}
        for key in ("val/psnr", "val/psnr_interior", "val/ssim", "val/tikhonov_psnr_interior"):
            if key in m:
                row[key] = float(m[key])
        self.val.append(row)

    def state_dict(self) -> dict:
        return {"train": list(self.train), "val": list(self.val)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train = [tuple(t) for t in state_dict.get("train", [])]
        self.val = list(state_dict.get("val", []))


def _same_size(images: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Panels as uint8 arrays; a smaller measurement (valid blur) is centred on a black canvas."""
    h = max(v.shape[-2] for v in images.values())
    w = max(v.shape[-1] for v in images.values())
    out = []
    for v in images.values():
        dh, dw = h - v.shape[-2], w - v.shape[-1]
        if dh or dw:
            v = torch.nn.functional.pad(v, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        out.append(to_uint8(v))
    return out


class ImageLogger(pl.Callback):
    """Measurement / reconstruction / target panels of the first validation image, for wandb."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        ex = pl_module.results.val_example
        if trainer.sanity_checking or not ex:
            return
        kspace = measures_kspace(pl_module.physics_for(ex["x"]))
        panels = {"measurement": display_image(ex["y"][0], kspace), "reconstruction": display_image(ex["x_hat"][0]),
                  "target": display_image(ex["x"][0])}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/images", images=_same_size(panels), caption=list(panels),
                                 step=trainer.global_step)

    def on_test_end(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            for rec in pl_module.results.test_records:
                if "images" in rec:
                    imgs = rec["images"]
                    logger.log_image(key=f"test/{rec['name']}", images=_same_size(imgs),
                                     caption=list(imgs))


class Report(pl.Callback):
    """At the end of testing: results table in the terminal, `report.png` and `results.json` in
    `output_dir`."""

    def __init__(self, output_dir: str | None = None, filename: str = "report.png"):
        self.output_dir, self.filename = output_dir, filename
        self.paths: dict[str, Path] = {}

    def on_test_end(self, trainer, pl_module) -> None:
        results = pl_module.results
        if not results.test_records or not trainer.is_global_zero:
            return
        history = next((cb for cb in trainer.callbacks if isinstance(cb, MetricHistory)), None)
        out = Path(self.output_dir or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        hp = learned_parameters(pl_module.model)
        report.print_table(results.test_records, results.test_summary, hp)
        report.print_grid(results.grid_summary)
        self.paths["png"] = report.save_figure(out / self.filename, results.test_records,
                                               history.state_dict() if history else None, results.test_summary)
        grid = {"cells": results.grid_summary, "images": results.grid_records} if results.grid_summary else None
        solves = pl_module.solver_stats.run_totals() if hasattr(pl_module, "solver_stats") else {}
        self.paths["json"] = report.save_json(out / "results.json", results.test_records,
                                              results.test_summary, hp, pl_module.trained_steps, grid, solves)
        if solves:
            echo("training solves that reached their tolerance: " + ", ".join(
                f"{kind} {c['converged']}/{c['solves']} ({c['iterations_mean']:.1f} iterations on average, "
                f"at most {c['iterations_max']})" for kind, c in solves.items()))
        echo(f"report: {self.paths['png']}  results: {self.paths['json']}")


class ValidateAtEnd(pl.Callback):
    """Validate after the last training step too, whatever `val_check_interval`: a short run (max_steps
    below the interval) still gets a validation, hence a best.ckpt, and a long one ends on its final
    weights' validation. Lightning validates after a step when the trainer is stopping early, so the last
    step asks it to stop."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last_step = 0 < trainer.max_steps <= trainer.global_step
        last_batch = (trainer.max_epochs is not None and trainer.max_epochs > 0
                      and trainer.current_epoch == trainer.max_epochs - 1
                      and batch_idx + 1 >= trainer.num_training_batches)
        if last_step or last_batch:
            trainer.should_stop = True
