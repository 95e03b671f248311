"""The strong classical baselines of every test report (issue #21): TV-regularised least squares and BM3D.

TV: x = argmin ½‖Ax − y‖² + λ‖∇x‖_{1,2} (isotropic TV, `TVPrior`'s ∇), solved by our own PDCP
(Chambolle–Pock) with K = ∇: the dual step is the projection of u + σ∇z̄ on the λ-ball (prox of the conjugate
of the (1,2)-norm, through `Prior.prox_conjugate`), the primal step is `physics.prox_l2` (closed form:
denoising, circular blur, inpainting; without one, e.g. a valid blur, the primal step is a gradient step
instead, `linearised_pdhg`). τ = 2, σ = 1/16 (τσ‖∇‖² ≤ 1; measured on camera: ~300
iterations to tol 1e-5 for both denoising and deblurring, where τ = σ = 1/√8 takes ~800 for deblurring).
The solve stops when the relative change of x falls below `TV_SETTINGS["tol"]` or after `max_iter`
iterations; its report (iterations, last relative change, converged, objective) is kept with the
reconstruction (cached with it) and the test records carry `tv/iterations` and `tv/converged`.
λ is tuned on the validation images over `TV_SETTINGS["lambdas"]` (refined like Tikhonov's, `baselines.tune_lambda`).

BM3D (the `bm3d` package, an optional extra: `pip install 'unfolded[bm3d]'`; free for non-commercial use
only, see the README), with the noise model's σ:
- denoising: `bm3d.bm3d(y, σ)`;
- circular blur (`BlurFFT`, `Blur(padding="circular")`): `bm3d.bm3d_deblurring(y, σ, filter)`;
- other real-valued operators (valid blur, inpainting, super-resolution): BM3D applied to the Tikhonov solution
  with σ' = c·σ, c tuned on the validation images over `BM3D_FACTORS`;
- MRI (k-space, complex images) or non-Gaussian noise: skipped, with one log line.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from unfolded.optim import L2, PDCP
from unfolded.optim.prior import Prior, TVPrior

from .metrics import measures_kspace

log = logging.getLogger(__name__)

TV_SETTINGS = {"lambdas": (1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1, 3.16e-1), "refine": 1, "tol": 1e-5,
               "max_iter": 1000}
BM3D_FACTORS = (0.5, 1.0, 2.0)  # σ' / σ for BM3D after the Tikhonov solve, chosen on the validation images
TAU, SIGMA = 2.0, 1 / 16  # primal and dual steps of the TV solve: τσ·8 ≤ 1


class GroupNorm(Prior):
    """‖u‖_{1,2} of a gradient field (directions last): its prox is group soft thresholding; PDCP uses the prox
    of its conjugate, the projection on the ball of radius λ."""

    has_prox = True

    def prox(self, u: Tensor, *args, gamma=1.0) -> Tensor:
        norm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return u * torch.clamp(1 - gamma / torch.clamp(norm, min=1e-30), min=0)


def tv_objective(physics, y: Tensor, x: Tensor, lam: float) -> Tensor:
    return 0.5 * (physics.A(x) - y).pow(2).flatten(1).sum(1) + lam * TVPrior().fn(x)


def tv_least_squares(physics, y: Tensor, lam: float, tol: float = TV_SETTINGS["tol"],
                     max_iter: int = TV_SETTINGS["max_iter"]) -> tuple[Tensor, dict]:
    """(x, report) of min ½‖Ax − y‖² + λ TV(x); the report says how the solve ended and by which method."""
    x0 = physics.A_adjoint(y)
    with torch.no_grad():
        if physics.prox_l2_closed_form(x0, y, torch.tensor(1.0, dtype=y.dtype)) is not None:
            solver = PDCP(K=TVPrior.nabla, K_adjoint=TVPrior.nabla_adjoint, data_fidelity=L2(), prior=GroupNorm(),
                          lambda_reg=lam, stepsize=TAU, stepsize_dual=SIGMA, g_first=True, max_iter=max_iter,
                          early_stop=True, thres_conv=tol)
            x, metrics = solver(y, physics, compute_metrics=True)
            residual, method = metrics["residual"], "PDCP"
            iterations = int(residual.shape[0]) + 1
            last = float(residual[-1].max()) if residual.numel() else float("nan")
        else:
            x, iterations, last, method = linearised_pdhg(physics, y, lam, tol, max_iter)
        report = {"iterations": iterations, "rel_change": last, "converged": last < tol, "solver": method,
                  "objective": tv_objective(physics, y, x, lam).tolist(), "lambda": lam}
    return x, report


def linearised_pdhg(physics, y: Tensor, lam: float, tol: float, max_iter: int) -> tuple[Tensor, int, float, str]:
    """The same problem when A has no closed-form prox (valid blur: a CG solve per PDCP step would cost ~20x):
    Condat–Vũ, PDCP with the data term taken by its gradient, x ← x − τ(Aᵀ(Ax − y) + ∇ᵀu), u ← proj_λ(u +
    σ∇(2x_new − x)), τ = 1, σ = 1/16 (1/τ − σ‖∇‖² ≥ ‖A‖²/2, ‖A‖ ≤ 1 for a normalised blur)."""
    tau, sigma = 1.0, 1 / 16
    x = physics.A_adjoint(y)
    u = torch.zeros_like(TVPrior.nabla(x))
    ball = GroupNorm()
    last, k = float("nan"), 0
    for k in range(1, max_iter + 1):
        x_new = x - tau * (physics.A_adjoint(physics.A(x) - y) + TVPrior.nabla_adjoint(u))
        u = ball.prox_conjugate(u + sigma * TVPrior.nabla(2 * x_new - x), gamma=lam * sigma, lamb=lam)
        last = float(((x_new - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-30)).max())
        x = x_new
        if k >= 3 and last < tol:
            break
    return x, k, last, "linearised PDHG (Condat–Vũ)"


# --- BM3D ---------------------------------------------------------------------------------------------------
class _NumpyWithTrapz:
    """numpy as bm4d (BM3D's engine) sees it: numpy 2 removed `np.trapz`, which bm4d 4.2.5 still calls."""

    trapz = staticmethod(getattr(np, "trapezoid", None) or getattr(np, "trapz", None))

    def __getattr__(self, name):
        return getattr(np, name)


def import_bm3d():
    """The bm3d module (numpy-2 shim applied to its bm4d engine), or None when it is not installed."""
    try:
        import bm3d
        import bm4d
    except ImportError:
        return None
    if not hasattr(np, "trapz"):
        bm4d.np = _NumpyWithTrapz()
    return bm3d


def bm3d_mode(physics) -> tuple[str | None, str]:
    """(mode, why): 'denoise', 'deblur', 'after_tikhonov', or None (skipped) with the reason."""
    from unfolded.physics import BlurFFT, Denoising
    from unfolded.physics.blur import Blur

    noise = getattr(physics, "noise_model", None)
    if measures_kspace(physics):
        return None, "MRI (complex images in k-space): BM3D skipped"
    if type(noise).__name__ != "GaussianNoise":
        return None, f"noise model {type(noise).__name__} is not Gaussian: BM3D skipped"
    if isinstance(physics, Denoising):
        return "denoise", "BM3D denoising"
    if isinstance(physics, BlurFFT) or (isinstance(physics, Blur) and physics.padding == "circular"):
        return "deblur", "BM3D deblurring (circular blur)"
    return "after_tikhonov", f"{type(physics).__name__}: BM3D applied to the Tikhonov solution (σ' tuned)"


def _sigmas(physics, batch: int) -> list[float]:
    sigma = torch.as_tensor(physics.noise_model.sigma).detach().double().flatten()
    return [float(sigma[i if sigma.numel() > 1 else 0]) for i in range(batch)]


def bm3d_reconstruction(physics, y: Tensor, mode: str, factor: float = 1.0,
                        tikhonov_x: Tensor | None = None) -> Tensor:
    """BM3D per sample of y (B, C, H, W) (or of the Tikhonov solution) with σ' = factor·σ."""
    bm3d = import_bm3d()
    source = tikhonov_x if mode == "after_tikhonov" else y
    out = []
    for i, sigma in enumerate(_sigmas(physics, y.shape[0])):
        z = source[i].detach().cpu().double().permute(1, 2, 0).numpy()  # (H, W, C)
        if mode == "deblur":
            f = physics.operator_params()["filter"]
            psf = f[i if f.shape[0] > 1 else 0, 0].detach().cpu().double().numpy()
            x = bm3d.bm3d_deblurring(z, sigma, psf)
        else:
            x = bm3d.bm3d(z, factor * sigma)
        x = np.atleast_3d(np.asarray(x))
        out.append(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1))
    return torch.stack(out).to(device=y.device, dtype=y.dtype)


# --- tuned on the validation images, cached, reported -------------------------------------------------------
def bm3d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bm3d")
    except PackageNotFoundError:
        return "?"


def cached_tv(cache, physics, y: Tensor, lam: float) -> tuple[Tensor, dict]:
    settings = {"lambda": lam, "tol": TV_SETTINGS["tol"], "max_iter": TV_SETTINGS["max_iter"], "tau": TAU,
                "sigma": SIGMA}
    return cache.get("tv", settings, physics, y, lambda: tv_least_squares(physics, y, lam, settings["tol"],
                                                                          settings["max_iter"]))


def cached_bm3d(cache, physics, y: Tensor, settings: dict, tikhonov) -> Tensor:
    """BM3D of y by `settings` (mode, factor); `tikhonov(physics, y)`: the Tikhonov solution, for after_tikhonov
    (its λ and tolerances are then part of `settings`, hence of the cache key)."""
    def compute():
        source = tikhonov(physics, y) if settings["mode"] == "after_tikhonov" else None
        return bm3d_reconstruction(physics, y, settings["mode"], settings["factor"], source), {}
    return cache.get("bm3d", {**settings, "version": bm3d_version()}, physics, y, compute)[0]


def tune(triples: list, methods, cache, tikhonov=None, tikhonov_settings: dict | None = None) -> dict:
    """{method: settings} of TV (λ) and BM3D (mode, σ factor) chosen on the validation `triples` (x, y,
    physics); a method that cannot run is left out with one log line saying why."""
    from .baselines import tune_lambda

    out: dict = {}
    if not triples:
        return out
    if "tv" in methods:
        lam, score, _ = tune_lambda(triples, TV_SETTINGS["lambdas"], TV_SETTINGS["refine"],
                                    lambda x, y, physics, lam: cached_tv(cache, physics, y, lam)[0])
        out["tv"] = {"lambda": lam, "val_psnr_interior": score}
        log.info("TV baseline: lambda=%.4g, validation interior PSNR %.2f dB", lam, score)
    if "bm3d" in methods:
        mode, why = bm3d_mode(triples[0][2])
        if import_bm3d() is None:
            log.info("BM3D baseline skipped: the bm3d package is not installed (pip install 'unfolded[bm3d]')")
        elif mode is None or (mode == "after_tikhonov" and tikhonov is None):
            log.info("BM3D baseline skipped: %s", why if mode is None else "no Tikhonov solution to start from")
        else:
            settings = {"mode": mode, "factor": 1.0, **(tikhonov_settings if mode == "after_tikhonov" else {})}
            score = None
            if mode == "after_tikhonov":
                factor, score, _ = tune_lambda(triples, BM3D_FACTORS, 0, lambda x, y, physics, c: cached_bm3d(
                    cache, physics, y, {**settings, "factor": c}, tikhonov))
                settings["factor"] = factor
            out["bm3d"] = {**settings, "val_psnr_interior": score}
            log.info("BM3D baseline: %s%s", why, f", sigma factor {settings['factor']:g}" if score else "")
    if cache.folder is not None:
        log.info("baseline cache %s: %d reconstructions reused, %d computed", cache.folder, cache.hits, cache.misses)
    return out


def reconstructions(physics, y: Tensor, settings: dict, cache, tikhonov=None) -> tuple[dict, dict]:
    """({method: x}, {key: value per batch for the records: the TV solve's report}) for the tuned methods."""
    recs, extra = {}, {}
    if "tv" in settings:
        recs["tv"], report = cached_tv(cache, physics, y, settings["tv"]["lambda"])
        extra = {"tv/iterations": float(report["iterations"]), "tv/converged": float(report["converged"])}
    if "bm3d" in settings:
        s = {k: v for k, v in settings["bm3d"].items() if k != "val_psnr_interior"}
        recs["bm3d"] = cached_bm3d(cache, physics, y, s, tikhonov)
    return recs, extra
