"""Compare runs without wandb: `python -m unfolded.training.compare <run or multirun folder>... [-o OUT]`.

Writes `compare.png` (table of runs, validation PSNR curves, PSNR of the iterates, learned step sizes,
example reconstructions) and a self-contained `compare.html` (the same, with every run in the table).

A run folder is one with `.hydra/`; a multirun (sweep) folder holds run folders. Per run it reads
`.hydra/overrides.yaml` and `.hydra/config.yaml`, `results.json` (test metrics, per-iterate PSNR, learned
parameters), `metrics.json` and `examples/` (written by `RunRecord`), and else the metric history kept in
`checkpoints/last.ckpt`; in an Optuna sweep folder, `optuna_summary.yaml` gives each trial's state and value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STATUS_COLOURS = {"completed": "#1a7f37", "failed": "#cf222e", "pruned": "#9a6700", "running": "#6e7781"}
OPTUNA_STATES = {"COMPLETE": "completed", "FAIL": "failed", "PRUNED": "pruned", "RUNNING": "running",
                 "WAITING": "running"}
EXAMPLE_ORDER = ("measurement", "adjoint", "tikhonov", "model", "target")
# said instead of a result when a model ends at its start x₀ (evaluation.did_not_move); here, as this file has no torch
STILL = "model did not move from its start"


@dataclass
class Run:
    path: Path
    name: str
    overrides: list[str] = field(default_factory=list)
    metric: str = "val/psnr_interior"
    status: str = "unknown"
    value: float | None = None          # the optimised metric (best validation value)
    note: str = ""                      # why it failed or was pruned
    test: dict = field(default_factory=dict)
    history: dict | None = None
    psnr_iter: list[float] | None = None
    params: dict[str, list[float]] = field(default_factory=dict)
    examples: dict[str, Path] = field(default_factory=dict)
    example_caption: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"#{self.name}"


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _float(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _history_from_checkpoint(folder: Path) -> dict | None:
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = folder / "checkpoints" / name
        if ckpt.is_file():
            import torch

            state = torch.load(ckpt, map_location="cpu", weights_only=True)  # never runs code from the file
            for key, value in state.get("callbacks", {}).items():
                if key.startswith("MetricHistory"):
                    return value
    return None


def find_runs(folder: Path) -> list[Path]:
    """The run folders in `folder`: itself if it is a run, else its sub-folders that are runs."""
    if (folder / ".hydra").is_dir():
        return [folder]
    runs = [p for p in folder.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(runs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def load_run(path: Path, name: str, trial: dict | None = None) -> Run:
    run = Run(path=path, name=name)
    run.overrides = [str(o) for o in (_read_yaml(path / ".hydra" / "overrides.yaml") or [])]
    config = _read_yaml(path / ".hydra" / "config.yaml") or {}
    run.metric = config.get("optimized_metric") or run.metric
    results = _read_json(path / "results.json")
    record = _read_json(path / "metrics.json")
    if results:
        run.status = "completed"
        run.test = results.get("summary", {})
        iters = [img["psnr_iter"] for img in results.get("images", []) if "psnr_iter" in img]
        if iters:
            run.psnr_iter = [sum(col) / len(col) for col in zip(*iters)]
        run.params = {k: list(v) for k, v in results.get("hyperparameters", {}).items()}
    if record:
        run.status = {"trained": "completed" if results else "trained"}.get(record["status"], record["status"])
        run.value = _float(record.get("best"))
        run.history = record.get("history")
        run.note = record.get("error") or ""
    if run.history is None:
        run.history = _history_from_checkpoint(path)
    if not results and not record:
        run.status = "failed"
        run.note = "no results.json (stopped before testing)"
    if trial:
        run.status = OPTUNA_STATES.get(trial.get("state"), run.status)
        run.value = _float(trial.get("value")) if trial.get("value") is not None else run.value
        run.note = trial.get("fail_reason") or (f"pruned at step {max(trial.get('intermediate_values') or [0])}"
                                                if run.status == "pruned" else run.note)
    examples = path / "examples"
    run.examples = {k: examples / f"{k}.png" for k in EXAMPLE_ORDER if (examples / f"{k}.png").is_file()}
    run.example_caption = _read_json(examples / "examples.json") or {}
    return run


def load(folders: list[Path]) -> tuple[list[Run], dict | None]:
    """All runs of the given folders, with the Optuna summary of the (first) sweep folder if there is one."""
    runs: list[Run] = []
    optuna_summary = None
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder (give a run folder or a multirun folder)")
        summary = _read_yaml(folder / "optuna_summary.yaml")
        by_dir, by_number = {}, {}
        if summary:
            optuna_summary = optuna_summary or summary
            for t in summary.get("trials", []):
                by_number[str(t["number"])] = t
                if t.get("output_dir"):
                    by_dir[Path(t["output_dir"]).resolve()] = t
        for p in find_runs(folder):
            name = p.name if len(folders) == 1 else f"{folder.name}/{p.name}"
            # a sweep folder that was moved: its job folders are still named by trial number
            trial = by_dir.get(p.resolve()) or by_number.get(p.name)
            runs.append(load_run(p, name, trial))
    if not runs:
        raise FileNotFoundError(f"no run folder (with .hydra/) in {', '.join(map(str, folders))}")
    return runs, optuna_summary


# --- table -----------------------------------------------------------------------------------------------
def _short(v: str) -> str:
    try:
        f = float(v)
    except ValueError:
        return v
    return v if f.is_integer() and "e" not in v.lower() and "." not in v else f"{f:.3g}"


def varying_overrides(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(keys whose value differs between runs, overrides common to all runs)."""
    per_run = [dict(o.split("=", 1) if "=" in o else (o, "") for o in r.overrides) for r in runs]
    keys = list(dict.fromkeys(k for d in per_run for k in d))
    varying = [k for k in keys if len({d.get(k) for d in per_run}) > 1]
    common = [f"{k}={per_run[0][k]}" for k in keys if k not in varying]
    return varying, common


def best_run(runs: list[Run]) -> Run | None:
    scored = [r for r in runs if r.value is not None and r.status == "completed"]
    return max(scored, key=lambda r: r.value) if scored else None


def table_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    varying, _ = varying_overrides(runs)
    metric = runs[0].metric
    header = ["run", "status", *varying, f"best {metric}", "test PSNR", "test PSNR int.", "gain int. vs Tikh.",
              "TV int.", "BM3D int.", "SSIM", "note"]
    rows = []
    for r in runs:
        d = dict(o.split("=", 1) if "=" in o else (o, "") for o in r.overrides)
        t = r.test

        def fmt(key, spec=".2f", t=t):
            return format(t[key], spec) if key in t else "-"
        rows.append([r.label, r.status, *(_short(d.get(k, "-")) for k in varying),
                     "-" if r.value is None else f"{r.value:.2f}", fmt("model/psnr"), fmt("model/psnr_interior"),
                     fmt("gain/psnr_interior", "+.2f"), fmt("tv/psnr_interior"), fmt("bm3d/psnr_interior"),
                     fmt("model/ssim", ".3f"), (STILL if t.get("model/did_not_move") else r.note)[:60]])
    return header, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unfolded.training.compare", description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run folders or multirun (sweep) folders")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="output folder (default: the single folder given, else the current folder)")
    parser.add_argument("--max-examples", type=int, default=6, help="example reconstructions in the PNG")
    args = parser.parse_args(argv)
    try:
        runs, optuna_summary = load(args.folders)
    except FileNotFoundError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    out = args.out or (args.folders[0] if len(args.folders) == 1 else Path.cwd())
    out.mkdir(parents=True, exist_ok=True)
    title = f"{len(runs)} runs: {', '.join(str(f) for f in args.folders)}"
    from .compare_pages import save_figure, save_html

    png = save_figure(runs, out / "compare.png", title, args.max_examples, optuna_summary)
    page = save_html(runs, png, out / "compare.html", title, optuna_summary)
    header, rows = table_rows(runs)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if optuna_summary and optuna_summary.get("best"):
        b = optuna_summary["best"]
        print(f"best trial #{b['number']} ({b['value']:.4f}): " + ", ".join(f"{k}={v}" for k, v in b["params"].items()))
    print(f"compare: {png}  {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
