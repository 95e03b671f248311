"""Blur operators: `Blur` (any padding, CG prox) and `BlurFFT` (circular, closed-form prox)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as Fn
from .base import LinearPhysics
from .functional import gaussian_blur  # noqa: F401  (public: physics.blur.gaussian_blur)


def _store_filter(module: nn.Module, filter: Tensor, device) -> None:
    """Keep a learnable or upstream filter as it is (so gradients reach it); move a constant one."""
    filter = Fn.check_filter(filter)
    if isinstance(filter, nn.Parameter):
        module.filter = filter
    else:
        module.register_buffer("filter", filter if filter.requires_grad else filter.to(device))


class Blur(LinearPhysics):
    """y = k ∗ x (+ noise), a true 2-D convolution per channel with the given boundary `padding`.

    `padding="valid"` returns (H−h+1, W−w+1) pixels; the others keep (H, W). `use_fft=True` computes the
    same operator with FFTs. The prox is solved by CG (SPEC §2/§3).
    """

    def __init__(
        self,
        filter: Tensor | None = None,
        padding: str = "valid",
        use_fft: bool = False,
        device="cpu",
        max_iter: int = 50,
        tol: float = 1e-4,
        implicit_backward_solver: bool = True,
        noise_model: nn.Module | None = None,
    ):
        super().__init__(noise_model=noise_model, max_iter=max_iter, tol=tol,
                         implicit_backward_solver=implicit_backward_solver)
        if filter is None:
            raise ValueError("Blur: filter is required, e.g. physics.blur.gaussian_blur(sigma=1.0)")
        _store_filter(self, filter, device)
        self.padding = Fn.normalise_padding(padding)
        self.use_fft = bool(use_fft)

    def _filter(self, x: Tensor, filter: Tensor | None) -> Tensor:
        f = self.filter if filter is None else filter
        return f if f.dtype == x.dtype else f.to(x.dtype)

    def A(self, x: Tensor, filter: Tensor | None = None) -> Tensor:
        conv = Fn.conv2d_fft if self.use_fft else Fn.conv2d
        return conv(x, self._filter(x, filter), self.padding)

    def A_adjoint(self, y: Tensor, filter: Tensor | None = None) -> Tensor:
        conv_t = Fn.conv_transpose2d_fft if self.use_fft else Fn.conv_transpose2d
        return conv_t(y, self._filter(y, filter), self.padding)

    def operator_params(self) -> dict[str, Tensor]:
        return {"filter": self.filter}

    def output_shape(self, x_shape):
        if self.padding != "valid":
            return tuple(x_shape)
        h, w = self.filter.shape[-2:]
        return (*x_shape[:-2], x_shape[-2] - h + 1, x_shape[-1] - w + 1)


class BlurFFT(LinearPhysics):
    """Circular blur computed in the Fourier domain, with an exact closed-form prox.

    Same operator as `Blur(filter, padding="circular")`. `img_size` (C, H, W) documents the intended
    size; any image size works, the filter spectrum is computed for the size at hand.
    """

    def __init__(self, img_size=None, filter: Tensor | None = None, device="cpu",
                 noise_model: nn.Module | None = None, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        if filter is None:
            raise ValueError("BlurFFT: filter is required, e.g. physics.blur.gaussian_blur(sigma=1.0)")
        _store_filter(self, filter, device)
        self.img_size = tuple(img_size) if img_size is not None else None

    def _spectrum(self, like: Tensor, filter: Tensor | None = None) -> Tensor:
        f = self.filter if filter is None else filter
        f = f.to(like.dtype)
        H, W = like.shape[-2:]
        h, w = f.shape[-2:]
        if h > H or w > W:
            raise ValueError(f"images of size {(H, W)} are smaller than the filter {(h, w)}")
        # Centre the filter at pixel (0, 0): the same convention as Blur's padding (shift h//2, w//2).
        padded = torch.nn.functional.pad(f, (0, W - w, 0, H - h)).roll((-(h // 2), -(w // 2)), dims=(-2, -1))
        return torch.fft.rfft2(padded)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"images must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")

    def A(self, x: Tensor, filter: Tensor | None = None) -> Tensor:
        self._check(x)
        return torch.fft.irfft2(torch.fft.rfft2(x) * self._spectrum(x, filter), s=x.shape[-2:])

    def A_adjoint(self, y: Tensor, filter: Tensor | None = None) -> Tensor:
        self._check(y)
        return torch.fft.irfft2(torch.fft.rfft2(y) * self._spectrum(y, filter).conj(), s=y.shape[-2:])

    def operator_params(self) -> dict[str, Tensor]:
        return {"filter": self.filter}

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        K = self._spectrum(z)
        num = K.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(z) / gamma
        return torch.fft.irfft2(num / (K.abs() ** 2 + 1 / gamma), s=z.shape[-2:])

    def A_dagger(self, y, tol=None, max_iter=None):
        """Pseudo-inverse: frequencies the filter (nearly) removes are set to zero."""
        K = self._spectrum(y)
        power = K.abs() ** 2
        keep = power > 1e-12 * power.amax()
        inv = torch.where(keep, K.conj() / torch.where(keep, power, torch.ones_like(power)), torch.zeros_like(K))
        return torch.fft.irfft2(torch.fft.rfft2(y) * inv, s=y.shape[-2:])
