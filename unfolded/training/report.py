"""End-of-run report: a results table (rich) and a PNG with example images and training curves."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .atomic import write_atomically
from .compare import STILL
from .logs import echo

METHODS = (("adjoint", "Aᵀy"), ("bicubic", "bicubic upsampling"), ("tikhonov", "Tikhonov"), ("tv", "TV"),
           ("bm3d", "BM3D"), ("model", "unfolded model"))


def _label(key: str, label: str, summary: dict) -> str:
    """A method's name with the setting tuned on the validation images; the model's says when it did not move."""
    if key in ("tikhonov", "tv") and f"{key}/lambda" in summary:
        return f"{label} (λ={summary[f'{key}/lambda']:.3g})"
    if key == "bm3d" and summary.get("bm3d/factor", 1.0) != 1.0:
        return f"{label} (σ×{summary['bm3d/factor']:g})"
    if key == "model" and summary.get("model/did_not_move"):
        return f"{label}: {STILL.upper()}"
    return label


def print_table(records: list[dict], summary: dict, hyperparameters: dict | None = None) -> None:
    from rich.table import Table

    # an interior differs from the image only where the operator leaves a barely-measured ring (valid blur)
    ring = any(r[k] != r[k.replace("_interior", "")] for r in records for k in r if k.endswith("/psnr_interior"))
    inner = "psnr_interior" if ring else "psnr"
    title = "interior = the valid blur's barely-measured ring cropped" if ring else "whole images"
    table = Table(title=f"Test results ({len(records)} images; PSNR in dB, {title})")
    table.add_column("method")
    for col in ("PSNR", *(["PSNR interior"] if ring else []), "SSIM",
                "gain interior vs Tikhonov" if ring else "gain vs Tikhonov", "gain vs Aᵀy"):
        table.add_column(col, justify="right")
    for key, label in METHODS:
        if f"{key}/psnr" not in summary:
            continue
        label = _label(key, label, summary)
        gain = ""
        if f"tikhonov/{inner}" in summary:
            gain = f"{summary[f'{key}/{inner}'] - summary[f'tikhonov/{inner}']:+.2f}"
        gain_adjoint = ""  # Aᵀy is the zero-filled reconstruction for MRI (PSNR of magnitudes)
        if "adjoint/psnr" in summary:
            gain_adjoint = f"{summary[f'{key}/psnr'] - summary['adjoint/psnr']:+.2f}"
        interior = [f"{summary[f'{key}/psnr_interior']:.2f}"] if ring else []
        table.add_row(label, f"{summary[f'{key}/psnr']:.2f}", *interior, f"{summary[f'{key}/ssim']:.4f}", gain,
                      gain_adjoint)
    shown = [(k, label) for k, label in reversed(METHODS) if f"{k}/{inner}" in summary]
    per_image = Table(title=f"Per image: PSNR{' interior' if ring else ''}")
    per_image.add_column("image")
    for _, label in shown:
        per_image.add_column(label, justify="right")
    for r in records:
        per_image.add_row(r["name"], *(f"{r[f'{m}/{inner}']:.2f}" if f"{m}/{inner}" in r else "-" for m, _ in shown))
    echo(table)  # terminal and train.log
    echo(per_image)
    if summary.get("model/did_not_move"):
        echo(f"{STILL}: its test PSNR is within 0.01 dB of its start x₀'s ({summary['start/psnr']:.2f} dB); "
             "this is not a result (lower the learning rate? see the prior's recipe in conf/prior)")
    if hyperparameters:
        echo("learned parameters: " + "; ".join(
            f"{k} = {[round(float(v), 4) for v in torch.as_tensor(t).flatten()]}" for k, t in hyperparameters.items()))


def print_grid(rows: list[dict]) -> None:
    """The test grid (grid.py): one line per kernel, one column per noise level; in each cell the model's and
    Tikhonov's interior PSNR (mean over the test images) and the gain."""
    from rich.table import Table

    if not rows:
        return
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    levels = list(dict.fromkeys(r["sigma"] for r in rows))
    table = Table(title=f"Test grid ({rows[0]['images']} images each; interior PSNR in dB: model / Tikhonov (gain); "
                        "Tikhonov λ tuned per cell)")
    table.add_column("kernel")
    for sigma in levels:
        table.add_column("own noise" if sigma is None else f"σ = {sigma:g}", justify="right")
    table.add_column("mean gain", justify="right")
    for kernel in kernels:
        mine = {r["sigma"]: r for r in rows if r["kernel"] == kernel}
        cells = [f"{mine[s]['model/psnr_interior']:.2f} / {mine[s]['tikhonov/psnr_interior']:.2f} "
                 f"({mine[s]['gain/psnr_interior']:+.2f})" if s in mine else "-" for s in levels]
        mean_gain = sum(r["gain/psnr_interior"] for r in mine.values()) / len(mine)
        table.add_row(kernel or "physics' own", *cells, f"{mean_gain:+.2f}")
    echo(table)


def _show(ax, img: torch.Tensor, title: str) -> None:
    img = img.detach().float().cpu()
    if img.shape[0] == 1:
        ax.imshow(img[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def save_figure(path: Path, records: list[dict], history: dict | None, summary: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = [r for r in records if "images" in r]
    cols = ["measurement", "adjoint", "tikhonov", "tv", "bm3d", "model", "target"]
    cols = [c for c in cols if any(c in r["images"] for r in examples)] or cols
    titles = {"measurement": "measurement y", "adjoint": "Aᵀy", "tikhonov": "Tikhonov", "tv": "TV", "bm3d": "BM3D",
              "model": STILL if summary.get("model/did_not_move") else "unfolded", "target": "target"}
    n_rows = len(examples) + 1
    fig, axes = plt.subplots(n_rows, len(cols), figsize=(2.6 * len(cols), 2.7 * n_rows), squeeze=False)
    for row, rec in enumerate(examples):
        for c, key in enumerate(cols):
            ax = axes[row, c]
            if key not in rec["images"]:
                ax.axis("off")
                continue
            title = titles[key]
            if f"{key}/psnr_interior" in rec:
                title += f"\n{rec[f'{key}/psnr']:.2f} dB ({rec[f'{key}/psnr_interior']:.2f} int.)"
            elif key == "target":
                title += f"\n{rec['name']}"
            _show(ax, rec["images"][key], title)
    curves = axes[-1]
    for ax in curves:
        ax.axis("off")
    if history and history.get("train"):
        ax = curves[0]
        ax.axis("on")
        steps, losses = zip(*history["train"])
        ax.semilogy(steps, losses, lw=0.8)
        ax.set_title("training loss", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
    if history and history.get("val"):
        ax = curves[1]
        ax.axis("on")
        steps = [r["step"] for r in history["val"]]
        for key, label in (("val/psnr_interior", "model (interior)"), ("val/psnr", "model (full)")):
            if all(key in r for r in history["val"]):
                ax.plot(steps, [r[key] for r in history["val"]], marker=".", label=label)
        if all("val/tikhonov_psnr_interior" in r for r in history["val"]):
            ax.axhline(history["val"][-1]["val/tikhonov_psnr_interior"], color="k", ls="--", lw=0.8,
                       label="Tikhonov (interior)")
        ax.set_title("validation PSNR (dB)", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=6)
    iters = [r["psnr_iter"] for r in records if "psnr_iter" in r]
    if iters:
        ax = curves[2]
        ax.axis("on")
        k = len(iters[0])
        mean = [sum(it[i] for it in iters) / len(iters) for i in range(k)]
        ax.plot(range(1, k + 1), mean, marker="o")
        if "tikhonov/psnr" in summary:
            ax.axhline(summary["tikhonov/psnr"], color="k", ls="--", lw=0.8, label="Tikhonov (full)")
            ax.legend(fontsize=6)
        ax.set_title("test PSNR of the iterates (full)", fontsize=8)
        ax.set_xlabel("iteration", fontsize=7)
    for ax in curves:
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = Path(path)
    write_atomically(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path


def save_json(path: Path, records: list[dict], summary: dict, hyperparameters: dict, step: int,
              grid: dict | None = None, training_solves: dict | None = None) -> Path:
    """results.json; with a test grid, `grid` = {"cells": one row per cell, "images": per cell and image};
    `training_solves`: per solve kind, the training's totals (stats.SolverStats.run_totals)."""
    data = {
        "global_step": step,
        "summary": summary,
        "images": [{k: v for k, v in r.items() if k != "images"} for r in records],
        "hyperparameters": {k: torch.as_tensor(v).detach().flatten().tolist() for k, v in hyperparameters.items()},
    }
    if summary.get("model/did_not_move"):
        data["note"] = STILL
    if grid:
        data["grid"] = grid
    if training_solves:
        data["training_solves"] = training_solves
    return write_atomically(path, lambda f: f.write(json.dumps(data, indent=2).encode()))
