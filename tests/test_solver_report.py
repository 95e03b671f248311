"""Solver trouble: unconverged CG solves during training are reported once per epoch, with counts."""

import logging
import re

from unfolded.training.config import compose
from unfolded.training.pipeline import run

# HQS against a valid blur: every iteration solves (AᵀA + I/γ)x = b by CG, capped here at 1 iteration.
TINY = ["algo=hqs", "algo.max_iter=2", "physics.max_iter=1", "physics.tol=1e-12", "algo.prior.denoiser.depth=3",
        "algo.prior.denoiser.nf=8", "logger=csv", "data.batch_size=2", "data.crop_size=32", "data.image_size=64",
        "data.eval_size=48", "data.val_images=[chelsea]", "data.test_images=[camera]", "data.samples_per_epoch=8",
        "trainer.val_check_interval=4", "trainer.max_steps=8", "module.tikhonov_lambdas=[0.1,1.0]",
        "module.tikhonov_refine=0", "module.tikhonov_max_iter=50", "test=false",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


def test_unconverged_solves_reported_once_per_epoch_with_counts(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unfolded.training.module"):
        _, metrics = run(compose(TINY, tmp_path))
    lines = [r.getMessage() for r in caplog.records if "solves unconverged" in r.getMessage()]
    assert len(lines) == 2, lines  # 8 steps = 2 epochs of 4 steps: one line each
    for epoch, line in enumerate(lines):
        assert line.startswith(f"epoch {epoch} (step {4 * (epoch + 1)}):"), line
        # 4 steps x 2 HQS iterations = 8 forward CG solves per epoch, all stopped after 1 iteration
        m = re.search(r"(\d+) of (\d+) cg_forward solves unconverged \(worst relative residual ([0-9.e+-]+)\)", line)
        assert m and m.group(1) == m.group(2) == "8" and float(m.group(3)) > 1e-12, line
    assert metrics["solver/epoch/cg_forward/unconverged"] == 8


def test_converged_solves_stay_quiet(tmp_path, caplog):
    cfg = [o for o in TINY if not o.startswith(("physics.max_iter", "physics.tol"))] + ["trainer.max_steps=4"]
    with caplog.at_level(logging.INFO, logger="unfolded.training.module"):
        _, metrics = run(compose(cfg, tmp_path))
    assert not [r for r in caplog.records if "unconverged" in r.getMessage()]
    report = [r.getMessage() for r in caplog.records if "reached their tolerance" in r.getMessage()]
    assert len(report) == 1 and re.search(r"cg_forward 8/8\b", report[0]), report  # 4 steps x 2 iterations
    assert metrics["solver/epoch/cg_forward/unconverged"] == 0
