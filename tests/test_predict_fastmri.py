"""`predict.py` on fastMRI .h5 volumes, and a model trained with `physics=fastmri` exported and loaded: the
reconstructions are written as fastMRI's submissions are, scored as the training's test scored them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import unfolded
from unfolded.mri.fastmri_files import read_volume_info
from unfolded.mri.generate import generate
from unfolded.mri.metrics import volume_metrics
from unfolded.physics.kspace import KspacePhysics
from unfolded.training import model_files
from unfolded.training.errors import ConfigError
from unfolded.training.inference import Reconstructor
from unfolded.training.predict_fastmri import VolumePredictor, centre_block

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.val_files=1", "data.test_files=1", "data.generate.files=3", "data.generate.slices=2",
         "data.generate.coils=3", "data.generate.kspace_shape=[48,160]", "data.generate.recon_size=[24,24]",
         "physics.coil_maps=acs", "algo.num_cascades=2"]
SHORT = ["debug=fast", "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=2",
         "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def fastmri_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, data folder): E2E-VarNet trained 2 steps on 3 generated multi-coil volumes (the last
    one is the test split)."""
    out, data = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("data")
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=varnet_fastmri_demo", *SMALL, *SHORT,
                          f"data.path={data}", f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, data


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_predict_writes_submissions_scored_as_the_training_test(fastmri_run, tmp_path):
    """Every volume of the folder becomes reconstructions/<file>.h5 (slices, 24, 24) float32; the test
    volume's metrics are those of the run's own fastmri_metrics.json (same mask draws, maps, scale, x₀),
    and the printed/saved metrics are those of the written file against its target."""
    run, data = fastmri_run
    out = tmp_path / "out"
    res = predict(f"ckpt_path={run}", f"input={data}", f"output={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    files = sorted(data.glob("*.h5"))
    saved = json.loads((out / "fastmri_metrics.json").read_text())
    for f in files:
        with h5py.File(out / "reconstructions" / f.name, "r") as hf:
            rec = hf["reconstruction"][()]
        with h5py.File(f, "r") as hf:
            target = hf["reconstruction_rss"][()]
        assert rec.shape == target.shape == (2, 24, 24) and rec.dtype == np.float32
        mine = volume_metrics(target, rec)
        for key in ("nmse", "psnr", "ssim"):
            assert saved["volumes"][f.name]["model"][key] == pytest.approx(mine[key], rel=1e-9)
    tested = json.loads((run / "fastmri_metrics.json").read_text())["volumes"]
    (name,) = tested
    for method in ("model", "zero_filled_rss", "adjoint"):
        for key in ("nmse", "psnr", "ssim"):
            assert saved["volumes"][name][method][key] == pytest.approx(tested[name][method][key], rel=1e-4), \
                (method, key)
    assert "fastMRI volume metrics, mean over 3 volume(s)" in res.stdout
    assert "zero_filled_rss" in res.stdout and "the model's mask" in res.stdout


@pytest.mark.slow
def test_undersampled_files_keep_their_own_mask_and_bad_files_are_one_line(fastmri_run, tmp_path):
    """A test/challenge-style file (masked k-space, a `mask` dataset, no target) is reconstructed with its
    own mask and not scored; a file without `kspace`, or a picture array, is one ERROR line naming it; the
    others still run and the exit status is 1."""
    run, data = fastmri_run
    src = sorted(data.glob("*.h5"))[0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    columns = np.zeros(160, bool)
    columns[::4] = True
    columns[74:87] = True  # 13 centre lines
    with h5py.File(src, "r") as hf, h5py.File(inputs / "challenge.h5", "w") as out:
        out["kspace"] = hf["kspace"][()] * columns
        out["mask"] = columns
        out["ismrmrd_header"] = hf["ismrmrd_header"][()]
    with h5py.File(inputs / "broken.h5", "w") as out:
        out["reconstruction_rss"] = np.zeros((2, 24, 24), np.float32)
    np.save(inputs / "image.npy", np.zeros((24, 24), np.float32))
    res = predict(f"ckpt_path={run}", f"input={inputs}", f"output={tmp_path / 'out'}")
    assert res.returncode == 1
    errors = [line for line in res.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 3, errors  # one line per bad file, then the count of failures
    assert "broken.h5: not reconstructed:" in errors[0] and "no 'kspace' dataset" in errors[0]
    assert "image.npy: not reconstructed: a model trained with physics=fastmri reconstructs fastMRI .h5" in errors[1]
    assert "2 of 3 file(s) failed" in errors[2]
    with h5py.File(tmp_path / "out" / "reconstructions" / "challenge.h5", "r") as hf:
        rec = hf["reconstruction"][()]
    assert rec.shape == (2, 24, 24) and rec.dtype == np.float32 and np.isfinite(rec).all() and rec.max() > 0
    assert "own mask" in res.stdout and not (tmp_path / "out" / "fastmri_metrics.json").exists()


@pytest.mark.slow
def test_a_fastmri_model_exports_and_loads(fastmri_run, tmp_path):
    """The stored physics is library code (unfolded.physics.kspace), so the run exports and loads (and
    loads back into Lightning); the exported model reconstructs exactly as the checkpoint; a stored maps
    cache folder is not used."""
    from unfolded.export import main as export

    run, data = fastmri_run
    file = tmp_path / "model.safetensors"
    assert export([str(run), str(file)]) == 0
    a, b = unfolded.load(run), unfolded.load(file)
    assert b.config["physics"]["_target_"] == "unfolded.physics.kspace.KspacePhysics"
    test_file = sorted(data.glob("*.h5"))[-1]
    va, ma, _ = VolumePredictor(a).volume(test_file)
    vb, mb, _ = VolumePredictor(b).volume(test_file)
    assert np.array_equal(va, vb) and ma == mb
    from unfolded.training import UnfoldedModule

    module = UnfoldedModule.load_from_checkpoint(run / "checkpoints" / "best.ckpt")  # its loss is MagnitudeLoss
    assert type(module.simulator).__name__ == "KspaceMeasurements"
    mf = model_files.from_export(file)
    mf.config["physics"]["maps_cache_dir"] = str(tmp_path / "elsewhere")
    assert unfolded.load(model_files.export(mf, tmp_path / "cache.safetensors")).physics_bank.fixed.maps_cache_dir \
        is None


def test_a_picture_model_refuses_volumes(tmp_path):
    generate(tmp_path / "v", files=1, slices=1, coils=2, kspace_shape=(32, 64), recon_size=(16, 16))
    (vol,) = (tmp_path / "v").glob("*.h5")
    res = predict("ckpt_path=zoo:hqs_blur", f"input={vol}", f"output={tmp_path / 'o'}")
    assert res.returncode == 1 and "needs a model trained with physics=fastmri" in res.stdout
    with pytest.raises(ValueError, match="needs a model trained with physics=fastmri"):
        VolumePredictor(unfolded.load("zoo:hqs_blur"))


def test_single_coil_volume_with_least_squares_model(tmp_path):
    """Single-coil files (slices, H, W): an untrained MoDL (zero last layer: regularised least squares on
    the zero-filled start) keeps the sampled k-space, so its reconstruction is at least as good as
    zero-filled, and is written at the target size."""
    from unfolded.models import DnCNN, MoDL

    generate(tmp_path, files=1, slices=2, coils=1, single_coil=True, kspace_shape=(64, 160), recon_size=(32, 32),
             noise=0.0)
    (vol,) = tmp_path.glob("*.h5")
    assert read_volume_info(vol, None).target_key == "reconstruction_esc"
    model = MoDL(DnCNN(2, 2, depth=2, nf=4, last_layer_init="zero"), num_iter=2, lambda_init=0.05)
    rec = Reconstructor(model.eval(), KspacePhysics(mask={"acceleration": 4}), "adjoint", 2)
    volume, metrics, info = VolumePredictor(rec).volume(vol)
    assert volume.shape == (2, 32, 32) and volume.dtype == np.float32 and not info.multicoil
    assert set(metrics) == {"model", "adjoint"}
    assert metrics["model"]["psnr"] >= metrics["adjoint"]["psnr"] - 1e-3


def test_the_acs_block_of_a_files_own_mask():
    columns = np.zeros(368, bool)
    columns[169:199] = True  # fastMRI's 30 centre lines of a 368-column 4x knee mask
    columns[[10, 168, 300]] = True
    assert centre_block(columns, 320) == ((0, 320), (169, 30))
    with pytest.raises(ValueError, match="does not sample the k-space centre"):
        centre_block(np.roll(columns, 100), 320)


def test_a_stored_fastmri_physics_is_checked_like_any(tmp_path):
    """Moving KspacePhysics into unfolded.physics does not open the allow-list: unfolded.training stays out;
    a checkpoint's module settings may build the fastMRI loss, not the rest of unfolded.mri."""
    from unfolded.training.building import check_targets

    check_targets({"_target_": "unfolded.physics.kspace.KspacePhysics"}, "x", "physics")
    check_targets({"_target_": "unfolded.training.kspace_measurements.KspacePhysics"}, "x", "physics")  # re-export
    with pytest.raises(ConfigError, match="refused to build"):
        check_targets({"_target_": "unfolded.training.kspace_measurements.KspaceMeasurements"}, "x", "physics")
    from unfolded.training.inference import MODULE_TRUSTED

    check_targets({"loss": {"_target_": "unfolded.mri.losses.MagnitudeLoss"}}, "x", "module", MODULE_TRUSTED)
    for target in ("unfolded.mri.generate.generate", "unfolded.mri.losses.magnitude"):  # writes files; not a loss
        with pytest.raises(ConfigError, match="refused to build"):
            check_targets({"loss": {"_target_": target}}, "x", "module", MODULE_TRUSTED)
