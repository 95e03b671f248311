"""fastMRI's evaluation of a trained model on held-out volumes (`mri.metrics`): each slice's reconstruction
as a magnitude, back in the file's scale (× the slice's s), centre-cropped to the file's target; then NMSE,
PSNR and SSIM per volume against the file's `reconstruction_rss` (or `_esc`), averaged over volumes, as
fastMRI's `evaluate.py` does. Beside the model: fastMRI's zero-filled baseline (the RSS of the zero-filled
coil images), Aᵀy (the zero-filled image combined with the estimated maps) and CG-SENSE (Tikhonov with the
estimated maps, λ tuned on the validation slices: `baselines.py`).

`FastMRIVolumeMetrics` (a callback, in `data=fastmri`'s callbacks) runs it after testing, logs
`test/fastmri/<method>/<metric>` and writes `fastmri_metrics.json` in the run folder.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch

from ..metrics import magnitude
from ..mri.metrics import center_crop, volume_metrics
from .atomic import write_atomically
from .baselines import baseline_reconstructions
from .evaluation import reconstruct
from .simulation import initial_estimate

log = logging.getLogger(__name__)
NAMES = {"tikhonov": "cg_sense"}  # for multi-coil MRI, the Tikhonov baseline is CG-SENSE


@torch.no_grad()
def evaluate_volumes(module, datamodule, split: str = "test", lam: float | None = None) -> dict:
    """{'methods': {method: {nmse, psnr, ssim}} (means over volumes), 'volumes': {file: {method: {...}}}}."""
    slices: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    sim, t = module.simulator, module.tikhonov
    multicoil = getattr(datamodule, "multicoil", True)
    for batch in datamodule.eval_dataloader(split, shard=False):
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        x, physics, y = sim.batch(batch, split)
        x_hat, _ = reconstruct(module.model, y, physics, initial_estimate(module.init, y, physics))
        recs = {"model": x_hat, **baseline_reconstructions(physics, y, x.shape, lam, t["tol"], t["max_iter"])}
        scale = sim.scales(batch).to(x.device)
        for i, file in enumerate(batch["file"]):
            target = batch["target"][i]
            slices[file]["target"].append(target.cpu())
            for name, rec in recs.items():
                name = NAMES.get(name, name) if multicoil else name
                image = magnitude(rec[i:i + 1].float())[0, 0] * scale[i]
                slices[file][name].append(center_crop(image, tuple(target.shape)).cpu())
    volumes = {}
    for file, recs in slices.items():
        target = torch.stack(recs.pop("target"))
        volumes[Path(file).name] = {name: volume_metrics(target, torch.stack(r)) for name, r in recs.items()}
    return {"split": split, "tikhonov_lambda": lam, "methods": mean_over_volumes(volumes), "volumes": volumes}


def mean_over_volumes(volumes: dict[str, dict]) -> dict[str, dict[str, float]]:
    """{method: {nmse, psnr, ssim}} averaged over {file: {method: {...}}}, as fastMRI's `evaluate.py` does."""
    return {name: {m: sum(v[name][m] for v in volumes.values()) / len(volumes) for m in ("nmse", "psnr", "ssim")}
            for name in next(iter(volumes.values()))}


class FastMRIVolumeMetrics(pl.Callback):
    def __init__(self, output_dir: str | None = None, split: str = "test", filename: str = "fastmri_metrics.json"):
        self.output_dir, self.split, self.filename = output_dir, split, filename
        self.result: dict | None = None

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if not callable(getattr(pl_module.simulator, "scales", None)) or not hasattr(dm, "volumes"):
            return  # not real k-space data
        self.result = evaluate_volumes(pl_module, dm, self.split, pl_module.results.tikhonov_lambda)
        for name, values in self.result["methods"].items():
            for metric, value in values.items():
                pl_module.log(f"test/fastmri/{name}/{metric}", value, rank_zero_only=True)
        if trainer.is_global_zero:
            folder = Path(self.output_dir or trainer.default_root_dir)
            write_atomically(folder / self.filename,
                             lambda f: f.write(json.dumps(self.result, indent=1).encode()))
            log.info("fastMRI volume metrics (%s): %s", self.split, ", ".join(
                f"{n} PSNR {v['psnr']:.2f} SSIM {v['ssim']:.4f} NMSE {v['nmse']:.4f}"
                for n, v in self.result["methods"].items()))
