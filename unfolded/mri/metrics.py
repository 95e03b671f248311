"""The fastMRI challenge's metrics (`fastmri/evaluate.py`): NMSE, PSNR and SSIM of a reconstructed **volume**
(slices, H, W) against its target, magnitudes in the file's own scale.

- NMSE = ‖gt − pred‖² / ‖gt‖² over the whole volume;
- PSNR = 10 log₁₀(R² / MSE) with MSE over the whole volume and R = gt.max() of the volume;
- SSIM = the mean over slices of scikit-image's `structural_similarity(gt[s], pred[s], data_range=R)` with
  its defaults: 7×7 uniform window, sample covariance (N/(N−1)), K₁ = 0.01, K₂ = 0.03, the mean over the
  pixels at least 3 from the border. Written here in torch (float64) so it runs on tensors and devices;
  tests compare it with the fastmri package (or a transcription of its formulas).

Nothing is clamped and no data range 1 is assumed (unlike SPEC §9's per-image metrics): these are the
numbers the fastMRI leaderboard and papers report. Their `evaluate.py` centre-crops target and
reconstruction to (W, W), W the target's width (320 for the knee); `center_crop` does that crop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

WIN, K1, K2 = 7, 0.01, 0.03


def _volumes(gt, pred) -> tuple[Tensor, Tensor]:
    gt, pred = (torch.as_tensor(np.asarray(t) if not isinstance(t, Tensor) else t).detach() for t in (gt, pred))
    if gt.is_complex() or pred.is_complex():
        raise ValueError("fastMRI metrics compare magnitudes: take |x| of complex images first")
    gt, pred = gt.double(), pred.double()
    if gt.dim() != 3:
        raise ValueError(f"fastMRI metrics: gt must be a volume (slices, H, W), got shape {tuple(gt.shape)}")
    if gt.shape != pred.shape:
        raise ValueError(f"fastMRI metrics: pred shape {tuple(pred.shape)} differs from gt shape {tuple(gt.shape)}")
    return gt, pred.to(gt.device)


def _range(gt: Tensor, maxval) -> float:
    return float(gt.max()) if maxval is None else float(maxval)


def nmse(gt, pred) -> float:
    gt, pred = _volumes(gt, pred)
    return float((gt - pred).pow(2).sum() / gt.pow(2).sum())


def psnr(gt, pred, maxval: float | None = None) -> float:
    gt, pred = _volumes(gt, pred)
    return float(10 * torch.log10(torch.tensor(_range(gt, maxval) ** 2, dtype=torch.float64)
                                  / (gt - pred).pow(2).mean().cpu()))


def ssim(gt, pred, maxval: float | None = None) -> float:
    gt, pred = _volumes(gt, pred)
    if min(gt.shape[-2:]) < WIN:
        raise ValueError(f"fastMRI SSIM needs slices of at least {WIN}x{WIN} pixels, got {tuple(gt.shape[-2:])}")
    r = _range(gt, maxval)
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2
    x, y = gt[:, None], pred[:, None]

    # The window mean over valid positions only equals scikit-image's reflect-padded filter cropped by 3:
    # cropped pixels' windows never reach the padding.
    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, WIN, stride=1)

    n = WIN * WIN
    ux, uy = mean(x), mean(y)
    vx = n / (n - 1) * (mean(x * x) - ux * ux)
    vy = n / (n - 1) * (mean(y * y) - uy * uy)
    vxy = n / (n - 1) * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def volume_metrics(gt, pred, maxval: float | None = None) -> dict[str, float]:
    """{'nmse', 'psnr', 'ssim'} of one volume, as fastMRI's `evaluate.py` computes them."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred, maxval), "ssim": ssim(gt, pred, maxval)}


def center_crop(x, shape: tuple[int, int]):
    """Centre crop of the last two dims to `shape` (fastMRI's `transforms.center_crop` offsets)."""
    h, w = (int(s) for s in shape)
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"center_crop: crop {(h, w)} does not fit in {tuple(x.shape[-2:])}")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]
