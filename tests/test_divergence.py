"""Divergence: a NaN/inf training loss stops the run with a one-line `TrainingDiverged` (train.py: a
non-zero exit and one line) and keeps the last good checkpoint; with `module.on_nonfinite_loss=skip` the
batch is skipped and counted. A checkpoint with non-finite weights is never written."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from unfolded.training.config import compose
from unfolded.training.errors import ConfigError, TrainingDiverged
from unfolded.training.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["physics=denoise", "algo=pgd", "algo.max_iter=2", "algo.prior.denoiser.depth=3", "algo.prior.denoiser.nf=8",
        "logger=none", "data.batch_size=2", "data.crop_size=32", "data.image_size=64", "data.eval_size=48",
        "data.val_images=[chelsea]", "data.test_images=[camera]", "data.samples_per_epoch=8",
        "trainer.val_check_interval=2", "trainer.max_steps=6", "module.full_loss_weight=0",
        "module.tikhonov_lambdas=[0.1,1.0]", "module.tikhonov_refine=0",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


class NaNLossAt(nn.MSELoss):
    """Test helper: the MSE, but NaN (or inf) at the given training steps (one loss call per step); with
    `nan_gradient`, the loss stays finite and its gradient is NaN instead (the weights then become NaN)."""

    def __init__(self, steps=(), value: float = math.nan, nan_gradient: bool = False):
        super().__init__()
        self.steps, self.value, self.nan_gradient, self.calls = set(steps), value, nan_gradient, 0

    def forward(self, input, target):
        loss = super().forward(input, target)
        bad = self.calls in self.steps and torch.is_grad_enabled()
        self.calls += 1
        if not bad:
            return loss
        if self.nan_gradient:
            return loss + torch.sqrt(0 * input.sum())  # value + 0; gradient 0 * inf = NaN
        return loss + self.value


def nan_at(steps, value="nan"):
    return [f"module.loss._target_={__name__}.NaNLossAt", f"+module.loss.steps={list(steps)}",
            f"+module.loss.value={value}"]


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        run(compose([*TINY, *nan_at([5])], tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and not isinstance(info.value, ConfigError)
    assert "training loss is NaN at step 5" in msg and "on_nonfinite_loss=skip" in msg
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"last good checkpoint: {last}" in msg
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4  # written at the validation of step 4; nothing after the NaN
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert not (tmp_path / "results.json").exists()


def test_inf_loss_is_named_too(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"training loss is infinite at step 0 .*no checkpoint was written"):
        run(compose([*TINY, *nan_at([0], "inf")], tmp_path))


def test_skip_leaves_out_the_bad_batches_and_counts_them(tmp_path):
    _, metrics = run(compose([*TINY, *nan_at([1, 3]), "module.on_nonfinite_loss=skip"], tmp_path))
    assert metrics["train/skipped_batches"] == 2
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["skipped_batches"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    # the two skipped batches made no optimizer step: Adam counted 4 of the 6
    state = ckpt["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == 4
    assert math.isfinite(metrics["test/psnr"])


def test_train_py_exits_non_zero_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", *TINY, *nan_at([1]), f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("training diverged: training loss is NaN at step 1"), proc.stderr[-2000:]


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    # step 2 has a finite loss but a NaN gradient: the weights after it are NaN, validated and checkpointed
    # at step 3 in the run below, then the loss of step 3 is NaN
    with pytest.raises(TrainingDiverged, match=r"at step 3.*last good checkpoint: \S+last.ckpt"):
        run(compose([*TINY, *nan_at([2]), "+module.loss.nan_gradient=true", "trainer.val_check_interval=1"],
                    tmp_path))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_checkpoint_hook_refuses_non_finite_weights():
    from unfolded.models import DnCNN
    from unfolded.optim import PGD, PnP
    from unfolded.physics import Denoising
    from unfolded.training import UnfoldedModule

    module = UnfoldedModule(PGD(prior=PnP(DnCNN(depth=2, nf=4, pretrained=None)), max_iter=1), Denoising())
    next(module.parameters()).data[0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"weight model\.\S+ is not finite at step 0; checkpoint not "
                                               r"written, no checkpoint was written yet"):
        module.on_save_checkpoint({"state_dict": module.state_dict()})


def test_bad_on_nonfinite_loss_value(tmp_path):
    with pytest.raises(ConfigError, match=r"on_nonfinite_loss must be 'stop' or 'skip', got 'ignore'"):
        run(compose([*TINY, "module.on_nonfinite_loss=ignore"], tmp_path))


def test_in_a_sweep_a_diverged_trial_fails_and_the_others_run(tmp_path):
    # Hydra multirun, two trials: the first diverges, the second is fine. train.py re-raises
    # TrainingDiverged inside a sweep (a sweeper such as Optuna's then records the trial as failed); the
    # basic sweeper still runs the rest of the batch and reports the failure at the end.
    proc = subprocess.run([sys.executable, "train.py", "--multirun", *TINY, "trainer.max_steps=2",
                           f"module.loss._target_={__name__}.NaNLossAt", "+module.loss.steps=[1],[]",
                           f"hydra.sweep.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "TrainingDiverged: training loss is NaN at step 1" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "0" / "results.json").exists()
    assert json.loads((tmp_path / "1" / "results.json").read_text())["global_step"] == 2
