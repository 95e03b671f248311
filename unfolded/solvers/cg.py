"""Batched conjugate gradient with a per-sample relative tolerance, and a log of every solve.

A solve reports how many iterations it took and the final relative residual of each sample, so
non-convergence is visible (a `ConvergenceWarning`, and the figures in a `SolverLog`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


class ConvergenceWarning(UserWarning):
    """An iterative solve stopped at its iteration limit before reaching its tolerance."""


@dataclass
class SolveInfo:
    iterations: int
    rel_residual: Tensor  # (B,) final ‖r‖/‖b‖ per sample, of the system the caller asked to solve
    converged: bool
    method: str = "cg"  # which Krylov method solved it (solvers.krylov): the prefix of its SolverLog kind


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Inner product over every dimension but the first: shape (B, 1, ..., 1) so it broadcasts."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


class NormalEquations(Protocol):
    """What `LinearPhysics.normal_system` returns: something that solves (AᵀA + I/γ) x = rhs."""

    def solve(self, rhs: Tensor, x0: Tensor | None, tol: float, max_iter: int) -> tuple[Tensor, SolveInfo]: ...


@dataclass
class NormalSystem:
    """(AᵀA + I/γ) x = b on images, as `conjugate_gradient` solves it: the operator and an optional
    preconditioner. A physics with a cheaper exact route returns its own object with the same `solve`."""

    matvec: Callable[[Tensor], Tensor]
    precond: Callable[[Tensor], Tensor] | None = None

    def solve(self, rhs: Tensor, x0: Tensor | None, tol: float, max_iter: int) -> tuple[Tensor, SolveInfo]:
        return conjugate_gradient(self.matvec, rhs, x0=x0, max_iter=max_iter, tol=tol, precond=self.precond)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-4,
    precond: Callable[[Tensor], Tensor] | None = None,
    residual_sq: Callable[[Tensor], Tensor] | None = None,
    reference: Tensor | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Solve M x = b for a symmetric positive definite M, one system per batch sample.

    Stops when every sample has a relative residual ‖r‖ ≤ tol·‖b‖ (checked before the first step too) or
    after `max_iter` steps. A reduced system (physics.blur_solvers) measures the residual of the system it
    stands for instead: `residual_sq(r)` gives its ‖r‖² per sample and `reference` its ‖b‖².
    Converged samples are frozen (α = β = 0) so they neither drift nor divide by zero; there is no ε in
    the denominators, which would put a floor under the attainable accuracy. Differentiable by autograd
    when its inputs require grad (the unrolled backward).
    """
    bb = batch_dot(b, b)
    if x0 is not None:  # b = 0 has the exact solution 0, whatever the warm start
        x0 = torch.where(bb > 0, x0, torch.zeros_like(x0))
    reference = bb if reference is None else reference
    x = torch.zeros_like(b) if x0 is None else x0
    r = b - matvec(x) if x0 is not None else b
    threshold = tol**2 * reference  # compared with ‖r‖²: no square root per iteration
    norm_sq = residual_sq if residual_sq is not None else (lambda a: batch_dot(a, a))
    reuse_rr = precond is None and residual_sq is None  # then rᵀz = ‖r‖², already computed
    rr = norm_sq(r)
    active = rr > threshold
    z = precond(r) if precond is not None else r
    p = z
    rz = rr if reuse_rr else batch_dot(r, z)
    it = 0
    # The guards below (a `where` inside the division) keep frozen samples at 0/1 rather than 0/0, whose
    # NaN would otherwise reach the gradient of the unrolled backward through the other `where` branch.
    while it < max_iter and bool(active.any()):
        Mp = matvec(p)
        pMp = batch_dot(p, Mp)
        alpha = torch.where(active, rz / torch.where(active, pMp, 1.0), 0.0)
        x = torch.addcmul(x, alpha, p)
        r = torch.addcmul(r, alpha, Mp, value=-1)
        it += 1
        rr = norm_sq(r)
        active = active & (rr > threshold)
        if not bool(active.any()):  # done: skip the preconditioner and direction of a step never taken
            break
        z = precond(r) if precond is not None else r
        rz_new = rr if reuse_rr else batch_dot(r, z)
        beta = torch.where(active, rz_new / torch.where(active, rz, 1.0), 0.0)
        p = torch.addcmul(z, beta, p)
        rz = rz_new
    with torch.no_grad():
        # b = 0 has the exact solution 0 (converged); report its residual as 0 rather than 0/0.
        rel = (rr / torch.where(reference > 0, reference, 1.0)).sqrt().flatten()
    return x, SolveInfo(iterations=it, rel_residual=rel.detach(), converged=not bool(active.any()))


@dataclass
class SolverLog:
    """Statistics of the solves made while it is active (see `record_solves`): CG solves of the
    least-squares steps ('cg_forward', 'cg_backward') and DEQ fixed-point solves ('deq_forward',
    'deq_backward'). Kept on the model, not the physics, so solving never mutates the physics object.
    """

    records: list[tuple[str, int, float, bool]] = field(default_factory=list)

    def add(self, kind: str, iterations: int, residual: float, converged: bool) -> None:
        self.records.append((kind, int(iterations), float(residual), bool(converged)))

    def reset(self) -> None:
        self.records.clear()

    def summary(self) -> dict[str, float]:
        """Per kind: number of solves, mean and largest iterations, worst final residual, unconverged count."""
        out: dict[str, float] = {}
        for kind in sorted({r[0] for r in self.records}):
            rows = [r for r in self.records if r[0] == kind]
            out[f"{kind}/solves"] = float(len(rows))
            out[f"{kind}/iters_mean"] = sum(r[1] for r in rows) / len(rows)
            out[f"{kind}/iters_max"] = float(max(r[1] for r in rows))
            out[f"{kind}/max_rel_residual"] = max(r[2] for r in rows)
            out[f"{kind}/unconverged"] = float(sum(not r[3] for r in rows))
        return out


_ACTIVE_LOG: contextvars.ContextVar[SolverLog | None] = contextvars.ContextVar("unfolded_solver_log", default=None)


@contextlib.contextmanager
def record_solves(log: SolverLog):
    """Route the statistics of every solve made inside the block (and of its backward) to `log`."""
    token = _ACTIVE_LOG.set(log)
    try:
        yield log
    finally:
        _ACTIVE_LOG.reset(token)


def active_log() -> SolverLog | None:
    return _ACTIVE_LOG.get()


_WARNED_SITES: set[tuple[str, str, int]] = set()


_LIBRARY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../unfolded
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))
_INSIDE = (os.path.join(_LIBRARY, sub) + os.sep for sub in ("physics", "solvers", "optim", "models"))
_INSIDE = (*_INSIDE, _TORCH + os.sep)


def _caller_depth(start: int) -> int:
    """Depth (for `warnings.warn`'s stacklevel, counted from the caller of this function's caller) of the
    first frame at or above `start` outside the library's solvers/operators/models and torch: a warning
    raised inside a model points at the line that called the model, not at torch's Module.__call__."""
    depth, frame = start, sys._getframe(start + 1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INSIDE):
        frame, depth = frame.f_back, depth + 1
    return depth


def warn_unconverged(kind: str, message: str, stacklevel: int) -> None:
    """Warn once per (kind, call site), at the first caller outside the library at or above `stacklevel`:
    the message carries the residual, so Python's own once-per-text rule would repeat it at every
    training step. Later occurrences are counted in the SolverLog."""
    depth = _caller_depth(stacklevel)
    frame = sys._getframe(depth)
    site = (kind, frame.f_code.co_filename, frame.f_lineno)
    if site in _WARNED_SITES:
        return
    _WARNED_SITES.add(site)
    warnings.warn(message + " (reported once per call site; the model's solver_log counts every one)",
                  ConvergenceWarning, stacklevel=depth + 1)


def reset_warnings() -> None:
    """Forget which sites have warned (tests, or a new experiment in the same process)."""
    _WARNED_SITES.clear()


def report_solve(kind: str, info: SolveInfo, tol: float, log: SolverLog | None, stacklevel: int = 3) -> None:
    """Record a solve and warn (once per call site) when it did not converge."""
    if log is not None:
        log.add(f"{info.method}_{kind}", info.iterations, float(info.rel_residual.max()), info.converged)
    if not info.converged:
        name = "conjugate gradient" if info.method == "cg" else info.method
        warn_unconverged(
            f"{info.method}_{kind}",
            f"{name} ({kind}) did not converge: relative residual "
            f"{float(info.rel_residual.max()):.2e} > tol {tol:.1e} after {info.iterations} iterations; "
            "raise max_iter or tol",
            stacklevel=stacklevel,
        )
