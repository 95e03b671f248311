"""Inpainting: A x = mask ⊙ x."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LinearPhysics


class Inpainting(LinearPhysics):
    """Keep the pixels where `mask` is non-zero; images (B, C, H, W) for `img_size` = (C, H, W).

    `mask` is a tensor that broadcasts to `img_size`, or one with a leading batch dimension, (1, C, H, W) or
    (B, C, H, W) (one mask per sample); or a fraction in (0, 1]: a fixed random mask keeping that share of
    pixels, drawn from `rng` (a torch.Generator) or else from a generator seeded by `seed` (default 0),
    shared by all channels when `pixelwise` (the reference's default), drawn per channel otherwise.
    `A(x, mask=m)`, `physics(x, mask=m)` and `update(mask=m)` store a new mask (physics.parameters).
    """

    parameter_names = ("mask",)

    def __init__(self, img_size=None, mask=None, pixelwise: bool = True, device="cpu",
                 rng: torch.Generator | None = None, noise_model: nn.Module | None = None, seed: int | None = None,
                 **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        if mask is None:
            raise ValueError("Inpainting: mask is required (a tensor, or a fraction of pixels to keep)")
        if isinstance(mask, Tensor):
            if not pixelwise:
                raise ValueError("Inpainting: pixelwise=False only applies to a fractional mask; a tensor mask is "
                                 "used as given")
            if rng is not None or seed is not None:
                raise ValueError("Inpainting: rng and seed only apply to a fractional mask; a tensor mask is used "
                                 "as given")
            img_size = tuple(mask.shape[-3:]) if img_size is None else tuple(img_size)
        else:
            if img_size is None:
                raise ValueError("Inpainting: img_size (C, H, W) is required when mask is a fraction")
            img_size = tuple(img_size)
            mask = self._random_mask(float(mask), img_size, pixelwise, rng, seed)
        if len(img_size) != 3:
            raise ValueError(f"Inpainting: img_size must be (C, H, W), got {img_size}")
        self.img_size = img_size
        self.register_buffer("mask", self.check_parameter("mask", mask).to(device))

    @staticmethod
    def _random_mask(fraction: float, img_size, pixelwise: bool, rng, seed) -> Tensor:
        if not 0 < fraction <= 1:
            raise ValueError(f"Inpainting: a fractional mask must be in (0, 1], got {fraction}")
        if rng is not None and seed is not None:
            raise ValueError("Inpainting: give rng (a torch.Generator) or seed, not both")
        if rng is None:
            rng = torch.Generator().manual_seed(0 if seed is None else int(seed))
        shape = img_size[-2:] if pixelwise else img_size
        return (torch.rand(shape, generator=rng, device=rng.device) < fraction).to(torch.get_default_dtype())

    def check_parameter(self, name: str, mask) -> Tensor:
        """A mask broadcasting to img_size (C, H, W), or to (b, C, H, W) with a leading batch dimension;
        stored as (b, C, H, W), b = 1 when the mask has no batch dimension."""
        if not isinstance(mask, Tensor):
            raise TypeError(f"Inpainting: mask must be a torch.Tensor, got {type(mask).__name__}")
        batch = mask.shape[0] if mask.dim() == 4 else 1
        if mask.dim() > 4:
            raise ValueError(f"Inpainting: mask must have at most 4 dimensions (B, C, H, W), got {tuple(mask.shape)}")
        try:
            mask = torch.broadcast_to(mask, (batch, *self.img_size)).clone()
        except RuntimeError:
            raise ValueError(f"Inpainting: mask of shape {tuple(mask.shape)} does not broadcast to img_size "
                             f"{self.img_size} (or to (B, {', '.join(map(str, self.img_size))}))") from None
        if not bool(((mask >= 0) & (mask <= 1)).all()):
            raise ValueError(f"Inpainting: mask values must be in [0, 1] (1 = measured), got values in "
                             f"[{float(mask.min()):g}, {float(mask.max()):g}]")
        if mask.numel() == 0 or not bool((mask != 0).any()):
            raise ValueError("Inpainting: mask is empty (no pixel is measured)")
        return mask

    def _check(self, x: Tensor, what: str) -> None:
        b = self.mask.shape[0]
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_size or b not in (1, x.shape[0]):
            raise ValueError(
                f"Inpainting: {what} of shape {tuple(x.shape)} does not match the mask's image size "
                f"(B, {', '.join(map(str, self.img_size))}) (mask shape {tuple(self.mask.shape)}: B must match a "
                "batched mask)"
            )

    def _mask(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = self.mask if mask is None else mask
        return m if m.dtype == x.dtype else m.to(x.dtype)

    def A(self, x: Tensor, mask: Tensor | None = None, **params) -> Tensor:
        if mask is not None or params:
            mask = self.call_parameters("A", {"mask": mask, **params}).get("mask")
        self._check(x, "x")
        return x * self._mask(x, mask)

    def A_adjoint(self, y: Tensor, mask: Tensor | None = None, **params) -> Tensor:
        if mask is not None or params:
            mask = self.call_parameters("A_adjoint", {"mask": mask, **params}).get("mask")
        self._check(y, "y")
        return y * self._mask(y, mask)

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        self._check(z, "z")
        m = self._mask(z)
        return (m * y + z / gamma) / (m * m + 1 / gamma)

    def A_dagger(self, y, solver="CG", max_iter=None, tol=None, verbose=False, **params):
        self._closed_form_dagger(solver, params)
        self._check(y, "y")
        m = self._mask(y)
        measured = m != 0
        return torch.where(measured, y / torch.where(measured, m, torch.ones_like(m)), torch.zeros_like(y))
