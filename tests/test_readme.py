"""The README's Training commands, run as a user types them, in a fresh copy of the repository.

Each command of the README's Training block runs verbatim in a subprocess, from a copy of the tracked
files (with this checkout's .venv, as `make install` would have made it), with only a short-run option
appended (`debug=fast`, or the fewest trials that still show the feature). A command added to the README
is picked up here by itself; one that cannot run fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def commands(heading: str) -> list[str]:
    """The commands of the first ```bash block under `heading`, without their comments."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def training_commands() -> list[str]:
    return commands("## Training")


def short_run(command: str) -> str:
    """The command with the short-run option a user could append."""
    if command.startswith("make train"):
        return command + " ARGS=debug=fast"
    if "unfolded.training.compare" in command:
        return command
    if "trainer.max_steps=" in command:
        return command  # a short run already: its point is that it validates once and tests (best.ckpt)
    if "hparams_search=optuna" in command:
        return command + " hydra.sweeper.n_trials=2 debug=fast"
    return command + " debug=fast"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The tracked files (with their times, so make sees an installed .venv), this .venv, and a user's
    folder of colour pictures at ~/pictures."""
    from tests.fresh_clone import fresh_clone

    copy = fresh_clone(tmp_path_factory.mktemp("repo"))
    home = copy.parent / "home"
    pictures = home / "pictures"
    pictures.mkdir(parents=True)
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(pictures / f"photo{i}.png")
    measurements = home / "measurements"  # a user's blurred grayscale pictures, 8 and 16 bits
    measurements.mkdir()
    Image.fromarray((rng.random((60, 70)) * 255).astype(np.uint8)).save(measurements / "scan0.png")
    Image.fromarray((rng.random((50, 64)) * 65535).astype(np.uint16)).save(measurements / "scan1.png")
    return copy


def _new_folders(pattern: str, root: Path, before: set[Path]) -> list[Path]:
    return sorted(set(root.glob(pattern)) - before)


@pytest.mark.parametrize("command", training_commands())
def test_readme_training_command(command, fresh_copy):
    run = short_run(command)
    if "<time>" in run:  # the placeholder stands for the sweep folder a command above made
        sweeps = sorted(fresh_copy.glob("logs/*/multiruns/*"), key=lambda p: p.stat().st_mtime)
        assert sweeps, "the README's sweep command should have run before the comparison"
        run = re.sub(r"logs/\S+<time>", str(sweeps[-1].relative_to(fresh_copy)), run)
    runs_before = set(fresh_copy.glob("logs/*/runs/*")) | set(fresh_copy.glob("logs/*/multiruns/*"))
    env = {**os.environ, "HOME": str(fresh_copy.parent / "home"), "WANDB_MODE": "offline"}
    env.pop("MAKEFLAGS", None)
    res = subprocess.run(["bash", "-c", run], cwd=fresh_copy, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"{run}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"

    if "unfolded.training.compare" in run:
        assert "compare: " in res.stdout
        assert sorted(p.name for p in fresh_copy.glob("logs/*/multiruns/*/compare.*")) == ["compare.html",
                                                                                         "compare.png"]
        return
    new_runs = _new_folders("logs/*/runs/*", fresh_copy, runs_before)
    new_sweeps = _new_folders("logs/*/multiruns/*", fresh_copy, runs_before)
    if " -m " in run or "hparams_search" in run:
        assert len(new_sweeps) == 1, (new_runs, new_sweeps)
        jobs = [p for p in new_sweeps[0].iterdir() if (p / ".hydra").is_dir()]
        expected = 2 if "n_trials=2" in run else np.prod([len(a.split("=")[1].split(","))
                                                          for a in run.split() if "," in a])
        assert len(jobs) == expected
        assert all((job / "results.json").is_file() for job in jobs)
        return
    assert len(new_runs) == 1, (new_runs, new_sweeps)
    folder = new_runs[0]
    results = json.loads((folder / "results.json").read_text())
    assert np.isfinite(results["summary"]["model/psnr"]) and (folder / "report.png").is_file()
    if "trainer.max_steps=" in run:
        record = json.loads((folder / "metrics.json").read_text())
        assert (folder / "checkpoints" / "best.ckpt").is_file() and record["best"] is not None
        assert results["global_step"] == int(re.search(r"trainer.max_steps=(\d+)", run).group(1))


def _latest_run_with_checkpoints(root: Path) -> Path:
    runs = sorted((p for p in root.glob("logs/train/runs/*") if (p / "checkpoints" / "best.ckpt").is_file()),
                  key=lambda p: p.stat().st_mtime)
    assert runs, "a Training command of the README (trainer.max_steps=30) should have left a checkpoint"
    return runs[-1]


@pytest.mark.parametrize("command", commands("## Use a trained model"))
def test_readme_predict_command(command, fresh_copy):
    """Run after the Training commands (same fresh copy): `<time>` is the run they trained."""
    run = command
    if "<time>" in run:
        run = re.sub(r"logs/\S+<time>", str(_latest_run_with_checkpoints(fresh_copy).relative_to(fresh_copy)), run)
    env = {**os.environ, "HOME": str(fresh_copy.parent / "home")}
    res = subprocess.run(["bash", "-c", run], cwd=fresh_copy, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"{run}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    if "unfolded.export" in run:
        assert (fresh_copy / "my_model.safetensors").stat().st_size > 1000
        return
    out = fresh_copy / re.search(r"output=(\S+)", run).group(1)
    inputs = fresh_copy.parent / "home" / re.search(r"input=\$HOME/(\S+)", run).group(1)
    for picture in inputs.iterdir():
        x_hat = np.load(out / f"{picture.stem}.npy")
        assert np.isfinite(x_hat).all() and (out / f"{picture.stem}.png").is_file()
        if "measurements" in run:  # the default valid blur: the image is the measurement + 12 pixels
            from PIL import Image

            w, h = Image.open(picture).size
            assert x_hat.shape == (h + 12, w + 12)
    if "simulate=true" in run:
        summary = json.loads((out / "metrics.json").read_text())["summary"]
        assert {"model/psnr_interior", "tikhonov/psnr_interior"} <= set(summary)
        assert "Tikhonov" in res.stdout
