"""Per-channel 2-D convolution (filter flipped, as in signal processing) with exact adjoints.

A filter has shape (b, c, h, w) with b ∈ {1, B} and c ∈ {1, C}, broadcast over the batch and channels.
Non-"valid" paddings pad (left, right, top, bottom) = (w//2 − (w−1)%2, w//2, h//2 − (h−1)%2, h//2), then
take the valid convolution, so the output has the input's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PADDINGS = ("valid", "circular", "reflect", "replicate", "constant")


def normalise_padding(padding: str) -> str:
    padding = "constant" if padding == "zeros" else padding
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)} (or 'zeros'), got {padding!r}")
    return padding


def check_filter(filter: Tensor) -> Tensor:
    """A 2-D (h, w) or 4-D (b, c, h, w) filter, returned 4-D."""
    if not isinstance(filter, Tensor):
        raise TypeError(f"filter must be a torch.Tensor, got {type(filter).__name__}")
    if filter.dim() not in (2, 4):
        raise ValueError(f"filter must be a 2-D (h, w) or 4-D (b, c, h, w) tensor, got shape {tuple(filter.shape)}")
    check_floating("filter", filter)
    if not bool(torch.isfinite(filter.detach()).all()):
        raise ValueError("filter contains NaN or infinite values; a blur filter must be finite")
    return filter[None, None] if filter.dim() == 2 else filter


def check_floating(what: str, t: Tensor) -> None:
    if not (t.is_floating_point() or t.is_complex()):
        raise TypeError(f"{what} must be floating-point (e.g. torch.float32 or torch.float64), got {t.dtype}")


def pad_amounts(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom)."""
    return (w // 2 - (w - 1) % 2, w // 2, h // 2 - (h - 1) % 2, h // 2)


def check_images(x: Tensor, filter: Tensor) -> None:
    """Images must be floating-point (B, C, H, W), with a filter that broadcasts over them."""
    if x.dim() != 4:
        raise ValueError(f"images must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    check_floating("images", x)
    b, c = filter.shape[:2]
    if b not in (1, x.shape[0]) or c not in (1, x.shape[1]):
        raise ValueError(
            f"filter of shape {tuple(filter.shape)} does not broadcast over images of shape {tuple(x.shape)}: "
            "its first two sizes must be 1 or the batch size / channel count"
        )


def _check_fits(x: Tensor, padded: Tensor, h: int, w: int, padding: str) -> None:
    """The (padded) image must hold the filter; only `valid` padding can fail this."""
    if padded.shape[-2] < h or padded.shape[-1] < w:
        raise ValueError(f"filter of size {(h, w)} is larger than the image {tuple(x.shape[-2:])}; "
                         f"padding={padding!r} needs images at least as large as the filter")


def _grouped(x: Tensor, filter: Tensor) -> tuple[Tensor, Tensor, int]:
    """Reshape (x, filter) so one F.conv2d call applies each filter to its own channel."""
    B, C, H, W = x.shape
    b, c, h, w = filter.shape
    if b == 1 and c == 1:  # one filter for everything: channels become batch, no groups (fastest)
        return x.reshape(B * C, 1, H, W), filter, 1
    if b == 1:
        return x, filter.reshape(C, 1, h, w), C
    weight = filter.expand(B, C, h, w).reshape(B * C, 1, h, w)
    return x.reshape(1, B * C, H, W), weight, B * C


def pad(x: Tensor, h: int, w: int, padding: str) -> Tensor:
    if padding == "valid":
        return x
    return F.pad(x, pad_amounts(h, w), mode=padding)


def _circular_fold(p: Tensor, before: int, after: int, dim: int) -> Tensor:
    """Adjoint of circular padding along one dimension: wrap the padded borders back and add them."""
    n = p.shape[dim] - before - after
    mid = p.narrow(dim, before, n)
    last = dim == p.dim() - 1
    if before:
        head = p.narrow(dim, 0, before)
        mid = mid + F.pad(head, (n - before, 0) if last else (0, 0, n - before, 0))
    if after:
        tail = p.narrow(dim, before + n, after)
        mid = mid + F.pad(tail, (0, n - after) if last else (0, 0, 0, n - after))
    return mid


def pad_adjoint(p: Tensor, h: int, w: int, padding: str) -> Tensor:
    if padding == "valid":
        return p
    left, right, top, bottom = pad_amounts(h, w)
    H, W = p.shape[-2] - top - bottom, p.shape[-1] - left - right
    if padding == "constant":
        return p[..., top : top + H, left : left + W]
    if padding == "circular":
        return _circular_fold(_circular_fold(p, left, right, p.dim() - 1), top, bottom, p.dim() - 2)
    like = p.new_empty(p.shape[:-2] + (H, W))
    op = torch.ops.aten.reflection_pad2d_backward if padding == "reflect" else torch.ops.aten.replication_pad2d_backward
    return op(p, like, [left, right, top, bottom])


def conv2d(x: Tensor, filter: Tensor, padding: str = "valid") -> Tensor:
    """A x: the true convolution of each channel with its filter."""
    check_images(x, filter)
    h, w = filter.shape[-2:]
    xp = pad(x, h, w, padding)
    _check_fits(x, xp, h, w, padding)
    xr, weight, groups = _grouped(xp, filter.flip(-2, -1))
    out = F.conv2d(xr, weight, groups=groups)
    return out.reshape(x.shape[0], x.shape[1], *out.shape[-2:])


def conv_transpose2d(y: Tensor, filter: Tensor, padding: str = "valid") -> Tensor:
    """Aᵀ y, the exact adjoint of `conv2d` with the same filter and padding.

    The adjoint of a valid correlation with the flipped filter is a full correlation with the filter
    itself; it is computed as a conv2d on zero-padded y (F.conv_transpose2d is ~15× slower on CPU for
    one-channel filters).
    """
    check_images(y, filter)
    h, w = filter.shape[-2:]
    yr, weight, groups = _grouped(F.pad(y, (w - 1, w - 1, h - 1, h - 1)), filter)
    p = F.conv2d(yr, weight, groups=groups)
    p = p.reshape(y.shape[0], y.shape[1], *p.shape[-2:])
    return pad_adjoint(p, h, w, padding)


def centred_filter(filter: Tensor, size: tuple[int, int]) -> Tensor:
    """The filter zero-padded to `size` with its centre (h//2, w//2) moved to pixel (0, 0): the kernel of a
    circular blur with Blur's centring convention. Taps beyond the image wrap around (are added modulo the
    size), as they do when circular padding wraps the image."""
    h, w = filter.shape[-2:]
    H, W = size
    rows, cols = -(-h // H), -(-w // W)  # image-sized tiles the filter spans
    padded = F.pad(filter, (0, cols * W - w, 0, rows * H - h)).roll((-(h // 2), -(w // 2)), dims=(-2, -1))
    return padded.reshape(*filter.shape[:-2], rows, H, cols, W).sum(dim=(-4, -2))


def centred_spectrum(filter: Tensor, size: tuple[int, int]) -> Tensor:
    """rfft2 of `centred_filter`: the transfer function of a circular blur."""
    return torch.fft.rfft2(centred_filter(filter, size))


def _filter_spectrum(filter: Tensor, size: tuple[int, int]) -> Tensor:
    return torch.fft.rfft2(filter, s=size)


def conv2d_fft(x: Tensor, filter: Tensor, padding: str = "valid") -> Tensor:
    """Same operator as `conv2d`, computed with FFTs (cheaper for large filters).

    The padded image P has size (Hp, Wp); the valid part of a linear convolution equals the circular
    convolution of size (Hp, Wp) at indices ≥ (h−1, w−1), where no wrap-around occurs.
    """
    check_images(x, filter)
    h, w = filter.shape[-2:]
    xp = pad(x, h, w, padding)
    _check_fits(x, xp, h, w, padding)
    size = tuple(xp.shape[-2:])
    full = torch.fft.irfft2(torch.fft.rfft2(xp) * _filter_spectrum(filter.to(x.dtype), size), s=size)
    return full[..., h - 1 :, w - 1 :]


def conv_transpose2d_fft(y: Tensor, filter: Tensor, padding: str = "valid") -> Tensor:
    """Adjoint of `conv2d_fft`: embed, circular correlation, adjoint of the padding."""
    check_images(y, filter)
    h, w = filter.shape[-2:]
    embedded = F.pad(y, (w - 1, 0, h - 1, 0))
    size = tuple(embedded.shape[-2:])
    spec = torch.fft.rfft2(embedded) * _filter_spectrum(filter.to(y.dtype), size).conj()
    return pad_adjoint(torch.fft.irfft2(spec, s=size), h, w, padding)


def gaussian_blur(sigma=(1, 1), angle: float = 0, device="cpu") -> Tensor:
    """Normalised Gaussian filter (1, 1, n, n), n = 2·int(max σ/0.3 + 1) + 1, always float32.

    σ = (σ_h, σ_w), σ_h along rows; `angle` (degrees) rotates the filter.
    """
    if isinstance(sigma, Tensor):
        sigma = sigma.tolist()
    s = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else tuple(float(v) for v in sigma)
    if len(s) != 2 or min(s) <= 0:
        raise ValueError(f"sigma must be a positive number or a pair of positive numbers, got {sigma!r}")
    sigma_h, sigma_w = s
    c = int(max(s) / 0.3 + 1)
    n = 2 * c + 1
    offsets = torch.linspace(-c, c, n, dtype=torch.float32)
    Y, X = torch.meshgrid(offsets, offsets, indexing="ij")
    theta = math.radians(angle)
    u = math.cos(theta) * X - math.sin(theta) * Y
    v = math.sin(theta) * X + math.cos(theta) * Y
    k = torch.exp(-(u**2) / (2 * sigma_w**2)) / (math.sqrt(2 * math.pi) * sigma_w) * torch.exp(
        -(v**2) / (2 * sigma_h**2)
    ) / (math.sqrt(2 * math.pi) * sigma_h)
    k = k / k.sum()
    return k.reshape(1, 1, n, n).to(device)
