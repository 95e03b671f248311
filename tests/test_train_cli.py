"""`train.py` end to end in a subprocess, and its one-line start-up errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_debug_fast_end_to_end(tmp_path):
    out = tmp_path / "run"
    res = train("debug=fast", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "report.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    for key in ("model/psnr", "model/psnr_interior", "tikhonov/psnr", "adjoint/psnr", "gain/psnr_interior"):
        assert key in summary
    assert "Test results" in res.stdout and "Tikhonov" in res.stdout


@pytest.mark.parametrize("args,expected", [
    (["algo.stepsiz=2"], "unknown key 'algo.stepsiz'"),
    (["algo=hqss"], "Could not find 'algo/hqss'"),
    (["+algo.stepsiz=2"], "unknown key 'algo.stepsiz'"),
    (["data.crop_size=1000"], "crop_size=1000 is larger than training image"),
])
def test_start_up_errors_are_one_line(args, expected, tmp_path):
    res = train(*args, "logger=none", f"hydra.run.dir={tmp_path}")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("config error: ") and expected in lines[-1], res.stderr[-2000:]
    assert sum(ln.startswith("config error") for ln in lines) == 1
    assert "Traceback" not in res.stderr


def test_a_dict_given_for_a_dict_node_replaces_it(tmp_path):
    """`physics.filter={_target_: torch.load, f: k.pt}`: Hydra alone merges the dicts and refuses `f`."""
    import torch

    torch.save(torch.ones(1, 1, 5, 5) / 25, tmp_path / "box.pt")
    out = tmp_path / "run"
    res = train("debug=fast", f"physics.filter={{_target_: torch.load, f: {tmp_path / 'box.pt'}}}",
                f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    import yaml

    saved = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())
    assert saved["physics"]["filter"] == {"_target_": "torch.load", "f": str(tmp_path / "box.pt")}


def test_a_bad_checkpoint_leaves_no_run_folder(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    res = train(f"ckpt_path={tmp_path / 'notes.ckpt'}", "train=false", cwd=tmp_path)
    assert res.returncode != 0 and "cannot be read as a checkpoint" in res.stderr.splitlines()[-1]
    assert not (tmp_path / "logs").exists()
