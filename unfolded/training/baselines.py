"""Classical baselines every test report shows (SPEC §9): Aᵀy and mean-centred Tikhonov; for super-resolution
also bicubic upsampling (`bicubic_upsampling`).

Tikhonov: x = argmin ½‖Ax − y‖² + λ/2‖x − m‖² = `physics.prox_l2(m·1, y, 1/λ)`, m the mean of y,
solved to a tight tolerance. For MRI, y is k-space: m is then the mean of the zero-filled image Aᵀy
per channel (a complex constant; the k-space centre is sampled, so this is the image's mean).
λ is chosen on the validation images over a log grid (coarse, then fine around the best), maximising
the interior PSNR (which is the full PSNR unless the blur is `valid`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from .metrics import crop, interior_margin, measures_kspace, psnr

# How the Tikhonov baseline is tuned and solved: the defaults of the module's `tikhonov_*` arguments, also
# used by predict.py for a stored configuration that lacks them
TIKHONOV_DEFAULTS = {"lambdas": (1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1, 3.16e-1, 1.0), "refine": 4,
                     "tol": 1e-8, "max_iter": 2000}


def tikhonov(physics, y: Tensor, x_shape: torch.Size, lam: float, tol: float = 1e-8,
             max_iter: int = 2000) -> Tensor:
    """Mean-centred Tikhonov least squares for one batch (m = per-sample mean of y, see above for MRI)."""
    z = prior_mean(physics, y) * torch.ones(x_shape, dtype=y.dtype, device=y.device)
    with warnings.catch_warnings():
        # Very small λ on the grid may not reach 1e-8 in max_iter steps; it then simply scores worse.
        warnings.filterwarnings("ignore", message=".*converge.*")
        return physics.prox_l2(z, y, 1.0 / lam, tol=tol, max_iter=max_iter)


def tikhonov_solver(lam: float | None, tol: float, max_iter: int):
    """(physics, y) -> the Tikhonov solution with λ = `lam`, for the baselines that start from it (BM3D after
    Tikhonov); None without a λ."""
    if lam is None:
        return None
    return lambda physics, y: tikhonov(physics, y, physics.A_adjoint(y).shape, lam, tol, max_iter)


def prior_mean(physics, y: Tensor) -> Tensor:
    """m of the Tikhonov prior, shaped to broadcast against a batch of images."""
    if measures_kspace(physics):
        return physics.A_adjoint(y).mean(dim=(-2, -1), keepdim=True)  # (B, 2, 1, 1)
    return y.mean(dim=tuple(range(1, y.dim()))).reshape(-1, 1, 1, 1)


def tune_lambda(pairs: Iterable[tuple[Tensor, Tensor, object]], lambdas: Sequence[float], refine: int,
                solve) -> tuple[float, float, dict[float, float]]:
    """Best λ over `lambdas`, then over `refine` log-steps either side of it (step: a fifth of the grid's), by
    the mean interior PSNR of `solve(x, y, physics, λ)` over `pairs` (x, y, physics): the tuning rule of every
    baseline with a weight (Tikhonov, TV). Returns (λ*, its mean interior PSNR, {λ: mean interior PSNR})."""
    pairs = list(pairs)
    scores: dict[float, float] = {}

    def score(lam: float) -> float:
        if lam not in scores:
            vals = []
            for x, y, physics in pairs:
                margin = interior_margin(physics, x.shape)
                vals.append(psnr(crop(solve(x, y, physics, lam), margin), crop(x, margin)))
            scores[lam] = float(torch.cat(vals).mean())
        return scores[lam]

    lambdas = sorted(float(v) for v in lambdas)
    if not lambdas:
        raise ValueError("tune_lambda: empty grid of lambdas")
    best = max(lambdas, key=score)
    if refine > 0 and len(lambdas) > 1:
        step = (math.log10(lambdas[-1]) - math.log10(lambdas[0])) / (len(lambdas) - 1) / 5
        fine = [best * 10 ** (k * step) for k in range(-refine, refine + 1) if k != 0]
        best = max([best, *fine], key=score)
    return best, scores[best], dict(sorted(scores.items()))


def tune_tikhonov(
    pairs: Iterable[tuple[Tensor, Tensor, object]],
    lambdas: Sequence[float],
    refine: int = 4,
    tol: float = 1e-8,
    max_iter: int = 2000,
) -> tuple[float, float, dict[float, float]]:
    """Tikhonov's λ by `tune_lambda`. `pairs` yields (x, y, physics)."""
    return tune_lambda(pairs, lambdas, refine,
                       lambda x, y, physics, lam: tikhonov(physics, y, x.shape, lam, tol, max_iter))


def bicubic_upsampling(physics, y: Tensor) -> Tensor:
    """Super-resolution's classical baseline: y interpolated bicubically (torch's, a = −0.75) onto the image grid,
    each sample placed where the operator centres it — the centroid of the image pixels it weighs (Aᵀ of a unit
    sample mid-image), so that an even anti-aliasing filter's half-pixel shift is not charged to the baseline."""
    k = physics.factor
    H, W = y.shape[-2:]
    unit = torch.zeros_like(y)
    unit[..., H // 2, W // 2] = 1
    weights = physics.A_adjoint(unit)[:, 0]  # (B, H_img, W_img)
    total = weights.sum(dim=(-2, -1))
    rows = torch.arange(weights.shape[-2], dtype=y.dtype, device=y.device)
    cols = torch.arange(weights.shape[-1], dtype=y.dtype, device=y.device)
    centre_r = (weights.sum(-1) * rows).sum(-1) / total - k * (H // 2)  # image row of sample row 0, (B,)
    centre_c = (weights.sum(-2) * cols).sum(-1) / total - k * (W // 2)
    # grid_sample (align_corners=True) maps -1 / +1 to the first / last sample's centre
    gy = ((rows[None] - centre_r[:, None]) / k) * 2 / max(H - 1, 1) - 1
    gx = ((cols[None] - centre_c[:, None]) / k) * 2 / max(W - 1, 1) - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return torch.nn.functional.grid_sample(y, grid, mode="bicubic", padding_mode="border", align_corners=True)


def baseline_reconstructions(physics, y: Tensor, x_shape: torch.Size, lam: float | None,
                             tol: float = 1e-8, max_iter: int = 2000) -> dict[str, Tensor]:
    """Aᵀy, Tikhonov (with λ); for super-resolution (Downsampling), bicubic upsampling; for multi-coil MRI,
    fastMRI's zero-filled baseline: the root-sum-of-squares of the zero-filled coil images (B, 1, H, W) (Aᵀy
    combines the coils with the maps instead)."""
    from unfolded.physics import Downsampling
    from unfolded.physics.mri import MultiCoilMRI

    out = {"adjoint": physics.A_adjoint(y)}
    if isinstance(physics, Downsampling):
        out["bicubic"] = bicubic_upsampling(physics, y)
    if isinstance(physics, MultiCoilMRI):
        out["zero_filled_rss"] = physics.A_adjoint(y, rss=True)
    if lam is not None:
        out["tikhonov"] = tikhonov(physics, y, x_shape, lam, tol, max_iter)
    return out
