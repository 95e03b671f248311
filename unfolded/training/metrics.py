"""Image-quality metrics of SPEC §9: torchmetrics PSNR/SSIM, data range 1, on clamped images, per image.

`interior` crops the ring that a `valid` blur barely measures: as many pixels on each side as the
measurement is smaller than the image (filter size − 1); for other operators the ring is empty.

Images with 2 channels are complex (real, imaginary), as in MRI (`data.channels=2`): their metrics,
and the pictures shown in reports, are those of the magnitude image |x| (SPEC §9 then applies to |x|).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from unfolded.metrics import magnitude, psnr  # noqa: F401  (one definition, re-exported for the training)


def display_image(t: Tensor, kspace: bool = False) -> Tensor:
    """One image (C, H, W) as a picture with 1 or 3 channels in [0, 1]: the magnitude of a complex image;
    with `kspace`, log(1 + |k|) scaled to [0, 1] (root-sum-of-squares over coils for (2, N, H, W))."""
    t = t.detach().float()
    if t.dim() == 4:  # multi-coil k-space (2, N, H, W)
        t = t.pow(2).sum(dim=(0, 1)).sqrt()[None]
    elif t.shape[0] == 2:
        t = magnitude(t[None])[0]
    if kspace:
        t = torch.log1p(t / t.amax().clamp_min(1e-12) * 1e3)  # 60 dB of dynamic range
        t = t / t.amax().clamp_min(1e-12)
    return t.clamp(0, 1)


def measures_kspace(physics) -> bool:
    """True for MRI operators, whose measurements are k-space rather than images."""
    from unfolded.physics.mri import MRI, MultiCoilMRI

    return isinstance(physics, (MRI, MultiCoilMRI))


def ssim(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image SSIM (B,) of `x_hat` clamped to [0, 1] against `x` (needs images of at least 11²;
    magnitudes if complex)."""
    x_hat, x = magnitude(x_hat), magnitude(x)
    return structural_similarity_index_measure(x_hat.clamp(0, 1), x, data_range=1.0, reduction="none")


def interior_margin(physics, x_shape: torch.Size) -> tuple[int, int]:
    """Width (rows, columns) of the barely-measured ring: how much smaller A x is than x, or what the physics
    says when A changes the grid (Downsampling.interior_margin)."""
    if hasattr(physics, "interior_margin"):
        return tuple(physics.interior_margin(x_shape))
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
