"""Evaluation of a model on numbered validation/test images, beside the classical baselines (SPEC §9).

- validation: PSNR / interior PSNR / SSIM per image and the PSNR of every iterate, averaged by
  torchmetrics `MeanMetric`s (float64) that reduce across processes themselves: the means over all
  images equal a single-process evaluation;
- test: one record per image (the model, Aᵀy and Tikhonov; pictures for the first images), gathered
  from all processes in image order, and their means (`summarise`);
- `Results` is what the callbacks read: the reports, pictures and panels use nothing else of the module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from .metrics import display_image, image_metrics, measures_kspace


@dataclass
class Results:
    """What evaluation produced, for the callbacks."""

    val_example: dict[str, Tensor] | None = None  # first validation image: x, y (raw), x_hat; on the CPU
    test_records: list[dict] = field(default_factory=list)  # per test image, in image order
    test_summary: dict[str, float] = field(default_factory=dict)  # means over the test images, gains
    tikhonov_lambda: float | None = None
    tikhonov_val_psnr: float | None = None
    baselines: dict | None = None  # {method: settings tuned on the validation images} (TV, BM3D); None: untuned
    # with a test grid (grid.py): per-image records of every cell, {cell: (λ, validation PSNR)}, rows per cell
    grid_records: list[dict] = field(default_factory=list)
    grid_lambdas: dict[str, tuple[float, float]] = field(default_factory=dict)
    grid_summary: list[dict] = field(default_factory=list)


def learned_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The model's hyper-parameters that training changes (per iteration): an algorithm's fixed ones
    (buffers, e.g. λ with `trainable_params=[stepsize]`) are left out."""
    hp = model.hyperparameters() if callable(getattr(model, "hyperparameters", None)) else {}
    fixed = {name for name, attr in ((n, getattr(model, n, None)) for n in hp)
             if isinstance(attr, Tensor) and not attr.requires_grad}
    return {name: value for name, value in hp.items() if name not in fixed}


def reports_iterates(model: nn.Module) -> bool:
    """Whether `model(y, physics, x_gt=..., compute_metrics=True)` gives the PSNR of every iterate."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "compute_metrics" in params and "x_gt" in params


def reconstruct(model: nn.Module, y: Tensor, physics, init: Tensor | None,
                x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """(x̂, PSNR of each iterate (K, B) or None); with `x`, the iterates' PSNR when the model reports it."""
    kwargs = {} if init is None else {"init": init}
    if x is None or not reports_iterates(model):
        return model(y, physics, **kwargs), None
    x_hat, metrics = model(y, physics, x_gt=x, compute_metrics=True, **kwargs)
    per_iter = metrics.get("psnr") if isinstance(metrics, dict) else None
    if per_iter is not None:
        per_iter = torch.as_tensor(per_iter).detach().float()
        per_iter = per_iter[:, None] if per_iter.dim() == 1 else per_iter
    return x_hat, per_iter


class Means:
    """Means of per-image values over a split, across processes (float64 `MeanMetric`s)."""

    def __init__(self):
        self._metrics: dict[str, MeanMetric] = {}

    def update(self, values: dict[str, Tensor], device: torch.device) -> None:
        for key, value in values.items():
            if key not in self._metrics:
                self._metrics[key] = MeanMetric().to(device).set_dtype(torch.float64)
            self._metrics[key].update(value.detach().double().reshape(-1))

    def compute_and_reset(self) -> dict[str, float]:
        out = {key: float(self._metrics[key].compute()) for key in sorted(self._metrics)}
        for m in self._metrics.values():
            m.reset()
        return out


def validation_values(x_hat: Tensor, x: Tensor, margin, per_iter: Tensor | None) -> dict[str, Tensor]:
    values = {f"val/{name}": value for name, value in image_metrics(x_hat, x, margin).items()}
    if per_iter is not None:
        values.update({f"val/psnr_iter/{k + 1}": v for k, v in enumerate(per_iter)})
    return values


def test_records(numbers: list[int], names: list[str], x: Tensor, y: Tensor, physics, recs: dict[str, Tensor],
                 margin, per_iter: Tensor | None, num_report_images: int) -> list[dict]:
    """One record per image of the batch: every method's metrics, the iterates' PSNR, pictures for the first
    `num_report_images` images."""
    out = []
    for i, index in enumerate(numbers):
        record = {"index": index, "name": names[index] if index < len(names) else f"test_{index}"}
        for method, rec in recs.items():
            for metric, value in image_metrics(rec[i:i + 1], x[i:i + 1], margin).items():
                record[f"{method}/{metric}"] = float(value)
        if per_iter is not None:
            record["psnr_iter"] = per_iter[:, i].tolist()
        if index < num_report_images:
            record["images"] = {"measurement": display_image(y[i], measures_kspace(physics)).cpu(),
                                "target": display_image(x[i]).cpu(),
                                **{m: display_image(r[i]).cpu() for m, r in recs.items()}}
        out.append(record)
    return out


def gather_records(records: list[dict]) -> list[dict]:
    """All processes' records in image order, on every process (pictures stay with their process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return sorted(records, key=lambda r: r["index"])
    mine = [{k: v for k, v in r.items() if k != "images"} for r in records]
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    images = {r["index"]: r["images"] for r in records if "images" in r}
    merged = sorted((r for part in everyone for r in part), key=lambda r: r["index"])
    return [{**r, "images": images[r["index"]]} if r["index"] in images else r for r in merged]


# A model whose mean test PSNR is within this of its start x₀'s did not learn anything (issue #21)
STILL_DB = 0.01


def did_not_move(summary: dict) -> bool:
    """Whether the model's test PSNR is that of its start x₀ (the reports then say so instead of a result)."""
    return "start/psnr" in summary and abs(summary["model/psnr"] - summary["start/psnr"]) < STILL_DB


def summarise(records: list[dict], tikhonov_lambda: float | None, baselines: dict | None = None) -> dict[str, float]:
    """Means over the images of every method's metrics (`start`: the model's x₀), the model's gains over the
    baselines, the settings tuned for TV and BM3D, and `model/did_not_move` (1.0 when the model ends where it
    started: within `STILL_DB` of x₀'s PSNR)."""
    keys = [k for k in records[0] if "/" in k]
    summary = {k: sum(r[k] for r in records) / len(records) for k in keys}
    for method, settings in (baselines or {}).items():
        summary.update({f"{method}/{k}": float(v) for k, v in settings.items() if isinstance(v, (int, float))})
    if "start/psnr" in summary:
        summary["model/did_not_move"] = float(did_not_move(summary))
    for method in ("tv", "bm3d"):
        if f"{method}/psnr_interior" in summary:
            gap = summary["model/psnr_interior"] - summary[f"{method}/psnr_interior"]
            summary[f"gain/psnr_interior_vs_{method}"] = gap
    if "tikhonov/psnr" in summary:
        summary["gain/psnr"] = summary["model/psnr"] - summary["tikhonov/psnr"]
        summary["gain/psnr_interior"] = summary["model/psnr_interior"] - summary["tikhonov/psnr_interior"]
    if "adjoint/psnr" in summary:  # Aᵀy: the zero-filled reconstruction for MRI
        summary["gain/psnr_vs_adjoint"] = summary["model/psnr"] - summary["adjoint/psnr"]
    if tikhonov_lambda is not None:
        summary["tikhonov/lambda"] = tikhonov_lambda
    return summary
