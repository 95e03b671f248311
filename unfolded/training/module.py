"""LightningModule around any unfolded model and a physics: a thin step over the units that do the work.

- `simulation.Simulator`: y = physics(x) with noise seeded by the sample numbers the batches carry;
  x₀ by the `init` policy;
- `evaluation` / `testing`: metrics per image, means across processes, test records beside the baselines
  (Aᵀy, Tikhonov, TV, BM3D: `baselines.py`, `classical.py`, tuned on the validation images, cached on disk),
  with a `test_grid` Aᵀy and Tikhonov per kernel × noise level (`grid.py`); `self.results` is what callbacks read;
- `stats.SolverStats`: CG/DEQ solves counted per epoch, unconverged ones reported once per epoch;
- a NaN/inf training loss stops the run with `TrainingDiverged` (or skips the batch: `on_nonfinite_loss`);
  a checkpoint with non-finite weights is never written.
Batches are dicts {"image": x, "index": sample numbers} (`data.py`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from . import baselines, evaluation, grid, testing
from .baseline_cache import BaselineCache
from .errors import TrainingDiverged
from .metrics import crop, image_metrics, interior_margin
from .seeding import EVAL_SEED
from .simulation import INITS, initial_estimate, measurements
from .stats import SolverStats

log = logging.getLogger(__name__)
TIKHONOV = baselines.TIKHONOV_DEFAULTS


def _one_of(name: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"module.{name} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")


class UnfoldedModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        physics,
        loss: nn.Module | None = None,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        loss_region: str = "interior",
        full_loss_weight: float = 0.1,
        init: str = "mean_fill",
        eval_seed: int = EVAL_SEED,
        tikhonov_lambdas: Sequence[float] = TIKHONOV["lambdas"],
        tikhonov_refine: int = TIKHONOV["refine"],
        tikhonov_tol: float = TIKHONOV["tol"],
        tikhonov_max_iter: int = TIKHONOV["max_iter"],
        baselines: Sequence[str] = ("tv", "bm3d"),
        baseline_cache: str | None = "default",
        log_params_every_n_steps: int = 1,
        num_report_images: int = 3,
        train_noise_seed: int | None = 0,
        on_nonfinite_loss: str = "stop",
        physics_generator=None,
        test_grid: grid.OperatorGrid | None = None,
        run_config: dict | None = None,
    ):
        super().__init__()
        _one_of("loss_region", loss_region, ("full", "interior"))
        _one_of("init", init, INITS)
        _one_of("scheduler_interval", scheduler_interval, ("step", "epoch"))
        _one_of("on_nonfinite_loss", on_nonfinite_loss, ("stop", "skip"))
        self.model = model
        # not submodules: the state dict is the model's. train_noise_seed None: unseeded training noise.
        # physics_generator (the reference Trainer's name): an operator and noise level drawn per sample.
        self.simulator = measurements(physics, train_noise_seed, eval_seed, physics_generator)
        self.test_grid = test_grid
        self.loss_fn = loss if loss is not None else nn.MSELoss()
        self.optimizer_factory = optimizer if optimizer is not None else (lambda p: torch.optim.Adam(p, lr=1e-3))
        self.scheduler_factory, self.scheduler_interval = scheduler, scheduler_interval
        self.loss_region, self.init, self.full_loss_weight = loss_region, init, float(full_loss_weight)
        self.tikhonov = {"lambdas": list(tikhonov_lambdas), "refine": tikhonov_refine, "tol": tikhonov_tol,
                         "max_iter": tikhonov_max_iter}
        self.baseline_methods, self.baseline_cache = list(baselines), BaselineCache.of(baseline_cache)  # TV, BM3D
        self.log_params_every_n_steps, self.num_report_images = log_params_every_n_steps, num_report_images
        self.on_nonfinite_loss, self.skipped_batches = on_nonfinite_loss, 0
        self.run_config = run_config
        self.checkpoint_global_step: int | None = None  # step of a checkpoint loaded for evaluation
        self.results = evaluation.Results()
        self.solver_stats = SolverStats()
        self._val_means = evaluation.Means()

    # --- the model on measurements ----------------------------------------------------------------
    def physics_for(self, x: Tensor):
        return self.simulator.physics_for(x)

    def forward(self, y: Tensor, physics) -> Tensor:
        return self.model(y, physics, **self.init_kwargs(y, physics))

    def init_kwargs(self, y: Tensor, physics) -> dict:
        x0 = initial_estimate(self.init, y, physics)
        return {} if x0 is None else {"init": x0}

    # --- training ---------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        x, physics, y = self.simulator.batch(batch, "train")
        x_hat = self(y, physics)
        loss = self._loss(x_hat, x, physics)
        # DEQConfig(jacobian_reg=w): w·‖∂T/∂x‖²_F at x*, which keeps the fixed-point map contractive
        jacobian_term = getattr(self.model, "deq_jacobian_loss", None)
        if jacobian_term is not None:
            self.log("train/deq_jacobian", jacobian_term.detach(), batch_size=x.shape[0])
            loss = loss + jacobian_term
        solver_summary = self.solver_stats.harvest(self.model, self.device)
        if not self._all_finite(loss):
            return self._nonfinite_loss(loss)
        bs = x.shape[0]
        with torch.no_grad():
            self.log("train/psnr", image_metrics(x_hat, x, (0, 0))["psnr"].mean(), prog_bar=True, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        # in the metrics, for the main process of DDP-spawn (its own trainer does not count the steps)
        self.log("trainer/global_step", float(self.global_step + 1), on_step=True, on_epoch=False, batch_size=bs)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        if self.log_params_every_n_steps and self.global_step % self.log_params_every_n_steps == 0:
            self._log_step_values(solver_summary)
        return loss

    def _loss(self, x_hat: Tensor, x: Tensor, physics) -> Tensor:
        """The loss on the interior (a valid blur's barely-measured ring cropped) plus `full_loss_weight` x
        the loss on the whole image; or on the whole image."""
        if self.loss_region == "full":
            return self.loss_fn(x_hat, x)
        margin = interior_margin(physics, x.shape)
        loss = self.loss_fn(crop(x_hat, margin), crop(x, margin))
        if self.full_loss_weight > 0:
            loss = loss + self.full_loss_weight * self.loss_fn(x_hat, x)
        return loss

    def _log_step_values(self, solver_summary: dict[str, float]) -> None:
        for name, value in evaluation.learned_parameters(self.model).items():
            value = torch.as_tensor(value).detach().flatten().float()
            if value.numel() == 1:
                self.log(f"params/{name}", value[0], on_step=True, on_epoch=False)
            else:
                for k, v in enumerate(value):
                    self.log(f"params/{name}/{k}", v, on_step=True, on_epoch=False)
        for key, value in solver_summary.items():
            self.log(f"solver/{key}", float(value), on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        """Once per epoch: how many CG/DEQ solves of each kind reached their tolerance (a log line, and the
        unconverged count as a metric), the skipped batches; a warning line if anything went wrong."""
        self.solver_stats.harvest(self.model, self.device)
        counts = self.solver_stats.compute_and_reset()
        for kind, c in counts.items():
            self.log(f"solver/epoch/{kind}/unconverged", float(c.unconverged), on_step=False, on_epoch=True)
        problems = [p for p in (c.problem(kind) for kind, c in counts.items()) if p]
        if self.on_nonfinite_loss == "skip":  # the same count in every process: all skip together
            self.log("train/skipped_batches", float(self.skipped_batches), on_step=False, on_epoch=True)
            if self.skipped_batches:
                problems.append(f"{self.skipped_batches} batch(es) skipped so far for a non-finite loss")
        if not self.trainer.is_global_zero:
            return
        where = f"epoch {self.current_epoch} (step {self.global_step})"
        if counts:
            log.info("%s: solves that reached their tolerance: %s", where, ", ".join(
                f"{kind} {c.solves - c.unconverged}/{c.solves}" for kind, c in counts.items()))
        if problems:
            log.warning("%s: %s", where, "; ".join(problems))

    # --- divergence -------------------------------------------------------------------------------
    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite in every process (all must take the same branch under DDP)."""
        bad = torch.tensor(float(not bool(torch.isfinite(loss).all())), device=self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        return float(bad) == 0

    def _last_good_checkpoint(self) -> str:
        paths = [p for cb in (self.trainer.checkpoint_callbacks if self._trainer is not None else [])
                 for p in (cb.last_model_path, cb.best_model_path) if p and os.path.isfile(p)]  # the newest below
        return f"last good checkpoint: {max(paths, key=os.path.getmtime)}" if paths else "no checkpoint was written yet"

    def _nonfinite_loss(self, loss: Tensor) -> None:
        """`stop`: raise TrainingDiverged (the weights are not updated and no checkpoint is written);
        `skip`: no optimizer step for this batch (Lightning skips it when training_step returns None)."""
        what = "NaN" if bool(torch.isnan(loss).any()) else "infinite"
        if self.on_nonfinite_loss == "skip":
            self.skipped_batches += 1
            return None
        raise TrainingDiverged(
            f"training loss is {what} at step {self.global_step} (epoch {self.current_epoch}); stopped, "
            f"{self._last_good_checkpoint()}. Lower module.optimizer.lr, set trainer.gradient_clip_val, "
            f"or skip such batches with module.on_nonfinite_loss=skip")

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters (unfold=False and no network weights?)")
        opt = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": self.scheduler_interval}}

    # --- evaluation -------------------------------------------------------------------------------
    def tune_baseline(self) -> None:
        """Tune the baselines (Tikhonov, TV, BM3D) on the validation images, once, in every process."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or self.results.baselines is not None:
            return
        testing.tune_baselines(self)

    def on_validation_epoch_start(self) -> None:
        self.solver_stats.harvest(self.model, self.device)  # the last training step's solves are the epoch's
        self.tune_baseline()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x, physics, y = self.simulator.batch(batch, "val")
        x_hat, per_iter = evaluation.reconstruct(self.model, y, physics, initial_estimate(self.init, y, physics), x)
        self._val_means.update(evaluation.validation_values(x_hat, x, interior_margin(physics, x.shape), per_iter),
                               self.device)
        if int(batch["index"][0]) == 0:
            self.results.val_example = {"x": x[:1].detach().cpu(), "y": y[:1].detach().cpu(),
                                        "x_hat": x_hat[:1].detach().cpu()}

    def on_validation_epoch_end(self) -> None:
        """Mean of each metric over the validation images of all processes."""
        for key, value in self._val_means.compute_and_reset().items():
            self.log(key, value, prog_bar=key == "val/psnr", sync_dist=False)
        if self.results.tikhonov_val_psnr is not None:
            self.log("val/tikhonov_psnr_interior", self.results.tikhonov_val_psnr)
        if getattr(self.model, "solver_log", None) is not None:  # validation solves are not the epoch's
            self.model.solver_log.reset()

    def on_test_start(self) -> None:
        self.results.test_records, self.results.grid_records = [], []
        self.tune_baseline()
        if self.test_grid is not None and self.tikhonov["lambdas"]:
            self.results.grid_lambdas = grid.tune(self)
            log.info("Tikhonov baseline per grid cell: %s", ", ".join(
                f"{name} lambda={lam:.3g}" for name, (lam, _) in self.results.grid_lambdas.items()))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.results.test_records += testing.batch_records(self, batch, None, self.results.tikhonov_lambda,
                                                           self.num_report_images)
        if self.test_grid is not None and self.results.grid_lambdas:
            self.results.grid_records += grid.test_batch(self, batch)

    def on_test_epoch_end(self) -> None:
        r = self.results
        r.test_records = records = evaluation.gather_records(r.test_records)
        if not records:
            return
        r.test_summary = evaluation.summarise(records, r.tikhonov_lambda, r.baselines)
        for k, v in r.test_summary.items():
            self.log(f"test/{k.replace('model/', '')}", v)
        if r.grid_lambdas:
            r.grid_summary = grid.summarise(evaluation.gather_records(r.grid_records), r.grid_lambdas)
            for row in r.grid_summary:
                self.log(f"test_grid/{row['cell']}/psnr_interior", row["model/psnr_interior"])
                self.log(f"test_grid/{row['cell']}/gain_interior", row["gain/psnr_interior"])
        self.log("trainer/global_step", float(self.trained_steps))

    # --- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        bad = next((k for k, v in checkpoint.get("state_dict", {}).items()
                    if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:  # never replace a good checkpoint by a diverged one
            raise TrainingDiverged(f"weight {bad} is not finite at step {self.global_step}; checkpoint not "
                                   f"written, {self._last_good_checkpoint()}. Lower module.optimizer.lr or set "
                                   f"trainer.gradient_clip_val")
        checkpoint["skipped_batches"] = self.skipped_batches
        # For the record only: λ is re-tuned in each process, as it depends on the physics in use.
        checkpoint["tikhonov_lambda"] = self.results.tikhonov_lambda
        checkpoint["tikhonov_val_psnr"] = self.results.tikhonov_val_psnr
        if self.run_config is not None:
            checkpoint["unfolded_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.checkpoint_global_step = checkpoint.get("global_step")
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             weights_only=None, **kwargs):
        """Lightning's loading; the model and physics are rebuilt from the configuration the checkpoint
        stores (`inference.module_arguments`), and the file is read without running code."""
        from .inference import module_arguments

        path, kwargs = module_arguments(checkpoint_path, hparams_file, weights_only, **kwargs)
        return super().load_from_checkpoint(path, map_location=map_location, strict=strict, weights_only=True,
                                            **kwargs)

    @property
    def trained_steps(self) -> int:
        """Optimisation steps behind the current weights (also when only evaluating a checkpoint)."""
        step = self.trainer.global_step if self._trainer is not None else 0
        return max(step, self.checkpoint_global_step or 0)
