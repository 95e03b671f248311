"""A trained model used outside training: `unfolded.load`, `predict.py`, exported model files, and files
from elsewhere that must never run code."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import unfolded
from unfolded.training import model_files
from unfolded.training.errors import ConfigError
from unfolded.training.inference import Reconstructor
from unfolded.training.predict_io import read_input

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["debug=fast", "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=2",
         "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-step training of the default problem (valid blur, mean_fill start), tested on 3 images."""
    out = tmp_path_factory.mktemp("run")
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), *SHORT, f"hydra.run.dir={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def predict(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_simulate_scores_the_model_as_the_training_test_did(run_dir, tmp_path):
    """The training's test images as files: `simulate=true` draws the same noise (test split, eval_seed) and
    starts from the same x₀, so the model's PSNR per image is the one in the run's results.json."""
    from unfolded.training.building import build
    from unfolded.training.config import compose

    cfg = compose(SHORT)
    dm = build(cfg.data, "data")
    images = tmp_path / "images"
    images.mkdir()
    for i, (name, x) in enumerate(zip(dm.names["test"], dm.images["test"])):
        np.save(images / f"{i}_{name}.npy", x.numpy())
    res = predict(f"ckpt_path={run_dir}", f"input={images}", f"output={tmp_path / 'out'}", "simulate=true")
    assert res.returncode == 0, res.stderr[-3000:]
    mine = json.loads((tmp_path / "out" / "metrics.json").read_text())["images"]
    theirs = json.loads((run_dir / "results.json").read_text())["images"]
    assert len(mine) == len(theirs) == 3
    for a, b in zip(mine, theirs):
        for key in ("model/psnr", "model/psnr_interior", "adjoint/psnr"):
            assert a[key] == pytest.approx(b[key], abs=1e-3), (a["name"], key)
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000
    assert "Tikhonov" in res.stdout and "chosen on these images" in res.stdout


def test_measurements_give_images_of_the_full_size(run_dir, tmp_path):
    """A valid blur's measurement is smaller than the image: x̂ has the image's size (y + filter − 1). A
    16-bit PNG and an array are read; a file that does not fit is one line naming it, the others run."""
    from PIL import Image

    rec = unfolded.load(run_dir)
    x = torch.rand(1, 1, 40, 52)
    _, y = rec.simulate(x)
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", y[0, 0].numpy())
    Image.fromarray((y[0, 0].clamp(0, 1).numpy() * 65535).astype(np.uint16)).save(inputs / "b.png")
    np.save(inputs / "c_bad.npy", np.zeros((2, 3, 4, 5)))
    res = predict(f"ckpt_path={run_dir}", f"input={inputs}", f"output={tmp_path / 'out'}")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() + res.stdout.splitlines() if "ERROR" in line]
    assert any("c_bad.npy" in line and "(H, W) or (C, H, W)" in line for line in errors)
    a = np.load(tmp_path / "out" / "a.npy")
    b = np.load(tmp_path / "out" / "b.npy")
    assert a.shape == b.shape == (40, 52) and a.dtype == np.float32
    with torch.no_grad():
        expected = rec(y)[0, 0].numpy()
    assert np.abs(a - expected).max() < 1e-5
    assert np.abs(b - expected).max() < 0.02  # the same y, quantised to 16 bits
    assert Image.open(tmp_path / "out" / "a.png").size == (52, 40)
    assert (tmp_path / "out" / "predict.log").read_text().count("c_bad.npy") >= 1


def test_the_start_x0_of_training_is_kept(run_dir):
    """rec(y) starts from the training's `mean_fill` x₀; the model called on y alone starts from Aᵀy."""
    rec = unfolded.load(run_dir)
    assert rec.init == "mean_fill"
    physics, y = rec.simulate(torch.rand(1, 1, 40, 40))
    with torch.no_grad():
        x0 = physics.A_adjoint(y) + y.mean() * (1 - physics.A_adjoint(torch.ones_like(y)))
        assert torch.equal(rec(y), rec.model(y, physics, init=x0))
        assert (rec(y) - rec.model(y, physics)).abs().max() > 1e-3


def test_export_then_load_gives_identical_outputs(run_dir, tmp_path):
    from unfolded.export import main as export
    from unfolded.training import UnfoldedModule

    file = tmp_path / "model.safetensors"
    assert export([str(run_dir), str(file)]) == 0
    a, b = unfolded.load(run_dir), unfolded.load(file)
    module = UnfoldedModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    y = torch.rand(2, 1, 30, 34)
    with torch.no_grad():
        assert torch.equal(a(y), b(y))
        assert torch.equal(a(y), module(y, module.physics_for(torch.empty(1, 1, 42, 46))))
    assert b.info["test_summary"]["model/psnr"] == json.loads((run_dir / "results.json").read_text())[
        "summary"]["model/psnr"]
    assert export([str(run_dir), str(tmp_path / "model.pt")]) == 2  # the format is in the name


def test_physics_keys_can_be_replaced_and_unknown_ones_are_named(run_dir):
    rec = unfolded.load(run_dir, physics={"noise_model": {"sigma": 0.05}, "filter": {"sigma": 1.0}})
    physics = rec.physics_for(torch.empty(1, 1, 20, 20))
    assert physics.noise_model.sigma == pytest.approx(0.05)
    assert physics.filter.shape[-1] < unfolded.load(run_dir).physics_for(torch.empty(1, 1, 20, 20)).filter.shape[-1]
    with pytest.raises(ConfigError, match=r"physics.noise.sigma: .* no such key; it has .*physics.noise_model"):
        unfolded.load(run_dir, physics={"noise": {"sigma": 0.05}})


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_files_from_elsewhere_never_run_code(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crafted = tmp_path / "crafted.pt"
    crafted.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(ValueError, match="cannot be read safely"):
        read_input(crafted, 1, kspace=False)
    np.save(tmp_path / "objects.npy", np.array([_RunsCode()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        read_input(tmp_path / "objects.npy", 1, kspace=False)
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": _RunsCode()}, ckpt)
    with pytest.raises(ConfigError, match="could run code when loaded; refused") as e:
        unfolded.load(ckpt)
    assert "\n" not in str(e.value)
    res = predict(f"ckpt_path={ckpt}", f"input={crafted}", cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "refused" in res.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("target", ["os.system", "unfolded.physics.blur.torch.load", "builtins.eval",
                                    "unfolded.training.zoo.subprocess.run"])
def test_a_stored_configuration_builds_only_library_classes(run_dir, tmp_path, target):
    mf = model_files.from_checkpoint(run_dir)
    mf.config["physics"]["filter"] = {"_target_": target, "_args_": ["echo"]}
    file = model_files.export(mf, tmp_path / "evil.safetensors")
    with pytest.raises(ConfigError, match=f"refused to build '{target}' at physics.filter"):
        unfolded.load(file)


def test_a_model_file_that_is_not_one(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="cannot be read as an exported model"):
        unfolded.load(bad)
    with pytest.raises(ConfigError, match=r"zoo:nope is not in the model zoo; available: zoo:"):
        unfolded.load("zoo:nope")


def test_reconstructor_refuses_an_unknown_start():
    with pytest.raises(ValueError, match="init must be adjoint or mean_fill"):
        Reconstructor(torch.nn.Identity(), object(), init="zeros")


def test_complex_kspace_inputs_are_read_in_the_physics_layout(tmp_path):
    k = (np.random.default_rng(0).standard_normal((4, 8, 6)) + 1j).astype(np.complex64)
    np.save(tmp_path / "k.npy", k)
    t = read_input(tmp_path / "k.npy", 2, kspace=True)
    assert t.shape == (2, 4, 8, 6) and torch.allclose(t[1], torch.ones(4, 8, 6))
    buf = io.BytesIO()
    torch.save(torch.zeros(3, 8, 6), buf)
    (tmp_path / "k3.pt").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=r"real k-space must be \(2, H, W\)"):
        read_input(tmp_path / "k3.pt", 2, kspace=True)


def test_the_zoo_ships_every_recipe_small_and_with_its_test_results():
    from unfolded.training import zoo

    files = [zoo.zoo_path(name) for name in zoo.RECIPES]
    assert sum(f.stat().st_size for f in files) < 5e6
    for name in zoo.RECIPES:
        rec = unfolded.load(f"zoo:{name}")
        summary = rec.info["test_summary"]
        assert summary["model/psnr"] > summary["adjoint/psnr"] + 0.5, name  # it learned something
        assert rec.info["task_name"] == name


def test_mri_kspace_measurements_give_a_complex_image(tmp_path):
    """zoo:modl_mri on complex k-space (H, W) from a file: the output is the complex image, as in evaluation."""
    rec = unfolded.load("zoo:modl_mri")
    x = torch.zeros(1, 2, 64, 64)
    x[:, 0, 16:48, 16:48] = 0.8
    physics, y = rec.simulate(x)
    np.save(tmp_path / "k.npy", torch.complex(y[0, 0], y[0, 1]).numpy())
    res = predict("ckpt_path=zoo:modl_mri", f"input={tmp_path / 'k.npy'}", f"output={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr[-2000:]
    out = np.load(tmp_path / "out" / "k.npy")
    assert out.dtype == np.complex64 and out.shape == (64, 64)
    with torch.no_grad():
        expected = rec(y, physics)[0]
    assert np.abs(out - torch.complex(expected[0], expected[1]).numpy()).max() < 1e-5


def test_simulate_reports_tv_beside_the_model_as_the_training_test_does(tmp_path):
    """`simulate=true` tunes and reports the classical baselines of the model's training run (here TV on a
    denoising model) on the given images, like the training's test table."""
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), *SHORT, "algo=pgd", "physics=denoise",
                          "module.baselines=[tv]", f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    images = tmp_path / "images"
    images.mkdir()
    from skimage import data

    np.save(images / "camera.npy", data.camera()[::6, ::6].astype(np.float32) / 255)
    res = predict(f"ckpt_path={run}", f"input={images}", f"output={tmp_path / 'out'}", "simulate=true")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())["summary"]
    assert summary["tv/lambda"] > 0
    assert summary["tv/psnr"] > summary["adjoint/psnr"] + 1  # TV denoises: it is a real baseline, not a copy of y
    assert "TV" in res.stdout
