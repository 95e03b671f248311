"""Inpainting: A x = mask ⊙ x."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LinearPhysics


class Inpainting(LinearPhysics):
    """Keep the pixels where `mask` is non-zero.

    `mask` is a tensor that broadcasts to `img_size` (C, H, W), or a fraction in (0, 1]: a fixed random
    mask (seeded by `seed`) keeping that share of pixels, shared by all channels.
    """

    def __init__(self, img_size=None, mask=None, noise_model: nn.Module | None = None, device="cpu",
                 seed: int = 0, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        if mask is None:
            raise ValueError("Inpainting: mask is required (a tensor, or a fraction of pixels to keep)")
        if isinstance(mask, Tensor):
            img_size = tuple(mask.shape[-3:]) if img_size is None else tuple(img_size)
        else:
            if img_size is None:
                raise ValueError("Inpainting: img_size (C, H, W) is required when mask is a fraction")
            img_size = tuple(img_size)
            if not 0 < float(mask) <= 1:
                raise ValueError(f"Inpainting: a fractional mask must be in (0, 1], got {mask}")
            gen = torch.Generator().manual_seed(seed)
            mask = (torch.rand(img_size[-2:], generator=gen) < float(mask)).to(torch.get_default_dtype())
        if len(img_size) != 3:
            raise ValueError(f"Inpainting: img_size must be (C, H, W), got {img_size}")
        try:
            mask = torch.broadcast_to(mask, img_size).clone()
        except RuntimeError:
            raise ValueError(
                f"Inpainting: mask of shape {tuple(mask.shape)} does not broadcast to img_size {img_size}"
            ) from None
        if not bool(((mask >= 0) & (mask <= 1)).all()):
            raise ValueError(f"Inpainting: mask values must be in [0, 1] (1 = measured), got values in "
                             f"[{float(mask.min()):g}, {float(mask.max()):g}]")
        if mask.numel() == 0 or not bool((mask != 0).any()):
            raise ValueError("Inpainting: mask is empty (no pixel is measured)")
        self.img_size = img_size
        self.register_buffer("mask", mask.to(device))

    def _check(self, x: Tensor, what: str) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_size:
            raise ValueError(
                f"Inpainting: {what} of shape {tuple(x.shape)} does not match the mask's image size "
                f"(B, {', '.join(map(str, self.img_size))})"
            )

    def _mask(self, x: Tensor) -> Tensor:
        return self.mask if self.mask.dtype == x.dtype else self.mask.to(x.dtype)

    def A(self, x: Tensor, **params) -> Tensor:
        self._check(x, "x")
        return x * self._mask(x)

    def A_adjoint(self, y: Tensor, **params) -> Tensor:
        self._check(y, "y")
        return y * self._mask(y)

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        self._check(z, "z")
        m = self._mask(z)
        return (m * y + z / gamma) / (m * m + 1 / gamma)

    def A_dagger(self, y, tol=None, max_iter=None):
        self._check(y, "y")
        m = self._mask(y)
        measured = m != 0
        return torch.where(measured, y / torch.where(measured, m, torch.ones_like(m)), torch.zeros_like(y))
