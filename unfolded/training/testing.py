"""The test half of `UnfoldedModule`: the Tikhonov λ tuned on the validation images, the records of a test
batch (model and baselines on the same measurements), and the test grid (`grid.py`). Functions of the module,
kept here so that the LightningModule stays a thin set of hooks.
"""

from __future__ import annotations

import torch

from . import baselines, evaluation
from .metrics import interior_margin
from .simulation import initial_estimate


def _measured(module, batch: dict, split: str, params: dict | None):
    """(x, physics, y) of an evaluation batch; `params` (a grid cell) only for simulated measurements (the start-up
    checks refuse a grid with measured data)."""
    return module.simulator.batch(batch, split) if params is None else module.simulator.batch(batch, split, params)


def tune_tikhonov(module, params: dict | None = None) -> tuple[float, float]:
    """(λ, its mean validation interior PSNR) over the module's λ grid, on the validation images measured as
    validation measures them (or with `params`, a test-grid cell), in every process."""
    dm = module.trainer.datamodule
    triples = []
    for batch in dm.eval_dataloader("val", shard=False):
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        x, physics, y = _measured(module, batch, "val", params)
        triples.append((x, y, physics))
    t = module.tikhonov
    with torch.no_grad():
        lam, score, _ = baselines.tune_tikhonov(triples, t["lambdas"], t["refine"], t["tol"], t["max_iter"])
    return lam, score


def batch_records(module, batch: dict, params: dict | None, lam: float | None, num_report_images: int) -> list[dict]:
    """One record per test image of the batch: the model, Aᵀy and Tikhonov (λ = `lam`) on the test
    measurements (with `params`: a grid cell's), pictures for the first `num_report_images` images."""
    x, physics, y = _measured(module, batch, "test", params)
    x_hat, per_iter = evaluation.reconstruct(module.model, y, physics, initial_estimate(module.init, y, physics), x)
    t = module.tikhonov
    recs = {"model": x_hat.detach(),
            **baselines.baseline_reconstructions(physics, y, x.shape, lam, t["tol"], t["max_iter"])}
    names = getattr(module.trainer.datamodule, "names", {}).get("test", [])
    return evaluation.test_records(batch["index"].tolist(), names, x, y, physics, recs,
                                   interior_margin(physics, x.shape), per_iter, num_report_images)
