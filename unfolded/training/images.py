"""Pictures as tensors: the bundled ones (scikit-image's, and matplotlib's MRI slice), picture files read and
written, conversion of any image array to (channels, H, W) in [0, 1], resizing and centre crops. No network,
ever.

`channels`: 1 grayscale, 3 colour, or 2 complex for MRI: a grayscale picture is the magnitude of a
complex image with zero phase, stored as (real, imaginary) = (picture, 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .atomic import write_atomically
from .errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
CHANNELS = "1 (grayscale), 2 (complex, for MRI) or 3 (colour)"


def read_picture(path) -> np.ndarray:
    """A picture file as an array for `to_tensor`: grayscale or RGB; 16-bit pictures as floats in [0, 1].
    Raises OSError for a file that is not a readable picture."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode not in ("L", "I;16", "I", "F") else im
        arr = np.asarray(im)
        if im.mode in ("I;16", "I"):
            arr = arr.astype(np.float32) / (65535.0 if im.mode == "I;16" else max(float(arr.max()), 1.0))
    return arr


def to_uint8(img: Tensor) -> np.ndarray:
    """An image (1 or 3, H, W) in [0, 1] as an (H, W, 1 or 3) uint8 array."""
    arr = img.detach().float().clamp(0, 1).cpu().numpy()
    arr = np.transpose(arr, (1, 2, 0)) if arr.shape[0] in (1, 3) else arr[0][..., None]
    return (arr * 255).round().astype(np.uint8)


def write_png(path, img: Tensor):
    """An image (1 or 3, H, W) in [0, 1] as an 8-bit PNG, written atomically; returns the path."""
    from PIL import Image

    arr = to_uint8(img)
    arr = np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    return write_atomically(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))


def mri_slice() -> np.ndarray:
    """The brain MRI slice shipped with matplotlib (`s1045.ima.gz`: 256x256 big-endian uint16), scaled
    so that its maximum is 1 (float32)."""
    import gzip

    from matplotlib import cbook

    with cbook.get_sample_data("s1045.ima.gz") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # some matplotlib versions hand back the compressed stream
        raw = gzip.decompress(raw)
    img = np.frombuffer(raw, ">u2").reshape(256, 256).astype(np.float32)
    return img / img.max()


def bundled_loaders() -> dict:
    from skimage import data as sk

    loaders = {name: getattr(sk, name) for name in (
        "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
        "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
        "rocket", "text",
    )}
    loaders["motorcycle"] = lambda: sk.stereo_motorcycle()[0]
    loaders["mri_slice"] = mri_slice  # matplotlib's, not scikit-image's
    return loaders


def bundled_names() -> list[str]:
    """Names accepted in `train_images`, `val_images`, `test_images` of `data=bundled`."""
    return sorted(bundled_loaders())


def to_tensor(img: np.ndarray, channels: int) -> Tensor:
    """(H, W[, C]) array of any integer/float/bool type → (channels, H, W) float32 tensor in [0, 1]
    (channels=2: the grayscale picture as the real part, zero imaginary part)."""
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    else:
        img = img.astype(np.float32)
    if img.ndim == 3 and img.shape[2] == 4:  # drop alpha
        img = img[..., :3]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        t = torch.from_numpy(np.ascontiguousarray(img))[None]
    elif img.ndim == 3 and img.shape[2] == 3:
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    else:
        raise ConfigError(f"unsupported image array of shape {img.shape}")
    if channels not in (1, 2, 3):
        raise ConfigError(f"data.channels must be {CHANNELS}, got {channels}")
    if channels in (1, 2) and t.shape[0] == 3:  # ITU-R 601 luma, as skimage.color.rgb2gray
        t = (0.2125 * t[0] + 0.7154 * t[1] + 0.0721 * t[2])[None]
    elif channels == 3 and t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    t = t.clamp(0, 1)
    if channels == 2:
        t = torch.cat((t, torch.zeros_like(t)))
    return t.contiguous()


def resize_short_side(t: Tensor, size: int | None) -> Tensor:
    """Resize (antialiased) so that the shorter side is `size` pixels; None keeps the image."""
    if size is None:
        return t
    h, w = t.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new == (h, w):
        return t
    out = torch.nn.functional.interpolate(t[None], size=new, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def center_crop(t: Tensor, size: int | None) -> Tensor:
    if size is None:
        return t
    h, w = t.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return t[..., top:top + size, left:left + size]
