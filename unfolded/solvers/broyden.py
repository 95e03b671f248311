"""Broyden's (good) method for a fixed point x = f(x), batched, with limited memory.

Newton's method on g(x) = f(x) − x needs the inverse Jacobian (J_f − I)⁻¹. Broyden keeps an
approximation H of it, starting at H₀ = −I (the guess J_f = 0, so the first step x − H₀g = f(x) is a
plain fixed-point step), and after each step Δx with change Δg of g makes the smallest correction that
satisfies the secant equation H Δg = Δx (Sherman–Morrison applied to the rank-one update of J):

    H ← H + (Δx − H Δg) (Δxᵀ H) / (Δxᵀ H Δg).

H is never formed: H = −I + Σ uᵢ vᵢᵀ, so H w and wᵀH cost two passes over the stored pairs. On a linear
problem (the DEQ backward v = Jᵀv + u) it converges like a Krylov method; on the forward it is a
quasi-Newton method, fast near the fixed point, with no guarantee far from it (the trace shows it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .fixed_point import FixedPointStats, relative_residual


def broyden(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    max_iter: int,
    tol: float,
    reference: Tensor | None = None,
    memory: int | None = None,
) -> tuple[Tensor, FixedPointStats]:
    """Solve x = f(x) sample by sample until every residual ‖f(x) − x‖ / s ≤ tol (s = ‖f(x)‖, or
    `reference`), or max_iter evaluations of f. Keeps the last `memory` (default: all) rank-one updates.
    Returns the last f(x) and the statistics."""
    shape, B = x0.shape, x0.shape[0]
    m = max(1, min(max_iter, memory or max_iter))
    U = x0.new_zeros(B, m, x0[0].numel())
    V = torch.zeros_like(U)
    stored = 0  # updates made (ring buffer of size m)

    def H(w: Tensor) -> Tensor:  # H w = −w + Σ uᵢ (vᵢ·w)
        n = min(stored, m)
        return -w + torch.einsum("bnd,bn->bd", U[:, :n], torch.einsum("bnd,bd->bn", V[:, :n], w))

    def Ht(w: Tensor) -> Tensor:  # (wᵀH)ᵀ = −w + Σ vᵢ (uᵢ·w)
        n = min(stored, m)
        return -w + torch.einsum("bnd,bn->bd", V[:, :n], torch.einsum("bnd,bd->bn", U[:, :n], w))

    stats = FixedPointStats(solver="broyden")
    x = x0.reshape(B, -1)
    fx = f(x0)
    g = fx.reshape(B, -1) - x
    stats.iterations, stats.residuals = 1, [relative_residual(fx, x0, reference)]
    while stats.residuals[-1] > tol and stats.iterations < max_iter:
        dx = -H(g)
        x = x + dx
        fx = f(x.reshape(shape))
        g_new = fx.reshape(B, -1) - x
        stats.iterations += 1
        stats.residuals.append(relative_residual(fx, x.reshape(shape), reference))
        dg, g = g_new - g, g_new
        Hdg, vt = H(dg), Ht(dx)
        den = (dx * Hdg).sum(1, keepdim=True)
        # A vanishing Δxᵀ H Δg (a sample that stopped moving) carries no curvature: skip its update.
        ok = den.abs() > 1e-12 * dx.norm(dim=1, keepdim=True) * Hdg.norm(dim=1, keepdim=True)
        slot = stored % m
        U[:, slot] = torch.where(ok, (dx - Hdg) / torch.where(ok, den, torch.ones_like(den)), 0.0)
        V[:, slot] = vt
        stored += 1
    stats.converged = stats.residuals[-1] <= tol
    return fx, stats
