"""Image-quality metrics of SPEC §9: torchmetrics PSNR/SSIM, data range 1, on clamped images, per image.

`interior` crops the ring that a `valid` blur barely measures: as many pixels on each side as the
measurement is smaller than the image (filter size − 1); for other operators the ring is empty.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def psnr(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image PSNR (B,) in dB of `x_hat` clamped to [0, 1] against `x`."""
    return peak_signal_noise_ratio(x_hat.clamp(0, 1), x, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image SSIM (B,) of `x_hat` clamped to [0, 1] against `x` (needs images of at least 11²)."""
    return structural_similarity_index_measure(x_hat.clamp(0, 1), x, data_range=1.0, reduction="none")


def interior_margin(physics, x_shape: torch.Size) -> tuple[int, int]:
    """Width (rows, columns) of the barely-measured ring: how much smaller A x is than x."""
    out = None
    if hasattr(physics, "output_shape"):
        out = physics.output_shape(x_shape)
    if out is None:
        with torch.no_grad():
            out = tuple(physics.A(torch.zeros(x_shape)).shape)
    if len(out) != len(x_shape):
        return (0, 0)
    return (max(0, x_shape[-2] - out[-2]), max(0, x_shape[-1] - out[-1]))


def crop(x: Tensor, margin: tuple[int, int]) -> Tensor:
    mh, mw = margin
    if mh == 0 and mw == 0:
        return x
    return x[..., mh:x.shape[-2] - mh, mw:x.shape[-1] - mw]


def image_metrics(x_hat: Tensor, x: Tensor, margin: tuple[int, int]) -> dict[str, Tensor]:
    """{'psnr', 'psnr_interior', 'ssim'}: per-image tensors (B,)."""
    x_hat = x_hat.detach()
    return {"psnr": psnr(x_hat, x), "psnr_interior": psnr(crop(x_hat, margin), crop(x, margin)),
            "ssim": ssim(x_hat, x)}
