"""Deep equilibrium (SPEC §6): solve x* = T_θ(x*) without a graph, differentiate by the implicit
function theorem in one autograd Function.

Backward: with u = ∂L/∂x*, solve v = Jᵀv + u (J = ∂T/∂x at x*) by vector–Jacobian products, then
∂L/∂θ = vᵀ ∂T/∂θ for every input of T (step size, λ, σ, denoiser weights, y, physics tensors): the
Function swaps u for v, and autograd carries v through the one tracked step x* = T(x*).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ..solvers.cg import active_log, warn_unconverged
from ..solvers.fixed_point import AndersonAccelerationConfig, fixed_point


@dataclass
class DEQConfig:
    jacobian_free: bool = False
    anderson_acceleration_forward: bool = False
    history_size_forward: int = 5
    beta_anderson_acc_forward: float = 1.0
    eps_anderson_acc_forward: float = 1e-4
    anderson_acceleration_backward: bool = False
    history_size_backward: int = 5
    beta_anderson_acc_backward: float = 1.0
    eps_anderson_acc_backward: float = 1e-4
    max_iter_backward: int = 50
    # Additions: relative-residual tolerances (‖T(x) − x‖ ≤ tol·‖T(x)‖), and the newer releases' aliases.
    tol_forward: float = 1e-5
    tol_backward: float = 1e-5
    beta_backward: float | None = None
    eps_backward: float | None = None

    def __post_init__(self):
        if self.beta_backward is not None:
            self.beta_anderson_acc_backward = self.beta_backward
        if self.eps_backward is not None:
            self.eps_anderson_acc_backward = self.eps_backward
        if not isinstance(self.max_iter_backward, int) or self.max_iter_backward < 1:
            raise ValueError(f"DEQConfig: max_iter_backward must be an integer >= 1, got {self.max_iter_backward!r}")
        for name in ("tol_forward", "tol_backward"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"DEQConfig: {name} must be >= 0, got {getattr(self, name)!r}")
        self.forward_anderson()  # validates the Anderson settings
        self.backward_anderson()

    def forward_anderson(self) -> AndersonAccelerationConfig | None:
        if not self.anderson_acceleration_forward:
            return None
        return AndersonAccelerationConfig(self.history_size_forward, self.beta_anderson_acc_forward,
                                          self.eps_anderson_acc_forward)

    def backward_anderson(self) -> AndersonAccelerationConfig | None:
        if not self.anderson_acceleration_backward:
            return None
        return AndersonAccelerationConfig(self.history_size_backward, self.beta_anderson_acc_backward,
                                          self.eps_anderson_acc_backward)


def deq_config(DEQ) -> DEQConfig | None:
    if DEQ is None or DEQ is False:
        return None
    if DEQ is True:
        return DEQConfig()
    if isinstance(DEQ, DEQConfig):
        return DEQ
    raise TypeError(f"DEQ must be None, a bool or a DEQConfig, got {type(DEQ).__name__}")


def anderson_config(value) -> AndersonAccelerationConfig | None:
    if value is None or value is False:
        return None
    if value is True:
        return AndersonAccelerationConfig()
    if isinstance(value, AndersonAccelerationConfig):
        return value
    raise TypeError(f"anderson_acceleration must be a bool or an AndersonAccelerationConfig, got "
                    f"{type(value).__name__}")


def _report(kind: str, stats, tol: float, log) -> None:
    """Record a fixed-point solve in the model's SolverLog and warn when it did not converge."""
    if log is not None:
        log.add(f"deq_{kind}", stats.iterations, stats.residuals[-1] if stats.residuals else 0.0, stats.converged)
    if not stats.converged:
        warn_unconverged(f"deq_{kind}", f"DEQ {kind} solve did not converge: relative residual "
                         f"{stats.residuals[-1]:.2e} > tol {tol:.1e} after {stats.iterations} iterations", stacklevel=4)


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
            ctx.stats["backward"] = {"iterations": 0, "residual": float("nan"), "residuals": [], "converged": True}
            return u, None, None, None
        fx, x0 = ctx.saved_tensors

        def g(v):
            with torch.enable_grad():
                (jtv,) = torch.autograd.grad(fx, x0, grad_outputs=v, retain_graph=True)
            return jtv + u

        v, stats = fixed_point(g, u, cfg.max_iter_backward, cfg.tol_backward, cfg.backward_anderson())
        ctx.stats["backward"] = stats.as_dict()
        _report("backward", stats, cfg.tol_backward, ctx.log)
        return v, None, None, None


def run_deq(model, y, physics, init=None):
    """Fixed point of `model.fixed_point_map`; with `model.DEQ` the implicit backward, otherwise
    (Anderson-accelerated plain iterations) autograd through every iteration. Returns (x, stats)."""
    cfg = model.DEQ
    with torch.set_grad_enabled(cfg is None and torch.is_grad_enabled()):  # DEQ: x₀ only seeds the solve
        x0 = model.init_state(y, physics, init)[0]

    def T(x):
        return model.fixed_point_map(x, y, physics)

    anderson = model.anderson or (cfg.forward_anderson() if cfg is not None else None)
    if cfg is None:  # Anderson-accelerated unrolled iterations: differentiated by autograd
        x, fstats = fixed_point(T, x0, model.max_iter, 0.0, anderson)
        return x, {"forward": fstats.as_dict()}
    with torch.no_grad():
        x_star, fstats = fixed_point(T, x0, model.max_iter, cfg.tol_forward, anderson)
    _report("forward", fstats, cfg.tol_forward, active_log())
    stats = {"forward": fstats.as_dict()}
    if not torch.is_grad_enabled():
        return T(x_star), stats
    x_in = x_star.detach().requires_grad_()
    fx = T(x_in)
    if not fx.requires_grad:  # nothing to differentiate (no trainable input)
        return fx, stats
    return _ImplicitBackward.apply(fx, x_in, cfg, stats), stats
