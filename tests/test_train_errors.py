"""Each start-up configuration error stops the run before training with a one-line message."""

import pytest
import torch

from unfolded.training.config import compose
from unfolded.training.errors import ConfigError
from unfolded.training.pipeline import run

FAST = ["debug=fast", "algo.max_iter=2", "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


def fails(overrides, tmp_path, match):
    cfg = compose([*overrides, *FAST], tmp_path)
    with pytest.raises(ConfigError, match=match) as info:
        run(cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_unknown_key_in_a_constructor_group(tmp_path):
    msg = fails(["+algo.stepsiz=0.5"], tmp_path, r"unknown key 'algo\.stepsiz'")
    assert "stepsize" in msg  # lists the valid arguments


def test_unknown_nested_key(tmp_path):
    fails(["+physics.noise_model.sigm=0.1"], tmp_path, r"unknown key 'physics\.noise_model\.sigm'")


def test_unknown_data_key(tmp_path):
    fails(["+data.crop=32"], tmp_path, r"unknown key 'data\.crop'")


def test_unknown_top_level_key(tmp_path):
    fails(["+sed=1"], tmp_path, r"unknown top-level key 'sed'")


def test_unknown_trainable_parameter(tmp_path):
    msg = fails(["algo.trainable_params=[stepsiz]"], tmp_path, r"unknown trainable parameter 'stepsiz'")
    assert "stepsize" in msg


def test_channels_mismatch(tmp_path):
    fails(["prior.denoiser.in_channels=3", "prior.denoiser.out_channels=3"], tmp_path,
          r"image channels \(data.channels=1\) != model channels")


def test_missing_folder(tmp_path):
    fails(["data=folder", f"data.path={tmp_path / 'nope'}"], tmp_path, r"no such folder")


def test_folder_not_given(tmp_path):
    fails(["data=folder"], tmp_path, r"data=folder needs data.path")


def test_empty_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    fails(["data=folder", f"data.path={tmp_path / 'imgs'}"], tmp_path, r"folder has no images")


def test_crop_larger_than_images(tmp_path):
    fails(["data.crop_size=100"], tmp_path, r"crop_size=100 is larger than training image")


def test_missing_checkpoint(tmp_path):
    fails([f"ckpt_path={tmp_path / 'none.ckpt'}"], tmp_path, r"no such file")


def test_checkpoint_from_a_different_model(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.prior.denoiser.in_conv.weight": torch.zeros(64, 1, 3, 3)},
                "unfolded_config": {"algo": {"_target_": "unfolded.optim.PGD"}}}, ckpt)
    msg = fails([f"ckpt_path={ckpt}", "train=false"], tmp_path, r"is from a different model")
    assert "PGD" in msg and "shape mismatch" in msg


def test_nothing_to_do(tmp_path):
    fails(["train=false", "test=false"], tmp_path, r"nothing to do")


def test_bad_constructor_value_is_one_line(tmp_path):
    fails(["physics.padding=bogus"], tmp_path, r"cannot build physics")
