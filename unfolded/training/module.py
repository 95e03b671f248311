"""LightningModule around any unfolded model and a physics.

- training: y = physics(x) simulated on the fly with fresh noise for every batch, loss(model(y), x);
- validation/test: measurements drawn with a fixed seed per image (the same draws for the model and
  the baselines, and across epochs), PSNR / interior PSNR / SSIM per image (SPEC §9), PSNR of every
  iterate; the test adds the Aᵀy and Tikhonov baselines (λ tuned on the validation images);
- learned hyper-parameters (stepsize, σ, λ per iteration) and least-squares solver statistics logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from . import baselines
from .metrics import crop, display_image, image_metrics, interior_margin, measures_kspace
from .physics_bank import PhysicsBank

log = logging.getLogger(__name__)

SPLIT_SEED_OFFSET = {"val": 0, "test": 1_000_003}


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

    def measure(self, x: Tensor, batch_idx: int, split: str) -> Tensor:
        """A measurement of an evaluation image with noise seeded by (split, index): reproducible."""
        physics = self.physics_for(x)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.eval_seed + SPLIT_SEED_OFFSET[split] + batch_idx)
            return physics(x)

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

    def _log_hyperparameters(self) -> None:
        hp = getattr(self.model, "hyperparameters", None)
        if callable(hp):
            for name, value in hp().items():
                value = torch.as_tensor(value).detach().flatten().float()
                if value.numel() == 1:
                    self.log(f"params/{name}", value[0], on_step=True, on_epoch=False)
                else:
                    for k, v in enumerate(value):
                        self.log(f"params/{name}/{k}", v, on_step=True, on_epoch=False)
        solver_log = getattr(self.model, "solver_log", None)
        if solver_log is not None and hasattr(solver_log, "summary"):
            for key, value in solver_log.summary().items():
                if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
                    self.log(f"solver/{key}", float(value), on_step=True, on_epoch=False)
            if hasattr(solver_log, "reset"):
                solver_log.reset()
        for key, value in (getattr(self.model, "deq_stats", None) or {}).items():
            if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
                self.log(f"deq/{key}", float(value), on_step=True, on_epoch=False)

    # --- training ---------------------------------------------------------------------------------
    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        physics = self.physics_for(x)
        y = physics(x)  # fresh noise for every batch
        x_hat = self(y, physics)
        margin = interior_margin(physics, x.shape) if self.loss_region == "interior" else (0, 0)
        loss = self.loss_fn(self._region(x_hat, margin), self._region(x, margin))
        if self.loss_region == "interior" and self.full_loss_weight > 0:
            loss = loss + self.full_loss_weight * self.loss_fn(x_hat, x)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}")
        with torch.no_grad():
            psnr = image_metrics(x_hat, x, (0, 0))["psnr"].mean()
        bs = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/psnr", psnr, prog_bar=True, batch_size=bs)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        if self.log_params_every_n_steps and self.global_step % self.log_params_every_n_steps == 0:
            self._log_hyperparameters()
        return loss

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
        for idx, x in enumerate(dm.val_dataloader()):
            x = x.to(self.device)
            pairs.append((x, self.measure(x, idx, "val"), self.physics_for(x)))
        with torch.no_grad():
            lam, score, _ = baselines.tune_tikhonov(pairs, self.tikhonov_lambdas, self.tikhonov_refine,
                                                     self.tikhonov_tol, self.tikhonov_max_iter)
        self.tikhonov_lambda, self.tikhonov_val_psnr = lam, score
        log.info("Tikhonov baseline: lambda=%.4g, validation interior PSNR %.2f dB", lam, score)

    # --- validation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self.tikhonov_lambda is None:
            self.tune_baseline()

    def _evaluate(self, x: Tensor, batch_idx: int, split: str):
        physics = self.physics_for(x)
        y = self.measure(x, batch_idx, split)
        x_hat, per_iter = self.reconstruct(y, physics, x)
        margin = interior_margin(physics, x.shape)
        return physics, y, x_hat, per_iter, margin

    def validation_step(self, x: Tensor, batch_idx: int) -> None:
        physics, y, x_hat, per_iter, margin = self._evaluate(x, batch_idx, "val")
        bs = x.shape[0]
        for name, value in image_metrics(x_hat, x, margin).items():
            self.log(f"val/{name}", value.mean(), prog_bar=name == "psnr", batch_size=bs)
        if per_iter is not None:
            for k, v in enumerate(per_iter.mean(dim=1)):
                self.log(f"val/psnr_iter/{k + 1}", v, batch_size=bs)
        if self.tikhonov_val_psnr is not None:
            self.log("val/tikhonov_psnr_interior", self.tikhonov_val_psnr, batch_size=bs)
        if batch_idx == 0:
            self.val_example = {"measurement": display_image(y[0], measures_kspace(physics)).cpu(),
                                "reconstruction": display_image(x_hat[0]).cpu(), "target": display_image(x[0]).cpu()}

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
            index = batch_idx * x.shape[0] + i
            record = {"name": names[index] if index < len(names) else f"test_{index}"}
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

    def on_test_epoch_end(self) -> None:
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

    # --- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # For the record only: λ is re-tuned in each process, as it depends on the physics in use.
        checkpoint["tikhonov_lambda"] = self.tikhonov_lambda
        checkpoint["tikhonov_val_psnr"] = self.tikhonov_val_psnr
        if self.run_config is not None:
            checkpoint["unfolded_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.checkpoint_global_step = checkpoint.get("global_step")

    @property
    def trained_steps(self) -> int:
        """Optimisation steps behind the current weights (also when only evaluating a checkpoint)."""
        step = self.trainer.global_step if self._trainer is not None else 0
        return max(step, self.checkpoint_global_step or 0)
