"""Filters: anti-aliasing filters of downsampling (bilinear, bicubic, windowed sinc, Gaussian), batches of
Gaussian kernels, and the one place where a filter given as a file path or a numpy array becomes a tensor.

Formulas and sizes are the reference's (deepinv.physics.functional): bilinear (2f × 2f) and bicubic
(4f × 4f, a = −0.5) sampled at half-integer offsets / f; sinc of length 4f with a Kaiser window whose β
follows Kaiser's design rule. Named filters are computed in float64 (callers cast to their images' dtype,
so a float64 run is not limited by a float32 filter).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import functional as Fn

DOWNSAMPLING_FILTERS = ("gaussian", "bilinear", "bicubic", "sinc")
KERNEL_SUFFIXES = (".npy", ".pt", ".pth", ".png")


def _separable(w: Tensor) -> Tensor:
    k = torch.outer(w, w)
    return (k / k.sum()).reshape(1, 1, *k.shape)


def _offsets(half_width: int, factor: int) -> Tensor:
    """(−half_width·f + ½, …, half_width·f − ½) / f: tap positions in low-resolution pixels."""
    return torch.arange(-half_width * factor + 0.5, half_width * factor, 1.0, dtype=torch.float64) / factor


def bilinear_filter(factor: int = 2) -> Tensor:
    """(1, 1, 2f, 2f) separable triangle filter."""
    return _separable(1 - _offsets(1, factor).abs())


def bicubic_filter(factor: int = 2) -> Tensor:
    """(1, 1, 4f, 4f) separable Keys cubic filter (a = −0.5)."""
    a, x = -0.5, _offsets(2, factor).abs()
    w = ((a + 2) * x**3 - (a + 3) * x**2 + 1) * (x <= 1)
    w = w + (a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a) * ((x > 1) & (x < 2))
    return _separable(w)


def kaiser_beta(length: int, factor: int) -> float:
    """β of the Kaiser window from the attenuation A = 2.285·(L − 1)·π·Δf + 7.95 (the reference's rule)."""
    deltaf = 2 * (2 - math.sqrt(2)) / factor
    A = 2.285 * (length - 1) * math.pi * deltaf + 7.95
    if A <= 21:
        return 0.0
    if A <= 50:
        return 0.5842 * (A - 21) ** 0.4 + 0.07886 * (A - 21)
    return 0.1102 * (A - 8.7)


def sinc_filter(factor: int = 2, length: int | None = None, windowed: bool = True) -> Tensor:
    """(1, 1, L, L) separable sinc(n / f), n centred, times a Kaiser window; L = 4f by default."""
    length = 4 * factor if length is None else int(length)
    n = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
    w = torch.sinc(n / factor)
    if windowed and length > 1:
        half = (length - 1) / 2
        beta = torch.tensor(kaiser_beta(length, factor), dtype=torch.float64)
        w = w * torch.i0(beta * torch.sqrt((1 - ((n / half) ** 2)).clamp_min(0))) / torch.i0(beta)
    return _separable(w)


def gaussian_kernels(psf_size: tuple[int, int], sigma: Tensor, angle: Tensor, dtype=torch.float64) -> Tensor:
    """(B, 1, h, w) normalised Gaussian kernels, one per row of `sigma` (B, 2) = (σ_h, σ_w) and `angle` (B,)
    in degrees: SPEC §2's formula (offsets centred on the kernel, u = cosθ·X − sinθ·Y along σ_w)."""
    h, w = psf_size
    rows = torch.linspace(-(h - 1) / 2, (h - 1) / 2, h, dtype=dtype, device=sigma.device)
    cols = torch.linspace(-(w - 1) / 2, (w - 1) / 2, w, dtype=dtype, device=sigma.device)
    Y, X = torch.meshgrid(rows, cols, indexing="ij")
    theta = torch.deg2rad(angle.to(dtype)).view(-1, 1, 1)
    s_h, s_w = sigma.to(dtype)[:, 0].view(-1, 1, 1), sigma.to(dtype)[:, 1].view(-1, 1, 1)
    u = torch.cos(theta) * X - torch.sin(theta) * Y
    v = torch.sin(theta) * X + torch.cos(theta) * Y
    k = torch.exp(-(u**2) / (2 * s_w**2) - v**2 / (2 * s_h**2))
    return (k / k.sum(dim=(-2, -1), keepdim=True)).unsqueeze(1)


def downsampling_filter(name: str, factor: int) -> Tensor:
    """The reference's named anti-aliasing filter for a downsampling `factor`, in float64."""
    if name == "gaussian":  # σ = factor, size 2·int(σ/0.3 + 1) + 1, as gaussian_blur(sigma=(f, f))
        n = 2 * int(factor / 0.3 + 1) + 1
        sigma = torch.tensor([[float(factor), float(factor)]], dtype=torch.float64)
        return gaussian_kernels((n, n), sigma, torch.zeros(1, dtype=torch.float64))
    if name == "bilinear":
        return bilinear_filter(factor)
    if name == "bicubic":
        return bicubic_filter(factor)
    if name == "sinc":
        return sinc_filter(factor)
    raise ValueError(f"filter {name!r} is neither one of {', '.join(DOWNSAMPLING_FILTERS)} nor a kernel file "
                     f"({', '.join(KERNEL_SUFFIXES)}); give one of those, a tensor, a numpy array or None")


def _read_kernel(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in (".pt", ".pth"):
        t = torch.load(path, map_location="cpu", weights_only=True)  # a shared file cannot run code
        if not isinstance(t, Tensor):
            raise ValueError(f"filter file {path}: holds a {type(t).__name__}, not a tensor")
        return t.detach().to(torch.float64).numpy()
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("I") if img.mode.startswith("I;16") else img
        return np.asarray(img if img.mode in ("I", "F", "L") else img.convert("F"), dtype=np.float64)


def load_kernel(path: str | os.PathLike) -> Tensor:
    """A blur kernel from a .npy / .pt (read with weights_only=True) / PNG file: (1, 1, h, w) in the default
    dtype, normalised to sum 1. It must hold one 2-D array (leading sizes of 1 are dropped), finite, with a
    positive sum (negative taps are allowed: bicubic and sinc kernels have them)."""
    path = Path(path)
    if path.suffix.lower() not in KERNEL_SUFFIXES:
        raise ValueError(f"filter file {path}: unknown kind {path.suffix!r}; use {', '.join(KERNEL_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"filter file {path}: no such file")
    try:
        array = _read_kernel(path)
    except ValueError:
        raise
    except Exception as e:  # a corrupt or foreign file: one line, not a parser's traceback
        raise ValueError(f"filter file {path}: cannot be read ({type(e).__name__}: "
                         f"{(str(e).strip().splitlines() or [''])[0][:120]})") from None
    if array.dtype.kind not in "fiub":
        raise ValueError(f"filter file {path}: holds {array.dtype} values; a kernel must be real numbers")
    k = torch.from_numpy(np.array(array, dtype=np.float64))
    while k.dim() > 2 and k.shape[0] == 1:
        k = k[0]
    if k.dim() != 2 or k.numel() == 0:
        raise ValueError(f"filter file {path}: holds an array of shape {tuple(array.shape)}; a kernel is 2-D (h, w)")
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"filter file {path}: contains NaN or infinite values")
    total = float(k.sum())
    if not total > 0:
        raise ValueError(f"filter file {path}: its values sum to {total:g}; a blur kernel needs a positive sum "
                         "(it is normalised to sum 1)")
    return (k / total).to(torch.get_default_dtype()).reshape(1, 1, *k.shape)


def is_kernel_path(value) -> bool:
    return isinstance(value, os.PathLike) or (isinstance(value, str) and Path(value).suffix.lower()
                                               in KERNEL_SUFFIXES)


def as_filter(value, owner: str = "filter") -> Tensor:
    """A blur filter from what a user or a config may give: a tensor (as it is), a numpy array (as a tensor),
    or a path to a kernel file (`load_kernel`). Returned 4-D (b, c, h, w) and checked (Fn.check_filter)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise TypeError(f"{owner}: a numpy filter must hold real numbers, got dtype {value.dtype}")
        value = torch.from_numpy(np.array(value, dtype=np.float64 if value.dtype.kind != "f" else value.dtype))
    elif isinstance(value, (str, os.PathLike)):
        if not is_kernel_path(value):
            raise ValueError(f"{owner}: {str(value)!r} is not a kernel file; give a tensor, a numpy array or a "
                             f"path ending in {', '.join(KERNEL_SUFFIXES)}")
        value = load_kernel(value)
    elif not isinstance(value, Tensor):
        raise TypeError(f"{owner} must be a torch.Tensor, a numpy array or a kernel file path "
                        f"({', '.join(KERNEL_SUFFIXES)}), got {type(value).__name__}")
    return Fn.check_filter(value)


def trajectory_kernels(points: Tensor, psf_size: tuple[int, int]) -> Tensor:
    """(B, 1, h, w) motion-blur kernels from camera trajectories `points` (B, T, 2) = (x, y) in [−1, 1]² (the
    kernel's support), each point splatted bilinearly onto its four nearest taps; normalised to sum 1."""
    h, w = psf_size
    B = points.shape[0]
    col = (points[..., 0] + 1) * w / 2 - 0.5
    row = (points[..., 1] + 1) * h / 2 - 0.5
    r0, c0 = row.floor(), col.floor()
    fr, fc = row - r0, col - c0
    k = points.new_zeros(B, h * w)
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        index = (rr.clamp(0, h - 1) * w + cc.clamp(0, w - 1)).long()
        k.scatter_add_(1, index, weight * inside)
    return (k / k.sum(dim=1, keepdim=True)).reshape(B, 1, h, w)


def centre_pad(kernel: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero-pad a (…, h, w) kernel to `size`, keeping its centre tap (h//2, w//2) at the new centre."""
    h, w = kernel.shape[-2:]
    H, W = size
    if h > H or w > W:
        raise ValueError(f"a {h}x{w} kernel does not fit in psf_size {H}x{W}")
    top, left = H // 2 - h // 2, W // 2 - w // 2
    return torch.nn.functional.pad(kernel, (left, W - w - left, top, H - h - top))
