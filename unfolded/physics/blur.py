"""Blur operators: `Blur` (any padding; exact fast prox for valid and circular padding, CG otherwise) and
`BlurFFT` (circular, closed-form prox)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..solvers.cg import NormalEquations, NormalSystem
from . import functional as Fn
from .base import LinearPhysics
from .blur_solvers import ValidBlurSystem, circular_prox_l2
from .filters import as_filter
from .functional import gaussian_blur  # noqa: F401  (public: physics.blur.gaussian_blur)
from .parameters import store_tensor


class _FilterParameter:
    """`filter` as the keyword operator tensor of a blur (physics.parameters): `A(x, filter=k)` uses k and
    stores it."""

    parameter_names = ("filter",)

    def check_parameter(self, name: str, value) -> Tensor:
        return as_filter(value)

    def _call_filter(self, where: str, filter: Tensor | None, params: dict) -> Tensor | None:
        """The filter for this call: None (the stored one, possibly just replaced) or a transient alias."""
        return self.call_parameters(where, {"filter": filter, **params}).get("filter")


class Blur(_FilterParameter, LinearPhysics):
    """y = k ∗ x (+ noise), a true 2-D convolution per channel with the given boundary `padding`.

    `padding="valid"` returns (H−h+1, W−w+1) pixels; the others keep (H, W). `use_fft=True` computes the
    same operator with FFTs; with `use_fft=False` filters of at least `FFT_MIN_TAPS` taps use FFTs too,
    since on CPU they are then faster than a direct convolution (same operator, up to rounding).
    The prox is exact in closed form for circular padding and solved by CG otherwise (SPEC §2/§3).
    """

    FFT_MIN_TAPS = 64  # measured: 8x8 and larger filters are faster by FFT at 64² to 256²

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
        **kwargs,
    ):
        super().__init__(noise_model=noise_model, max_iter=max_iter, tol=tol,
                         implicit_backward_solver=implicit_backward_solver, **kwargs)
        if filter is None:
            raise ValueError("Blur: filter is required, e.g. physics.blur.gaussian_blur(sigma=1.0)")
        store_tensor(self, "filter", as_filter(filter), device)
        self.padding = Fn.normalise_padding(padding)
        self.use_fft = bool(use_fft)

    def _filter(self, x: Tensor, filter: Tensor | None) -> Tensor:
        f = self.filter if filter is None else filter
        return f if f.dtype == x.dtype else f.to(x.dtype)

    def _by_fft(self, f: Tensor) -> bool:
        return self.use_fft or f.shape[-2] * f.shape[-1] >= self.FFT_MIN_TAPS

    def A(self, x: Tensor, filter: Tensor | None = None, **params) -> Tensor:
        if filter is not None or params:
            filter = self._call_filter("A", filter, params)
        f = self._filter(x, filter)
        conv = Fn.conv2d_fft if self._by_fft(f) else Fn.conv2d
        return conv(x, f, self.padding)

    def A_adjoint(self, y: Tensor, filter: Tensor | None = None, **params) -> Tensor:
        if filter is not None or params:
            filter = self._call_filter("A_adjoint", filter, params)
        f = self._filter(y, filter)
        conv_t = Fn.conv_transpose2d_fft if self._by_fft(f) else Fn.conv_transpose2d
        return conv_t(y, f, self.padding)

    def operator_params(self) -> dict[str, Tensor]:
        return {"filter": self.filter}

    def normal_operator(self, gamma: Tensor, like: Tensor, filter: Tensor | None = None):
        """(AᵀA + I/γ) v with FFTs and the filter spectrum computed once per solve.

        Circular padding: AᵀA is circulant, |K|². Otherwise: pad, circular convolution on the padded
        grid, zero the wrap-around rows/columns (outside the valid part), correlate back, adjoint pad.
        """
        f = self._filter(like, filter)
        h, w = f.shape[-2:]
        H, W = like.shape[-2:]
        if self.padding == "circular":
            spectrum = Fn.centred_spectrum(f, (H, W)).abs() ** 2 + 1 / gamma
            return lambda v: torch.fft.irfft2(torch.fft.rfft2(v) * spectrum, s=(H, W))
        size = (H, W) if self.padding == "valid" else (H + h - 1, W + w - 1)
        K = torch.fft.rfft2(f, s=size)
        K_conj = K.conj()

        def matvec(v: Tensor) -> Tensor:
            full = torch.fft.irfft2(torch.fft.rfft2(Fn.pad(v, h, w, self.padding)) * K, s=size)
            valid_part = torch.nn.functional.pad(full[..., h - 1 :, w - 1 :], (w - 1, 0, h - 1, 0))
            back = torch.fft.irfft2(torch.fft.rfft2(valid_part) * K_conj, s=size)
            return Fn.pad_adjoint(back, h, w, self.padding) + v / gamma

        return matvec

    def _own_operator(self) -> bool:
        """The fast solvers below are built on Blur's own operator; a subclass that changes A or A_adjoint
        gets plain CG on its own A."""
        return type(self).A is Blur.A and type(self).A_adjoint is Blur.A_adjoint

    def normal_system(self, gamma: Tensor, like: Tensor, filter: Tensor | None = None) -> NormalEquations:
        """Valid padding: an exact reduction to the wrap-around strip (physics.blur_solvers), with CG on the
        strip; the other paddings: CG on images with a circulant preconditioner."""
        if not self._own_operator():
            return NormalSystem(LinearPhysics.normal_operator(self, gamma, like, filter=filter))
        if self.padding == "valid":
            return ValidBlurSystem(self._filter(like, filter), gamma, like)
        return super().normal_system(gamma, like, filter=filter)

    def prox_l2_closed_form(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor | None:
        if self.padding != "circular" or not self._own_operator():
            return None
        f = self._filter(z, None)
        Fn.check_images(z, f)
        Fn.check_images(y, f)
        return circular_prox_l2(Fn.centred_spectrum(f, tuple(z.shape[-2:])), z, y, gamma)

    def normal_preconditioner(self, gamma: Tensor, like: Tensor, filter: Tensor | None = None):
        """Inverse of the circulant approximation |K|² + 1/γ of AᵀA + I/γ, for CG on images (reflect,
        replicate and constant padding)."""
        f = self._filter(like, filter)
        H, W = like.shape[-2:]
        inverse = 1 / (torch.fft.rfft2(f, s=(H, W)).abs() ** 2 + 1 / gamma)
        return lambda r: torch.fft.irfft2(torch.fft.rfft2(r) * inverse, s=(H, W))

    def output_shape(self, x_shape):
        if self.padding != "valid":
            return tuple(x_shape)
        h, w = self.filter.shape[-2:]
        return (*x_shape[:-2], x_shape[-2] - h + 1, x_shape[-1] - w + 1)


class BlurFFT(_FilterParameter, LinearPhysics):
    """Circular blur computed in the Fourier domain, with an exact closed-form prox.

    Same operator as `Blur(filter, padding="circular")`. `img_size` (C, H, W) documents the intended
    size; any image size works, the filter spectrum is computed for the size at hand.
    """

    def __init__(self, img_size=None, filter: Tensor | None = None, device="cpu",
                 noise_model: nn.Module | None = None, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        if filter is None:
            raise ValueError("BlurFFT: filter is required, e.g. physics.blur.gaussian_blur(sigma=1.0)")
        store_tensor(self, "filter", as_filter(filter), device)
        self.img_size = tuple(img_size) if img_size is not None else None

    def _spectrum(self, like: Tensor, filter: Tensor | None = None) -> Tensor:
        f = self.filter if filter is None else filter
        return Fn.centred_spectrum(f.to(like.dtype), tuple(like.shape[-2:]))

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"images must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")

    def A(self, x: Tensor, filter: Tensor | None = None, **params) -> Tensor:
        if filter is not None or params:
            filter = self._call_filter("A", filter, params)
        self._check(x)
        return torch.fft.irfft2(torch.fft.rfft2(x) * self._spectrum(x, filter), s=x.shape[-2:])

    def A_adjoint(self, y: Tensor, filter: Tensor | None = None, **params) -> Tensor:
        if filter is not None or params:
            filter = self._call_filter("A_adjoint", filter, params)
        self._check(y)
        return torch.fft.irfft2(torch.fft.rfft2(y) * self._spectrum(y, filter).conj(), s=y.shape[-2:])

    def operator_params(self) -> dict[str, Tensor]:
        return {"filter": self.filter}

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        return circular_prox_l2(self._spectrum(z), z, y, gamma)

    def A_dagger(self, y, solver="CG", max_iter=None, tol=None, verbose=False, **params):
        """Pseudo-inverse: frequencies the filter (nearly) removes are set to zero."""
        self._closed_form_dagger(solver, params)
        K = self._spectrum(y)
        power = K.abs() ** 2
        keep = power > 1e-12 * power.amax()
        inv = torch.where(keep, K.conj() / torch.where(keep, power, torch.ones_like(power)), torch.zeros_like(K))
        return torch.fft.irfft2(torch.fft.rfft2(y) * inv, s=y.shape[-2:])
