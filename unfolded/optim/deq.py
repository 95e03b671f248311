"""Deep equilibrium (SPEC §6): solve x* = T_θ(x*) without a graph, differentiate by the implicit
function theorem in one autograd Function.

Backward: with u = ∂L/∂x*, solve v = Jᵀv + u (J = ∂T/∂x at x*) by vector–Jacobian products, then
∂L/∂θ = vᵀ ∂T/∂θ for every input of T (step size, λ, σ, denoiser weights, y, physics tensors): the
Function swaps u for v, and autograd carries v through the one tracked step x* = T(x*).
The linear solve is any of `solvers.BACKWARD_SOLVERS` (GMRES is the one made for it). Two cheaper
gradients: `jacobian_free` (v = u) and the phantom gradient (autograd through k damped steps from x*).

What a forward leaves on the model for training (see `run_deq`): `deq_stats` and, with
`jacobian_reg > 0`, `deq_jacobian_loss`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..solvers.cg import active_log, warn_unconverged
from ..solvers.fixed_point import AndersonAccelerationConfig
from ..solvers.registry import solve_fixed_point, solve_linear_fixed_point
from .deq_config import DEQConfig, deq_config

__all__ = ["DEQConfig", "deq_config", "anderson_config", "run_deq", "jacobian_frobenius"]


def anderson_config(value, deq: DEQConfig | None = None) -> AndersonAccelerationConfig | None:
    """The algorithm's `anderson_acceleration` argument. With DEQ it is the forward solver, so it must
    not contradict `DEQConfig.forward_solver`, and `full_backprop` (a property of differentiating
    through the iterations) has nothing to act on: the DEQ forward keeps no graph."""
    if value is None or value is False:
        return None
    if value is True:
        value = AndersonAccelerationConfig()
    if not isinstance(value, AndersonAccelerationConfig):
        raise TypeError(f"anderson_acceleration must be a bool or an AndersonAccelerationConfig, got "
                        f"{type(value).__name__}")
    if deq is not None and deq.forward_method() not in ("fixed_point", "anderson"):
        raise ValueError(f"anderson_acceleration contradicts DEQConfig(forward_solver={deq.forward_solver!r}); "
                         "give one forward solver")
    if deq is not None and value.full_backprop:
        raise ValueError("AndersonAccelerationConfig: full_backprop=True needs the iterations differentiated by "
                         "autograd (DEQ=None); the DEQ forward solve keeps no graph")
    return value


def jacobian_frobenius(T, x: Tensor, fx: Tensor, probe: Tensor | None = None, rel_step: float = 1e-3) -> Tensor:
    """Hutchinson estimate of ‖∂T/∂x‖²_F / d per sample at x (d = numel of a sample), differentiable in θ.

    For ε with E[εεᵀ] = I, E‖Jε‖² = E[εᵀJᵀJε] = tr(JᵀJ) = ‖J‖²_F. The product Jε is taken as a finite
    difference (T(x + hε) − T(x)) / h, exact for an affine T, with h = rel_step·‖x‖/‖ε‖ per sample (1e-3:
    float32 rounding then costs ~1e-4 relative). Why not the usual double backward (Bai et al. 2021):
    T contains once-differentiable autograd Functions (the implicit least-squares prox), whose backward
    cannot be differentiated again; the difference needs one ordinary backward through T, and is cheaper.
    `fx` = T(x) (with its graph); ε is Gaussian unless `probe` is given.
    """
    eps = torch.randn_like(x) if probe is None else probe
    x = x.detach()
    xn, en = x.flatten(1).norm(dim=1), eps.flatten(1).norm(dim=1)
    h = rel_step * torch.where(xn > 0, xn, torch.ones_like(xn)) / torch.where(en > 0, en, torch.ones_like(en))
    h = h.view(-1, *([1] * (x.dim() - 1)))
    jvp = (T(x + h * eps) - fx) / h
    return jvp.flatten(1).pow(2).sum(1) / jvp[0].numel()


def _report(kind: str, stats, tol: float, log) -> None:
    """Record a fixed-point solve in the model's SolverLog and warn when it did not converge."""
    if log is not None:
        log.add(f"deq_{kind}", stats.iterations, stats.residuals[-1] if stats.residuals else 0.0, stats.converged)
    if not stats.converged:
        warn_unconverged(f"deq_{kind}", f"DEQ {kind} solve did not converge ({stats.solver}): relative residual "
                         f"{stats.residuals[-1] if stats.residuals else float('nan'):.2e} > tol {tol:.1e} after "
                         f"{stats.iterations} iterations", stacklevel=4)


def _no_solve(mode: str, iterations: int) -> dict:
    """Backward statistics of a gradient that solves nothing (no tolerance to reach: converged is None)."""
    return {"solver": mode, "iterations": iterations, "residual": float("nan"), "residuals": [], "converged": None}


class _ImplicitBackward(torch.autograd.Function):
    """Identity on x* = T(x₀) in forward; in backward replaces u = ∂L/∂x* by v solving v = Jᵀv + u."""

    @staticmethod
    def forward(ctx, fx, x0, cfg, stats):
        ctx.cfg, ctx.stats, ctx.log = cfg, stats, active_log()
        ctx.save_for_backward(fx, x0)
        return fx.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, u):
        cfg = ctx.cfg
        if cfg.jacobian_free:
            ctx.stats["backward"] = _no_solve("jacobian_free", 0)
            return u, None, None, None
        fx, x0 = ctx.saved_tensors

        def vjp(v):
            with torch.enable_grad():
                (jtv,) = torch.autograd.grad(fx, x0, grad_outputs=v, retain_graph=True)
            return jtv

        v, stats = solve_linear_fixed_point(cfg.backward_method(), vjp, u, cfg.max_iter_backward, cfg.tol_backward,
                                            cfg.backward_anderson(), cfg.gmres_restart)
        ctx.stats["backward"] = stats.as_dict()
        _report("backward", stats, cfg.tol_backward, ctx.log)
        return v, None, None, None


def _phantom(T, x_star: Tensor, cfg: DEQConfig) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Phantom gradient (Geng et al. 2021): k damped steps x ← (1−τ)x + τT(x) from x* (detached), which
    autograd differentiates. Their gradient is the k-term series Σ_{i<k} ((1−τ)I + τJ)ⁱ τ ∂T/∂θ, which
    tends to the implicit (I − J)⁻¹ ∂T/∂θ as k grows and needs no solve. Returns the output and
    (input, T(input)) of the first step, where the Jacobian regulariser is evaluated."""
    x = x_in = x_star.detach().requires_grad_()
    fx0 = None
    for _ in range(cfg.phantom_steps):
        fx = T(x)
        fx0 = fx if fx0 is None else fx0
        x = fx if cfg.phantom_tau == 1 else (1 - cfg.phantom_tau) * x + cfg.phantom_tau * fx
    return x, (x_in, fx0)


def run_deq(model, y, physics, init=None) -> tuple[Tensor, dict, Tensor | None]:
    """Fixed point of `model.fixed_point_map`; with `model.DEQ` the implicit (or phantom) backward,
    otherwise (Anderson-accelerated plain iterations) autograd through every iteration.

    Returns (x, stats, jacobian_loss):
    - stats["forward"], stats["backward"]: dicts with solver (str), iterations (int: evaluations of T,
      or vector–Jacobian products), residual (float, final relative residual, worst sample), residuals
      (list[float], one per iteration), converged (bool; None for a backward that solves nothing:
      jacobian_free, phantom). "backward" appears when the backward has run (phantom: at once).
    - stats["jacobian_frobenius"] (float): the Hutchinson ‖J‖²_F / d at x*, batch mean, when computed.
    - jacobian_loss: DEQConfig.jacobian_reg × that estimate as a differentiable 0-d tensor, when
      jacobian_reg > 0 and grad is enabled; None otherwise.
    """
    cfg = model.DEQ
    anchored = cfg is not None and cfg.anchor_weight > 0
    # a DEQ's x₀ only seeds the solve (no graph), unless the map is anchored to it
    with torch.set_grad_enabled((cfg is None or anchored) and torch.is_grad_enabled()):
        x0 = model.init_state(y, physics, init)[0]

    # DEQConfig(anchor_weight=μ): the data fidelity gets μ/2‖x − x₀‖², a contraction of the map by 1/(1+γμ)
    anchor = (cfg.anchor_weight, x0) if anchored else None

    def T(x):
        return model.fixed_point_map(x, y, physics, anchor)

    if cfg is None:  # Anderson-accelerated unrolled iterations: differentiated by autograd
        x, fstats = solve_fixed_point("anderson", T, x0, model.max_iter, 0.0, model.anderson)
        return x, {"forward": fstats.as_dict()}, None
    method, anderson = (cfg.forward_method(), cfg.forward_anderson())
    if model.anderson:  # the algorithm's anderson_acceleration= (checked not to contradict the DEQConfig)
        method, anderson = "anderson", model.anderson
    with torch.no_grad():
        x_star, fstats = solve_fixed_point(method, T, x0, cfg.max_iter_forward or model.max_iter, cfg.tol_forward,
                                           anderson)
    _report("forward", fstats, cfg.tol_forward, active_log())
    stats = {"forward": fstats.as_dict()}
    if not torch.is_grad_enabled():
        return T(x_star), stats, None
    if cfg.backward == "phantom":
        x, (x_in, fx) = _phantom(T, x_star, cfg)
        stats["backward"] = _no_solve("phantom", cfg.phantom_steps)
    else:
        x_in = x_star.detach().requires_grad_()
        fx = x = T(x_in)
    if not fx.requires_grad:  # nothing to differentiate (no trainable input)
        return x.detach(), stats, None
    jacobian_loss = None
    if cfg.jacobian_reg > 0:
        estimate = jacobian_frobenius(T, x_in, fx).mean()
        stats["jacobian_frobenius"] = float(estimate.detach())
        jacobian_loss = cfg.jacobian_reg * estimate
    if cfg.backward == "implicit":
        x = _ImplicitBackward.apply(fx, x_in, cfg, stats)
    return x, stats, jacobian_loss
