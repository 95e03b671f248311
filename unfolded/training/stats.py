"""Statistics of the model's solves (CG least squares, DEQ fixed points) over a training epoch and over
the whole run.

The model records every solve in its `solver_log` (`unfolded.solvers.SolverLog`); each training step
harvests them here. Counts are torchmetrics `SumMetric`/`MaxMetric`s, which reduce across processes
themselves when computed, so the epoch's report counts the solves of every process; the run's totals
(`run_totals`, in results.json) add up the epochs this process trained (after a resume: since the resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics import MaxMetric, SumMetric


@dataclass
class KindCounts:
    solves: int
    unconverged: int
    worst_residual: float
    iterations: int = 0  # summed over the solves
    iterations_max: int = 0

    def problem(self, kind: str) -> str | None:
        if not self.unconverged:
            return None
        return (f"{self.unconverged} of {self.solves} {kind} solves unconverged "
                f"(worst relative residual {self.worst_residual:.2e})")

    def __add__(self, other: KindCounts) -> KindCounts:
        return KindCounts(self.solves + other.solves, self.unconverged + other.unconverged,
                          max(self.worst_residual, other.worst_residual), self.iterations + other.iterations,
                          max(self.iterations_max, other.iterations_max))

    def as_dict(self) -> dict:
        return {"solves": self.solves, "converged": self.solves - self.unconverged,
                "iterations_mean": self.iterations / self.solves, "iterations_max": self.iterations_max,
                "worst_residual": self.worst_residual}


class SolverStats:
    def __init__(self):
        self._metrics: dict[str, tuple[SumMetric, SumMetric, MaxMetric, SumMetric, MaxMetric]] = {}
        self._run: dict[str, KindCounts] = {}

    def harvest(self, model, device: torch.device | None = None) -> dict[str, float]:
        """Take the solves recorded by `model.solver_log` since the last harvest (the log is emptied);
        returns that log's summary (per kind: solves, mean iterations, worst residual, unconverged)."""
        solver_log = getattr(model, "solver_log", None)
        if solver_log is None:
            return {}
        summary = solver_log.summary()
        solver_log.reset()
        kinds = {key.rpartition("/")[0] for key in summary}
        for kind in sorted(kinds):
            if kind not in self._metrics:
                self._metrics[kind] = tuple(m.to(device or "cpu").set_dtype(torch.float64)
                                            for m in (SumMetric(), SumMetric(), MaxMetric(), SumMetric(), MaxMetric()))
            solves, unconverged, worst, iterations, iterations_max = self._metrics[kind]
            solves.update(summary[f"{kind}/solves"])
            unconverged.update(summary[f"{kind}/unconverged"])
            worst.update(summary[f"{kind}/max_rel_residual"])
            iterations.update(summary[f"{kind}/iters_mean"] * summary[f"{kind}/solves"])
            iterations_max.update(summary[f"{kind}/iters_max"])
        return summary

    def compute_and_reset(self) -> dict[str, KindCounts]:
        """This epoch's counts per kind, over all processes; starts the next epoch. Every process must call
        it (the sums are gathered) and every process has the same kinds (the same model)."""
        out = {}
        for kind in sorted(self._metrics):
            solves, unconverged, worst, iterations, iterations_max = self._metrics[kind]
            total = int(solves.compute())  # the same in every process: all take the same branch
            if total:
                out[kind] = KindCounts(total, int(unconverged.compute()), float(worst.compute()),
                                       round(float(iterations.compute())), int(iterations_max.compute()))
                self._run[kind] = self._run[kind] + out[kind] if kind in self._run else out[kind]
            for m in self._metrics[kind]:
                m.reset()
        return out

    def run_totals(self) -> dict[str, dict]:
        """Per kind, the solves of every epoch computed so far: solves, converged, iterations_mean,
        iterations_max, worst_residual."""
        return {kind: counts.as_dict() for kind, counts in self._run.items()}
