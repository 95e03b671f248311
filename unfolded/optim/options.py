"""The reference's algorithm options that are not hyperparameters: per-iteration priors, custom
initialisation, the early-stopping criterion, and the options refused with a pointer to the alternative."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def per_iteration(owner: str, what: str, value, max_iter: int, kind: type):
    """A module, or a list with one module per iteration (or a single one) → the module or an nn.ModuleList."""
    if not isinstance(value, (list, tuple, nn.ModuleList)):
        return value
    items = list(value)
    if len(items) not in (1, max_iter):
        raise ValueError(f"{owner}: a list of {what}s must have 1 or max_iter={max_iter} entries (one per "
                         f"iteration), got {len(items)}")
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"{owner}: every {what} in the list must be a unfolded.optim {what}, got "
                            f"{type(item).__name__}")
    return items[0] if len(items) == 1 else nn.ModuleList(items)


def at_iteration(value, k: int):
    """Entry k of a per-iteration nn.ModuleList, or the shared module."""
    return value[k] if isinstance(value, nn.ModuleList) else value


def as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, nn.ModuleList) else [value]


def resolve_init(init, y: Tensor, physics) -> tuple[Tensor, tuple]:
    """The reference's initialisations: a tensor x₀, a tuple (x₀, z₀, …), a dict {"est": (x₀, …)}, or a
    callable (y, physics) returning one of these. Returns (x₀, the other entries)."""
    if callable(init) and not isinstance(init, Tensor):
        init = init(y, physics)
    if isinstance(init, dict):
        if "est" not in init:
            raise ValueError(f"init: a dict initialisation must be {{'est': (x0, ...)}}, got keys {sorted(init)}")
        init = init["est"]
    rest: tuple = ()
    if isinstance(init, (tuple, list)):
        if len(init) == 0:
            raise ValueError("init: an empty tuple; give (x0,) or (x0, z0)")
        init, rest = init[0], tuple(init[1:])
    if not isinstance(init, Tensor):
        raise ValueError(f"init must be a tensor x0, a tuple (x0, z0), a dict {{'est': (x0, z0)}} or a callable "
                         f"(y, physics) returning one, got {type(init).__name__}")
    return init, rest


def convergence_criterion(x_prev: Tensor, x: Tensor) -> float:
    """The reference's residual criterion: mean over the batch of ‖x_prev − x‖ / (‖x‖ + 1e-6), so that
    ported code stops at the same iteration."""
    with torch.no_grad():
        change = (x_prev - x).flatten(1).norm(dim=1) / (x.flatten(1).norm(dim=1) + 1e-6)
    return float(change.mean())


def refuse_unsupported(owner: str, backtracking, custom_metrics, cost_fn, show_progress_bar, crit_conv) -> None:
    """Options of the reference that this library does not implement: each refused with its alternative."""
    if backtracking not in (None, False):
        raise NotImplementedError(f"{owner}: backtracking line search is not supported (no explicit cost with "
                                  "learned priors); choose stepsize ≤ 1/‖A‖², e.g. 1 / physics.compute_sqnorm(x)")
    if custom_metrics is not None:
        raise NotImplementedError(f"{owner}: custom_metrics is not supported; call model(y, physics, x_gt=x, "
                                  "compute_metrics=True) for PSNR and residual per iteration, or iterate "
                                  "model.iterates(y, physics) and measure each estimate")
    if cost_fn is not None:
        raise NotImplementedError(f"{owner}: cost_fn is not supported (no cost-based criterion or backtracking); "
                                  "use crit_conv='residual'")
    if show_progress_bar:
        raise NotImplementedError(f"{owner}: show_progress_bar is not supported; use verbose=True")
    if crit_conv == "cost":
        raise NotImplementedError(f"{owner}: crit_conv='cost' is not supported (no explicit cost with learned "
                                  "priors); use crit_conv='residual'")
    if crit_conv != "residual":
        raise ValueError(f"{owner}: crit_conv must be 'residual', got {crit_conv!r}")


def check_callable(owner: str, name: str, value: Callable | None) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {name} must be a callable, got {type(value).__name__}")

