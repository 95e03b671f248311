"""The image metrics of SPEC §9, one definition for the library and the training: PSNR with data range 1
on images clamped to [0, 1], per image; complex images (2 channels: real, imaginary, as in MRI) are
compared by their magnitudes |x|."""

from __future__ import annotations

import torch
from torch import Tensor


def magnitude(x: Tensor) -> Tensor:
    """|x| (B, 1, H, W) of a complex image (B, 2, H, W); any other image unchanged."""
    return x.pow(2).sum(1, keepdim=True).sqrt() if x.dim() == 4 and x.shape[1] == 2 else x


@torch.no_grad()
def psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image PSNR (B,) in dB of `x_hat` clamped to [0, 1] against `x` (magnitudes if complex), as
    torchmetrics computes it (imported here on first use: `import unfolded` stays light)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x_hat, x = magnitude(x_hat), magnitude(x)
    return peak_signal_noise_ratio(x_hat.clamp(0, 1), x, data_range=1.0, reduction="none", dim=(1, 2, 3))
