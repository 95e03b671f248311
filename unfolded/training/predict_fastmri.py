"""fastMRI .h5 files in `predict.py`: a model trained with `physics=fastmri` applied to volumes stored as
fastMRI stores them, written as fastMRI's submissions are.

Per volume, slice by slice (the file is read one slice at a time): the k-space is undersampled as follows,
then measured exactly as in training (`KspaceMeasurements`: readout crop, the per-slice scale s and the
coil maps estimated from the ACS lines, y = M ⊙ k / s), reconstructed with the model's start x₀, and
|x̂|·s centre-cropped to the target size (the target's, else the header's reconstruction size; a square
of the image's width when that is narrower, as fastMRI's `run_pretrained_varnet` crops).

- A file with a `mask` dataset (fastMRI's test and challenge files) is already undersampled: its own mask
  is used, and its ACS block is the run of sampled columns around the centre.
- A file without one (fastMRI's train and validation files) is fully sampled: the model's stored mask
  (`physics.mask`) is applied, drawn as the training's test split draws it (slice i of a file is test
  sample i under the model's `eval_seed`), zero outside the acquired columns.

Output: `<output>/reconstructions/<file name>.h5` with `reconstruction` (slices, h, w) float32. A file
with a target (`reconstruction_rss`, or `reconstruction_esc` single-coil) is scored with fastMRI's volume
NMSE/PSNR/SSIM (`mri.metrics`) beside the zero-filled baselines; `fastmri_metrics.json` holds them.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..metrics import magnitude
from ..mri.fastmri_files import VolumeInfo, read_mask, read_slice, read_volume_info
from ..mri.metrics import center_crop, volume_metrics
from .atomic import write_atomically
from .baselines import baseline_reconstructions
from .fastmri import crop_readout
from .fastmri_eval import NAMES, mean_over_volumes
from .kspace_measurements import KspaceMeasurements
from .logs import echo
from .seeding import EVAL_SEED
from .simulation import is_measured

log = logging.getLogger(__name__)
SUFFIX = ".h5"


def is_fastmri_model(rec) -> bool:
    """A model trained with `physics=fastmri` (its physics measures k-space files)."""
    return is_measured(rec.physics_bank.fixed)


def centre_block(columns: np.ndarray, H: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The ACS block of a file's own column mask: all rows × the sampled columns centred on W/2 (the widest
    run symmetric about the centre, where fastMRI's masks put their low frequencies)."""
    W, c = len(columns), len(columns) // 2
    if not columns[c]:
        raise ValueError("its mask does not sample the k-space centre (no ACS lines to estimate coil maps)")
    left = c - int(np.argmin(columns[c::-1])) + 1 if not columns[:c + 1].all() else 0  # the run's first column
    right = c + int(np.argmin(columns[c:])) if not columns[c:].all() else W  # one past its last column
    half = min(c - left, right - c)
    return (0, H), (c - half, 2 * half)


class VolumePredictor:
    """Reconstructs the volumes of one fastMRI-trained model (`rec`), with the model's stored settings."""

    def __init__(self, rec, device: str | torch.device = "cpu"):
        if not is_fastmri_model(rec):
            raise ValueError("a fastMRI .h5 file needs a model trained with physics=fastmri")
        self.rec, self.device = rec, torch.device(device)
        seed = int((rec.config.get("module") or {}).get("eval_seed", EVAL_SEED))
        self.measurements = KspaceMeasurements(rec.physics_bank.fixed, None, seed)
        self.readout_crop = bool((rec.config.get("data") or {}).get("readout_crop", True))

    def _slice(self, info: VolumeInfo, s: int, columns: np.ndarray | None):
        """(y, physics, s, target) of slice s, measured as in training."""
        kspace, target = read_slice(info, s)  # (coils, H, W) complex
        h = info.target_shape[0]
        if self.readout_crop and kspace.shape[-2] > h:
            kspace = crop_readout(kspace, h)
        H, W = kspace.shape[-2:]
        if columns is None:  # fully sampled: the model's mask, as its test split draws it
            mask, block = self.measurements.mask((H, W), s, "test", (info.padding_left, info.padding_right)), None
        else:
            mask = torch.from_numpy(columns).to(torch.get_default_dtype()).expand(H, W).clone()
            block = centre_block(columns, H)
        kspace = kspace * mask.numpy()  # what the scanner gave: s and the maps are estimated from y alone
        scale, maps = self.measurements.scale_and_maps(kspace, str(info.path), s, info.multicoil, block)
        k = torch.from_numpy(np.stack((kspace.real, kspace.imag))).float()[None]  # (1, 2, coils, H, W)
        k = (k if info.multicoil else k[:, :, 0]).to(self.device)
        physics, y, scale = self.measurements.measure(k, mask[None], [scale], [maps])
        return y, physics, scale, target

    @torch.no_grad()
    def volume(self, path: Path) -> tuple[np.ndarray, dict | None, VolumeInfo]:
        """(reconstruction (slices, h, w) float32, {method: {nmse, psnr, ssim}} or None without a target)."""
        info = read_volume_info(path, None, require_target=False)
        columns = read_mask(info) if info.has_mask else None
        crop = tuple(info.target_shape)
        recons: dict[str, list] = {}
        targets = []
        for s in range(info.num_slices):
            y, physics, scale, target = self._slice(info, s, columns)
            methods = {"model": self.rec(y, physics)}
            if target is not None:  # the zero-filled baselines beside the model
                methods.update(baseline_reconstructions(physics, y, methods["model"].shape, None))
                targets.append(torch.from_numpy(target))
            for name, x in methods.items():
                image = magnitude(x.float())[0, 0] * scale.reshape(())
                if image.shape[-1] < crop[1]:  # fastMRI's rule (run_pretrained_varnet): a square of the width
                    crop = (image.shape[-1], image.shape[-1])
                recons.setdefault(NAMES.get(name, name), []).append(center_crop(image, crop).cpu())
        volume = torch.stack(recons["model"]).numpy().astype(np.float32)
        if not targets:
            return volume, None, info
        gt = torch.stack(targets)
        return volume, {name: volume_metrics(gt, torch.stack(r)) for name, r in recons.items()}, info

    def predict(self, path: Path, out: Path) -> tuple[Path, dict | None, VolumeInfo]:
        volume, metrics, info = self.volume(path)
        return write_reconstruction(out / "reconstructions" / path.name, volume), metrics, info


def write_reconstruction(path: Path, volume: np.ndarray) -> Path:
    """fastMRI's submission layout: one .h5 per volume with `reconstruction` (slices, h, w) float32."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as hf:
        hf.create_dataset("reconstruction", data=np.asarray(volume, dtype=np.float32))
    return write_atomically(path, lambda f: f.write(buf.getvalue()))


def report(volumes: dict[str, dict], out: Path) -> dict:
    """Means over the volumes with a target, printed and written to `<out>/fastmri_metrics.json`."""
    methods = mean_over_volumes(volumes)
    echo(f"fastMRI volume metrics, mean over {len(volumes)} volume(s) with a target:")
    echo(f"  {'method':<16} {'NMSE':>8} {'PSNR':>8} {'SSIM':>8}")
    for name, m in methods.items():
        echo(f"  {name:<16} {m['nmse']:8.4f} {m['psnr']:8.2f} {m['ssim']:8.4f}")
    result = {"methods": methods, "volumes": volumes}
    write_atomically(out / "fastmri_metrics.json", lambda f: f.write(json.dumps(result, indent=1).encode()))
    log.info("metrics: %s", out / "fastmri_metrics.json")
    return result
