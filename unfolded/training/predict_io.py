"""The files `predict.py` reads and writes.

Inputs: pictures (`images.IMAGE_EXTENSIONS`: PNG, TIFF, JPEG, ...; 8 or 16 bits) and arrays (`.npy` read
without pickles, `.pt` read with `weights_only=True`): (H, W) or (C, H, W) real, or complex; MRI k-space
as complex (H, W) / (coils, H, W) or real (2, H, W) / (2, coils, H, W); fastMRI volumes (`.h5`), read and
written by `predict_fastmri.py`. Outputs, written atomically:
`<stem>.npy` (float32, (H, W) for one channel, else (C, H, W); a complex image for MRI) and `<stem>.png`
(clamped to [0, 1]; MRI: magnitude).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import write_atomically
from .errors import ConfigError
from .images import IMAGE_EXTENSIONS, read_picture, to_tensor, write_png
from .metrics import display_image

PICTURES = IMAGE_EXTENSIONS
ARRAYS = (".npy", ".pt")
VOLUMES = (".h5",)  # fastMRI's layout: `predict_fastmri.py`


def input_files(path: str | Path) -> list[Path]:
    """A file, or the readable files of a folder (not its sub-folders), in name order."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in PICTURES + ARRAYS + VOLUMES)
        if not files:
            raise ConfigError(f"input={path}: no {'/'.join(s[1:] for s in PICTURES + ARRAYS + VOLUMES)} files in "
                              "this folder")
        return files
    raise ConfigError(f"input={path}: no such file or folder")


def _array(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)  # a pickled array could run code: refused
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot be read safely as a tensor file ({type(e).__name__})") from None
    if not torch.is_tensor(t):
        raise ValueError(f"holds a {type(t).__name__}, not a tensor")
    return t.numpy()


def read_input(path: Path, channels: int, kspace: bool) -> Tensor:
    """One input as a tensor: an image (channels, H, W) in the model's channel layout, or k-space in the
    physics' layout ((2, H, W) single-coil, (2, coils, H, W) multi-coil)."""
    suffix = path.suffix.lower()
    if suffix in PICTURES:
        if kspace:
            raise ValueError("a picture is not k-space: give MRI measurements as .npy/.pt, or simulate=true")
        return to_tensor(read_picture(path), channels)
    arr = _array(path)
    if np.iscomplexobj(arr):
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.complex64)
        if t.dim() not in (2, 3):
            raise ValueError(f"a complex array must be (H, W) or (coils, H, W), got {tuple(t.shape)}")
        return torch.stack((t.real, t.imag))
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    if kspace:
        if t.dim() not in (3, 4) or t.shape[0] != 2:
            raise ValueError(f"real k-space must be (2, H, W) or (2, coils, H, W), got {tuple(t.shape)}")
        return t
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"an image array must be (H, W) or (C, H, W), got {tuple(t.shape)}")
    if t.shape[0] != channels:
        if t.shape[0] == 1 and channels == 2:  # a magnitude image for a complex model: zero phase
            return torch.cat((t, torch.zeros_like(t)))
        raise ValueError(f"has {t.shape[0]} channel(s), the model takes {channels}")
    return t


def write_output(folder: Path, stem: str, x_hat: Tensor) -> list[Path]:
    """`<stem>.npy` and `<stem>.png` of one reconstruction (C, H, W); 2 channels are a complex image."""
    x = x_hat.detach().float().cpu()
    if x.shape[0] == 2:
        arr = torch.complex(x[0], x[1]).numpy().astype(np.complex64)
    else:
        arr = (x[0] if x.shape[0] == 1 else x).numpy().astype(np.float32)
    npy = write_atomically(folder / f"{stem}.npy", lambda f: np.save(f, arr, allow_pickle=False))
    png = write_png(folder / f"{stem}.png", display_image(x))
    return [npy, png]
