"""Coil maps estimated from the ACS lines of generated multi-coil files, against the simulated coils, and the
CG-SENSE baseline they give (fastMRI's volume PSNR/SSIM against `reconstruction_rss`, 4x random mask).

`python benchmarks/bench_fastmri_maps.py [folder]`: without a folder, writes the demo's 12 volumes
(experiment=varnet_fastmri_demo) to a temporary one and uses the last 2 (the demo's test files).
Maps: relative error ‖Ŝ − e^{iθ}S̃‖/‖S̃‖ on the object (|x| > 10 % of its max), S̃ the true maps normalised.
CG-SENSE: Tikhonov (mean-centred, baselines.py) with λ = 1e-3 (the demo's tuned value) to tol 1e-7.
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import torch

from unfolded.metrics import magnitude
from unfolded.mri.coil_maps import relative_error
from unfolded.mri.fastmri_files import read_volume_info
from unfolded.mri.generate import generate
from unfolded.mri.metrics import center_crop, volume_metrics
from unfolded.physics.kspace import KspacePhysics
from unfolded.physics.mri import MultiCoilMRI
from unfolded.training.baselines import tikhonov
from unfolded.training.fastmri import FastMRISlices, collate
from unfolded.training.kspace_measurements import KspaceMeasurements

MASK = {"pattern": "random", "acceleration": 4, "center_fraction": 0.08}
VARIANTS = {"espirit (crop 0)": ("espirit", {"crop": 0.0}), "espirit (crop 0.95)": ("espirit", {"crop": 0.95}),
            "acs low-res": ("acs", {})}


def main(folder: str | None = None, lam: float = 1e-3) -> dict:
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = tmp.name
        generate(folder, files=12, slices=4, coils=6, kspace_shape=(320, 184), recon_size=(160, 160), noise=0.005)
    files = sorted(Path(folder).glob("*.h5"))[-2:]
    errors, recs, targets = defaultdict(list), defaultdict(lambda: defaultdict(list)), defaultdict(list)
    for f in files:
        info = read_volume_info(f)
        with h5py.File(f) as hf:
            H = hf["simulated_coil_maps"].shape[-2]
            true = hf["simulated_coil_maps"][()][:, H // 4:H // 4 + H // 2]  # the readout-cropped grid
        ds = FastMRISlices([info], readout_crop=True)
        for s in range(info.num_slices):
            batch = collate([ds[s]])
            targets[f.name].append(batch["target"][0])
            obj = batch["image"][0, 0].numpy() > 0.1 * float(batch["image"].max())
            for name, (method, esp) in VARIANTS.items():
                meas = KspaceMeasurements(KspacePhysics(mask=MASK, coil_maps=method, espirit=esp), 0, 1234)
                x, physics, y = meas.batch(batch, "test")
                errors[name].append(relative_error(physics.coil_maps[0].numpy(), true, obj))
                scale = float(meas.scales(batch)[0])
                if name == next(iter(VARIANTS)):
                    zf = physics.A_adjoint(y, rss=True)
                    recs["zero-filled RSS"][f.name].append(center_crop(zf[0, 0] * scale, (160, 160)))
                    St = torch.from_numpy(true / np.sqrt((np.abs(true) ** 2).sum(0))).to(torch.complex64)[None]
                    exact = MultiCoilMRI(mask=physics.mask, coil_maps=St)
                    t = tikhonov(exact, y, x.shape, lam, 1e-7, 1000)
                    recs["CG-SENSE, true maps"][f.name].append(center_crop(magnitude(t)[0, 0] * scale, (160, 160)))
                t = tikhonov(physics, y, x.shape, lam, 1e-7, 1000)
                recs[f"CG-SENSE, {name}"][f.name].append(center_crop(magnitude(t)[0, 0] * scale, (160, 160)))
    out = {"map_error": {k: float(np.mean(v)) for k, v in errors.items()}, "volume_metrics": {}}
    for method, vols in recs.items():
        ms = [volume_metrics(torch.stack(targets[f]), torch.stack(v)) for f, v in vols.items()]
        out["volume_metrics"][method] = {k: float(np.mean([m[k] for m in ms])) for k in ("psnr", "ssim", "nmse")}
    print("coil maps vs simulated coils (relative error on the object, mean over slices):")
    for k, v in out["map_error"].items():
        print(f"  {k:22s} {v:.4f}")
    print("fastMRI volume metrics on the held-out volumes (4x random, center fraction 0.08):")
    for k, v in out["volume_metrics"].items():
        print(f"  {k:32s} PSNR {v['psnr']:.2f}  SSIM {v['ssim']:.4f}  NMSE {v['nmse']:.4f}")
    if tmp is not None:
        tmp.cleanup()
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
