"""Residual traces of the DEQ fixed-point solves, as a picture: is the forward solve converging, and is
the backward one? Saved next to the run's report and sent to wandb when it is a logger."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger

from .atomic import write_atomically


class DEQResidualPlot(pl.Callback):
    """Every `every_n_steps` training steps, keep the residual traces of the last DEQ forward and
    backward solves; at each validation, plot the kept traces (older ones lighter) with the tolerances.
    Every training step's solves are counted per direction and solver (`counts`: {(direction, solver):
    [reached tolerance, solves]}, since the start of training): each panel's title says, per solver, how
    many reached their tolerance. Does nothing for models without DEQ statistics."""

    def __init__(self, output_dir: str | None = None, filename: str = "deq_residuals.png", every_n_steps: int = 25,
                 max_traces: int = 8):
        if every_n_steps < 1 or max_traces < 1:
            raise ValueError(f"DEQResidualPlot: every_n_steps and max_traces must be >= 1, got {every_n_steps}, "
                             f"{max_traces}")
        self.output_dir, self.filename = output_dir, filename
        self.every_n_steps, self.max_traces = every_n_steps, max_traces
        self.traces: list[tuple[int, list[float], list[float]]] = []  # (step, forward, backward)
        self.path: Path | None = None
        self.counts: dict[tuple[str, str], list[int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stats = getattr(pl_module.model, "deq_stats", None)
        if not stats:
            return
        for direction in ("forward", "backward"):
            solve = stats.get(direction) or {}
            if solve.get("converged") is not None:  # None: a backward that solves nothing (phantom, Jacobian-free)
                count = self.counts.setdefault((direction, str(solve.get("solver"))), [0, 0])
                count[0] += bool(solve["converged"])
                count[1] += 1
        if (trainer.global_step - 1) % self.every_n_steps:
            return
        forward = list(stats.get("forward", {}).get("residuals", []))
        backward = list(stats.get("backward", {}).get("residuals", []))
        self.traces = (self.traces + [(trainer.global_step, forward, backward)])[-self.max_traces:]

    def reached(self, direction: str) -> str:
        """'anderson 57/60' per solver of that direction: solves that reached their tolerance / solves."""
        return ", ".join(f"{solver} {n}/{total}" for (d, solver), (n, total) in self.counts.items() if d == direction)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.traces or not trainer.is_global_zero:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        cfg = getattr(pl_module.model, "DEQ", None)
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        tolerances = (getattr(cfg, "tol_forward", None), getattr(cfg, "tol_backward", None))
        for ax, which, tol in zip(axes, (1, 2), tolerances):
            for i, trace in enumerate(self.traces):
                residuals = trace[which]
                if residuals:
                    shade = 0.25 + 0.75 * (i + 1) / len(self.traces)
                    ax.semilogy(range(1, len(residuals) + 1), residuals, color=(0.1, 0.3, 0.8, shade),
                                label=f"step {trace[0]}")
            if tol:
                ax.axhline(tol, color="k", ls="--", lw=0.8, label="tolerance")
            direction = "forward" if which == 1 else "backward"
            reached = self.reached(direction)
            ax.set_title(f"DEQ {direction} solve" + (f"\nreached tol: {reached}" if reached else ""), fontsize=9)
            ax.set_xlabel("iteration", fontsize=8)
            ax.set_ylabel("relative residual", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
        fig.tight_layout()
        self.path = Path(self.output_dir or trainer.default_root_dir) / self.filename
        write_atomically(self.path, lambda f: fig.savefig(f, format="png", dpi=110))
        plt.close(fig)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="deq/residuals", images=[str(self.path)], step=trainer.global_step)
