"""Downsampling (super-resolution): y = S(k ∗ x) + noise, S keeping every `factor`-th pixel from (0, 0).

The prox (AᵀA + μI) x = b, μ = 1/γ, has a closed form when the blur is circular and the image size is a
multiple of the factor (Zhao et al. 2016, as in USRNet). With C the circular convolution (transfer function
K), Woodbury gives x = γ(b − Cᵀ Sᵀ (μI + S C Cᵀ Sᵀ)⁻¹ S C b). Decimation folds the spectrum: for an H × W
image, the DFT of S u at low-resolution frequency ω is the mean over the f² frequencies ω + (H/f)·j, so
S C Cᵀ Sᵀ is diagonal in the low-resolution Fourier basis with symbol mean_blocks(|K|²), and

    x = γ (b − F⁻¹[ K̄ · tile( mean_blocks(K · F b) / (mean_blocks(|K|²) + μ) ) ]).

Without a filter AᵀA = SᵀS is a 0/1 mask, so the prox is a pixelwise division for every padding. Other
paddings use plain CG on images. The circular formula makes a poor preconditioner for them: where the
filter's spectrum nearly vanishes (bicubic at Nyquist, Gaussian) the border terms it misses are amplified
by γ. Measured to 1e-8 on 64² and 256², ×2 and ×4, γ = 1 … 1e4: plain CG took 4–280 iterations; with that
preconditioner reflect padding took up to 25× more (bicubic ×2, γ = 1e4: 17 vs 426), valid at best 2× fewer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as Fn
from .base import LinearPhysics
from .blur import Blur
from .filters import DOWNSAMPLING_FILTERS, as_filter, downsampling_filter, is_kernel_path
from .parameters import _same_memory, store_tensor


def check_factor(factor) -> int:
    """An integer factor ≥ 1 (a float or a tensor holding one integer value is accepted)."""
    if isinstance(factor, Tensor):
        values = torch.unique(factor.detach().flatten())
        if values.numel() != 1:
            raise ValueError(f"Downsampling: one factor per batch, got factors {values.tolist()}")
        factor = values.item()
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor != int(factor) or factor < 1:
        raise ValueError(f"Downsampling: factor must be an integer >= 1, got {factor!r}")
    return int(factor)


def _fold_mean(t: Tensor, k: int) -> Tensor:
    """Mean over the k × k frequency blocks that decimation by k folds onto one low-resolution frequency."""
    H, W = t.shape[-2:]
    return t.reshape(*t.shape[:-2], k, H // k, k, W // k).mean(dim=(-4, -2))


def woodbury_solve(K: Tensor, k: int, gamma: Tensor, b: Tensor) -> Tensor:
    """(CᵀSᵀSC + I/γ)⁻¹ b for a circular convolution C with full-spectrum transfer function K (module doc)."""
    B = torch.fft.fft2(b)
    ratio = _fold_mean(K * B, k) / (_fold_mean(K.real**2 + K.imag**2, k) + 1 / gamma)
    return gamma * (b - torch.fft.ifft2(K.conj() * ratio.repeat(*([1] * (ratio.dim() - 2)), k, k)).real)


class _IterativeOnly:
    """The physics without its closed-form prox: `prox_l2(use_fft=False)` solves the normal equations."""

    def __init__(self, physics):
        self.physics = physics

    def __getattr__(self, name):
        return getattr(self.physics, name)

    def prox_l2_closed_form(self, z, y, gamma):
        return None


class Downsampling(LinearPhysics):
    """y = S(k ∗ x) (+ noise): the blur of `Blur` with the given `padding`, then decimation by `factor`.

    `filter`: None (decimation only), "gaussian" (σ = factor), "bilinear", "bicubic", "sinc" (the reference's
    anti-aliasing filters for the factor), a tensor (h, w) or (b, c, h, w), a numpy array, or a kernel file
    (.npy / .pt / PNG, normalised). `img_size` (C, H, W) fixes the size of Aᵀy; without it, Aᵀy has factor ×
    y's size (+ filter size − 1 with valid padding). Keywords `filter=`/`factor=` of A, A_adjoint, forward and
    update are stored, as in the reference; a named filter follows a new factor.
    """

    parameter_names = ("filter", "factor")
    FFT_MIN_TAPS = Blur.FFT_MIN_TAPS

    def __init__(self, img_size=None, filter=None, factor: int = 2, device="cpu", padding: str = "circular",
                 noise_model: nn.Module | None = None, **kwargs):
        super().__init__(noise_model=noise_model, **kwargs)
        if img_size is not None and (len(tuple(img_size)) not in (2, 3) or min(tuple(img_size)) < 1):
            raise ValueError(f"Downsampling: img_size must be (C, H, W), got {img_size!r}")
        self.img_size = tuple(img_size) if img_size is not None else None
        self.padding = Fn.normalise_padding(padding)
        self.factor = check_factor(factor)
        self._filter_name: str | None = None
        self.register_buffer("filter", None)
        self._store_filter(filter, device)

    # --- operator tensors -------------------------------------------------------------------------
    def _store_filter(self, value, device=None) -> None:
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            if len(set(value)) != 1:  # the reference: one filter per batch, given once per sample
                raise ValueError(f"Downsampling: a list of filter names must repeat one name, got {sorted(set(value))}")
            value = value[0]
        if value is None:
            self._filter_name = None
            self.register_buffer("filter", None)
            return
        if isinstance(value, str) and not is_kernel_path(value):
            self._filter_name, tensor = value, downsampling_filter(value, self.factor)
        else:
            self._filter_name, tensor = None, as_filter(value, "Downsampling: filter")
        store_tensor(self, "filter", tensor, device)

    def _store_factor(self, factor) -> None:
        factor = check_factor(factor)
        if factor != self.factor:
            self.factor = factor
            if self._filter_name is not None:  # a named filter is the one for the current factor
                self._store_filter(self._filter_name)

    def update_parameters(self, filter=None, factor=None, device=None, **params) -> None:
        """Store a new filter (a name is built for the new factor) and/or factor; None keeps the current one.
        `device` places a new filter when there is none yet (as in the reference; else the current one's)."""
        if params:
            raise self._unknown("update_parameters", params)
        if factor is not None:
            self._store_factor(factor)
        if filter is not None:
            self._store_filter(filter, device if self.filter is None else None)

    def _call_filter(self, where: str, filter, factor, params: dict) -> Tensor | None:
        """The filter for this call: None (the stored one, possibly just replaced) or a transient alias of the
        stored tensor (the implicit backward's leaves, physics.parameters)."""
        if params:
            raise self._unknown(where, params)
        if factor is not None:
            self._store_factor(factor)
        if filter is None:
            return None
        if isinstance(filter, Tensor) and self.filter is not None and _same_memory(self.filter, filter):
            return filter
        self._store_filter(filter)
        return None

    def operator_params(self) -> dict[str, Tensor]:
        return {} if self.filter is None else {"filter": self.filter}

    # --- operator ---------------------------------------------------------------------------------
    def _filter(self, like: Tensor, filter: Tensor | None = None) -> Tensor | None:
        f = self.filter if filter is None else filter
        return f if f is None or f.dtype == like.dtype else f.to(like.dtype)

    def _blur(self, x: Tensor, f: Tensor | None) -> Tensor:
        if f is None:
            if x.dim() != 4:
                raise ValueError(f"Downsampling: images must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
            Fn.check_floating("images", x)
            return x
        conv = Fn.conv2d_fft if f.shape[-2] * f.shape[-1] >= self.FFT_MIN_TAPS else Fn.conv2d
        return conv(x, f, self.padding)

    def _conv_size(self, size, f: Tensor | None) -> tuple[int, int]:
        """Size of the blurred image k ∗ x (before decimation) for images of `size` (H, W)."""
        H, W = size
        if self.padding == "valid" and f is not None:
            return H - f.shape[-2] + 1, W - f.shape[-1] + 1
        return H, W

    def _image_size(self, y: Tensor, f: Tensor | None) -> tuple[int, int]:
        """(H, W) of Aᵀy: img_size's, else factor × y's size (+ filter − 1 for valid padding)."""
        if self.img_size is not None:
            return tuple(self.img_size[-2:])
        k = self.factor
        extra = (f.shape[-2] - 1, f.shape[-1] - 1) if self.padding == "valid" and f is not None else (0, 0)
        return y.shape[-2] * k + extra[0], y.shape[-1] * k + extra[1]

    def _adjoint(self, y: Tensor, f: Tensor | None, size) -> Tensor:
        """Aᵀy for images of `size`: zeros between the samples, then the blur's adjoint."""
        m, k = self._conv_size(size, f), self.factor
        expected = (-(-m[0] // k), -(-m[1] // k))
        if y.dim() != 4 or tuple(y.shape[-2:]) != expected:
            raise ValueError(f"Downsampling: y of shape {tuple(y.shape)} is not a measurement of {size[0]}x{size[1]} "
                             f"images, which A maps to (B, C, {expected[0]}, {expected[1]})")
        up = y.new_zeros(*y.shape[:-2], *m)
        up[..., ::k, ::k] = y
        if f is None:
            return up
        conv_t = Fn.conv_transpose2d_fft if f.shape[-2] * f.shape[-1] >= self.FFT_MIN_TAPS else Fn.conv_transpose2d
        return conv_t(up, f, self.padding)

    def A(self, x: Tensor, filter=None, factor=None, **params) -> Tensor:
        if filter is not None or factor is not None or params:
            filter = self._call_filter("A", filter, factor, params)
        k = self.factor
        return self._blur(x, self._filter(x, filter))[..., ::k, ::k]

    def A_adjoint(self, y: Tensor, filter=None, factor=None, **params) -> Tensor:
        if filter is not None or factor is not None or params:
            filter = self._call_filter("A_adjoint", filter, factor, params)
        f = self._filter(y, filter)
        return self._adjoint(y, f, self._image_size(y, f))

    def output_shape(self, x_shape):
        m, k = self._conv_size(tuple(x_shape[-2:]), self.filter), self.factor
        return (*x_shape[:-2], -(-m[0] // k), -(-m[1] // k))

    def interior_margin(self, x_shape) -> tuple[int, int]:
        """Rows/columns on each side that valid padding barely measures (filter size − 1), as for Blur."""
        if self.padding != "valid" or self.filter is None:
            return (0, 0)
        return (self.filter.shape[-2] - 1, self.filter.shape[-1] - 1)

    # --- least squares ----------------------------------------------------------------------------
    def normal_operator(self, gamma: Tensor, like: Tensor, filter: Tensor | None = None):
        f, size, k = self._filter(like, filter), tuple(like.shape[-2:]), self.factor
        return lambda v: self._adjoint(self._blur(v, f)[..., ::k, ::k], f, size) + v / gamma

    def prox_l2_closed_form(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor | None:
        f, size, k = self._filter(z, None), tuple(z.shape[-2:]), self.factor
        if f is None:  # AᵀA = SᵀS: 1 on the kept pixels, 0 elsewhere
            mask = z.new_zeros(size)
            mask[::k, ::k] = 1
            return (self._adjoint(y, None, size) + z / gamma) / (mask + 1 / gamma)
        if self.padding != "circular" or size[0] % k or size[1] % k:
            return None
        Fn.check_images(z, f)
        K = torch.fft.fft2(Fn.centred_filter(f, size))
        return woodbury_solve(K, k, gamma, self._adjoint(y, f, size) + z / gamma)

    def prox_l2(self, z, y: Tensor, gamma, solver: str | None = "CG", max_iter: int | None = None,
                tol: float | None = None, verbose: bool = False, use_fft: bool = True) -> Tensor:
        """LinearPhysics.prox_l2, in closed form where one exists (module docstring); `use_fft=False` (the
        reference's switch) solves the normal equations iteratively instead."""
        if isinstance(z, Tensor):
            f = self._filter(z, None)
            if tuple(z.shape[-2:]) != self._image_size(y, f):
                raise ValueError(f"Downsampling.prox_l2: z is {z.shape[-2]}x{z.shape[-1]} but Aᵀy would be "
                                 f"{'x'.join(map(str, self._image_size(y, f)))}; give img_size=(C, H, W) for images "
                                 "whose size is not factor x y's size")
        target = self if use_fft else _IterativeOnly(self)
        return LinearPhysics.prox_l2(target, z, y, gamma, solver=solver, max_iter=max_iter, tol=tol, verbose=verbose)


__all__ = ["Downsampling", "DOWNSAMPLING_FILTERS", "check_factor", "woodbury_solve"]
