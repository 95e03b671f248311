"""Fixed-point solvers x = f(x), plain or Anderson-accelerated, batched, returning their statistics.

Every solver in this package (also `broyden`, `gmres`) reports the same `FixedPointStats`: iterations
= evaluations of f (for a DEQ backward solve: vector–Jacobian products), the residual trace, and whether
the tolerance was reached. The residual of sample b is ‖f(x) − x‖ / s_b with s_b = ‖f(x)‖ by default or
a fixed `reference` norm (the backward solve divides by ‖u‖, the norm of its right-hand side, so that
its residual is the relative residual of the linear system (I − Jᵀ)v = u whatever the solver).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class AndersonAccelerationConfig:
    """Anderson mixing: history of m iterates, mixing β, Tikhonov ε on the coefficient system.

    `full_backprop` (the reference's meaning) only matters when autograd differentiates through the
    iterations (unrolled Anderson, no DEQ): True keeps the graph of every iterate in the history, so the
    gradient flows through all of them; False (default) detaches the older entries and lets the gradient
    flow through the current iterate only (cheaper; the mixing weights still see the current entry).
    """

    history_size: int = 10
    beta: float = 0.9
    eps: float = 0.1
    full_backprop: bool = False

    def __post_init__(self):
        if isinstance(self.history_size, bool) or not isinstance(self.history_size, int) or self.history_size < 1:
            raise ValueError(f"Anderson history_size must be an integer >= 1, got {self.history_size!r}")
        if not 0 < float(self.beta) <= 1:
            raise ValueError(f"Anderson beta must be in (0, 1], got {self.beta!r}")
        if not float(self.eps) >= 0:
            raise ValueError(f"Anderson eps must be >= 0, got {self.eps!r}")
        if not isinstance(self.full_backprop, bool):
            raise ValueError(f"Anderson full_backprop must be True or False, got {self.full_backprop!r}")


@dataclass
class FixedPointStats:
    solver: str = "fixed_point"
    iterations: int = 0  # evaluations of f
    residuals: list[float] = field(default_factory=list)  # max over the batch, one per evaluation
    converged: bool = False

    def as_dict(self) -> dict:
        return {"solver": self.solver, "iterations": self.iterations,
                "residual": self.residuals[-1] if self.residuals else float("nan"),
                "residuals": list(self.residuals), "converged": self.converged}


def relative_residual(fx: Tensor, x: Tensor, reference: Tensor | None = None) -> float:
    """max over the batch of ‖f(x) − x‖ / s (s = ‖f(x)‖, or `reference`, shape (B,)); absolute where s = 0."""
    fx, x = fx.detach(), x.detach()  # a statistic: no graph (the unrolled path calls it on graph tensors)
    num = (fx - x).flatten(1).norm(dim=1)
    den = fx.flatten(1).norm(dim=1) if reference is None else reference
    rel = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), num)
    return float(rel.max())


def _anderson_mix(X: list[Tensor], F: list[Tensor], cfg: AndersonAccelerationConfig) -> Tensor:
    """x = β Σαᵢ fᵢ + (1−β) Σαᵢ xᵢ with α = argmin ‖Σαᵢ(fᵢ − xᵢ)‖² + ε'‖α‖², Σα = 1.

    ε' = ε · (mean diagonal of the Gram matrix), so the regularisation does not depend on the scale of
    the iterates (an absolute ε swamps the system once residuals are small, stalling convergence).
    """
    if not cfg.full_backprop:  # gradient through the current entry only (no-op without a graph)
        X = [x.detach() for x in X[:-1]] + X[-1:]
        F = [f.detach() for f in F[:-1]] + F[-1:]
    B = X[0].shape[0]
    Xs = torch.stack([x.reshape(B, -1) for x in X], 1)  # (B, n, d)
    Fs = torch.stack([f.reshape(B, -1) for f in F], 1)
    G = Fs - Xs
    n = G.shape[1]
    gram = G @ G.transpose(1, 2)  # (B, n, n)
    scale = gram.diagonal(dim1=1, dim2=2).mean(1)
    # A sample whose residuals are all zero (already a fixed point, or a zero right-hand side) would make
    # the system singular and its NaN would spread to the whole batch: regularise it with 1 instead.
    reg = torch.where(scale > 0, float(cfg.eps) * scale, torch.ones_like(scale))
    eye = torch.eye(n, dtype=G.dtype, device=G.device)
    H = torch.zeros(B, n + 1, n + 1, dtype=G.dtype, device=G.device)
    H[:, 0, 1:] = 1
    H[:, 1:, 0] = 1
    H[:, 1:, 1:] = gram + reg[:, None, None] * eye
    rhs = torch.zeros(B, n + 1, 1, dtype=G.dtype, device=G.device)
    rhs[:, 0] = 1
    alpha = torch.linalg.solve(H, rhs)[:, 1:]  # (B, n, 1)
    mixed = cfg.beta * (alpha * Fs).sum(1) + (1 - cfg.beta) * (alpha * Xs).sum(1)
    return mixed.reshape(X[0].shape)


def fixed_point(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    max_iter: int,
    tol: float,
    anderson: AndersonAccelerationConfig | None = None,
    reference: Tensor | None = None,
) -> tuple[Tensor, FixedPointStats]:
    """Iterate x ← f(x) (or Anderson-mix) until every sample's residual ‖f(x) − x‖ / s ≤ tol, or max_iter
    evaluations of f. Returns the last f(x) and the statistics."""
    stats = FixedPointStats(solver="fixed_point" if anderson is None else "anderson")
    x, X, F = x0, [], []
    fx = x0
    for it in range(1, max_iter + 1):
        fx = f(x)
        res = relative_residual(fx, x, reference)
        stats.iterations, stats.residuals = it, stats.residuals + [res]
        if res <= tol:
            stats.converged = True
            break
        if anderson is None:
            x = fx
            continue
        X, F = (X + [x])[-anderson.history_size :], (F + [fx])[-anderson.history_size :]
        x = _anderson_mix(X, F, anderson)
    return fx, stats
