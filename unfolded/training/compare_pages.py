"""The pages of a comparison of runs (`compare.py`): `compare.png` (table, validation curves, PSNR of the
iterates, learned step sizes, example reconstructions) and a self-contained `compare.html`, both written
atomically."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from .atomic import write_atomically
from .compare import STATUS_COLOURS, Run, _short, best_run, table_rows, varying_overrides


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
    path = write_atomically(path, lambda f: fig.savefig(f, dpi=100, bbox_inches="tight", format="png"))
    plt.close(fig)
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
    text = "\n".join(parts).encode()
    return write_atomically(path, lambda f: f.write(text))
