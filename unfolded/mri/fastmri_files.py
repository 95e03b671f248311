"""fastMRI's .h5 layout: what a volume file holds, read lazily (one slice at a time).

A file is one volume: `kspace` (slices, coils, H, W) complex64 for multi-coil or (slices, H, W) for
single-coil, H the readout (oversampled ×2 in the knee data: 640) and W the phase encoding (368 …);
targets `reconstruction_rss` (multi-coil) / `reconstruction_esc` (single-coil), (slices, h, w) float32,
the magnitude image centre-cropped to the reconstruction size (320×320); attributes `acquisition`, `max`,
`norm`, `patient_id`; and `ismrmrd_header`, an ISMRMRD XML document from which fastMRI's `SliceDataset`
reads the encoding size, the reconstruction size and the acquired phase-encoding lines:
padding_left = W//2 − center, padding_right = padding_left + maximum + 1 (columns outside are zero-filled).
fastMRI's test and challenge files are already undersampled: no target, and a `mask` dataset (W,) of the
acquired columns (attributes `acceleration`, `num_low_frequency`). `minimal_header` writes only the header
elements above (real files have many more); `read_volume_info` parses them the way fastMRI does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")


class FastMRIFileError(ValueError):
    """A file that is not a usable fastMRI volume (the message names the file and what is wrong)."""


def minimal_header(encoding_size: tuple[int, int], recon_size: tuple[int, int], lines: int, center: int) -> bytes:
    """ISMRMRD XML with the elements fastMRI reads: encodedSpace/reconSpace matrix sizes (x = readout,
    y = phase encoding, z = 1) and kspace_encoding_step_1 limits (`lines` acquired, k-space centre at
    acquired line `center`)."""
    def size(tag: str, xy) -> str:
        return f"<{tag}><matrixSize><x>{xy[0]}</x><y>{xy[1]}</y><z>1</z></matrixSize></{tag}>"

    limits = (f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{lines - 1}</maximum>"
              f"<center>{center}</center></kspace_encoding_step_1></encodingLimits>")
    return (f'<?xml version="1.0" encoding="utf-8"?><ismrmrdHeader xmlns="{NAMESPACE}"><encoding>'
            f"{size('encodedSpace', encoding_size)}{size('reconSpace', recon_size)}{limits}"
            "</encoding></ismrmrdHeader>").encode()


@dataclass(frozen=True)
class VolumeInfo:
    path: Path
    num_slices: int
    multicoil: bool
    kspace_shape: tuple[int, ...]  # of one slice: (coils, H, W) or (H, W)
    target_key: str | None  # None: a file without a target (fastMRI's test and challenge files)
    target_shape: tuple[int, int]  # of the target, else the header's reconstruction size
    encoding_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    attrs: dict = field(default_factory=dict)
    has_mask: bool = False  # a `mask` dataset: the k-space is already undersampled (test and challenge files)


def _query(root: ET.Element, path: list[str], where: Path) -> int:
    node = root.find("." + "".join(f"//ns:{p}" for p in path), {"ns": NAMESPACE})
    if node is None or node.text is None:
        raise FastMRIFileError(f"{where}: ismrmrd_header has no {'/'.join(path)}")
    return int(node.text)


def read_volume_info(path: str | Path, target_key: str | None = "reconstruction_rss",
                     require_target: bool = True) -> VolumeInfo:
    """Shapes, header and attributes of one file, without reading any k-space. With `require_target=False`
    a file without `target_key` is read too (target_key None, target_shape the header's reconstruction
    size); target_key None then takes the file's target by fastMRI's rule (`reconstruction_esc` for
    single-coil files that have it, else `reconstruction_rss`)."""
    import h5py

    path = Path(path)
    try:
        hf = h5py.File(path, "r")
    except OSError as e:
        raise FastMRIFileError(f"{path}: not a readable HDF5 file ({e})") from None
    with hf:
        if target_key is None and "kspace" in hf:
            single = hf["kspace"].ndim == 3 and "reconstruction_esc" in hf
            target_key = "reconstruction_esc" if single else "reconstruction_rss"
        if not require_target and (target_key is None or target_key not in hf):
            target_key = None
        for key in ("kspace", target_key, "ismrmrd_header"):
            if key is not None and key not in hf:
                raise FastMRIFileError(f"{path}: no '{key}' dataset (has: {', '.join(sorted(hf.keys()))})")
        kspace = hf["kspace"]
        if kspace.ndim not in (3, 4) or not np.issubdtype(kspace.dtype, np.complexfloating):
            raise FastMRIFileError(f"{path}: 'kspace' must be complex (slices, coils, H, W) or (slices, H, W), "
                                   f"got {kspace.dtype} {kspace.shape}")
        target = hf[target_key] if target_key is not None else None
        if target is not None and (target.ndim != 3 or target.shape[0] != kspace.shape[0]):
            raise FastMRIFileError(f"{path}: '{target_key}' must be (slices, h, w) with {kspace.shape[0]} slices, "
                                   f"got {target.shape}")
        try:
            root = ET.fromstring(hf["ismrmrd_header"][()])
        except ET.ParseError as e:
            raise FastMRIFileError(f"{path}: ismrmrd_header is not XML ({e})") from None
        enc = tuple(_query(root, ["encoding", "encodedSpace", "matrixSize", a], path) for a in "xyz")
        rec = tuple(_query(root, ["encoding", "reconSpace", "matrixSize", a], path) for a in "xyz")
        lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
        padding_left = enc[1] // 2 - _query(root, lims + ["center"], path)
        padding_right = padding_left + _query(root, lims + ["maximum"], path) + 1
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                 for k, v in hf.attrs.items()}
        has_mask = "mask" in hf
        if has_mask and hf["mask"].shape != (kspace.shape[-1],):
            raise FastMRIFileError(f"{path}: 'mask' must be one value per phase-encoding column "
                                   f"({kspace.shape[-1]},), got {hf['mask'].shape}")
        shape = tuple(target.shape[1:]) if target is not None else rec[:2]
        return VolumeInfo(path, int(kspace.shape[0]), kspace.ndim == 4, tuple(kspace.shape[1:]), target_key,
                          shape, enc, rec, padding_left, padding_right, attrs, has_mask)


def read_slice(info: VolumeInfo, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(k-space (coils, H, W) complex64 — one coil for single-coil files —, target (h, w) float32 or None
    without one) of one slice; the file is opened for this read only (safe in DataLoader workers)."""
    import h5py

    with h5py.File(info.path, "r") as hf:
        kspace = np.asarray(hf["kspace"][index])
        target = np.asarray(hf[info.target_key][index]) if info.target_key is not None else None
    return (kspace if info.multicoil else kspace[None]), target


def read_mask(info: VolumeInfo) -> np.ndarray:
    """The file's own sampling mask (W,) bool: the phase-encoding columns its k-space holds."""
    import h5py

    with h5py.File(info.path, "r") as hf:
        return np.asarray(hf["mask"][()]).astype(bool)
