"""Batched BiCGStab, MINRES and LSQR beside `cg.conjugate_gradient`, with the same contract.

Each solves one system per batch sample, stops when every sample has a relative residual ≤ tol (checked
before the first step too) or after `max_iter` steps, freezes converged samples (no ε in any denominator:
a `where` keeps frozen samples finite instead), and returns (x, SolveInfo). The residual they report is
recomputed from the solution (one extra product), so it is the true residual of the system the caller
asked to solve, not the recurrence's estimate, which drifts in floating point.

Why these three beside CG (the default): the prox's normal matrix AᵀA + I/γ is symmetric positive definite,
where CG is the cheapest; MINRES also handles symmetric *semi*-definite systems (the unregularised normal
equations of `A_dagger`, singular whenever A has fewer rows than columns) with a monotonically decreasing
residual; LSQR works on A itself rather than AᵀA, so its accuracy is governed by cond(A) rather than
cond(A)²; BiCGStab does not need symmetry at all. They are the reference's `solver=` choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .cg import SolveInfo, batch_dot, conjugate_gradient

SOLVERS = ("CG", "BiCGStab", "minres", "lsqr")


def check_solver(solver: str) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, got {solver!r}")
    return solver


def _safe(t: Tensor, ok: Tensor) -> Tensor:
    """t where `ok`, 1 elsewhere: a division that would be 0/0 (or by a frozen sample's stale value) gives a
    finite number, which the frozen sample's zero step then ignores. (0·NaN would be NaN, in x and in the
    gradient of the unrolled backward alike.)"""
    return torch.where(ok, t, torch.ones_like(t))


def _nonzero(t: Tensor) -> Tensor:
    return _safe(t, t != 0)


def solve_info(method: str, matvec, x: Tensor, b: Tensor, tol: float, it: int) -> SolveInfo:
    """The true relative residual ‖b − Mx‖/‖b‖ per sample (0 where b = 0), and whether every sample reached
    tol."""
    with torch.no_grad():
        r = b - matvec(x)
        reference = batch_dot(b, b)
        rel = (batch_dot(r, r) / torch.where(reference > 0, reference, 1.0)).sqrt().flatten()
    return SolveInfo(iterations=it, rel_residual=rel, converged=bool((rel <= tol).all()), method=method)


def bicgstab(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor | None = None, max_iter: int = 50,
             tol: float = 1e-4) -> tuple[Tensor, SolveInfo]:
    """Solve M x = b (M square, not necessarily symmetric) by stabilised bi-conjugate gradients."""
    bb = batch_dot(b, b)
    x = torch.zeros_like(b) if x0 is None else torch.where(bb > 0, x0, torch.zeros_like(x0))
    r = b - matvec(x) if x0 is not None else b
    threshold = tol**2 * bb
    active = batch_dot(r, r) > threshold
    r_hat = r
    rho = alpha = omega = torch.ones_like(bb)
    v = p = torch.zeros_like(b)
    it = 0
    while it < max_iter and bool(active.any()):
        rho_new = batch_dot(r_hat, r)
        beta = (rho_new / _safe(rho, active)) * (alpha / _safe(omega, active))
        p = r + beta * (p - omega * v)
        v = matvec(p)
        alpha = torch.where(active, rho_new / _safe(batch_dot(r_hat, v), active), 0.0)
        s = r - alpha * v
        t = matvec(s)
        tt = batch_dot(t, t)
        # s = 0 (converged within the half step) gives t = 0: take ω = 0 rather than 0/0.
        omega = torch.where(active & (tt > 0), batch_dot(t, s) / torch.where(tt > 0, tt, 1.0), 0.0)
        x = x + alpha * p + omega * s
        r = s - omega * t
        rho = rho_new
        it += 1
        active = active & (batch_dot(r, r) > threshold)
    return x, solve_info("bicgstab", matvec, x, b, tol, it)


def minres(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor | None = None, max_iter: int = 50,
           tol: float = 1e-4) -> tuple[Tensor, SolveInfo]:
    """Solve M x = b for a symmetric (possibly singular, indefinite) M by MINRES (Paige & Saunders 1975):
    Lanczos vectors, and Givens rotations that minimise ‖b − M x‖ over the Krylov space; `phibar` is that
    residual's norm, so the stopping test needs no extra product."""
    bb = batch_dot(b, b)
    x = torch.zeros_like(b) if x0 is None else torch.where(bb > 0, x0, torch.zeros_like(x0))
    r1 = b - matvec(x) if x0 is not None else b
    beta = batch_dot(r1, r1).sqrt()
    threshold = tol * bb.sqrt()
    active = beta > threshold
    zero = torch.zeros_like(beta)
    old_beta, dbar, epsilon, phibar = zero, zero, zero, beta
    cs, sn = -torch.ones_like(beta), zero
    w = w2 = torch.zeros_like(b)
    r2, y = r1, r1
    it = 0
    # Frozen samples keep running the Lanczos recurrence (normalised, so it stays finite) with a zero step.
    while it < max_iter and bool(active.any()):
        v = y / _nonzero(beta)
        y = matvec(v)
        if it > 0:
            y = y - (beta / _nonzero(old_beta)) * r1
        alpha = batch_dot(v, y)
        y = y - (alpha / _nonzero(beta)) * r2
        r1, r2 = r2, y
        old_beta, beta = beta, batch_dot(y, y).sqrt()
        old_epsilon = epsilon
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        gamma = (gbar**2 + beta**2).sqrt()
        gamma_safe = _nonzero(gamma)
        cs, sn = gbar / gamma_safe, beta / gamma_safe
        phi = torch.where(active, cs * phibar, 0.0)
        phibar = torch.where(active, sn * phibar, phibar)
        w1, w2 = w2, w
        w = (v - old_epsilon * w1 - delta * w2) / gamma_safe
        x = x + phi * w
        it += 1
        # beta = 0: the Krylov space is exhausted and x is exact (up to rounding).
        active = active & (phibar > threshold) & (beta > 0)
    return x, solve_info("minres", matvec, x, b, tol, it)


def lsqr(A: Callable[[Tensor], Tensor], A_adjoint: Callable[[Tensor], Tensor], b: Tensor, like: Tensor,
         damp: Tensor | float = 0.0, max_iter: int = 50, tol: float = 1e-4,
         reference: Tensor | None = None) -> tuple[Tensor, int]:
    """min ‖A x − b‖² + damp²‖x‖² from x = 0 by LSQR (Paige & Saunders 1982), x shaped like `like`.

    Golub–Kahan bidiagonalisation of A, then Givens rotations (the first one folds in the damping). Stops
    when every sample's normal-equation residual ‖Aᵀ(b − Ax) − damp²x‖, which the recurrences give as
    α·|s·φ| without extra products, is ≤ tol·√reference (default reference: ‖Aᵀb‖²). Returns (x,
    iterations); callers recompute the true residual of the system they stand for. Scalars are kept flat,
    (B,), and viewed per space, since images and measurements may have different numbers of dimensions.
    """
    def norm(t):
        return t.flatten(1).norm(dim=1)

    def in_x(s):
        return s.view(-1, *([1] * (like.dim() - 1)))

    def in_y(s):
        return s.view(-1, *([1] * (b.dim() - 1)))

    beta = norm(b)
    u = b / in_y(torch.where(beta > 0, beta, 1.0))
    v = A_adjoint(u)
    alpha = norm(v)
    v = v / in_x(torch.where(alpha > 0, alpha, 1.0))
    damp = torch.as_tensor(damp, dtype=like.dtype, device=like.device).flatten()
    threshold = tol * ((alpha * beta) if reference is None else reference.flatten().sqrt())
    x = torch.zeros_like(like)
    w = v
    phibar, rhobar = beta, alpha
    active = alpha * beta > threshold
    it = 0
    while it < max_iter and bool(active.any()):
        u = A(v) - in_y(alpha) * u
        beta = norm(u)
        u = u / in_y(_nonzero(beta))
        v = A_adjoint(u) - in_x(beta) * v
        alpha = norm(v)
        v = v / in_x(_nonzero(alpha))
        rhobar1 = (rhobar**2 + damp**2).sqrt()
        cs1 = rhobar / _nonzero(rhobar1)
        phibar = cs1 * phibar
        rho = (rhobar1**2 + beta**2).sqrt()
        rho_safe = _nonzero(rho)
        cs, sn = rhobar1 / rho_safe, beta / rho_safe
        theta = sn * alpha
        rhobar = -cs * alpha
        phi = cs * phibar
        phibar = sn * phibar
        x = x + in_x(torch.where(active, phi / rho_safe, 0.0)) * w
        w = v - in_x(theta / rho_safe) * w
        estimate = alpha * (sn * phi).abs()
        it += 1
        active = active & (estimate > threshold) & (alpha > 0) & (rho > 0)
    return x, it


def lsqr_normal_equations(A, A_adjoint, gamma: Tensor, rhs: Tensor, x0: Tensor | None, tol: float,
                          max_iter: int) -> tuple[Tensor, SolveInfo]:
    """Solve (AᵀA + I/γ) x = rhs with LSQR, which works on A and a right-hand side in measurement space
    rather than on rhs itself.

    With the warm start w and μ = 1/γ, write x = w + e + d with e = (rhs − M w)/μ: then M d = −AᵀA e, i.e.
    d = argmin ‖A d + A e‖² + μ‖d‖², an LSQR problem with b = −A e and damp = √μ. (The residual of M x = rhs
    equals that of the d-problem's normal equations, so LSQR's stopping test is the caller's.)
    """
    def M(v):
        return A_adjoint(A(v)) + v / gamma

    reference = batch_dot(rhs, rhs)
    w = torch.zeros_like(rhs) if x0 is None else x0
    e = (rhs - M(w)) * gamma if x0 is not None else rhs * gamma
    d, it = lsqr(A, A_adjoint, -A(e), rhs, damp=(1 / gamma).sqrt(), max_iter=max_iter, tol=tol,
                 reference=reference)
    x = w + e + d
    return x, solve_info("lsqr", M, x, rhs, tol, it)


@dataclass
class KrylovSystem:
    """Normal equations (AᵀA + I/γ) x = b solved by the named method: what `normal_system` returns when a
    prox is asked for `solver=` other than CG. `A`, `A_adjoint` and `gamma` are needed by LSQR only."""

    method: str
    matvec: Callable[[Tensor], Tensor]
    A: Callable[[Tensor], Tensor] | None = None
    A_adjoint: Callable[[Tensor], Tensor] | None = None
    gamma: Tensor | None = None

    def solve(self, rhs: Tensor, x0: Tensor | None, tol: float, max_iter: int) -> tuple[Tensor, SolveInfo]:
        if self.method == "CG":
            return conjugate_gradient(self.matvec, rhs, x0=x0, max_iter=max_iter, tol=tol)
        if self.method == "BiCGStab":
            return bicgstab(self.matvec, rhs, x0, max_iter, tol)
        if self.method == "minres":
            return minres(self.matvec, rhs, x0, max_iter, tol)
        return lsqr_normal_equations(self.A, self.A_adjoint, self.gamma, rhs, x0, tol, max_iter)
