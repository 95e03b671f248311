"""LightningModule around any unfolded model and a physics.

- training: y = physics(x) simulated on the fly with fresh noise for every batch, loss(model(y), x);
- validation/test: measurements drawn with a fixed seed per image (the same draws for the model and
  the baselines, and across epochs), PSNR / interior PSNR / SSIM per image (SPEC §9), PSNR of every
  iterate; the test adds the Aᵀy and Tikhonov baselines (λ tuned on the validation images);
- learned hyper-parameters (stepsize, σ, λ per iteration) and least-squares solver statistics logged;
  unconverged CG/DEQ solves counted and reported once per epoch;
- a NaN/inf training loss stops the run with `TrainingDiverged` (or skips the batch: `on_nonfinite_loss`);
  a checkpoint with non-finite weights is never written;
- under DDP each process evaluates its share of the images and the metrics are summed over processes,
  so they equal a single-process evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from . import baselines
from .errors import TrainingDiverged
from .metrics import crop, display_image, image_metrics, interior_margin, measures_kspace
from .physics_bank import PhysicsBank

log = logging.getLogger(__name__)

SPLIT_SEED_OFFSET = {"val": 0, "test": 1_000_003}
TRAIN_NOISE_STRIDE = 1_000_000_007  # separates the training-noise seeds of different `train_noise_seed`s


class UnfoldedModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        physics,
        loss: nn.Module | None = None,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        loss_region: str = "full",
        full_loss_weight: float = 0.0,
        init: str = "adjoint",
        eval_seed: int = 1234,
        tikhonov_lambdas: Sequence[float] = (1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1, 3.16e-1, 1.0),
        tikhonov_refine: int = 4,
        tikhonov_tol: float = 1e-8,
        tikhonov_max_iter: int = 2000,
        log_params_every_n_steps: int = 1,
        num_report_images: int = 3,
        train_noise_seed: int | None = None,
        on_nonfinite_loss: str = "stop",
        run_config: dict | None = None,
    ):
        super().__init__()
        if loss_region not in ("full", "interior"):
            raise ValueError(f"module.loss_region must be 'full' or 'interior', got {loss_region!r}")
        if init not in ("adjoint", "mean_fill"):
            raise ValueError(f"module.init must be 'adjoint' or 'mean_fill', got {init!r}")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"module.scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        self.model = model
        self.physics_bank = PhysicsBank.wrap(physics)  # not a submodule: the state dict is the model's
        self.loss_fn = loss if loss is not None else nn.MSELoss()
        self.optimizer_factory = optimizer if optimizer is not None else (lambda p: torch.optim.Adam(p, lr=1e-3))
        self.scheduler_factory, self.scheduler_interval = scheduler, scheduler_interval
        self.loss_region, self.init, self.eval_seed = loss_region, init, eval_seed
        self.full_loss_weight = float(full_loss_weight)
        self.tikhonov_lambdas, self.tikhonov_refine = list(tikhonov_lambdas), tikhonov_refine
        self.tikhonov_tol, self.tikhonov_max_iter = tikhonov_tol, tikhonov_max_iter
        self.log_params_every_n_steps, self.num_report_images = log_params_every_n_steps, num_report_images
        if on_nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"module.on_nonfinite_loss must be 'stop' or 'skip', got {on_nonfinite_loss!r}")
        # None: training noise from the global RNG; an int: the noise of each training sample is seeded by
        # its number (step, place in the global batch), so it is the same after a resume and for any
        # number of processes.
        self.train_noise_seed = train_noise_seed
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        self._epoch_solves: dict[str, list[float]] = {}  # kind -> [solves, unconverged, worst residual]
        self._eval_sums: dict[str, list[float]] = {}  # metric -> [sum over images, number of images]
        self.run_config = run_config
        self.checkpoint_global_step: int | None = None  # step of a checkpoint loaded for evaluation
        self.tikhonov_lambda: float | None = None
        self.tikhonov_val_psnr: float | None = None
        self.val_example: dict[str, Tensor] | None = None
        self.test_records: list[dict] = []
        self.test_summary: dict[str, float] = {}

    # --- helpers ----------------------------------------------------------------------------------
    def physics_for(self, x: Tensor):
        return self.physics_bank.get(x)

    def measure(self, x: Tensor, index: int, split: str) -> Tensor:
        """A measurement of evaluation image number `index` (in the whole split, whichever process
        evaluates it) with noise seeded by (split, index): reproducible."""
        physics = self.physics_for(x)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.eval_seed + SPLIT_SEED_OFFSET[split] + index)
            return physics(x)

    def _rank_world(self) -> tuple[int, int]:
        if self._trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def eval_index(self, batch_idx: int) -> int:
        """Index in the split of evaluation batch `batch_idx` (one image per batch): the data module gives
        process r of w the images r, r + w, r + 2w, ..."""
        rank, world = self._rank_world()
        return batch_idx * world + rank

    def simulate_training(self, x: Tensor, physics) -> Tensor:
        """y = physics(x) with fresh noise for every sample. With `train_noise_seed`, the noise of a sample
        is seeded by its number in the run (global step, place in the global batch)."""
        if self.train_noise_seed is None:
            return physics(x)
        rank, world = self._rank_world()
        first = self.global_step * x.shape[0] * world
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        ys = []
        with torch.random.fork_rng(devices=devices):
            for i in range(x.shape[0]):  # data module: process r holds the places r, r + w, ... of the batch
                torch.manual_seed(self.train_noise_seed * TRAIN_NOISE_STRIDE + first + i * world + rank)
                ys.append(physics(x[i:i + 1]))
        return torch.cat(ys)

    def initial_estimate(self, y: Tensor, physics) -> Tensor | None:
        """x₀ given to the model: None (the algorithm's own, Aᵀy) or, with init='mean_fill',
        Aᵀy + m·(1 − Aᵀ1) with m the mean of y: what A barely sees (the ring of a valid blur, the
        missing pixels of inpainting) starts at the mean instead of black."""
        if self.init == "adjoint":
            return None
        m = y.mean(dim=tuple(range(1, y.dim())), keepdim=True)
        return physics.A_adjoint(y) + m * (1 - physics.A_adjoint(torch.ones_like(y)))

    def forward(self, y: Tensor, physics) -> Tensor:
        init = self.initial_estimate(y, physics)
        return self.model(y, physics) if init is None else self.model(y, physics, init=init)

    def reconstruct(self, y: Tensor, physics, x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(x̂, PSNR of each iterate (K, B) or None)."""
        if x is None:
            return self(y, physics), None
        init = self.initial_estimate(y, physics)
        kwargs = {} if init is None else {"init": init}
        try:
            out = self.model(y, physics, x_gt=x, compute_metrics=True, **kwargs)
        except TypeError:  # a model without per-iterate metrics
            return self(y, physics), None
        if isinstance(out, tuple):
            x_hat, metrics = out
            per_iter = metrics.get("psnr") if isinstance(metrics, dict) else None
            if per_iter is not None:
                per_iter = torch.as_tensor(per_iter).detach().float()
                if per_iter.dim() == 1:
                    per_iter = per_iter[:, None]
            return x_hat, per_iter
        return out, None

    def _region(self, t: Tensor, margin) -> Tensor:
        return crop(t, margin) if self.loss_region == "interior" else t

    def _harvest_solves(self) -> dict[str, float]:
        """Statistics of the solves since the last call (added to this epoch's counts); empties the log."""
        solver_log = getattr(self.model, "solver_log", None)
        if solver_log is None or not hasattr(solver_log, "summary"):
            return {}
        summary = solver_log.summary()
        for key, value in summary.items():
            kind, _, stat = key.rpartition("/")
            counts = self._epoch_solves.setdefault(kind, [0.0, 0.0, 0.0])
            if stat == "solves":
                counts[0] += float(value)
            elif stat == "unconverged":
                counts[1] += float(value)
            elif stat == "max_rel_residual":
                counts[2] = max(counts[2], float(value))
        if hasattr(solver_log, "reset"):
            solver_log.reset()
        return summary

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        if self._rank_world()[1] == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.trainer.strategy.reduce(t, reduce_op="sum").tolist()

    def on_train_epoch_end(self) -> None:
        """Once per epoch: the count of unconverged CG/DEQ solves and of skipped batches, as metrics and, if
        any, as one warning line."""
        self._harvest_solves()
        kinds = sorted(self._epoch_solves)
        flat = self._sum_over_processes([v for k in kinds for v in self._epoch_solves[k][:2]])
        problems = []
        for i, kind in enumerate(kinds):
            solves, unconverged = flat[2 * i], flat[2 * i + 1]
            self.log(f"solver/epoch/{kind}/unconverged", unconverged, on_step=False, on_epoch=True)
            if unconverged:
                problems.append(f"{int(unconverged)} of {int(solves)} {kind} solves unconverged "
                                f"(worst relative residual {self._epoch_solves[kind][2]:.2e})")
        if self.on_nonfinite_loss == "skip":  # the same count in every process: all skip together
            self.log("train/skipped_batches", float(self.skipped_batches), on_step=False, on_epoch=True)
            if self.skipped_batches:
                problems.append(f"{self.skipped_batches} batch(es) skipped so far for a non-finite loss")
        if problems and self.trainer.is_global_zero:
            log.warning("epoch %d (step %d): %s", self.current_epoch, self.global_step, "; ".join(problems))
        self._epoch_solves = {}

    def _log_hyperparameters(self, solver_summary: dict[str, float]) -> None:
        hp = getattr(self.model, "hyperparameters", None)
        if callable(hp):
            for name, value in hp().items():
                value = torch.as_tensor(value).detach().flatten().float()
                if value.numel() == 1:
                    self.log(f"params/{name}", value[0], on_step=True, on_epoch=False)
                else:
                    for k, v in enumerate(value):
                        self.log(f"params/{name}/{k}", v, on_step=True, on_epoch=False)
        for key, value in solver_summary.items():
            if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
                self.log(f"solver/{key}", float(value), on_step=True, on_epoch=False)
        for key, value in (getattr(self.model, "deq_stats", None) or {}).items():
            if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
                self.log(f"deq/{key}", float(value), on_step=True, on_epoch=False)

    # --- training ---------------------------------------------------------------------------------
    def training_step(self, x: Tensor, batch_idx: int) -> Tensor | None:
        physics = self.physics_for(x)
        y = self.simulate_training(x, physics)  # fresh noise for every sample
        x_hat = self(y, physics)
        margin = interior_margin(physics, x.shape) if self.loss_region == "interior" else (0, 0)
        loss = self.loss_fn(self._region(x_hat, margin), self._region(x, margin))
        if self.loss_region == "interior" and self.full_loss_weight > 0:
            loss = loss + self.full_loss_weight * self.loss_fn(x_hat, x)
        solver_summary = self._harvest_solves()
        if not self._all_finite(loss):
            return self._nonfinite_loss(loss)
        with torch.no_grad():
            psnr = image_metrics(x_hat, x, (0, 0))["psnr"].mean()
        bs = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/psnr", psnr, prog_bar=True, batch_size=bs)
        # in the metrics, for the main process of DDP-spawn (its own trainer does not count the steps)
        self.log("trainer/global_step", float(self.global_step + 1), on_step=True, on_epoch=False, batch_size=bs)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        if self.log_params_every_n_steps and self.global_step % self.log_params_every_n_steps == 0:
            self._log_hyperparameters(solver_summary)
        return loss

    # --- divergence -------------------------------------------------------------------------------
    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite in every process (all must take the same branch under DDP)."""
        finite = bool(torch.isfinite(loss).all())
        if self._rank_world()[1] == 1:
            return finite
        return self._sum_over_processes([float(not finite)])[0] == 0

    def _last_good_checkpoint(self) -> str:
        cb = self.trainer.checkpoint_callback if self._trainer is not None else None
        path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
        return f"last good checkpoint: {path}" if path else "no checkpoint was written yet"

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

    # --- Tikhonov baseline ------------------------------------------------------------------------
    def tune_baseline(self) -> None:
        """Choose the Tikhonov λ on the validation images (same noise draws as validation)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not self.tikhonov_lambdas:
            return
        pairs = []
        # every process tunes on all validation images, so that all find the same λ
        loader = dm.eval_dataloader("val", shard=False) if hasattr(dm, "eval_dataloader") else dm.val_dataloader()
        for idx, x in enumerate(loader):
            x = x.to(self.device)
            pairs.append((x, self.measure(x, idx, "val"), self.physics_for(x)))
        with torch.no_grad():
            lam, score, _ = baselines.tune_tikhonov(pairs, self.tikhonov_lambdas, self.tikhonov_refine,
                                                     self.tikhonov_tol, self.tikhonov_max_iter)
        self.tikhonov_lambda, self.tikhonov_val_psnr = lam, score
        log.info("Tikhonov baseline: lambda=%.4g, validation interior PSNR %.2f dB", lam, score)

    # --- validation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._harvest_solves()  # the last training step's solves belong to the training epoch
        self._eval_sums = {}
        if self.tikhonov_lambda is None:
            self.tune_baseline()

    def _evaluate(self, x: Tensor, batch_idx: int, split: str):
        physics = self.physics_for(x)
        y = self.measure(x, self.eval_index(batch_idx), split)
        x_hat, per_iter = self.reconstruct(y, physics, x)
        margin = interior_margin(physics, x.shape)
        return physics, y, x_hat, per_iter, margin

    def validation_step(self, x: Tensor, batch_idx: int) -> None:
        physics, y, x_hat, per_iter, margin = self._evaluate(x, batch_idx, "val")
        values = {f"val/{name}": value for name, value in image_metrics(x_hat, x, margin).items()}
        if per_iter is not None:
            values.update({f"val/psnr_iter/{k + 1}": v for k, v in enumerate(per_iter)})
        for key, value in values.items():  # summed per image; averaged over all processes at the epoch end
            sums = self._eval_sums.setdefault(key, [0.0, 0.0])
            sums[0] += float(value.detach().double().sum())
            sums[1] += value.numel()
        if batch_idx == 0 and self.eval_index(0) == 0:
            self.val_example = {"measurement": display_image(y[0], measures_kspace(physics)).cpu(),
                                "reconstruction": display_image(x_hat[0]).cpu(), "target": display_image(x[0]).cpu()}

    def on_validation_epoch_end(self) -> None:
        """Mean of each metric over the validation images of all processes (exact, without the
        duplicates a padding sampler would add)."""
        keys = sorted(self._eval_sums)
        flat = self._sum_over_processes([v for k in keys for v in self._eval_sums[k]])
        for i, key in enumerate(keys):
            total, count = flat[2 * i], flat[2 * i + 1]
            if count:
                self.log(key, total / count, prog_bar=key == "val/psnr", sync_dist=False)
        if self.tikhonov_val_psnr is not None:
            self.log("val/tikhonov_psnr_interior", self.tikhonov_val_psnr)
        solver_log = getattr(self.model, "solver_log", None)
        if hasattr(solver_log, "reset"):  # validation solves are not counted with the training epoch's
            solver_log.reset()

    # --- test -------------------------------------------------------------------------------------
    def on_test_start(self) -> None:
        self.test_records = []
        if self.tikhonov_lambda is None:
            self.tune_baseline()

    def test_step(self, x: Tensor, batch_idx: int) -> None:
        physics, y, x_hat, per_iter, margin = self._evaluate(x, batch_idx, "test")
        recs = {"model": x_hat.detach()}
        recs.update(baselines.baseline_reconstructions(physics, y, x.shape, self.tikhonov_lambda,
                                                       self.tikhonov_tol, self.tikhonov_max_iter))
        names = getattr(getattr(self.trainer, "datamodule", None), "names", {}).get("test", [])
        for i in range(x.shape[0]):
            index = self.eval_index(batch_idx) if x.shape[0] == 1 else batch_idx * x.shape[0] + i
            record = {"index": index, "name": names[index] if index < len(names) else f"test_{index}"}
            for method, rec in recs.items():
                for metric, value in image_metrics(rec[i:i + 1], x[i:i + 1], margin).items():
                    record[f"{method}/{metric}"] = float(value)
            if per_iter is not None:
                record["psnr_iter"] = per_iter[:, i].tolist()
            if index < self.num_report_images:
                record["images"] = {"measurement": display_image(y[i], measures_kspace(physics)).cpu(),
                                    "target": display_image(x[i]).cpu(),
                                    **{m: display_image(r[i]).cpu() for m, r in recs.items()}}
            self.test_records.append(record)

    def _gather_test_records(self) -> None:
        """All processes' records, in image order, on every process (images stay with their process)."""
        if self._rank_world()[1] == 1:
            return
        import torch.distributed as dist

        mine = [{k: v for k, v in r.items() if k != "images"} for r in self.test_records]
        everyone: list = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        images = {r["index"]: r["images"] for r in self.test_records if "images" in r}
        records = sorted((r for part in everyone for r in part), key=lambda r: r["index"])
        self.test_records = [{**r, "images": images[r["index"]]} if r["index"] in images else r for r in records]

    def on_test_epoch_end(self) -> None:
        self._gather_test_records()
        if not self.test_records:
            return
        keys = [k for k in self.test_records[0] if "/" in k]
        summary = {k: sum(r[k] for r in self.test_records) / len(self.test_records) for k in keys}
        if "tikhonov/psnr" in summary:
            summary["gain/psnr"] = summary["model/psnr"] - summary["tikhonov/psnr"]
            summary["gain/psnr_interior"] = summary["model/psnr_interior"] - summary["tikhonov/psnr_interior"]
        if "adjoint/psnr" in summary:  # Aᵀy: the zero-filled reconstruction for MRI
            summary["gain/psnr_vs_adjoint"] = summary["model/psnr"] - summary["adjoint/psnr"]
        if self.tikhonov_lambda is not None:
            summary["tikhonov/lambda"] = self.tikhonov_lambda
        self.test_summary = summary
        for k, v in summary.items():
            name = k.replace("model/", "")
            self.log(f"test/{name}", v)
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
        checkpoint["tikhonov_lambda"] = self.tikhonov_lambda
        checkpoint["tikhonov_val_psnr"] = self.tikhonov_val_psnr
        if self.run_config is not None:
            checkpoint["unfolded_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.checkpoint_global_step = checkpoint.get("global_step")
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    @property
    def trained_steps(self) -> int:
        """Optimisation steps behind the current weights (also when only evaluating a checkpoint)."""
        step = self.trainer.global_step if self._trainer is not None else 0
        return max(step, self.checkpoint_global_step or 0)
