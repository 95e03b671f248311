"""Cartesian MRI: y = M ⊙ F x (single coil) and y_n = M ⊙ F(S_n x) (multi-coil), with sampling masks.

Images and k-space are real tensors whose channel dimension holds (real, imaginary): images
(B, 2, H, W); single-coil k-space (B, 2, H, W); multi-coil k-space (B, 2, N, H, W) for N coils.
F is the centred, orthonormal 2-D FFT (unitary, so Fᴴ = F⁻¹ and the adjoints are exact).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import LinearPhysics

# Sampling masks live in mri_masks.py; importable from here too (configs name unfolded.physics.mri.cartesian_mask).
from .mri_masks import _is_size, cartesian_mask, equispaced_mask, random_mask  # noqa: F401


def to_complex(x: Tensor) -> Tensor:
    """(B, 2, ...) real → (B, ...) complex."""
    return torch.complex(x[:, 0], x[:, 1])


def to_real(z: Tensor) -> Tensor:
    """(B, ...) complex → (B, 2, ...) real."""
    return torch.stack((z.real, z.imag), dim=1)


def fft2c(z: Tensor) -> Tensor:
    """Centred orthonormal FFT over the last two dims (k-space centre in the middle of the array)."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(z: Tensor) -> Tensor:
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


# --- operators ------------------------------------------------------------------------------------
def _resolve_mask(mask, img_size, who: str):
    """A mask may be given as a function of the image size (e.g. a partial `cartesian_mask`), so that one
    configuration builds operators for images of any size."""
    if callable(mask) and not isinstance(mask, Tensor):
        if img_size is None:
            raise ValueError(f"{who}: a mask given as a function needs img_size")
        mask = mask(tuple(int(s) for s in img_size))
    return mask


def _full_mask(img_size, who: str) -> Tensor:
    if not _is_size(img_size):
        raise ValueError(f"{who}: give a mask, or img_size ending with (H, W) for full sampling, got "
                         f"img_size={img_size!r}")
    return torch.ones(tuple(img_size)[-2:])


def _normalise_mask(mask: Tensor) -> Tensor:
    """(H, W), (C, H, W) or (B, C, H, W) with C ∈ {1, 2} (equal channels) → (B or 1, 1, H, W)."""
    if not isinstance(mask, Tensor) or mask.dim() not in (2, 3, 4):
        raise ValueError(f"MRI: mask must be a tensor of shape (H, W), (C, H, W) or (B, C, H, W), got "
                         f"{getattr(mask, 'shape', type(mask).__name__)}")
    mask = mask.reshape(*([1] * (4 - mask.dim())), *mask.shape)
    if mask.shape[1] == 2:
        # F mixes real and imaginary parts, so one mask must act on both (and keeps the prox closed-form).
        if not torch.equal(mask[:, 0], mask[:, 1]):
            raise ValueError("MRI: a 2-channel mask must be the same on its real and imaginary channels")
        mask = mask[:, :1]
    elif mask.shape[1] != 1:
        raise ValueError(f"MRI: mask channel dimension must be 1 or 2, got {mask.shape[1]}")
    if mask.numel() == 0 or not bool((mask != 0).any()):
        raise ValueError("MRI: mask is empty (no k-space sample is measured)")
    return mask.clone()


def _no_crop(crop: bool, who: str) -> None:
    if crop:
        raise NotImplementedError(f"{who}: crop=True is not supported: images here have the k-space's (H, W) "
                                  "(img_size is the mask's); crop the result yourself, e.g. x[..., top:top + h, "
                                  "left:left + w]")


def _no_3d(three_d: bool, who: str) -> None:
    if three_d:
        raise NotImplementedError(f"{who}: three_d=True (3-D FFT) is not supported; apply the 2-D operator slice "
                                  "by slice")


class _MaskParameter:
    """`mask` as a keyword operator tensor (physics.parameters), normalised like the constructor's."""

    def check_parameter(self, name: str, value) -> Tensor:
        if name == "mask":
            return _normalise_mask(value)
        return super().check_parameter(name, value)


class MRI(_MaskParameter, LinearPhysics):
    """Single-coil Cartesian MRI: y = M ⊙ F x, x and y of shape (B, 2, H, W).

    `mask` (H, W), (C, H, W) or (B, C, H, W), or a function img_size -> mask; without one, full sampling
    of `img_size` (…, H, W). `A(x, mask=m)`, `physics(x, mask=m)` and `update(mask=m)` store a new mask.
    AᵀA = Fᴴ M² F is diagonal in k-space, so the prox has a closed form.
    """

    parameter_names = ("mask",)

    def __init__(self, mask: Tensor | None = None, img_size=None, noise_model: nn.Module | None = None,
                 device="cpu", three_d: bool = False, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        _no_3d(three_d, "MRI")
        mask = _resolve_mask(mask, img_size, "MRI")
        if mask is None:
            mask = _full_mask(img_size, "MRI")
        mask = _normalise_mask(mask)
        if img_size is not None and _full_mask(img_size, "MRI").shape != mask.shape[-2:]:
            raise ValueError(f"MRI: img_size {tuple(img_size)} does not match the mask's (H, W) "
                             f"{tuple(mask.shape[-2:])}")
        self.register_buffer("mask", mask.to(device))

    @property
    def img_size(self) -> tuple[int, int, int]:
        return (2, *self.mask.shape[-2:])

    def _mask(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = self.mask if mask is None else mask
        return m if m.dtype == x.dtype else m.to(x.dtype)

    def _check(self, x: Tensor, what: str) -> None:
        H, W = self.mask.shape[-2:]
        ok = x.dim() == 4 and x.shape[1] == 2 and tuple(x.shape[-2:]) == (H, W)
        if not ok or self.mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"MRI: {what} must have shape (B, 2, {H}, {W}) with B matching the mask's batch "
                             f"({self.mask.shape[0]}), got {tuple(x.shape)}")

    def A(self, x: Tensor, mask: Tensor | None = None, **params) -> Tensor:
        if mask is not None or params:
            mask = self.call_parameters("A", {"mask": mask, **params}).get("mask")
        self._check(x, "x")
        return self._mask(x, mask) * to_real(fft2c(to_complex(x)))

    def A_adjoint(self, y: Tensor, mask: Tensor | None = None, mag: bool = False, crop: bool = False,
                  **params) -> Tensor:
        """Aᵀy; `mag=True` returns its magnitude (B, 1, H, W) (the reference's fastMRI convention)."""
        if mask is not None or params:
            mask = self.call_parameters("A_adjoint", {"mask": mask, **params}).get("mask")
        _no_crop(crop, "MRI.A_adjoint")
        self._check(y, "y")
        x = to_real(ifft2c(to_complex(self._mask(y, mask) * y)))
        return x.pow(2).sum(1, keepdim=True).sqrt() if mag else x

    def noise(self, y: Tensor, **params) -> Tensor:
        """M ⊙ (y + noise): unsampled k-space stays exactly zero."""
        return self._mask(y) * super().noise(y, **params)

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        """x = Fᴴ[(M y + F z/γ) / (M² + 1/γ)]: the normal equations are diagonal in k-space."""
        self._check(z, "z")
        m = self._mask(z)
        k = (m * y + to_real(fft2c(to_complex(z))) / gamma) / (m * m + 1 / gamma)
        return to_real(ifft2c(to_complex(k)))


def birdcage_maps(img_size, num_coils: int = 4, width: float = 0.5) -> Tensor:
    """Smooth synthetic coil sensitivities (num_coils, H, W), complex, normalised so Σₙ|Sₙ|² = 1.

    Coils sit on a circle around the image; each has a Gaussian magnitude profile and a linear phase.
    """
    if not isinstance(num_coils, int) or num_coils < 1:
        raise ValueError(f"num_coils must be an integer >= 1, got {num_coils!r}")
    H, W = (int(s) for s in tuple(img_size)[-2:])
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H, dtype=torch.float64),
                            torch.linspace(-1, 1, W, dtype=torch.float64), indexing="ij")
    maps = []
    for n in range(num_coils):
        a = 2 * math.pi * n / num_coils
        cy, cx = 1.5 * math.sin(a), 1.5 * math.cos(a)
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (width * 2) ** 2))
        phase = math.pi * 0.5 * (math.cos(a) * yy - math.sin(a) * xx)
        maps.append(mag * torch.exp(1j * phase))
    maps = torch.stack(maps)
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    return maps.to(torch.complex128 if torch.get_default_dtype() == torch.float64 else torch.complex64)


class MultiCoilMRI(_MaskParameter, LinearPhysics):
    """Parallel imaging: yₙ = M ⊙ F(Sₙ x) for N coils; x (B, 2, H, W), y (B, 2, N, H, W).

    `mask` as for `MRI`. `coil_maps` is a complex tensor (N, H, W) or (B, N, H, W), or an integer N for
    `birdcage_maps`.
    A and Aᵀ accept `mask=` and `coil_maps=` (e.g. maps estimated by a network, with gradients), which are
    stored as the current ones (physics.parameters). The prox is solved by CG (no closed form once the
    coils couple the pixels).
    """

    parameter_names = ("mask", "coil_maps")

    def __init__(self, mask: Tensor | None = None, coil_maps=None, img_size=None,
                 noise_model: nn.Module | None = None, device="cpu", three_d: bool = False, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        _no_3d(three_d, "MultiCoilMRI")
        mask = _resolve_mask(mask, img_size, "MultiCoilMRI")
        if mask is None:
            mask = _full_mask(img_size, "MultiCoilMRI")
        mask = _normalise_mask(mask)
        if isinstance(coil_maps, int) and not isinstance(coil_maps, bool):
            coil_maps = birdcage_maps(mask.shape[-2:], coil_maps)
        self.register_buffer("mask", mask.to(device))
        self.register_buffer("coil_maps", self.check_parameter("coil_maps", coil_maps).to(device))

    @property
    def img_size(self) -> tuple[int, int, int]:
        return (2, *self.mask.shape[-2:])

    def check_parameter(self, name: str, value) -> Tensor:
        if name != "coil_maps":
            mask = super().check_parameter(name, value)
            maps = getattr(self, "coil_maps", None)
            if maps is not None and tuple(mask.shape[-2:]) != tuple(maps.shape[-2:]):
                raise ValueError(f"MultiCoilMRI: mask (H, W) {tuple(mask.shape[-2:])} does not match the coil maps' "
                                 f"{tuple(maps.shape[-2:])}")
            return mask
        if not isinstance(value, Tensor) or not value.is_complex() or value.dim() not in (3, 4):
            raise ValueError("MultiCoilMRI: coil_maps must be a complex tensor (N, H, W) or (B, N, H, W), or an "
                             f"integer number of coils, got {getattr(value, 'shape', value)!r}")
        if tuple(value.shape[-2:]) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"MultiCoilMRI: coil_maps (H, W) {tuple(value.shape[-2:])} do not match the "
                             f"mask's {tuple(self.mask.shape[-2:])}")
        return value.reshape(-1, *value.shape[-3:])

    def _maps(self, x: Tensor, coil_maps: Tensor | None) -> Tensor:
        s = self.coil_maps if coil_maps is None else coil_maps
        dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        return s if s.dtype == dtype else s.to(dtype)

    def _mask(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = self.mask if mask is None else mask
        return (m if m.dtype == x.dtype else m.to(x.dtype)).unsqueeze(2)

    def _check(self, t: Tensor, what: str, kspace: bool) -> None:
        H, W = self.mask.shape[-2:]
        N = self.coil_maps.shape[1]
        want = (2, N, H, W) if kspace else (2, H, W)
        batches = {self.mask.shape[0], self.coil_maps.shape[0]} - {1}
        if t.dim() != len(want) + 1 or tuple(t.shape[1:]) != want or not batches <= {t.shape[0]}:
            raise ValueError(f"MultiCoilMRI: {what} must have shape (B, {', '.join(map(str, want))}) with B "
                             f"matching the mask's and coil maps' batch, got {tuple(t.shape)}")

    @property
    def num_coils(self) -> int:
        return self.coil_maps.shape[1]

    def A(self, x: Tensor, mask: Tensor | None = None, coil_maps: Tensor | None = None, **params) -> Tensor:
        if mask is not None or coil_maps is not None or params:
            given = self.call_parameters("A", {"mask": mask, "coil_maps": coil_maps, **params})
            mask, coil_maps = given.get("mask"), given.get("coil_maps")
        self._check(x, "x", kspace=False)
        coils = self._maps(x, coil_maps) * to_complex(x).unsqueeze(1)  # (B, N, H, W)
        return self._mask(x, mask) * to_real(fft2c(coils))

    def A_adjoint(self, y: Tensor, mask: Tensor | None = None, coil_maps: Tensor | None = None, rss: bool = False,
                  crop: bool = False, **params) -> Tensor:
        """Aᵀy; `rss=True` returns the root-sum-of-squares of the coil images instead, (B, 1, H, W) (the
        reference's fastMRI convention; not an adjoint)."""
        if mask is not None or coil_maps is not None or params:
            given = self.call_parameters("A_adjoint", {"mask": mask, "coil_maps": coil_maps, **params})
            mask, coil_maps = given.get("mask"), given.get("coil_maps")
        _no_crop(crop, "MultiCoilMRI.A_adjoint")
        self._check(y, "y", kspace=True)
        coils = ifft2c(to_complex(self._mask(y, mask) * y))
        if rss:
            return coils.abs().pow(2).sum(1, keepdim=True).sqrt()
        return to_real((self._maps(y, coil_maps).conj() * coils).sum(1))

    def noise(self, y: Tensor, **params) -> Tensor:
        """M ⊙ (y + noise): unsampled k-space stays exactly zero."""
        return self._mask(y) * super().noise(y, **params)

    def operator_params(self) -> dict[str, Tensor]:
        # listed so the implicit CG backward passes gradients on to maps that come from a network
        return {"coil_maps": self.coil_maps}

    def output_shape(self, x_shape):
        return (x_shape[0], 2, self.num_coils, *x_shape[-2:])
