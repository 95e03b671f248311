"""Iterative algorithms GD, PGD, HQS, ADMM; with `unfold=True` their hyperparameters are learnable.

Each algorithm is one `step` that reads like its formula (SPEC §5). The state is a tuple of tensors:
(x,) for GD/PGD/HQS, (x, z, w) for ADMM. Iteration k uses entry k of a per-iteration list of values,
or the single shared value.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..metrics import psnr
from ..physics.base import LinearPhysics, check_measurement_values, check_physics
from ..solvers.cg import SolverLog, record_solves
from .data_fidelity import L2, DataFidelity
from .deq import AndersonAccelerationConfig, DEQConfig, anderson_config, deq_config, run_deq
from .hyperparams import HYPERPARAMETERS, as_values, canonical_names
from .prior import Prior

State = tuple[Tensor, ...]


class BaseOptim(nn.Module):
    """Runs `max_iter` iterations of `step` from x₀ = Aᵀy (or `init`) and returns the last estimate.

    `forward(y, physics, init=None, x_gt=None, compute_metrics=False)` returns x, or (x, metrics) with
    metrics["residual"] (relative change per iteration, shape (K, B)) and, given x_gt,
    metrics["psnr"] (PSNR of every iterate, shape (K, B)).
    """

    needs_prox = True  # the prior step is a prox (PGD, HQS, ADMM) or a gradient (GD)
    supports_deq = True

    def __init__(
        self,
        data_fidelity: DataFidelity | None = None,
        prior: Prior | None = None,
        lambda_reg=1.0,
        stepsize=1.0,
        sigma_denoiser=None,
        g_param=None,
        max_iter: int = 100,
        unfold: bool = False,
        trainable_params=None,
        DEQ: DEQConfig | bool | None = None,
        anderson_acceleration: AndersonAccelerationConfig | bool = False,
        early_stop: bool = False,
        crit_conv: str = "residual",
        thres_conv: float = 1e-5,
        beta=1.0,
    ):
        super().__init__()
        name = type(self).__name__
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"{name}: max_iter must be an integer >= 1, got {max_iter!r}")
        self.data_fidelity = L2() if data_fidelity is None else data_fidelity
        if not isinstance(self.data_fidelity, DataFidelity):
            raise TypeError(f"{name}: data_fidelity must be a unfolded.optim data-fidelity term such as L2(), "
                            f"got {type(self.data_fidelity).__name__}")
        self._check_prior(prior)
        self.prior = prior
        if crit_conv != "residual":
            raise ValueError(f"{name}: crit_conv must be 'residual', got {crit_conv!r}")
        self.max_iter, self.unfold = max_iter, bool(unfold)
        self.early_stop, self.thres_conv = bool(early_stop), float(thres_conv)

        values = {"stepsize": stepsize, "lambda_reg": lambda_reg,
                  "sigma_denoiser": sigma_denoiser if g_param is None else g_param, "beta": beta}
        trainable = canonical_names(trainable_params, HYPERPARAMETERS)
        if trainable and not self.unfold and not DEQ:  # a DEQ is trainable, as in the reference (DEQConfig)
            warnings.warn(f"{name}: trainable_params {trainable} ignored because unfold=False", stacklevel=2)
            trainable = []
        for key in HYPERPARAMETERS:
            tensor = as_values(key, values[key], max_iter)
            if key in trainable:
                if tensor is None:
                    raise ValueError(f"{name}: {key} is trainable but has no value; give it a number")
                setattr(self, key, nn.Parameter(tensor))
            else:
                self.register_buffer(key, tensor)
        self.trainable_params = trainable
        # Decided once, so iterations need no device sync to know it.
        self._no_relaxation = "beta" not in trainable and bool((self.beta == 1).all())
        self._warn_untrainable(trainable)

        self.DEQ = deq_config(DEQ)
        self.anderson = anderson_config(anderson_acceleration, self.DEQ)
        if self.DEQ is not None and not self.supports_deq:
            raise ValueError(f"{name} cannot run as a deep equilibrium model: DEQ needs a fixed-point map "
                             "on x alone; use GD, PGD or HQS")
        if self.anderson is not None and not self.supports_deq:
            raise ValueError(f"{name}: anderson_acceleration needs a fixed-point map on x alone; use GD, PGD or HQS")
        if self.DEQ is not None or self.anderson is not None:
            per_iter = [k for k in HYPERPARAMETERS if getattr(self, k) is not None and getattr(self, k).numel() > 1]
            if per_iter:
                raise ValueError(f"{name}: per-iteration values of {per_iter} make no sense for a fixed point "
                                 "(DEQ or Anderson acceleration); give one value each")
        self.solver_log = SolverLog()
        self.deq_stats: dict = {}
        self.deq_jacobian_loss: Tensor | None = None  # DEQConfig(jacobian_reg=w > 0): w·‖J‖²_F/d, for the loss

    # --- construction checks ----------------------------------------------------------------------
    def _check_prior(self, prior) -> None:
        name = type(self).__name__
        if prior is None:
            if self.needs_prox:
                raise ValueError(f"{name} needs a prior with a prox, e.g. PnP(DnCNN())")
            return
        if not isinstance(prior, Prior):
            raise TypeError(f"{name}: prior must be a unfolded.optim prior such as PnP(denoiser) or "
                            f"RED(denoiser), got {type(prior).__name__}")
        if self.needs_prox and not prior.has_prox:
            raise ValueError(f"{name} needs a prior with a prox (PnP); {type(prior).__name__} only has a gradient")
        if not self.needs_prox and not prior.has_grad:
            raise ValueError(f"{name} needs a prior with a gradient (RED); {type(prior).__name__} only has a prox")

    def _warn_untrainable(self, trainable: list[str]) -> None:
        """A trainable parameter the output cannot depend on would silently stay at its start value."""
        name = type(self).__name__
        if "sigma_denoiser" in trainable and self.prior is not None and not self.prior.uses_sigma:
            warnings.warn(f"{name}: sigma_denoiser is trainable but {type(self.prior.denoiser).__name__} "
                          "ignores sigma, so it gets no gradient", stacklevel=3)
        if "lambda_reg" in trainable and self.needs_prox and self.prior is not None and not self.prior.prox_uses_gamma:
            warnings.warn(f"{name}: lambda_reg is trainable but the {type(self.prior).__name__} prox ignores its "
                          "weight lambda*stepsize, so it gets no gradient", stacklevel=3)

    # --- hyperparameters --------------------------------------------------------------------------
    def hp(self, key: str, k: int) -> Tensor | None:
        """Value of hyperparameter `key` at iteration k (0-d tensor), or None."""
        values = getattr(self, key)
        if values is None:
            return None
        return values[k] if values.numel() > 1 else values[0]

    def hyperparameters(self) -> dict[str, Tensor]:
        """Current values, 1-D (length 1 or max_iter), for logging."""
        return {k: getattr(self, k).detach() for k in HYPERPARAMETERS if getattr(self, k) is not None}

    # --- the algorithm ----------------------------------------------------------------------------
    def init_state(self, y: Tensor, physics: LinearPhysics, init: Tensor | None) -> State:
        x0 = physics.A_adjoint(y) if init is None else init
        if init is not None:
            physics.check_measurement(y, init.shape)
        return (x0,)

    def step(self, state: State, y: Tensor, physics: LinearPhysics, k: int) -> State:
        raise NotImplementedError

    def output(self, state: State) -> Tensor:
        return state[0]

    def relax(self, x_new: Tensor, x_prev: Tensor, k: int) -> Tensor:
        """x ← βx + (1−β)x_prev (β = 1: no relaxation)."""
        if self._no_relaxation:
            return x_new
        beta = self.hp("beta", k)
        return beta * x_new + (1 - beta) * x_prev

    def prior_prox(self, x: Tensor, k: int) -> Tensor:
        return self.prior.prox(x, self.hp("sigma_denoiser", k), gamma=self.hp("lambda_reg", k) * self.hp("stepsize", k))

    def fixed_point_map(self, x: Tensor, y: Tensor, physics: LinearPhysics) -> Tensor:
        """T(x): one iteration with the (single) hyperparameter values; used by DEQ and Anderson."""
        return self.step((x,), y, physics, 0)[0]

    def iterates(self, y: Tensor, physics: LinearPhysics, init: Tensor | None = None) -> Iterator[Tensor]:
        """Yield the estimate after every iteration (with its autograd graph)."""
        check_physics(type(self).__name__, physics)
        state = self.init_state(y, physics, init)
        with record_solves(self.solver_log):
            for k in range(self.max_iter):
                state = self.step(state, y, physics, k)
                yield self.output(state)

    def forward(self, y: Tensor, physics: LinearPhysics, init: Tensor | None = None, x_gt: Tensor | None = None,
                compute_metrics: bool = False, **kwargs):
        check_physics(type(self).__name__, physics)
        check_measurement_values(y)
        if self.DEQ is not None or self.anderson is not None:
            with record_solves(self.solver_log):
                x, self.deq_stats, self.deq_jacobian_loss = run_deq(self, y, physics, init)
            if compute_metrics:
                metrics = {"psnr": psnr(x, x_gt)[None]} if x_gt is not None else {}
                return x, metrics
            return x
        psnrs, residuals = [], []
        prev = None
        x = None
        for x in self.iterates(y, physics, init):
            if compute_metrics or self.early_stop:
                if prev is not None:
                    with torch.no_grad():
                        change = (x - prev).flatten(1).norm(dim=1) / prev.flatten(1).norm(dim=1).clamp_min(1e-30)
                    residuals.append(change)
                    if self.early_stop and bool((change < self.thres_conv).all()):
                        if x_gt is not None:
                            psnrs.append(psnr(x, x_gt))
                        break
                if compute_metrics and x_gt is not None:
                    psnrs.append(psnr(x, x_gt))
                prev = x.detach()
        if not compute_metrics:
            return x
        metrics = {"residual": torch.stack(residuals) if residuals else torch.zeros(0, y.shape[0])}
        if x_gt is not None:
            metrics["psnr"] = torch.stack(psnrs)
        return x, metrics


class GD(BaseOptim):
    """Gradient descent: x ← x − γ(∇f(x) + λ∇g(x, σ)); `prior` needs a gradient (RED) or is None."""

    needs_prox = False

    def step(self, state, y, physics, k):
        (x,) = state
        grad = self.data_fidelity.grad(x, y, physics)
        if self.prior is not None:
            grad = grad + self.hp("lambda_reg", k) * self.prior.grad(x, self.hp("sigma_denoiser", k))
        return (self.relax(x - self.hp("stepsize", k) * grad, x, k),)


class PGD(BaseOptim):
    """Proximal gradient: u = x − γ∇f(x); x ← prox_g(u, σ, λγ)."""

    def step(self, state, y, physics, k):
        (x,) = state
        u = x - self.hp("stepsize", k) * self.data_fidelity.grad(x, y, physics)
        return (self.relax(self.prior_prox(u, k), x, k),)


class HQS(BaseOptim):
    """Half-quadratic splitting: u = prox_{γf}(x); x ← prox_g(u, σ, λγ)."""

    def step(self, state, y, physics, k):
        (x,) = state
        u = self.data_fidelity.prox(x, y, physics, gamma=self.hp("stepsize", k))
        return (self.relax(self.prior_prox(u, k), x, k),)


class ADMM(BaseOptim):
    """Scaled ADMM from z₀ = w₀ = Aᵀy: x ← prox_{γf}(z − w); z ← prox_g(x + w, σ, λγ); w ← w + β(x − z).

    The output is z. `beta` is the dual step (not a relaxation).
    """

    supports_deq = False

    def init_state(self, y, physics, init):
        (x0,) = super().init_state(y, physics, init)
        return (x0, x0, x0)

    def step(self, state, y, physics, k):
        _, z, w = state
        x = self.data_fidelity.prox(z - w, y, physics, gamma=self.hp("stepsize", k))
        z = self.prior_prox(x + w, k)
        w = w + self.hp("beta", k) * (x - z)
        return (x, z, w)

    def output(self, state):
        return state[1]

    def relax(self, x_new, x_prev, k):  # β is the dual step here
        return x_new
