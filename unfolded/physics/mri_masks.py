"""k-space sampling masks for MRI.

- `random_mask`, `equispaced_mask`, `cartesian_mask`: (H, W) masks of whole columns around a fully sampled
  centre, with exactly about W/acceleration columns (the library's masks since the first MRI release);
- `fastmri_random_mask`, `fastmri_equispaced_mask`, `fastmri_equispaced_fraction_mask`: fastMRI's own
  `RandomMaskFunc`, `EquiSpacedMaskFunc`, `EquispacedMaskFractionFunc`, bit for bit for the same seed;
  `poisson_disc_mask` (sigpy); `fastmri_mask` picks one by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


# --- fastMRI's mask functions, as pure functions ---------------------------------------------------------
# fastmri.data.subsample (v0.3.0) draws from a numpy RandomState re-seeded by the call's `seed`; given the
# same integer (or tuple of integers) seed, these return exactly the mask `MaskFunc([cf], [acc])(shape,
# seed=seed)` returns (as (H, W) with the W columns along the last dim). A torch.Generator instead draws
# the 32-bit seed from it, so masks can be drawn per sample from (seed, sample number).
FASTMRI_PATTERNS = ("random", "equispaced", "equispaced_fraction", "poisson")


def _numpy_rng(seed, rng: torch.Generator | None, who: str) -> np.random.RandomState:
    if rng is not None and seed is not None:
        raise ValueError(f"{who}: give rng (a torch.Generator) or seed, not both")
    if rng is not None or seed is None:  # None: torch's global generator (torch.manual_seed governs it)
        seed = int(torch.randint(0, 2**32, (), generator=rng))
    if isinstance(seed, (tuple, list)):
        return np.random.RandomState([int(s) for s in seed])
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"{who}: seed must be >= 0, got {seed}")
    # RandomState takes 32-bit seeds; larger ones (seeding.training_seed) as their 32-bit words
    return np.random.RandomState(seed if seed < 2**32 else [(seed >> s) & 0xFFFFFFFF for s in range(0, 64, 32)])


def center_lines(num_cols: int, center_fraction: float) -> tuple[int, int]:
    """(first, count) of the fully sampled centre columns: round(W·fraction) from (W − count + 1) // 2."""
    count = round(num_cols * float(center_fraction))
    return (num_cols - count + 1) // 2, count


def _fastmri_args(img_size, acceleration, center_fraction, who: str) -> tuple[int, int, float, float]:
    if not _is_size(img_size):
        raise ValueError(f"{who}: img_size must be a tuple ending with (H, W), got {img_size!r}")
    H, W = (int(s) for s in tuple(img_size)[-2:])
    if isinstance(acceleration, bool) or not float(acceleration) > 1:
        raise ValueError(f"{who}: acceleration must be > 1, got {acceleration!r}")
    cf = 0.32 / float(acceleration) if center_fraction is None else float(center_fraction)
    if not 0 < cf < 1 / float(acceleration):
        raise ValueError(f"{who}: center_fraction must be in (0, 1/acceleration) so that outer columns are "
                         f"drawn, got {center_fraction!r} at acceleration {acceleration}")
    return H, W, float(acceleration), cf


def _columns(H: int, W: int, cf: float, outer: np.ndarray) -> Tensor:
    first, count = center_lines(W, cf)
    keep = np.asarray(outer, dtype=bool).copy()
    keep[first:first + count] = True
    return torch.from_numpy(keep).to(torch.get_default_dtype()).expand(H, W).clone()


def fastmri_random_mask(img_size, acceleration: float = 4, center_fraction: float | None = None,
                        seed=None, rng: torch.Generator | None = None) -> Tensor:
    """fastMRI's `RandomMaskFunc`: the centre columns plus each column independently with probability
    (W/acc − n_low)/(W − n_low), so W/acc columns are sampled on average (the count varies per draw)."""
    H, W, acc, cf = _fastmri_args(img_size, acceleration, center_fraction, "fastmri_random_mask")
    n_low = center_lines(W, cf)[1]
    prob = (W / acc - n_low) / (W - n_low)
    return _columns(H, W, cf, _numpy_rng(seed, rng, "fastmri_random_mask").uniform(size=W) < prob)


def fastmri_equispaced_mask(img_size, acceleration: int = 4, center_fraction: float | None = None,
                            offset: int | None = None, seed=None, rng: torch.Generator | None = None) -> Tensor:
    """fastMRI's `EquiSpacedMaskFunc`: the centre columns plus every acceleration-th column from `offset`
    (None: drawn in [0, acceleration)); the centre adds to them, so the true rate is below `acceleration`."""
    H, W, acc, cf = _fastmri_args(img_size, acceleration, center_fraction, "fastmri_equispaced_mask")
    if acc != int(acc):
        raise ValueError(f"fastmri_equispaced_mask: acceleration must be an integer, got {acceleration!r}")
    if offset is None:
        offset = _numpy_rng(seed, rng, "fastmri_equispaced_mask").randint(0, high=round(acc))
    outer = np.zeros(W, dtype=bool)
    outer[int(offset)::int(acc)] = True
    return _columns(H, W, cf, outer)


def fastmri_equispaced_fraction_mask(img_size, acceleration: float = 4, center_fraction: float | None = None,
                                     offset: int | None = None, seed=None,
                                     rng: torch.Generator | None = None) -> Tensor:
    """fastMRI's `EquispacedMaskFractionFunc` (the public multi-coil data's masks): the spacing is adjusted
    to acc·(n_low − W)/(n_low·acc − W) so that W/acc columns are sampled in all; positions rounded."""
    H, W, acc, cf = _fastmri_args(img_size, acceleration, center_fraction, "fastmri_equispaced_fraction_mask")
    n_low = center_lines(W, cf)[1]
    adjusted = acc * (n_low - W) / (n_low * acc - W)
    if offset is None:
        offset = _numpy_rng(seed, rng, "fastmri_equispaced_fraction_mask").randint(0, high=round(adjusted))
    outer = np.zeros(W, dtype=bool)
    outer[np.around(np.arange(int(offset), W - 1, adjusted)).astype(np.uint)] = True
    return _columns(H, W, cf, outer)


def poisson_disc_mask(img_size, acceleration: float = 4, center_fraction: float | None = None,
                      seed=None, rng: torch.Generator | None = None) -> Tensor:
    """Variable-density Poisson-disc sampling of the (H, W) k-space points (sigpy's `mri.poisson`, corners
    cropped) with a fully sampled round(H·cf) × round(W·cf) centre. Both dims are undersampled: the
    standard simulation for the two phase-encoding dims of a 3-D scan, not a 2-D Cartesian readout."""
    H, W, acc, cf = _fastmri_args(img_size, acceleration, center_fraction, "poisson_disc_mask")
    from sigpy.mri import poisson  # imported here: sigpy (numba) is slow to import

    calib = (round(H * cf), round(W * cf))
    draw = int(_numpy_rng(seed, rng, "poisson_disc_mask").randint(0, 2**31))
    try:
        mask = poisson((H, W), acc, calib=calib, dtype=np.float64, seed=draw)
    except ValueError as e:
        raise ValueError(f"poisson_disc_mask: no mask of acceleration {acc} on {H}x{W} ({e})") from None
    return torch.from_numpy(mask).to(torch.get_default_dtype())


def fastmri_mask(img_size, pattern: str = "random", acceleration: float = 4, center_fraction: float | None = None,
                 seed=None, rng: torch.Generator | None = None) -> Tensor:
    """One of FASTMRI_PATTERNS by name (for configuration files: `physics.mask.pattern=equispaced`); the
    offset of the equispaced patterns is drawn from the seed."""
    makers = {"random": fastmri_random_mask, "equispaced": fastmri_equispaced_mask,
              "equispaced_fraction": fastmri_equispaced_fraction_mask, "poisson": poisson_disc_mask}
    if pattern not in makers:
        raise ValueError(f"fastmri_mask: pattern must be one of {', '.join(FASTMRI_PATTERNS)}, got {pattern!r}")
    return makers[pattern](img_size, acceleration, center_fraction, seed=seed, rng=rng)


def fully_sampled_block(img_size, pattern: str = "random", acceleration: float = 4,
                        center_fraction: float | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """((first row, rows), (first column, columns)) that every `fastmri_mask` of these settings samples
    fully (the ACS, for coil maps): all rows × the centre columns, or Poisson's calibration block."""
    H, W, acc, cf = _fastmri_args(img_size, acceleration, center_fraction, "fully_sampled_block")
    if pattern != "poisson":
        return (0, H), center_lines(W, cf)
    calib = (round(H * cf), round(W * cf))
    (r0, r1), (c0, c1) = ((int(n / 2 - c / 2), int(n / 2 + c / 2)) for n, c in zip((H, W), calib))  # sigpy's
    return (r0, r1 - r0), (c0, c1 - c0)
