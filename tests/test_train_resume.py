"""Checkpoints: last + best written; resuming continues the step count and the metric history;
`train=false ckpt_path=...` only evaluates."""

import torch

from unfolded.training.config import compose
from unfolded.training.pipeline import run

TINY = ["physics=denoise", "algo=pgd", "algo.max_iter=2", "algo.prior.denoiser.depth=3", "algo.prior.denoiser.nf=8",
        "logger=csv", "data.batch_size=2", "data.crop_size=32", "data.image_size=64", "data.eval_size=48",
        "data.val_images=[chelsea]", "data.test_images=[camera]", "data.samples_per_epoch=8",
        "trainer.val_check_interval=2", "module.tikhonov_lambdas=[0.1,1.0]", "module.tikhonov_refine=0",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1"]


def test_resume_continues_steps_and_history(tmp_path):
    first = tmp_path / "first"
    cfg = compose([*TINY, "trainer.max_steps=4", "test=false"], first)
    _, m1 = run(cfg)
    assert m1["global_step"] == 4
    last, best = first / "checkpoints" / "last.ckpt", first / "checkpoints" / "best.ckpt"
    assert last.is_file() and best.is_file()
    assert not list((first / "checkpoints").glob("*.tmp"))  # atomic writes leave no temporary file
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    history = next(v for k, v in ckpt["callbacks"].items() if k.startswith("MetricHistory"))
    assert [r["step"] for r in history["val"]] == [2, 4]

    second = tmp_path / "second"
    cfg = compose([*TINY, "trainer.max_steps=8", f"ckpt_path={last}"], second)
    value, m2 = run(cfg)
    assert m2["global_step"] == 8
    ckpt2 = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    history2 = next(v for k, v in ckpt2["callbacks"].items() if k.startswith("MetricHistory"))
    assert [r["step"] for r in history2["val"]] == [2, 4, 6, 8]
    assert [s for s, _ in history2["train"]][:4] == [s for s, _ in history["train"]]
    assert len(history2["train"]) == 8
    # the optimizer state came back too (Adam's step counter continues)
    state = ckpt2["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == 8
    assert value is not None and "test/psnr" in m2


def test_evaluate_only(tmp_path):
    first = tmp_path / "first"
    run(compose([*TINY, "trainer.max_steps=2", "test=false"], first))
    best = first / "checkpoints" / "best.ckpt"
    value, metrics = run(compose([*TINY, "train=false", f"ckpt_path={best}",
                                  "optimized_metric=test/psnr_interior"], tmp_path / "eval"))
    assert metrics["global_step"] == 2  # the checkpoint's step: no training happened
    assert value == metrics["test/psnr_interior"]
    assert (tmp_path / "eval" / "results.json").is_file()


def test_last_checkpoint_follows_every_validation_even_without_improvement(tmp_path):
    """last.ckpt is the latest state, not the state when best.ckpt last improved. Monitoring with mode=min
    makes the rising validation PSNR of steps 4 and 6 "no improvement"; Lightning's save_last alone then
    leaves last.ckpt at step 2, so a resume would silently repeat steps."""
    cfg = compose([*TINY, "trainer.max_steps=6", "test=false", "callbacks.model_checkpoint.mode=min"], tmp_path)
    run(cfg)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 6
    assert best["global_step"] == 2
