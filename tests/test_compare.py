"""`python -m unfolded.training.compare` on a real 2-job multirun (debug-sized, wandb offline), and the wandb
side of a sweep: one run per job, grouped by sweep, with the per-iteration panels."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unfolded.training import compare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "debug=fast", "algo.max_iter=2,4", "logger=wandb",
         "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=1",
         "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false", f"paths.log_dir={logs}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    sweeps = list((logs / "debug" / "multiruns").iterdir())  # the default sweep folder: <date>_<time>
    assert len(sweeps) == 1
    return sweeps[0]


def test_report_compares_the_two_jobs(multirun, tmp_path):
    assert compare.main([str(multirun), "-o", str(tmp_path)]) == 0
    png, page = tmp_path / "compare.png", tmp_path / "compare.html"
    from PIL import Image

    width, height = Image.open(png).size
    assert width > 1000 and height > 500
    runs, optuna_summary = compare.load([multirun])
    assert optuna_summary is None and [r.name for r in runs] == ["0", "1"]
    for run, k in zip(runs, (2, 4)):
        assert run.status == "completed" and f"algo.max_iter={k}" in run.overrides
        assert [row["step"] for row in run.history["val"]] == [1, 2]  # two validations each
        assert run.value == max(row["val/psnr_interior"] for row in run.history["val"])
        assert len(run.psnr_iter) == k and len(run.params["stepsize"]) == 1
        assert {"model", "target", "measurement", "tikhonov"} <= set(run.examples)
    header, rows = compare.table_rows(runs)
    assert "algo.max_iter" in header and [row[header.index("algo.max_iter")] for row in rows] == ["2", "4"]
    text = page.read_text()
    assert text.count("<tr") == 3 and "debug=fast" in text and text.count("data:image/png;base64,") >= 1 + 2 * 5


def test_report_errors_are_one_line(tmp_path, capsys):
    assert compare.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().startswith("compare: ")
    assert compare.main([str(tmp_path)]) == 2  # a folder without runs
    assert "no run folder" in capsys.readouterr().err


def test_each_job_is_one_wandb_run_grouped_by_sweep(multirun):
    groups, panels = [], []
    for job in ("0", "1"):
        runs = list((multirun / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1  # one run per job: wandb.finish() between jobs
        data = next(runs[0].glob("run-*.wandb")).read_bytes()
        groups.append(set(re.findall(rb"debug_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", data)))
        tables = runs[0] / "files" / "media" / "table" / "panels"
        panels.append({re.sub(r"_table_\d+_\w+\.table\.json$", "", p.name) for p in tables.iterdir()})
        psnr = json.loads(next(tables.glob("test_psnr_per_iteration_*.json")).read_text())
        assert [row[0] for row in psnr["data"]] == list(range(1, 3 if job == "0" else 5))
    assert groups[0] == groups[1] == {f"debug_{multirun.name}".encode()}  # one group per sweep
    for names in panels:
        assert names == {"val_psnr_per_iteration", "params_per_iteration", "relative_change_per_iteration",
                         "test_psnr_per_iteration"}
