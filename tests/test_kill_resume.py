"""Interruption: a training process killed with SIGKILL in the middle of an epoch and resumed from its last
checkpoint ends with the same weights and final metrics as an uninterrupted run; files on disk are never
truncated.

Deterministic CPU settings: `seed`, `trainer.deterministic=true`, no data workers. The training crops and
their noise are functions of the sample number (see unfolded/training/data.py), and the training loader
is resumable, so the resumed run sees the batches the uninterrupted one did.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from unfolded.training.atomic import write_atomically
from unfolded.training.config import compose
from unfolded.training.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
# 4 steps per epoch, a checkpoint (last.ckpt) at every validation, i.e. every 2 steps: steps 2 and 6 are
# in the middle of an epoch.
TINY = ["physics=denoise", "algo=pgd", "algo.max_iter=2", "algo.prior.denoiser.depth=3", "algo.prior.denoiser.nf=8",
        "logger=none", "data.batch_size=2", "data.crop_size=32", "data.image_size=64", "data.eval_size=48",
        "data.val_images=[chelsea]", "data.test_images=[camera]", "data.samples_per_epoch=8",
        "trainer.val_check_interval=2", "trainer.max_steps=10", "trainer.deterministic=true",
        "module.tikhonov_lambdas=[0.1,1.0]", "module.tikhonov_refine=0", "seed=3",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
STALL_STEP = 7  # the killed run stops responding before training step 7 (last checkpoint: step 6)


class StallAt(pl.Callback):
    """Test helper: the process hangs before training step `step` (mid-epoch), to be killed there."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1:
            print(f"stalling at step {trainer.global_step}, batch {batch_idx} of the epoch", flush=True)
            time.sleep(600)


def _wait_for_checkpoint(proc: subprocess.Popen, path: Path, step: int, timeout: float = 240) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before it could be killed: "
                                 f"{proc.stdout.read()}")
        if path.is_file():
            try:
                if torch.load(path, map_location="cpu", weights_only=False)["global_step"] >= step:
                    return
            except Exception:  # noqa: BLE001  (being replaced right now: os.replace is atomic, retry)
                pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of step {step} after {timeout} s")


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    _, expected = run(compose(TINY, reference))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *TINY, f"hydra.run.dir={killed}",
         f"+callbacks.stall._target_={__name__}.StallAt", f"+callbacks.stall.step={STALL_STEP}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = killed / "checkpoints" / "last.ckpt"
    try:
        _wait_for_checkpoint(proc, last, STALL_STEP - 1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == STALL_STEP - 1
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 2}]
    assert not (killed / "results.json").exists()

    # resume in the same output folder (as `train.py ckpt_path=... hydra.run.dir=<same>`)
    _, resumed = run(compose([*TINY, f"ckpt_path={last}"], killed))
    assert resumed["global_step"] == expected["global_step"] == 10
    for key in ("test/psnr", "test/psnr_interior", "test/ssim", "val/psnr", "val/psnr_interior"):
        assert resumed[key] == pytest.approx(expected[key], rel=0, abs=1e-6), key
    ref_w, res_w = _weights(reference / "checkpoints" / "last.ckpt"), _weights(last)
    assert ref_w.keys() == res_w.keys()
    for k in ref_w:
        torch.testing.assert_close(res_w[k], ref_w[k], rtol=0, atol=1e-6, msg=k)
    results = json.loads((killed / "results.json").read_text())
    assert results["summary"]["model/psnr"] == pytest.approx(expected["test/psnr"], abs=1e-6)


def test_interrupted_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    write_atomically(target, lambda f: torch.save({"step": 1}, f))

    def dies_half_way(f):
        f.write(b"\x80partial")
        raise KeyboardInterrupt  # as if the process were interrupted while saving

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, dies_half_way)
    assert torch.load(target, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the temporary file is gone too
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private temporary one
