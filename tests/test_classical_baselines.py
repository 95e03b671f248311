"""TV and BM3D baselines (issue #21): λ tuned on validation images, the disk cache, the one skip line without
bm3d, the new columns in results.json and the report, and the 'did not move' flag."""

import json
import logging
import sys

import numpy as np
import pytest
import torch

from unfolded.physics import BlurFFT, Denoising, GaussianNoise
from unfolded.physics.blur import gaussian_blur
from unfolded.training import classical, evaluation, report
from unfolded.training.baseline_cache import BaselineCache
from unfolded.training.metrics import psnr

from .test_train_cli import train


def _image(n=32, seed=0):
    """A piecewise-constant test image (what TV is made for) with a little texture."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, 1, n, n)
    x[..., n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 0.8
    x[..., n // 2:, : n // 3] = 0.4
    return (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)


def _measured(physics, x, seed):
    torch.manual_seed(seed)
    return physics(x)


def test_cache_hit_does_not_recompute(tmp_path):
    cache = BaselineCache(tmp_path)
    physics = Denoising(noise_model=GaussianNoise(0.1))
    y = _measured(physics, _image(), 1)
    calls = []

    def compute():
        calls.append(1)
        return y * 2, {"iterations": 7}

    x1, r1 = cache.get("tv", {"lambda": 0.1}, physics, y, compute)
    x2, r2 = cache.get("tv", {"lambda": 0.1}, physics, y, compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(x1, x2) and r2 == {"iterations": 7}
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as data:  # plain arrays: reading runs no code
        assert set(data.files) == {"x", "report"}
    # other settings, other measurements (noise draw) or another operator: a miss each
    cache.get("tv", {"lambda": 0.2}, physics, y, compute)
    cache.get("tv", {"lambda": 0.1}, physics, _measured(physics, _image(), 2), compute)
    cache.get("tv", {"lambda": 0.1}, Denoising(noise_model=GaussianNoise(0.05)), y, compute)
    assert len(calls) == 4
    assert BaselineCache.of(None).folder is None and BaselineCache.of("default").folder.name == "baselines"


def test_tv_lambda_tuned_on_validation_images(tmp_path):
    cache = BaselineCache(tmp_path)
    chosen = {}
    for sigma in (0.02, 0.15):
        physics = Denoising(noise_model=GaussianNoise(sigma))
        triples = [(x, _measured(physics, x, 10 + i), physics) for i, x in enumerate([_image(seed=0), _image(seed=1)])]
        settings = classical.tune(triples, ["tv"], cache)
        chosen[sigma] = settings["tv"]["lambda"]
        x, y = triples[0][0], triples[0][1]
        x_tv, rep = classical.tv_least_squares(physics, y, chosen[sigma])
        assert rep["converged"] and rep["solver"] == "PDCP"
        assert float(psnr(x_tv, x)) > float(psnr(y, x)) + 1
    assert chosen[0.15] > 3 * chosen[0.02]  # more noise, more regularisation


def test_tv_linearised_solver_for_valid_blur():
    from unfolded.physics.blur import Blur

    physics = Blur(filter=gaussian_blur(sigma=1.0), padding="valid", noise_model=GaussianNoise(0.01))
    x = _image()
    y = _measured(physics, x, 3)
    x_tv, rep = classical.tv_least_squares(physics, y, 3e-3, max_iter=300)
    assert rep["solver"].startswith("linearised") and rep["iterations"] <= 300
    inner = (..., slice(4, -4), slice(4, -4))
    assert float(psnr(x_tv[inner], x[inner])) > float(psnr(physics.A_adjoint(y)[inner], x[inner]))


def test_bm3d_skipped_with_one_line_when_not_installed(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # `import bm3d` raises ImportError
    physics = Denoising(noise_model=GaussianNoise(0.1))
    x = _image()
    with caplog.at_level(logging.INFO, logger="unfolded.training.classical"):
        settings = classical.tune([(x, _measured(physics, x, 0), physics)], ["bm3d"], BaselineCache(None))
    assert settings == {}
    lines = [r.getMessage() for r in caplog.records if "BM3D" in r.getMessage()]
    assert lines == ["BM3D baseline skipped: the bm3d package is not installed (pip install 'unfolded[bm3d]')"]


def test_bm3d_modes_on_small_images():
    pytest.importorskip("bm3d")
    x = _image(32)
    den = Denoising(noise_model=GaussianNoise(0.1))
    blur = BlurFFT(filter=gaussian_blur(sigma=1.0), noise_model=GaussianNoise(0.02))
    assert classical.bm3d_mode(den)[0] == "denoise" and classical.bm3d_mode(blur)[0] == "deblur"
    for physics in (den, blur):
        y = _measured(physics, x, 0)
        mode = classical.bm3d_mode(physics)[0]
        x_b = classical.bm3d_reconstruction(physics, y, mode)
        assert x_b.shape == x.shape
        assert float(psnr(x_b, x)) > float(psnr(physics.A_adjoint(y), x)) + 1


def test_did_not_move_is_said_in_results(tmp_path, capsys):
    rec = {"index": 0, "name": "camera", "model/psnr": 20.31, "model/psnr_interior": 20.31, "model/ssim": 0.3,
           "start/psnr": 20.305, "start/psnr_interior": 20.305, "start/ssim": 0.3,
           "adjoint/psnr": 20.305, "adjoint/psnr_interior": 20.305, "adjoint/ssim": 0.3}
    summary = evaluation.summarise([rec], None)
    assert summary["model/did_not_move"] == 1.0
    path = report.save_json(tmp_path / "results.json", [rec], summary, {}, 500)
    assert json.loads(path.read_text())["note"] == "model did not move from its start"
    report.print_table([rec], summary)
    assert "did not move from its start" in capsys.readouterr().out
    moved = evaluation.summarise([{**rec, "model/psnr": 25.0}], None)
    assert moved["model/did_not_move"] == 0.0


@pytest.mark.slow  # two fast runs (~30 s of CPU, minutes on a busy machine)
def test_train_reports_tv_and_bm3d_columns(tmp_path):
    """A fast run with the baselines on: results.json, the table and the cache; a second run reuses the cache."""
    out = tmp_path / "run"
    args = ["debug=fast", "algo=pgd", "physics=denoise", "module.baselines=[tv,bm3d]",
            f"module.baseline_cache={tmp_path / 'cache'}"]
    res = train(*args, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert {"tv/psnr", "tv/psnr_interior", "tv/lambda", "tv/iterations", "start/psnr",
            "model/did_not_move", "gain/psnr_interior_vs_tv"} <= set(summary)
    assert "TV (λ=" in res.stdout
    try:
        import bm3d  # noqa: F401
        assert "bm3d/psnr" in summary and "BM3D" in res.stdout
    except ImportError:
        assert "BM3D baseline skipped" in res.stdout + res.stderr
    again = train(*args, f"hydra.run.dir={tmp_path / 'run2'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 computed" in again.stdout + again.stderr
