"""Small fastMRI-layout volumes from a phantom, for tests and demos: `python -m unfolded.mri.generate out_dir`.

Each file is one volume (its own random phantom, phase and coil ring, seeded by (seed, file number)):
the object fills the middle half of the readout FOV (H rows), so the readout is oversampled ×2 as in the
knee data and the target is the centre crop; `kspace` = F(Sₙ x) + complex Gaussian noise (σ = `noise` ×
max|x| per pixel; the FFT is orthonormal, centred), with `pe_padding` unacquired zero columns on each side
(announced by the header's limits, as in real files); `reconstruction_rss` = RSS of the coil images,
centre-cropped to `recon_size`. Single-coil files (`--single-coil`) hold one uniform coil and
`reconstruction_esc` (= `reconstruction_rss`). The true coil maps and images are kept as the extra datasets
`simulated_coil_maps` (coils, H, W) and `simulated_image` (slices, H, W), which real files do not have.
Files are written atomically (built in memory, then `training.atomic`).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from ..training.atomic import write_atomically
from .fastmri_files import minimal_header
from .phantom import coil_maps, phantom_volume


def _fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _crop(x: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def simulate_volume(rng: np.random.Generator, num_slices: int = 4, num_coils: int = 6,
                    kspace_shape=(320, 184), recon_size=(160, 160), noise: float = 0.005,
                    pe_padding: int = 0, multicoil: bool = True) -> dict[str, np.ndarray]:
    H, W = (int(s) for s in kspace_shape)
    h, w = (int(s) for s in recon_size)
    if H % 2 or h > H // 2 or w > W - 2 * pe_padding or min(h, w) < 8:
        raise ValueError(f"kspace_shape {(H, W)} and recon_size {(h, w)}: need H even, 8 <= h <= H/2 (readout "
                         f"oversampled x2) and 8 <= w <= W - 2*pe_padding")
    image = np.zeros((num_slices, H, W), dtype=np.complex128)
    image[:, H // 4:H // 4 + H // 2] = phantom_volume(num_slices, (H // 2, W), rng)
    # the coils sit around the object, which fills half the readout FOV (extent 2 along the rows)
    maps = coil_maps(num_coils, (H, W), rng, extent=(2.0, 1.0)) if multicoil else np.ones((1, H, W), np.complex128)
    kspace = _fft2c(maps[None] * image[:, None])  # (slices, coils, H, W)
    sigma = noise * np.abs(image).max()
    kspace += sigma * (rng.normal(size=kspace.shape) + 1j * rng.normal(size=kspace.shape)) / np.sqrt(2)
    if pe_padding:
        kspace[..., :pe_padding] = 0
        kspace[..., W - pe_padding:] = 0
    target = _crop(np.sqrt((np.abs(_ifft2c(kspace)) ** 2).sum(1)), (h, w))
    return {"kspace": (kspace if multicoil else kspace[:, 0]).astype(np.complex64),
            "target": target.astype(np.float32), "maps": maps.astype(np.complex64),
            "image": image.astype(np.complex64)}


def write_volume(path: str | Path, vol: dict[str, np.ndarray], recon_size, pe_padding: int = 0,
                 acquisition: str = "CORPD_FBK", patient_id: str = "synthetic") -> Path:
    import h5py

    H, W = vol["kspace"].shape[-2:]
    multicoil = vol["kspace"].ndim == 4
    buf = io.BytesIO()
    with h5py.File(buf, "w") as hf:
        hf.create_dataset("kspace", data=vol["kspace"])
        hf.create_dataset("reconstruction_rss", data=vol["target"])
        if not multicoil:
            hf.create_dataset("reconstruction_esc", data=vol["target"])
        hf.create_dataset("ismrmrd_header", data=minimal_header((H, W), recon_size, W - 2 * pe_padding,
                                                                W // 2 - pe_padding))
        hf.create_dataset("simulated_coil_maps", data=vol["maps"])
        hf.create_dataset("simulated_image", data=vol["image"])
        hf.attrs["acquisition"] = acquisition
        hf.attrs["max"] = float(vol["target"].max())
        hf.attrs["norm"] = float(np.linalg.norm(vol["target"]))
        hf.attrs["patient_id"] = patient_id
    return write_atomically(path, lambda f: f.write(buf.getvalue()))


def generate(out_dir: str | Path, files: int = 8, slices: int = 4, coils: int = 6, kspace_shape=(320, 184),
             recon_size=(160, 160), noise: float = 0.005, pe_padding: int = 0, single_coil: bool = False,
             seed: int = 0, acquisition: str = "CORPD_FBK") -> list[Path]:
    """Write `files` volumes `<out_dir>/synthetic_{multicoil|singlecoil}_{k:03d}.h5`; returns their paths."""
    for name, value, low in (("files", files, 1), ("slices", slices, 1), ("coils", coils, 1),
                             ("pe_padding", pe_padding, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    kind = "singlecoil" if single_coil else "multicoil"
    paths = []
    for k in range(files):
        rng = np.random.default_rng([int(seed), k])
        vol = simulate_volume(rng, slices, coils, kspace_shape, recon_size, noise, pe_padding, not single_coil)
        paths.append(write_volume(Path(out_dir) / f"synthetic_{kind}_{k:03d}.h5", vol, recon_size, pe_padding,
                                  acquisition, patient_id=f"synthetic-{seed}-{k}"))
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m unfolded.mri.generate", description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--coils", type=int, default=6)
    p.add_argument("--kspace-shape", type=int, nargs=2, default=(320, 184), metavar=("H", "W"),
                   help="readout (oversampled x2) and phase-encoding size of the k-space")
    p.add_argument("--recon-size", type=int, nargs=2, default=(160, 160), metavar=("h", "w"))
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--pe-padding", type=int, default=0, help="unacquired zero columns on each side")
    p.add_argument("--single-coil", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        paths = generate(a.out_dir, a.files, a.slices, a.coils, tuple(a.kspace_shape), tuple(a.recon_size),
                         a.noise, a.pe_padding, a.single_coil, a.seed)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    print(f"wrote {len(paths)} file(s) to {a.out_dir}")


if __name__ == "__main__":
    main()
