"""The test half of `UnfoldedModule`: the Tikhonov λ tuned on the validation images, the records of a test
batch (model and baselines on the same measurements), and the test grid (`grid.py`). Functions of the module,
kept here so that the LightningModule stays a thin set of hooks.
"""

from __future__ import annotations

import logging

import torch

from . import baselines, classical, evaluation
from .metrics import interior_margin
from .simulation import initial_estimate

log = logging.getLogger(__name__)


def _measured(module, batch: dict, split: str, params: dict | None):
    """(x, physics, y) of an evaluation batch; `params` (a grid cell) only for simulated measurements (the start-up
    checks refuse a grid with measured data)."""
    return module.simulator.batch(batch, split) if params is None else module.simulator.batch(batch, split, params)


def validation_triples(module, params: dict | None = None) -> list[tuple]:
    """(x, y, physics) of every validation batch, measured as validation measures them (or with `params`, a
    test-grid cell)."""
    triples = []
    for batch in module.trainer.datamodule.eval_dataloader("val", shard=False):
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        x, physics, y = _measured(module, batch, "val", params)
        triples.append((x, y, physics))
    return triples


def tune_tikhonov(module, params: dict | None = None, triples: list | None = None) -> tuple[float, float]:
    """(λ, its mean validation interior PSNR) over the module's λ grid, on the validation images, in every
    process."""
    triples = validation_triples(module, params) if triples is None else triples
    t = module.tikhonov
    with torch.no_grad():
        lam, score, _ = baselines.tune_tikhonov(triples, t["lambdas"], t["refine"], t["tol"], t["max_iter"])
    return lam, score


def tikhonov_solver(module, lam: float | None):
    """`baselines.tikhonov_solver` with the module's solver settings."""
    return baselines.tikhonov_solver(lam, module.tikhonov["tol"], module.tikhonov["max_iter"])


def tune_baselines(module) -> None:
    """Tikhonov's λ, then TV's λ and BM3D's settings (`classical.py`), on the validation images: into
    `module.results`."""
    triples = validation_triples(module)
    r, t = module.results, module.tikhonov
    if t["lambdas"]:
        r.tikhonov_lambda, r.tikhonov_val_psnr = tune_tikhonov(module, triples=triples)
        log.info("Tikhonov baseline: lambda=%.4g, validation interior PSNR %.2f dB", r.tikhonov_lambda,
                 r.tikhonov_val_psnr)
    tik = {"tikhonov_lambda": r.tikhonov_lambda, "tol": t["tol"], "max_iter": t["max_iter"]}
    with torch.no_grad():
        r.baselines = classical.tune(triples, module.baseline_methods, module.baseline_cache,
                                     tikhonov_solver(module, r.tikhonov_lambda), tik)


def batch_records(module, batch: dict, params: dict | None, lam: float | None, num_report_images: int) -> list[dict]:
    """One record per test image of the batch: the model, Aᵀy and Tikhonov (λ = `lam`) on the test
    measurements (with `params`: a grid cell's), pictures for the first `num_report_images` images."""
    x, physics, y = _measured(module, batch, "test", params)
    x_hat, per_iter = evaluation.reconstruct(module.model, y, physics, initial_estimate(module.init, y, physics), x)
    t = module.tikhonov
    recs = {"model": x_hat.detach(),
            **baselines.baseline_reconstructions(physics, y, x.shape, lam, t["tol"], t["max_iter"])}
    extra = {}
    if params is None and module.results.baselines:  # TV, BM3D: on the plain test only (not per grid cell)
        with torch.no_grad():
            more, extra = classical.reconstructions(physics, y, module.results.baselines, module.baseline_cache,
                                                    tikhonov_solver(module, lam))
        recs.update(more)
    x0 = initial_estimate(module.init, y, physics)
    recs["start"] = physics.A_adjoint(y) if x0 is None else x0  # the model's x₀: did training move it?
    names = getattr(module.trainer.datamodule, "names", {}).get("test", [])
    records = evaluation.test_records(batch["index"].tolist(), names, x, y, physics, recs,
                                      interior_margin(physics, x.shape), per_iter, num_report_images)
    return [{**r, **extra} for r in records]
