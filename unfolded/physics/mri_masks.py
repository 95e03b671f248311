"""Cartesian k-space sampling masks for MRI: random or equispaced phase-encoding columns around a fully
sampled centre (fastMRI's conventions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _is_size(img_size) -> bool:
    """A sequence of at least two integers (tuple, list, torch.Size, or a config's list)."""
    return isinstance(img_size, Sequence) and not isinstance(img_size, str) and len(img_size) >= 2


def _mask_args(img_size, acceleration, center_fraction) -> tuple[int, int, int]:
    if not _is_size(img_size):
        raise ValueError(f"img_size must be a tuple ending with (H, W), got {img_size!r}")
    H, W = (int(s) for s in tuple(img_size)[-2:])
    if not float(acceleration) >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration!r}")
    if center_fraction is None:  # fastMRI's pairing: 4x ↔ 8 %, 8x ↔ 4 %
        center_fraction = 0.32 / float(acceleration)
    if not 0 <= float(center_fraction) <= 1:
        raise ValueError(f"center_fraction must be in [0, 1], got {center_fraction!r}")
    return H, W, round(W * float(center_fraction))


def _columns_to_mask(H: int, W: int, columns: Tensor, num_low: int) -> Tensor:
    keep = torch.zeros(W, dtype=torch.bool)
    keep[columns] = True
    start = (W - num_low + 1) // 2
    keep[start:start + num_low] = True  # fully sampled centre (low frequencies)
    return keep.to(torch.get_default_dtype()).expand(H, W).clone()


def random_mask(img_size, acceleration: float = 4, center_fraction: float | None = None,
                seed: int | None = 0, rng: torch.Generator | None = None) -> Tensor:
    """(H, W) Cartesian mask of full phase-encoding columns: a fully sampled centre plus columns drawn
    uniformly without replacement so that about W/acceleration columns are sampled in all. The columns
    come from `rng` when given (then `seed` must be left at its default), else from a generator seeded by
    `seed` (None: the global generator)."""
    H, W, num_low = _mask_args(img_size, acceleration, center_fraction)
    if rng is not None and seed not in (0, None):
        raise ValueError("random_mask: give rng (a torch.Generator) or seed, not both")
    gen = rng if rng is not None else torch.Generator().manual_seed(seed) if seed is not None else None
    mask = _columns_to_mask(H, W, torch.zeros(0, dtype=torch.long), num_low)
    outside = torch.nonzero(mask[0] == 0).flatten()
    extra = max(0, min(len(outside), round(W / float(acceleration)) - num_low))
    chosen = outside[torch.randperm(len(outside), generator=gen)[:extra]]
    return _columns_to_mask(H, W, chosen, num_low)


def equispaced_mask(img_size, acceleration: float = 4, center_fraction: float | None = None, offset: int = 0) -> Tensor:
    """(H, W) mask: a fully sampled centre plus equispaced columns, the spacing adjusted (as fastMRI's
    EquispacedMaskFunc does) so that about W/acceleration columns are sampled in all."""
    H, W, num_low = _mask_args(img_size, acceleration, center_fraction)
    acc = float(acceleration)
    denom = num_low * acc - W
    spacing = acc * (num_low - W) / denom if denom != 0 else acc
    columns = torch.arange(offset, W - 1, max(spacing, 1.0)).round().long() if num_low < W else torch.zeros(0).long()
    return _columns_to_mask(H, W, columns.clamp(0, W - 1), num_low)


def cartesian_mask(img_size, pattern: str = "random", acceleration: float = 4, center_fraction: float | None = None,
                   seed: int | None = 0) -> Tensor:
    """`random_mask` (seeded by `seed`) or `equispaced_mask` (`seed` unused), by name: one function for
    configuration files, where the pattern is a setting (`physics.mask.pattern=equispaced`)."""
    if pattern == "random":
        return random_mask(img_size, acceleration, center_fraction, seed)
    if pattern == "equispaced":
        return equispaced_mask(img_size, acceleration, center_fraction)
    raise ValueError(f"mask pattern must be 'random' or 'equispaced', got {pattern!r}")
