"""wandb line charts that scalar logging cannot draw: curves over the unrolled iterations k = 1..K.

At each validation: PSNR of each iterate (validation mean), the learned parameters per iteration (γ_k, λ_k,
σ_k; one shared value is drawn flat), and the relative change ‖x_k − x_{k−1}‖/‖x_{k−1}‖ per iteration on the
first validation image. After testing: test PSNR of each iterate. The scalars are logged by the module
(`val/psnr_iter/k`, `params/*`, `solver/*`: conjugate-gradient iterations and residuals per training step).
Does nothing without a WandbLogger.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from .evaluation import learned_parameters, reports_iterates


def _psnr_per_iteration(metrics: dict, prefix: str) -> list[float]:
    values, k = [], 1
    while f"{prefix}{k}" in metrics:
        values.append(float(metrics[f"{prefix}{k}"]))
        k += 1
    return values


class WandbPanels(pl.Callback):
    def __init__(self, residuals: bool = True):
        self.residuals = residuals

    @staticmethod
    def _loggers(trainer) -> list[WandbLogger]:
        if not trainer.is_global_zero:  # wandb logs from rank 0 only
            return []
        return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

    @staticmethod
    def _log(loggers, charts: dict, step: int) -> None:
        for lg in loggers:
            lg.experiment.log({**charts, "trainer/global_step": step})

    def on_validation_end(self, trainer, pl_module) -> None:
        loggers = self._loggers(trainer)
        if trainer.sanity_checking or not loggers:
            return
        import wandb

        charts = {}
        psnr = _psnr_per_iteration(trainer.callback_metrics, "val/psnr_iter/")
        if psnr:
            table = wandb.Table(data=[[k + 1, v] for k, v in enumerate(psnr)], columns=["iteration", "psnr"])
            charts["panels/val_psnr_per_iteration"] = wandb.plot.line(
                table, "iteration", "psnr", title="validation PSNR of each iterate (dB)")
        params = self.parameters_per_iteration(pl_module.model)
        if params:
            k = max(int(getattr(pl_module.model, "max_iter", 1)), *(len(v) for v in params.values()))
            charts["panels/params_per_iteration"] = wandb.plot.line_series(
                xs=list(range(1, k + 1)), ys=[v * k if len(v) == 1 else v for v in params.values()],
                keys=list(params), title="learned parameters per iteration", xname="iteration")
        residual = self.residual_per_iteration(pl_module) if self.residuals else None
        if residual:
            table = wandb.Table(data=[[k + 1, v] for k, v in enumerate(residual)], columns=["iteration", "residual"])
            charts["panels/relative_change_per_iteration"] = wandb.plot.line(
                table, "iteration", "residual", title="‖x_k − x_{k−1}‖ / ‖x_{k−1}‖ (first validation image)")
        if charts:
            self._log(loggers, charts, trainer.global_step)

    def on_test_end(self, trainer, pl_module) -> None:
        loggers = self._loggers(trainer)
        iters = [r["psnr_iter"] for r in pl_module.results.test_records if "psnr_iter" in r]
        if not loggers or not iters:
            return
        import wandb

        mean = [sum(col) / len(col) for col in zip(*iters)]
        table = wandb.Table(data=[[k + 1, v] for k, v in enumerate(mean)], columns=["iteration", "psnr"])
        self._log(loggers, {"panels/test_psnr_per_iteration": wandb.plot.line(
            table, "iteration", "psnr", title="test PSNR of each iterate (dB)")}, trainer.global_step)

    @staticmethod
    def parameters_per_iteration(model) -> dict[str, list[float]]:
        return {name: torch.as_tensor(v).detach().float().flatten().tolist()
                for name, v in learned_parameters(model).items()}

    @staticmethod
    def residual_per_iteration(pl_module) -> list[float] | None:
        """Re-run the model on the first validation image's measurement (the one validation used), asking
        for its per-iteration relative change; None for models that do not report iterates."""
        ex = pl_module.results.val_example
        if not ex or not reports_iterates(pl_module.model):
            return None
        x, y = ex["x"].to(pl_module.device), ex["y"].to(pl_module.device)
        physics = pl_module.physics_for(x)
        with torch.no_grad():
            _, metrics = pl_module.model(y, physics, x_gt=x, compute_metrics=True,
                                         **pl_module.init_kwargs(y, physics))
        residual = metrics.get("residual") if isinstance(metrics, dict) else None
        if residual is None or torch.as_tensor(residual).numel() == 0:
            return None
        return torch.as_tensor(residual).detach().float().reshape(len(residual), -1).mean(dim=1).tolist()
