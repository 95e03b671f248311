"""`trainer=ddp_sim` (2 CPU processes, DDP-spawn, gloo) against one process on the same data.

What "equal" means here. Two processes with `data.batch_size=2` and one process with `data.batch_size=4`
see, at every step, the same 4 training samples with the same noise (the data module gives process r the
samples r, r + 2 of each global batch; noise is seeded by the sample's number). Each process's loss is
the mean over its 2 samples and DDP averages the two gradients, which is the gradient of the mean over
the 4: the same optimisation, up to the order of floating-point sums. Validation and test split their
3 images 2 + 1 between the processes (no padding duplicate) and sum the per-image metrics over both.
So the weights and every metric agree to float32 rounding (asserted: 1e-5 relative on weights, 1e-4 dB
on PSNR), not bit for bit.
"""

import json

import pytest
import torch

from unfolded.training.config import compose
from unfolded.training.pipeline import run

TINY = ["physics=denoise", "algo=pgd", "algo.max_iter=2", "algo.prior.denoiser.depth=3", "algo.prior.denoiser.nf=8",
        "logger=none", "data.crop_size=32", "data.image_size=64", "data.eval_size=48",
        "data.val_images=[chelsea,coins,clock]", "data.test_images=[camera,moon,coffee]",
        "data.samples_per_epoch=16", "trainer.val_check_interval=2", "trainer.max_steps=6",
        "trainer.deterministic=true", "module.tikhonov_lambdas=[0.1,1.0]", "module.tikhonov_refine=0", "seed=3",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
METRICS = ("val/psnr", "val/psnr_interior", "val/ssim", "val/psnr_iter/1", "val/psnr_iter/2", "test/psnr",
           "test/psnr_interior", "test/ssim", "test/tikhonov/psnr", "test/adjoint/psnr", "test/tikhonov/lambda")


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    _, single = run(compose([*TINY, "data.batch_size=4"], tmp_path / "single"))
    _, ddp = run(compose([*TINY, "trainer=ddp_sim", "data.batch_size=2"], tmp_path / "ddp"))

    assert single["global_step"] == ddp["global_step"] == 6
    for key in METRICS:
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key
    w1 = torch.load(tmp_path / "single" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    w2 = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert w1["global_step"] == w2["global_step"] == 6
    for k, v in w1["state_dict"].items():
        torch.testing.assert_close(w2["state_dict"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # the weights did move: the comparison is not between two untrained models
    assert (w1["state_dict"]["model.prior.denoiser.out_conv.weight"].abs().max() > 0)

    # one results file, written by process 0, with every test image once and in order
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert [r["name"] for r in results["images"]] == ["camera", "moon", "coffee"]
    reference = json.loads((tmp_path / "single" / "results.json").read_text())
    for mine, theirs in zip(results["images"], reference["images"]):
        assert mine["model/psnr"] == pytest.approx(theirs["model/psnr"], abs=1e-4)


def test_ddp_config_composes_and_its_strategy_builds(tmp_path):
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import DDPStrategy

    from unfolded.training.checks import check_config

    cfg = compose(["trainer=ddp"], tmp_path)
    check_config(cfg)  # every key is an argument of its target
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.use_distributed_sampler is False
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, DDPStrategy) and strategy._process_group_backend == "nccl"


@pytest.mark.slow
def test_trainer_ddp_starts_its_processes_through_train_py(tmp_path):
    """`trainer=ddp` as on GPUs, but on 2 CPU processes: Lightning re-runs train.py for the second
    process (with Hydra's run folder); one results file, one checkpoint folder."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                           "trainer.strategy.process_group_backend=gloo", *TINY, "data.batch_size=2",
                           f"hydra.run.dir={tmp_path}"], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["global_step"] == 6 and [r["name"] for r in results["images"]] == ["camera", "moon", "coffee"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
