"""prox_l2 by conjugate gradient, with a memory-light implicit backward (SPEC §3).

x = argmin ½‖A_θ x − y‖² + 1/(2γ)‖x − z‖², i.e. M x = Aᵀy + z/γ with M = AᵀA + I/γ.
The implicit backward stores only (x, y, z, γ, θ) and solves M v = ∂L/∂x once:
  ∂L/∂y = A v,  ∂L/∂z = v/γ,  ∂L/∂γ = ⟨v, x − z⟩/γ²,  ∂L/∂θ = −∂/∂θ ⟨A_θ v, A_θ x − y⟩ (v, x, y fixed).
θ are the operator's tensors (e.g. a blur filter); their gradient is returned through autograd, so it
reaches leaf filters and the upstream tensors that produced them alike.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cg import SolveInfo, active_log, batch_dot, report_solve


def solve_normal_equations(
    physics, rhs: Tensor, gamma: Tensor, x0: Tensor | None, tol: float, max_iter: int, params: dict
) -> tuple[Tensor, SolveInfo]:
    """Solve (AᵀA + I/γ) x = rhs the way the physics' `normal_system` says (CG on images by default)."""
    return physics.normal_system(gamma, rhs, **params).solve(rhs, x0, tol, max_iter)


class _ProxL2Implicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, physics, names, tol, max_iter, log, z, y, gamma, *values):
        params = dict(zip(names, values))
        rhs = physics.A_adjoint(y, **params) + z / gamma
        x, info = solve_normal_equations(physics, rhs, gamma, z, tol, max_iter, params)
        report_solve("forward", info, tol, log, stacklevel=5)
        ctx.physics, ctx.names, ctx.tol, ctx.max_iter, ctx.log = physics, names, tol, max_iter, log
        ctx.save_for_backward(x, y, z, gamma, *values)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        x, y, z, gamma, *values = ctx.saved_tensors
        params = dict(zip(ctx.names, values))
        # Always a cold start: warm-starting from this node's previous backward solve (a DEQ backward reruns
        # it) let a solve stopping at its tolerance return a stale answer and fake a converged fixed point.
        v, info = solve_normal_equations(ctx.physics, grad_x, gamma, None, ctx.tol, ctx.max_iter, params)
        report_solve("backward", info, ctx.tol, ctx.log, stacklevel=2)

        need = ctx.needs_input_grad
        grad_z = v / gamma if need[5] else None
        grad_y = ctx.physics.A(v, **params) if need[6] else None
        grad_gamma = None
        if need[7]:
            if gamma.dim() == 0:
                grad_gamma = (v * (x - z)).sum() / gamma**2
            else:
                grad_gamma = (batch_dot(v, x - z) / gamma**2).reshape(gamma.shape)
        grad_values = [None] * len(values)
        wanted = [i for i, n in enumerate(need[8:]) if n]
        if wanted:
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_(i in wanted) for i, t in enumerate(values)]
                p = dict(zip(ctx.names, leaves))
                A = ctx.physics.A
                surrogate = -(A(v, **p) * (A(x, **p) - y)).sum()
                grads = torch.autograd.grad(surrogate, [leaves[i] for i in wanted], allow_unused=True)
            for i, g in zip(wanted, grads):
                grad_values[i] = g
        return (None, None, None, None, None, grad_z, grad_y, grad_gamma, *grad_values)


def _check_operator_params(physics, params: dict) -> None:
    """The implicit Function sees only the tensors listed by `operator_params()`; any other tensor of the
    physics that requires grad would silently get no gradient, so refuse it."""
    listed = {id(t) for t in params.values()}
    for name, t in [*physics.named_parameters(), *physics.named_buffers()]:
        if t.requires_grad and id(t) not in listed:
            raise ValueError(f"{type(physics).__name__}.{name} requires grad but is not listed by operator_params(), "
                             "so the implicit backward cannot differentiate it; list it there or use "
                             "implicit_backward_solver=False")


def prox_l2_cg(physics, z: Tensor, y: Tensor, gamma: Tensor, tol: float, max_iter: int, implicit: bool) -> Tensor:
    """Solve the prox by CG; implicit=True uses the one-solve backward, else autograd unrolls CG."""
    params = physics.operator_params()
    log = active_log()
    if implicit:
        _check_operator_params(physics, params)
        names = tuple(params)
        return _ProxL2Implicit.apply(physics, names, tol, max_iter, log, z, y, gamma, *params.values())
    rhs = physics.A_adjoint(y) + z / gamma
    x, info = solve_normal_equations(physics, rhs, gamma, z, tol, max_iter, params)
    report_solve("forward", info, tol, log, stacklevel=4)
    return x
