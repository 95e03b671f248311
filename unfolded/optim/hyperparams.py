"""Parsing and validation of an algorithm's hyperparameters (step size, λ, σ, β)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

HYPERPARAMETERS = ("stepsize", "lambda_reg", "sigma_denoiser", "beta")  # those of GD, PGD, HQS, ADMM, DRS
ALIASES = {"g_param": "sigma_denoiser", "lambda": "lambda_reg"}
# name -> (predicate, what is allowed)
_RULES = {
    "stepsize": (lambda v: v > 0, "> 0"),
    "lambda_reg": (lambda v: v >= 0, ">= 0"),
    "sigma_denoiser": (lambda v: v >= 0, ">= 0"),
    "beta": (lambda v: v > 0, "> 0"),
    "stepsize_dual": (lambda v: v > 0, "> 0"),  # PDCP's σ
    "a": (lambda v: v > 0, "> 0"),  # FISTA's inertia: α_k = (k + a − 1)/(k + a); a > 2 for convergence
}


def as_values(name: str, value, max_iter: int) -> Tensor | None:
    """A 1-D tensor of length 1 (shared by all iterations) or `max_iter` (one per iteration)."""
    values = parse_values(name, value, max_iter)
    return None if values is None else torch.tensor(values, dtype=torch.get_default_dtype())


def parse_values(name: str, value, max_iter: int) -> list[float] | None:
    """The values as Python floats (exactly as given: see `restore_exact`), checked."""
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
    return values


def restore_exact(tensor: Tensor | None, exact: list[float] | None) -> None:
    """After a cast to float64 (`model.double()`), put back the exact values a float32 tensor rounded
    (0.8 → 0.800000011920929 → 0.8), unless they changed since (a trained parameter keeps its value)."""
    if tensor is None or exact is None or tensor.dtype != torch.float64 or tensor.device.type == "meta":
        return  # (meta tensors hold no values to compare)
    with torch.no_grad():
        rounded = torch.tensor(exact, dtype=torch.float32, device=tensor.device).to(torch.float64)
        if torch.equal(tensor, rounded):
            tensor.copy_(torch.tensor(exact, dtype=torch.float64, device=tensor.device))


def is_default(value, default) -> bool:
    if value is None or default is None:
        return value is default
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == default


PARAMS_ALGO_KEYS = {"stepsize": "stepsize", "lambda": "lambda_reg", "lambda_reg": "lambda_reg",
                    "g_param": "sigma_denoiser", "sigma_denoiser": "sigma_denoiser", "beta": "beta",
                    "stepsize_dual": "stepsize_dual", "a": "a"}


def merge_params_algo(params_algo: dict | None, values: dict, defaults: dict) -> dict:
    """The reference's dictionary form, `params_algo={"stepsize": [...], "lambda": [...], "g_param": [...]}`,
    merged into the keyword values. A hyperparameter given both ways (a keyword differing from its default)
    is ambiguous: a ValueError rather than the reference's silent preference for the dictionary."""
    if params_algo is None:
        return values
    if not isinstance(params_algo, dict):
        raise TypeError(f"params_algo must be a dict such as {{'stepsize': 1.0, 'lambda': 1.0}}, got "
                        f"{type(params_algo).__name__}")
    keys = {k: n for k, n in PARAMS_ALGO_KEYS.items() if n in values}  # this algorithm's hyperparameters
    unknown = params_algo.keys() - keys.keys()
    if unknown:
        raise ValueError(f"params_algo: unknown key(s) {', '.join(sorted(map(str, unknown)))}; valid keys: "
                         f"{', '.join(sorted(keys))}")
    names = [PARAMS_ALGO_KEYS[k] for k in params_algo]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"params_algo gives {', '.join(twice)} under two names (e.g. 'lambda' and 'lambda_reg'); "
                         "give each once")
    merged = dict(values)
    for key, value in params_algo.items():
        name = PARAMS_ALGO_KEYS[key]
        if not is_default(values[name], defaults[name]):
            raise ValueError(f"{name} is given both as a keyword ({values[name]!r}) and in params_algo['{key}']; "
                             "give it once")
        merged[name] = value
    return merged


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
