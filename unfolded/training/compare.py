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
import base64
import html
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

            state = torch.load(ckpt, map_location="cpu", weights_only=False)
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
              "SSIM", "note"]
    rows = []
    for r in runs:
        d = dict(o.split("=", 1) if "=" in o else (o, "") for o in r.overrides)
        t = r.test

        def fmt(key, spec=".2f", t=t):
            return format(t[key], spec) if key in t else "-"
        rows.append([r.label, r.status, *(_short(d.get(k, "-")) for k in varying),
                     "-" if r.value is None else f"{r.value:.2f}", fmt("model/psnr"), fmt("model/psnr_interior"),
                     fmt("gain/psnr_interior", "+.2f"), fmt("model/ssim", ".3f"), r.note[:60]])
    return header, rows


# --- figure ------------------------------------------------------------------------------------------------
def _image(path: Path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))


def _framed(ax) -> None:
    """No ticks, but a thin frame: a saturated (all white) reconstruction stays visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)
        spine.set_color("#999999")


def optuna_line(summary: dict | None) -> str:
    if not summary:
        return ""
    states = ", ".join(f"{v} {k.lower()}" for k, v in (summary.get("states") or {}).items())
    text = f"Optuna study '{summary.get('study_name')}': {summary.get('n_trials')} trials ({states})"
    if summary.get("failed"):
        text += f"; failed: {', '.join(f'#{n}' for n in summary['failed'])}"
    if summary.get("pruned"):
        text += f"; pruned: {', '.join(f'#{n}' for n in summary['pruned'])}"
    best = summary.get("best")
    if best:
        params = ", ".join(f"{k}={_short(str(v))}" for k, v in best["params"].items())
        text += f"\nbest #{best['number']}: {summary.get('metric') or 'value'} = {best['value']:.3f} with {params}"
    return text


def save_figure(runs: list[Run], path: Path, title: str, max_examples: int = 6,
                optuna_summary: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    header, rows = table_rows(runs)
    shown = [r for r in runs if r.examples.get("model")]
    best = best_run(runs)
    if len(shown) > max_examples:  # the best runs by value
        shown = sorted(shown, key=lambda r: -(r.value if r.value is not None else -math.inf))[:max_examples]
    table_h = 0.25 + 0.22 * (len(rows) + 1)
    subtitle = optuna_line(optuna_summary)
    title_lines = 1 + (subtitle.count("\n") + 1 if subtitle else 0)
    height = table_h + 3.4 + (2.9 if shown else 0) + 0.2 * title_lines
    fig = plt.figure(figsize=(max(14, 1.9 * len(header)), height))
    grid = fig.add_gridspec(3, 1, height_ratios=[table_h, 3.4, 2.9 if shown else 0.01], hspace=0.45,
                            top=1 - (0.1 + 0.2 * title_lines) / height, bottom=0.02)
    fig.suptitle(title + ("\n" + subtitle if subtitle else ""), fontsize=10, y=0.995, va="top")

    ax = fig.add_subplot(grid[0])
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    for i, r in enumerate(runs, start=1):
        table[i, 1].get_text().set_color(STATUS_COLOURS.get(r.status, "black"))
        if r is best:
            for j in range(len(header)):
                table[i, j].set_facecolor("#dafbe1")

    curves = grid[1].subgridspec(1, 4, wspace=0.3)
    colours = {r.name: plt.cm.tab10(i % 10) for i, r in enumerate(runs)}
    panels = [fig.add_subplot(curves[0, i]) for i in range(4)]
    for r in runs:
        style = {"color": colours[r.name], "label": r.label, "ls": "-" if r.status == "completed" else ":"}
        val = (r.history or {}).get("val") or []
        pts = [(row["step"], row[r.metric]) for row in val if r.metric in row]
        if pts:
            panels[0].plot(*zip(*pts), marker=".", **style)
        train = (r.history or {}).get("train") or []
        if train:
            steps, losses = zip(*train)
            panels[1].semilogy(steps, losses, lw=0.8, marker="." if len(steps) < 20 else None, **style)
        if r.psnr_iter:
            panels[2].plot(range(1, len(r.psnr_iter) + 1), r.psnr_iter, marker="o", ms=3, **style)
        step = r.params.get("stepsize")
        if step:
            if len(step) == 1 and r.psnr_iter:  # one step size shared by all iterations
                step = step * len(r.psnr_iter)
            panels[3].plot(range(1, len(step) + 1), step, marker="o", ms=3, **style)
    for ax, (ttl, xl) in zip(panels, (("validation " + runs[0].metric, "step"), ("training loss", "step"),
                                       ("test PSNR of each iterate (dB)", "iteration"),
                                       ("learned step size γ per iteration", "iteration"))):
        ax.set_title(ttl, fontsize=9)
        ax.set_xlabel(xl, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_yscale() == "linear":
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")

    if shown:
        first = shown[0]
        refs = [(k, t) for k, t in (("target", "target"), ("measurement", "measurement y"), ("tikhonov", "Tikhonov"))
                if k in first.examples]
        row = grid[2].subgridspec(1, len(refs) + len(shown), wspace=0.05)
        cap = first.example_caption
        for i, (key, ttl) in enumerate(refs):
            psnr = cap.get(f"{key}/psnr")
            ax = fig.add_subplot(row[0, i])
            ax.imshow(_image(first.examples[key]), cmap="gray", vmin=0, vmax=255)
            ax.set_title(ttl + (f" ({cap.get('image')})" if key == "target" else "")
                         + (f": {psnr:.2f} dB" if isinstance(psnr, float) else ""), fontsize=8)
            _framed(ax)
        for i, r in enumerate(shown, start=len(refs)):
            ax = fig.add_subplot(row[0, i])
            ax.imshow(_image(r.examples["model"]), cmap="gray", vmin=0, vmax=255)
            psnr = r.example_caption.get("model/psnr")
            ax.set_title(f"{r.label}" + (f": {psnr:.2f} dB" if isinstance(psnr, float) else ""), fontsize=8,
                         color=STATUS_COLOURS.get(r.status, "black"))
            _framed(ax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


# --- html ------------------------------------------------------------------------------------------------
def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def save_html(runs: list[Run], figure: Path, path: Path, title: str, optuna_summary: dict | None) -> Path:
    header, rows = table_rows(runs)
    _, common = varying_overrides(runs)
    best = best_run(runs)
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:center}tr.best{background:#dafbe1}"
             "img.ex{height:160px;margin:2px;image-rendering:pixelated}</style>",
             f"<h1>{esc(title)}</h1>",
             f"<p>common overrides: <code>{esc(' '.join(common)) or '(none)'}</code></p>"]
    if optuna_summary:
        b = optuna_summary.get("best")
        parts.append(f"<p>Optuna study <b>{esc(str(optuna_summary.get('study_name')))}</b> "
                     f"({esc(str(optuna_summary.get('direction')))} {esc(str(optuna_summary.get('metric')))}): "
                     f"{optuna_summary.get('n_trials')} trials, states {esc(str(optuna_summary.get('states')))}; "
                     f"failed: {optuna_summary.get('failed')}, pruned: {optuna_summary.get('pruned')}.</p>")
        if b:
            params = "".join(f"<li><code>{esc(str(k))} = {esc(str(v))}</code></li>" for k, v in b["params"].items())
            parts.append(f"<p>Best trial #{b['number']}: value {b['value']:.4f}</p><ul>{params}</ul>")
    parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for r, row in zip(runs, rows):
        cells = "".join(f"<td>{esc(c)}</td>" for c in row)
        cells = cells.replace(f"<td>{esc(r.status)}</td>",
                              f"<td style='color:{STATUS_COLOURS.get(r.status, 'black')}'>{esc(r.status)}</td>", 1)
        parts.append(f"<tr{' class=best' if r is best else ''}>{cells}</tr>")
    parts.append("</table>")
    parts.append(f"<h2>Curves and examples</h2><img src='{_data_uri(figure)}' style='max-width:100%'>")
    parts.append("<h2>Example test image per run</h2>")
    for r in runs:
        if not r.examples:
            continue
        imgs = "".join(f"<figure style='display:inline-block;margin:0 4px'><img class=ex src='{_data_uri(p)}'>"
                       f"<figcaption>{esc(k)}</figcaption></figure>" for k, p in r.examples.items())
        parts.append(f"<h3>{esc(r.label)} ({esc(r.status)}) <small><code>{esc(' '.join(r.overrides))}</code>"
                     f"</small></h3>{imgs}")
    text = "\n".join(parts)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


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
