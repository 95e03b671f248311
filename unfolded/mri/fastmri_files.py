"""fastMRI's .h5 layout: what a volume file holds, read lazily (one slice at a time).

A file is one volume: `kspace` (slices, coils, H, W) complex64 for multi-coil or (slices, H, W) for
single-coil, H the readout (oversampled ×2 in the knee data: 640) and W the phase encoding (368 …);
targets `reconstruction_rss` (multi-coil) / `reconstruction_esc` (single-coil), (slices, h, w) float32,
the magnitude image centre-cropped to the reconstruction size (320×320); attributes `acquisition`, `max`,
`norm`, `patient_id`; and `ismrmrd_header`, an ISMRMRD XML document from which fastMRI's `SliceDataset`
reads the encoding size, the reconstruction size and the acquired phase-encoding lines:
padding_left = W//2 − center, padding_right = padding_left + maximum + 1 (columns outside are zero-filled).
`minimal_header` writes only those elements (real files have many more); `read_volume_info` parses them
the way fastMRI does.
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
    target_key: str
    target_shape: tuple[int, int]
    encoding_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    attrs: dict = field(default_factory=dict)


def _query(root: ET.Element, path: list[str], where: Path) -> int:
    node = root.find("." + "".join(f"//ns:{p}" for p in path), {"ns": NAMESPACE})
    if node is None or node.text is None:
        raise FastMRIFileError(f"{where}: ismrmrd_header has no {'/'.join(path)}")
    return int(node.text)


def read_volume_info(path: str | Path, target_key: str = "reconstruction_rss") -> VolumeInfo:
    """Shapes, header and attributes of one file, without reading any k-space."""
    import h5py

    path = Path(path)
    try:
        hf = h5py.File(path, "r")
    except OSError as e:
        raise FastMRIFileError(f"{path}: not a readable HDF5 file ({e})") from None
    with hf:
        for key in ("kspace", target_key, "ismrmrd_header"):
            if key not in hf:
                raise FastMRIFileError(f"{path}: no '{key}' dataset (has: {', '.join(sorted(hf.keys()))})")
        kspace, target = hf["kspace"], hf[target_key]
        if kspace.ndim not in (3, 4) or not np.issubdtype(kspace.dtype, np.complexfloating):
            raise FastMRIFileError(f"{path}: 'kspace' must be complex (slices, coils, H, W) or (slices, H, W), "
                                   f"got {kspace.dtype} {kspace.shape}")
        if target.ndim != 3 or target.shape[0] != kspace.shape[0]:
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
        return VolumeInfo(path, int(kspace.shape[0]), kspace.ndim == 4, tuple(kspace.shape[1:]), target_key,
                          tuple(target.shape[1:]), enc, rec, padding_left, padding_right, attrs)


def read_slice(info: VolumeInfo, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(k-space (coils, H, W) complex64 — one coil for single-coil files —, target (h, w) float32) of one
    slice; the file is opened for this read only (safe in DataLoader workers)."""
    import h5py

    with h5py.File(info.path, "r") as hf:
        kspace = np.asarray(hf["kspace"][index])
        target = np.asarray(hf[info.target_key][index])
    return (kspace if info.multicoil else kspace[None]), target
