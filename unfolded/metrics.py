"""Per-sample image metrics used inside algorithms (the training module uses torchmetrics)."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def psnr(x: Tensor, x_gt: Tensor) -> Tensor:
    """PSNR per sample in dB, on x clamped to [0, 1] with data range 1 (SPEC §9)."""
    mse = (x.clamp(0, 1) - x_gt).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)
