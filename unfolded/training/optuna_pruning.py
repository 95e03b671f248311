"""Lightning callback of an Optuna sweep: after each validation, report the monitored metric to the job's
trial and stop the trial (optuna.TrialPruned) when the study's pruner says it is hopeless.

Outside a sweep of `hydra_plugins.unfolded_optuna_sweeper` (no trial in the environment) it does nothing.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl


class OptunaPruning(pl.Callback):
    def __init__(self, monitor: str = "val/psnr_interior"):
        self.monitor = monitor
        self.trial = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self.trial is None:
            from hydra_plugins.unfolded_optuna_sweeper._trial_env import current_trial

            self.trial = current_trial()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.trial is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return  # the job fails (non-finite metric): the sweeper records that
        prune = False
        if trainer.is_global_zero:  # one report; every process (DDP) gets the same decision
            self.trial.report(value, step=trainer.global_step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            import optuna

            raise optuna.TrialPruned(f"{self.monitor} = {value:.4g} at step {trainer.global_step}")
