"""Coil sensitivities estimated from the fully sampled k-space centre (the ACS lines) of one slice.

- `acs_maps`: the simple low-resolution estimate: coil images of the ACS lines alone (zero elsewhere),
  divided by their root-sum-of-squares. Blurred, and the object's phase stays in the maps (it cancels in
  the SENSE combination Σ Sₙ* cₙ, which then is ≈ |x|).
- `espirit_maps`: ESPIRiT (Uecker et al. 2014) by sigpy's `EspiritCalib`: the calibration matrix of the
  central calib×calib k-space block (calib = the number of ACS lines), its signal subspace, and per pixel
  the eigenvector of eigenvalue ≈ 1; maps are zero where that eigenvalue is below `crop` (no object).
  Σₙ|Sₙ|² = 1 inside the object, so SENSE with these maps reconstructs the RSS image, as fastMRI's target.
- `MapsCache`: per-slice maps kept in memory (the most recently used `memory_items`: a knee slice's 15 maps
  take 14 MB), and on disk (`.npy`, written atomically) when given a folder, keyed by the volume's path,
  the slice and the estimation settings.

Maps are estimated on the grid the model works on (after the readout crop, see `training.fastmri`).
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..physics.kspace import COIL_MAP_METHODS as METHODS
from ..training.atomic import write_atomically

Block = tuple[tuple[int, int], tuple[int, int]]  # ((first row, rows), (first column, columns)) fully sampled


def _acs_only(kspace: np.ndarray, block: Block) -> np.ndarray:
    (r0, rn), (c0, cn) = block
    acs = np.zeros_like(kspace)
    acs[..., r0:r0 + rn, c0:c0 + cn] = kspace[..., r0:r0 + rn, c0:c0 + cn]
    return acs


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def acs_images(kspace: np.ndarray, block: Block) -> np.ndarray:
    """Low-resolution coil images (coils, H, W) from the fully sampled `block` of k-space alone."""
    return _ifft2c(_acs_only(np.asarray(kspace, dtype=np.complex128), block))


def acs_maps(kspace: np.ndarray, block: Block) -> np.ndarray:
    """(coils, H, W) complex64 from k-space (coils, H, W) fully sampled in `block` (the ACS)."""
    images = acs_images(kspace, block)
    rss = np.sqrt((np.abs(images) ** 2).sum(0, keepdims=True))
    return (images / np.maximum(rss, 1e-12 * rss.max())).astype(np.complex64)


def espirit_maps(kspace: np.ndarray, block: Block, kernel_width: int = 6, thresh: float = 0.02,
                 crop: float = 0.95, max_iter: int = 100) -> np.ndarray:
    """(coils, H, W) complex64 ESPIRiT maps from the ACS block (see the module docstring)."""
    from sigpy.mri.app import EspiritCalib  # imported here: sigpy (numba) is slow to import

    H, W = kspace.shape[-2:]
    (r0, rn), (c0, cn) = block
    count = min(rn, cn)
    # sigpy's calibration block is the centred count x count square: it must lie inside the ACS block, and
    # hold enough kernel positions for the subspace (below 2 kernel widths every map gets cropped).
    if count < 2 * kernel_width:
        raise ValueError(f"ESPIRiT needs at least 2*kernel_width={2 * kernel_width} ACS lines, got {count}: raise "
                         "the mask's center_fraction or use coil_maps=acs")
    if not (r0 <= H // 2 - count // 2 and H // 2 - count // 2 + count <= r0 + rn
            and c0 <= W // 2 - count // 2 and W // 2 - count // 2 + count <= c0 + cn):
        raise ValueError(f"ESPIRiT: the centred {count}x{count} calibration block is not inside the ACS block {block}")
    acs = _acs_only(np.asarray(kspace, dtype=np.complex64), block)
    maps = EspiritCalib(acs, calib_width=count, thresh=thresh, kernel_width=kernel_width, crop=crop,
                        max_iter=max_iter, show_pbar=False).run()
    return np.asarray(maps).astype(np.complex64)


def estimate_maps(kspace: np.ndarray, method: str, block: Block, **espirit) -> np.ndarray:
    if method == "espirit":
        return espirit_maps(kspace, block, **espirit)
    if method == "acs":
        return acs_maps(kspace, block)
    raise ValueError(f"coil_maps must be one of {', '.join(METHODS)}, got {method!r}")


def relative_error(estimated: np.ndarray, true: np.ndarray, support: np.ndarray | None = None) -> float:
    """‖Ŝ − e^{iθ}S̃‖ / ‖S̃‖ over `support` (default: where Ŝ ≠ 0), S̃ = S / RSS(S) the normalised true maps and
    θ per pixel the best phase (maps are defined up to one phase per pixel)."""
    est, true = np.asarray(estimated, np.complex128), np.asarray(true, np.complex128)
    true = true / np.maximum(np.sqrt((np.abs(true) ** 2).sum(0, keepdims=True)), 1e-30)
    phase = np.exp(1j * np.angle((est * true.conj()).sum(0)))
    if support is None:
        support = np.abs(est).sum(0) > 0
    if not support.any():
        raise ValueError("relative_error: empty support (the estimated maps are zero everywhere)")
    return float(np.linalg.norm((est - true * phase)[:, support]) / np.linalg.norm(true[:, support]))


class MapsCache:
    """Maps per (volume, slice, settings): in memory, and in `folder` when given (reused by later runs)."""

    def __init__(self, folder: str | Path | None = None, memory_items: int = 256):
        self.folder = None if folder in (None, "") else Path(folder).expanduser()
        self.memory_items = int(memory_items)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    @staticmethod
    def key(volume: str | Path, slice_index: int, settings: dict) -> str:
        ident = (str(Path(volume).resolve()), sorted(settings.items()))
        digest = hashlib.sha1(repr(ident).encode()).hexdigest()[:12]
        return f"{Path(volume).stem}_{int(slice_index):04d}_{digest}"

    def get(self, key: str, compute) -> np.ndarray:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.folder / f"{key}.npy" if self.folder is not None else None
        if path is not None and path.is_file():
            maps = np.load(path)
        else:
            maps = compute()
            if path is not None:
                buf = io.BytesIO()
                np.save(buf, maps)
                write_atomically(path, lambda f: f.write(buf.getvalue()))
        self._memory[key] = maps
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
        return maps
