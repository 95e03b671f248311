"""A test grid: the model and the baselines on fixed operators × noise levels (`test_grid=blur`, issue #19).

Every cell is the run's physics with one kernel (`physics.filter`) and one Gaussian noise level. Each test
image is measured in every cell with the noise the plain test draws for it (seeded by split and image
number: the cells differ by their operator and σ only, not by their noise realisation). The Tikhonov
baseline gets its own λ per cell, tuned on the validation images measured in that cell, as the plain test
tunes its one λ. Reported per cell: the means over the test images of every method's metrics, and the
model's gain over Tikhonov in interior PSNR (the ring a valid blur barely measures cropped, SPEC §9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unfolded.physics.filters import as_filter


def drawn_kernel(generator, seed: int) -> Tensor:
    """One kernel (1, 1, h, w) from a physics generator's own stream seeded by `seed`, e.g. a held-out motion
    kernel for the grid (`generator.step(1, seed=seed)`: not a stream that training draws from)."""
    return generator.step(1, seed=int(seed))["filter"]


@dataclass
class Cell:
    kernel: str | None  # None: the physics' own operator
    sigma: float | None  # None: the physics' own noise level
    params: dict = field(default_factory=dict)  # what `physics.update` receives

    @property
    def name(self) -> str:
        return f"{self.kernel or 'operator'}/{'noise' if self.sigma is None else f'{self.sigma:g}'}"


class OperatorGrid:
    """`kernels`: name -> a filter (tensor, numpy array or kernel file); `noise_levels`: Gaussian σ values.
    Either may be left out (the physics' own operator, or noise level, in every cell), not both."""

    def __init__(self, kernels: Mapping | None = None, noise_levels: Sequence[float] | None = None):
        if not kernels and not noise_levels:
            raise ValueError("OperatorGrid: give kernels (name: filter), noise_levels (a list of sigma) or both")
        self.kernels = {str(name): as_filter(k) for name, k in (kernels or {}).items()}
        self.noise_levels = [float(s) for s in (noise_levels or [])]
        if any(not s >= 0 for s in self.noise_levels):
            raise ValueError(f"OperatorGrid: noise levels must be >= 0, got {self.noise_levels}")

    def cells(self) -> list[Cell]:
        out = []
        for kernel, k in (list(self.kernels.items()) or [(None, None)]):
            for sigma in (self.noise_levels or [None]):
                params = {} if k is None else {"filter": k}
                if sigma is not None:
                    params["sigma"] = torch.tensor(sigma, dtype=torch.float64)
                out.append(Cell(kernel, sigma, params))
        return out


def tune(module) -> dict[str, tuple[float, float]]:
    """{cell name: (λ, its validation interior PSNR)}: the Tikhonov λ of every cell."""
    from .testing import tune_tikhonov

    return {cell.name: tune_tikhonov(module, cell.params) for cell in module.test_grid.cells()}


def test_batch(module, batch: dict) -> list[dict]:
    """Records of a test batch in every cell: the model, Aᵀy and Tikhonov (its cell's λ); no pictures."""
    from .testing import batch_records

    records = []
    for cell in module.test_grid.cells():
        lam = module.results.grid_lambdas[cell.name][0]
        for record in batch_records(module, batch, cell.params, lam, num_report_images=0):
            record.pop("psnr_iter", None)
            records.append({"cell": cell.name, "kernel": cell.kernel, "sigma": cell.sigma, **record})
    return records


def summarise(records: list[dict], lambdas: dict[str, tuple[float, float]]) -> list[dict]:
    """One row per cell, in grid order: means over the images, the gain in interior PSNR, λ."""
    rows = []
    for name in lambdas:
        mine = [r for r in records if r["cell"] == name]
        if not mine:
            continue
        keys = [k for k in mine[0] if "/" in k and k != "cell"]
        row = {"cell": name, "kernel": mine[0]["kernel"], "sigma": mine[0]["sigma"], "images": len(mine),
               **{k: sum(r[k] for r in mine) / len(mine) for k in keys}}
        row["gain/psnr_interior"] = row["model/psnr_interior"] - row["tikhonov/psnr_interior"]
        row["gain/psnr"] = row["model/psnr"] - row["tikhonov/psnr"]
        row["tikhonov/lambda"], row["tikhonov/val_psnr_interior"] = lambdas[name]
        rows.append(row)
    return rows
