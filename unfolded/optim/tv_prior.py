"""Isotropic total variation, g(x) = Σ_i ‖(∇x)_i‖₂ (forward differences, zero across the last row/column),
and its proximal operator (the reference's `TVPrior(def_crit=1e-8, n_it_max=1000)`).

prox_{γg}(y) = argmin_x ½‖x − y‖² + γ·g(x) has no closed form. As in the reference (deepinv 0.5.0's
TVDenoiser, after Condat 2013) it is solved by the over-relaxed Chambolle–Pock iteration on
min_x F(x) + G(∇x) with F = ½‖· − y‖² and G = γ‖·‖_{1,2}:

    x̃ = prox_{τF}(x − τ∇ᵀu) = (x − τ∇ᵀu + τy) / (1 + τ)
    ũ = u + σ∇(2x̃ − x), then projected pixel-wise on the ball of radius γ (the prox of σG*)
    (x, u) ← (x, u) + ρ·((x̃, ũ) − (x, u))

with τ = 0.01, ρ = 1.99 and σ = 1/(τ·2^(d+1)) for d spatial dimensions, so that τσ‖∇‖² ≤ 1 (‖∇‖² ≤ 4d).
A sample stops when its relative change ‖x_k − x_{k−1}‖/‖x_k‖ falls below `def_crit` (tested from the
third iteration, like the reference), or after `n_it_max` iterations; an unconverged solve is recorded in
the model's SolverLog and warned about once per call site. Unlike the reference, a solve never starts from
the previous call's solution: the output depends on the input alone.

Gradient: autograd through the iterations, so it is the exact derivative of the computed output, also of
an unconverged one (the loss is computed from that output). The iterations run in segments that backward
recomputes (activation checkpointing), so memory grows with √(iterations), not with the iterations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..solvers.cg import SolveInfo, active_log, warn_unconverged
from .classical_priors import ExplicitPrior, per_sample_sum, prox_weight

TAU, RHO = 0.01, 1.99


def _shift(v: Tensor, dim: int, front: bool) -> Tensor:
    """v with one zero slice added before (front) or after its entries along `dim`."""
    pad = [0, 0] * (v.dim() - dim)
    pad[-2 if front else -1] = 1
    return F.pad(v, pad)


def nabla(x: Tensor) -> Tensor:
    """Forward differences along each spatial dimension of (B, C, H, W) or (B, C, D, H, W), stacked last;
    the difference across the last row/column is zero (Neumann boundary)."""
    if x.dim() not in (4, 5):
        raise ValueError(f"TV: the image must be 4-D (B, C, H, W) or 5-D (B, C, D, H, W), got {x.dim()}-D")
    return torch.stack([torch.diff(x, dim=d, append=x.narrow(d, x.shape[d] - 1, 1))
                        for d in range(2, x.dim())], dim=-1)


def nabla_adjoint(u: Tensor) -> Tensor:
    """The adjoint of `nabla` (minus the divergence): (∇ᵀv)_j = v_{j−1} − v_j, v_{−1} = 0, v_last unused."""
    if u.dim() not in (5, 6):
        raise ValueError(f"TV: the gradient field must be 5-D or 6-D, got {u.dim()}-D")
    out = 0
    for i, d in enumerate(range(2, u.dim() - 1)):
        v = u[..., i].narrow(d, 0, u.shape[d] - 1)
        out = out + _shift(v, d, front=True) - _shift(v, d, front=False)
    return out


def _segment(x, u, active, rel, its, y, lam, crit, start, steps):
    """`steps` Chambolle–Pock iterations from iteration `start`; converged samples are frozen."""
    sigma = 1.0 / (TAU * 2 ** (y.dim() - 1))
    shape_x = (-1,) + (1,) * (y.dim() - 1)
    for k in range(start, start + steps):
        if not bool(active.any()):
            break
        xt = (x - TAU * nabla_adjoint(u) + TAU * y) / (1 + TAU)
        ut = u + sigma * nabla(2 * xt - x)
        ut = ut / torch.clamp(torch.linalg.vector_norm(ut, dim=-1, keepdim=True) / lam.unsqueeze(-1), min=1.0)
        x_new, u_new = x + RHO * (xt - x), u + RHO * (ut - u)
        with torch.no_grad():
            change = (x_new - x).flatten(1).norm(dim=1)
            size = x_new.flatten(1).norm(dim=1)
            rel = torch.where(active, torch.where(size > 0, change / torch.where(size > 0, size, 1.0), change), rel)
            its = its + active.long()
        a = active.view(shape_x)
        x, u = torch.where(a, x_new, x), torch.where(a.unsqueeze(-1), u_new, u)
        if k >= 2:
            active = active & ~(rel < crit)
    return x, u, active, rel, its


def tv_prox(y: Tensor, gamma, def_crit: float = 1e-8, n_it_max: int = 1000) -> tuple[Tensor, SolveInfo]:
    """prox_{γ·TV}(y) and its SolveInfo (iterations, final relative change per sample, converged).
    γ: a number or a tensor with one value or one per sample (>= 0; γ = 0 returns y)."""
    if y.is_complex():
        raise ValueError("TVPrior: complex images are not supported; give real tensors (e.g. real and imaginary "
                         "parts as channels)")
    gamma = prox_weight("TVPrior.prox", "gamma", gamma, y)
    lam = gamma.to(y.dtype) if isinstance(gamma, Tensor) else torch.tensor(gamma, dtype=y.dtype, device=y.device)
    lam = lam.reshape(-1, *([1] * (y.dim() - 1))).expand(y.shape[0], *([1] * (y.dim() - 1)))
    active = (lam.detach().flatten() > 0).clone()  # γ = 0: the prox is the identity, nothing to solve
    lam = torch.where(lam > 0, lam, torch.ones_like(lam))  # (frozen samples never use it: no 0/0)
    x = y
    u = torch.zeros((*y.shape, y.dim() - 2), dtype=y.dtype, device=y.device)
    rel = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    its = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    tracked = torch.is_grad_enabled() and (y.requires_grad or lam.requires_grad)
    seg = max(1, math.isqrt(n_it_max))  # segment length ~ √n: memory ~ n/seg checkpoints + seg iterations
    k = 0
    while k < n_it_max and bool(active.any()):
        steps = min(seg, n_it_max - k)
        args = (x, u, active, rel, its, y, lam, def_crit, k, steps)
        if tracked:
            x, u, active, rel, its = checkpoint(_segment, *args, use_reentrant=False, preserve_rng_state=False)
        else:
            x, u, active, rel, its = _segment(*args)
        k += steps
    info = SolveInfo(iterations=int(its.max()) if its.numel() else 0, rel_residual=rel.detach(),
                     converged=not bool(active.any()), method="tv")
    return x, info


class TVPrior(ExplicitPrior):
    """Isotropic total variation g(x) = Σ_i ‖(∇x)_i‖₂ (reference: `TVPrior(def_crit=1e-8, n_it_max=1000)`).

    `prox(x, *args, gamma=1.0)` solves argmin_z ½‖z − x‖² + γ·g(z) (see the module docstring); `grad` is a
    subgradient, −div(∇x/‖∇x‖) with 0 where ∇x = 0; `fn(x)` the value per sample; `nabla`,
    `nabla_adjoint` the difference operator and its adjoint. In an algorithm, γ = λ·stepsize.
    """

    def __init__(self, def_crit: float = 1e-8, n_it_max: int = 1000):
        super().__init__()
        if isinstance(def_crit, bool) or not isinstance(def_crit, (int, float)) or not def_crit >= 0:
            raise ValueError(f"TVPrior: def_crit must be a number >= 0, got {def_crit!r}")
        if isinstance(n_it_max, bool) or not isinstance(n_it_max, int) or n_it_max < 1:
            raise ValueError(f"TVPrior: n_it_max must be an integer >= 1, got {n_it_max!r}")
        self.def_crit, self.n_it_max = float(def_crit), n_it_max

    def extra_repr(self) -> str:
        return f"def_crit={self.def_crit}, n_it_max={self.n_it_max}"

    @staticmethod
    def nabla(x: Tensor) -> Tensor:
        return nabla(x)

    @staticmethod
    def nabla_adjoint(u: Tensor) -> Tensor:
        return nabla_adjoint(u)

    def fn(self, x: Tensor, *args) -> Tensor:
        return per_sample_sum(torch.linalg.vector_norm(nabla(x), dim=-1))

    def grad(self, x: Tensor, *args) -> Tensor:
        dx = nabla(x)
        norm = torch.linalg.vector_norm(dx, dim=-1, keepdim=True)
        nonzero = norm > 0
        return nabla_adjoint(torch.where(nonzero, dx / torch.where(nonzero, norm, 1.0), 0.0))

    def prox(self, x: Tensor, *args, gamma=1.0) -> Tensor:
        out, info = tv_prox(x, gamma, self.def_crit, self.n_it_max)
        log = active_log()
        if log is not None:
            log.add("tv_prox", info.iterations, float(info.rel_residual.max()), info.converged)
        if not info.converged:
            warn_unconverged("tv_prox", f"TV prox did not converge: relative change "
                             f"{float(info.rel_residual.max()):.2e} > def_crit {self.def_crit:.1e} after "
                             f"{info.iterations} iterations; raise n_it_max or def_crit (in float32, changes "
                             "below ~1e-7 are rounding noise)", stacklevel=2)
        return out
