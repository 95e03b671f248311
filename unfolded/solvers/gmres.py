"""Restarted GMRES for A x = b, batched (one Krylov space per sample), returning its statistics.

Why for the DEQ backward (I − Jᵀ)v = u: fixed-point iteration returns the k-term Neumann series
Σ (Jᵀ)ⁱu, a fixed polynomial in Jᵀ, which converges only if the spectral radius of J is below 1 and then
at that rate. GMRES returns the best vector of the same Krylov space span{u, Jᵀu, …} — the one with the
smallest residual ‖u − (I − Jᵀ)v‖ — so it converges whenever I − Jᵀ is invertible, at a rate set by how
the eigenvalues of I − Jᵀ cluster, not by the largest eigenvalue of J.

Method (Saad & Schultz 1986): Arnoldi builds an orthonormal basis Q_k of the Krylov space with
A Q_k = Q_{k+1} H̄_k (H̄ upper Hessenberg; orthogonalisation by classical Gram–Schmidt done twice, which
is as stable as modified Gram–Schmidt and is two batched products). The iterate x = x₀ + Q_k y minimises
‖β e₁ − H̄_k y‖, which Givens rotations turn into a triangular system whose last right-hand-side entry is
the residual norm, known at every step without forming x. After `restart` steps x is formed, the true
residual b − A x computed (one product) and the process restarts from it, bounding memory by restart + 1
vectors per sample. The solve stops on the true residual, so the reported residual is the real one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .fixed_point import FixedPointStats


def _rotation(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """c, s, r with [c s; −s c] (a, b) = (r, 0); the identity where a = b = 0 (a finished sample)."""
    r = torch.hypot(a, b)
    safe = torch.where(r > 0, r, torch.ones_like(r))
    return torch.where(r > 0, a / safe, torch.ones_like(a)), torch.where(r > 0, b / safe, torch.zeros_like(b)), r


def gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iter: int,
    tol: float,
    restart: int = 20,
) -> tuple[Tensor, FixedPointStats]:
    """Solve A x = b from x₀ = 0 until every sample has ‖b − A x‖ ≤ tol·‖b‖ (absolute where b = 0), or
    max_iter products with A (the restarts' residual products included). Returns x and the statistics:
    iterations = products with A, one residual per product (Arnoldi's estimate, true at restarts)."""
    shape, B = b.shape, b.shape[0]
    bf = b.reshape(B, -1)
    bnorm = bf.norm(dim=1)
    scale = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
    x, r = torch.zeros_like(bf), bf
    stats = FixedPointStats(solver="gmres")
    converged = float((r.norm(dim=1) / scale).max()) <= tol

    def A(v: Tensor) -> Tensor:
        stats.iterations += 1
        return matvec(v.reshape(shape)).reshape(B, -1)

    while not converged and max_iter - stats.iterations >= 2:  # an Arnoldi step and the true residual
        m = min(restart, max_iter - stats.iterations - 1)
        beta = r.norm(dim=1)
        Q = bf.new_zeros(B, m + 1, bf.shape[1])
        Q[:, 0] = r / torch.where(beta > 0, beta, torch.ones_like(beta))[:, None]
        R = bf.new_zeros(B, m, m)
        g = bf.new_zeros(B, m + 1)
        g[:, 0] = beta
        cs, sn = bf.new_zeros(B, m), bf.new_zeros(B, m)
        k = 0
        for j in range(m):
            w = A(Q[:, j])
            h = torch.einsum("bnd,bd->bn", Q[:, : j + 1], w)
            w = w - torch.einsum("bnd,bn->bd", Q[:, : j + 1], h)
            h2 = torch.einsum("bnd,bd->bn", Q[:, : j + 1], w)  # second pass: orthogonality to rounding
            w, h = w - torch.einsum("bnd,bn->bd", Q[:, : j + 1], h2), h + h2
            hn = w.norm(dim=1)
            Q[:, j + 1] = w / torch.where(hn > 0, hn, torch.ones_like(hn))[:, None]
            col = torch.cat([h, hn[:, None]], 1)  # column j of H̄, length j + 2
            for i in range(j):  # earlier rotations
                a, c = col[:, i].clone(), col[:, i + 1].clone()
                col[:, i], col[:, i + 1] = cs[:, i] * a + sn[:, i] * c, -sn[:, i] * a + cs[:, i] * c
            cs[:, j], sn[:, j], col[:, j] = _rotation(col[:, j], col[:, j + 1])
            g[:, j + 1] = -sn[:, j] * g[:, j]
            g[:, j] = cs[:, j] * g[:, j]
            R[:, : j + 1, j] = col[:, : j + 1]
            k = j + 1
            stats.residuals.append(float((g[:, j + 1].abs() / scale).max()))
            if stats.residuals[-1] <= tol:
                break
        diag = R[:, :k, :k].diagonal(dim1=1, dim2=2)
        Rk = R[:, :k, :k] + torch.diag_embed(torch.where(diag == 0, torch.ones_like(diag), torch.zeros_like(diag)))
        y = torch.linalg.solve_triangular(Rk, g[:, :k, None], upper=True)[..., 0]
        x = x + torch.einsum("bnd,bn->bd", Q[:, :k], y)
        r = bf - A(x)
        stats.residuals.append(float((r.norm(dim=1) / scale).max()))
        converged = stats.residuals[-1] <= tol
    stats.converged = converged
    return x.reshape(shape), stats
