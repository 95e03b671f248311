"""Parsing and validation of an algorithm's hyperparameters (step size, λ, σ, β)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

HYPERPARAMETERS = ("stepsize", "lambda_reg", "sigma_denoiser", "beta")
ALIASES = {"g_param": "sigma_denoiser", "lambda": "lambda_reg"}
# name -> (predicate, what is allowed)
_RULES = {
    "stepsize": (lambda v: v > 0, "> 0"),
    "lambda_reg": (lambda v: v >= 0, ">= 0"),
    "sigma_denoiser": (lambda v: v >= 0, ">= 0"),
    "beta": (lambda v: v > 0, "> 0"),
}


def as_values(name: str, value, max_iter: int) -> Tensor | None:
    """A 1-D tensor of length 1 (shared by all iterations) or `max_iter` (one per iteration)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        values = value.detach().flatten().tolist()
    elif isinstance(value, (int, float)):
        values = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        values = list(value)
    else:
        raise ValueError(f"{name} must be a number or a list of numbers, got {value!r}")
    if len(values) not in (1, max_iter):
        raise ValueError(f"{name} has {len(values)} values; give 1 (shared by all iterations) or "
                         f"max_iter={max_iter} (one per iteration)")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a list of numbers, got {value!r}") from None
    ok, allowed = _RULES[name]
    bad = [v for v in values if not ok(v)]
    if bad:
        raise ValueError(f"{name} must be {allowed}, got {bad[0]}")
    return torch.tensor(values, dtype=torch.get_default_dtype())


def canonical_names(trainable_params, valid: tuple[str, ...]) -> list[str]:
    """Resolve aliases and reject unknown names; None means no trainable hyperparameter."""
    if trainable_params is None:
        return []
    if isinstance(trainable_params, str):
        trainable_params = [trainable_params]
    names = []
    for raw in trainable_params:
        name = ALIASES.get(raw, raw)
        if name not in valid:
            accepted = sorted(valid + tuple(a for a, c in ALIASES.items() if c in valid))
            raise ValueError(f"unknown trainable parameter {raw!r}; valid names: {', '.join(accepted)}")
        if name not in names:
            names.append(name)
    return names
