"""BaseOptim: what every iterative algorithm shares (hyperparameters, initialisation, the loop, early
stopping, DEQ dispatch); the algorithms themselves, one `step` each, are in algorithms.py.

The state is a tuple of tensors: (x,) for GD/PGD/HQS, (x, z, w) for ADMM. Iteration k uses entry k of a
per-iteration list of values, or the single shared value.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..metrics import psnr
from ..physics.base import LinearPhysics, check_measurement_values, check_physics, refuse_forward_keywords
from ..solvers.cg import SolverLog, _caller_depth, record_solves
from .data_fidelity import L2, Anchored, DataFidelity
from .deq import AndersonAccelerationConfig, DEQConfig, anderson_config, deq_config, run_deq
from .hyperparams import HYPERPARAMETERS, canonical_names, is_default, merge_params_algo, parse_values, restore_exact
from .options import (
    as_list,
    at_iteration,
    check_callable,
    convergence_criterion,
    per_iteration,
    refuse_unsupported,
    resolve_init,
)
from .prior import Prior

State = tuple[Tensor, ...]


class BaseOptim(nn.Module):
    """Runs `max_iter` iterations of `step` from x₀ = Aᵀy (or `init`) and returns the last estimate.

    `forward(y, physics, init=None, x_gt=None, compute_metrics=False)` returns x, or (x, metrics) with
    metrics["residual"] (relative change per iteration, shape (K, B)) and, given x_gt,
    metrics["psnr"] (PSNR of every iterate, shape (K, B)).

    The reference's options: `params_algo` (its dictionary of hyperparameters), `prior=[p1, …, pK]` (and
    `data_fidelity=[…]`: one per iteration), `g_first` (PGD/HQS: the prior step first), `custom_init`
    (like `init`: a tensor, tuple, dict or callable (y, physics)), `get_output` (a callable of
    {"est": state}; the state is (x,) for GD/PGD/HQS and (x, z, w) for ADMM), `early_stop` with the
    reference's criterion (stop from the third iteration once the mean over the batch of
    ‖x_prev − x‖/(‖x‖ + 1e-6) is below `thres_conv`; `has_converged` says whether it did), `verbose`.
    """

    needs_prox = True  # the prior step is a prox (PGD, HQS, ADMM) or a gradient (GD)
    supports_deq = True
    # The hyperparameters this algorithm has, and the defaults of those beyond the common ones (FISTA's `a`,
    # PDCP's `stepsize_dual`: their constructors pass them in through `params_algo`, see `own_values`).
    hyperparameter_names: tuple[str, ...] = HYPERPARAMETERS
    own_defaults: dict[str, float] = {}
    supports_g_first = False
    g_first_needs_prox = True  # with g_first, is the prior step a prox (HQS) or a gradient (PGD)?

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
        params_algo: dict | None = None,
        g_first: bool = False,
        custom_init=None,
        get_output=None,
        verbose: bool = False,
        backtracking=None,
        custom_metrics=None,
        cost_fn=None,
        show_progress_bar: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"{name}: max_iter must be an integer >= 1, got {max_iter!r}")
        refuse_unsupported(name, backtracking, custom_metrics, cost_fn, show_progress_bar, crit_conv)
        if g_first and not self.supports_g_first:
            raise NotImplementedError(f"{name}: g_first=True is not supported; use PGD(g_first=True) or "
                                      "HQS(g_first=True) for the prior step first")
        self.g_first = bool(g_first)
        if self.g_first:
            self.needs_prox = self.g_first_needs_prox
        check_callable(name, "get_output", get_output)
        self.custom_init, self.get_output, self.verbose = custom_init, get_output, bool(verbose)
        data_fidelity = per_iteration(name, "data-fidelity term", data_fidelity, max_iter, DataFidelity)
        self.data_fidelity = L2() if data_fidelity is None else data_fidelity
        for f in as_list(self.data_fidelity):
            if not isinstance(f, DataFidelity):
                raise TypeError(f"{name}: data_fidelity must be a unfolded.optim data-fidelity term such as L2(), "
                                f"got {type(f).__name__}")
        prior = per_iteration(name, "prior", prior, max_iter, Prior)
        for p in as_list(prior) or [None]:
            self._check_prior(p)
        self.prior = prior
        self.max_iter, self.unfold = max_iter, bool(unfold)
        self.early_stop, self.thres_conv, self.crit_conv = bool(early_stop), float(thres_conv), crit_conv
        self.has_converged = False

        names = self.hyperparameter_names
        if "beta" not in names and not is_default(beta, 1.0):
            raise NotImplementedError(f"{name} has no relaxation beta (its extrapolation is fixed by its formula); "
                                      "use PGD(beta=...) or HQS(beta=...) for a relaxed iteration")
        values = {"stepsize": stepsize, "lambda_reg": lambda_reg,
                  "sigma_denoiser": sigma_denoiser if g_param is None else g_param, "beta": beta,
                  **self.own_defaults}
        defaults = {"stepsize": 1.0, "lambda_reg": 1.0, "sigma_denoiser": None, "beta": 1.0, **self.own_defaults}
        values = merge_params_algo(params_algo, {k: values[k] for k in names}, {k: defaults[k] for k in names})
        trainable = canonical_names(trainable_params, names)
        if trainable and not self.unfold and not DEQ:  # a DEQ is trainable, as in the reference (DEQConfig)
            warnings.warn(f"{name}: trainable_params {trainable} ignored because unfold=False",
                          stacklevel=_caller_depth(0) + 1)
            trainable = []
        # The values as given (Python floats): a float32 tensor rounds 0.8 to 0.800000011920929, and
        # `model.double()` would keep that rounding without them (see `_apply`).
        self._exact_values: dict[str, list[float] | None] = {}
        for key in names:
            exact = self._exact_values[key] = parse_values(key, values[key], max_iter)
            tensor = None if exact is None else torch.tensor(exact, dtype=torch.get_default_dtype())
            if key in trainable:
                if tensor is None:
                    raise ValueError(f"{name}: {key} is trainable but has no value; give it a number")
                setattr(self, key, nn.Parameter(tensor))
            else:
                self.register_buffer(key, tensor)
        self.trainable_params = trainable
        # Decided once, so iterations need no device sync to know it.
        self._no_relaxation = "beta" not in names or ("beta" not in trainable and bool((self.beta == 1).all()))
        self._warn_untrainable(trainable)

        self.DEQ = deq_config(DEQ)
        self.anderson = anderson_config(anderson_acceleration, self.DEQ)
        if self.DEQ is not None and not self.supports_deq:
            raise ValueError(f"{name} cannot run as a deep equilibrium model: DEQ needs a fixed-point map "
                             "on x alone; use GD, PGD or HQS")
        if self.anderson is not None and not self.supports_deq:
            raise ValueError(f"{name}: anderson_acceleration needs a fixed-point map on x alone; use GD, PGD or HQS")
        if self.DEQ is not None or self.anderson is not None:
            per_iter = [k for k in names if getattr(self, k) is not None and getattr(self, k).numel() > 1]
            per_iter += [k for k in ("prior", "data_fidelity") if isinstance(getattr(self, k), nn.ModuleList)]
            if per_iter:
                raise ValueError(f"{name}: per-iteration values of {per_iter} make no sense for a fixed point "
                                 "(DEQ or Anderson acceleration); give one value each")
        self.solver_log = SolverLog()
        self.deq_stats: dict = {}
        self.deq_jacobian_loss: Tensor | None = None  # DEQConfig(jacobian_reg=w > 0): w·‖J‖²_F/d, for the loss
        self._anchor: tuple[float, Tensor] | None = None  # set by fixed_point_map only while it runs

    # --- construction checks ----------------------------------------------------------------------
    def _check_prior(self, prior) -> None:
        name = type(self).__name__ + ("(g_first=True)" if self.g_first else "")
        if prior is None:
            if self.needs_prox:
                raise ValueError(f"{name} needs a prior with a prox, e.g. PnP(DnCNN())")
            return
        if not isinstance(prior, Prior):
            raise TypeError(f"{name}: prior must be a unfolded.optim prior such as PnP(denoiser), RED(denoiser) or "
                            f"TVPrior(), got {type(prior).__name__}")
        if self.needs_prox and not prior.has_prox:
            raise ValueError(f"{name} needs a prior with a prox (PnP, TVPrior, WaveletPrior, L1Prior, Tikhonov); "
                             f"{type(prior).__name__} only has a gradient")
        if not self.needs_prox and not prior.has_grad:
            raise ValueError(f"{name} needs a prior with a gradient (RED, TVPrior, L1Prior, Tikhonov, "
                             f"WaveletPrior(p=1)); {type(prior).__name__} only has a prox")

    def _warn_untrainable(self, trainable: list[str]) -> None:
        """A trainable parameter the output cannot depend on would silently stay at its start value."""
        name = type(self).__name__
        priors = as_list(self.prior)
        stacklevel = _caller_depth(1) + 1  # the user's line, through subclasses' constructors
        if "sigma_denoiser" in trainable and priors and not any(p.uses_sigma for p in priors):
            what = type(getattr(priors[0], "denoiser", priors[0])).__name__
            warnings.warn(f"{name}: sigma_denoiser is trainable but {what} ignores sigma, so it gets no gradient",
                          stacklevel=stacklevel)
        if "lambda_reg" in trainable and self.needs_prox and priors and not any(p.prox_uses_gamma for p in priors):
            warnings.warn(f"{name}: lambda_reg is trainable but the {type(priors[0]).__name__} prox ignores its "
                          "weight lambda*stepsize, so it gets no gradient", stacklevel=stacklevel)

    def _apply(self, fn, recurse=True):
        """After a dtype change (`.double()`, `.to(torch.float64)`), hyperparameters that a float32 tensor
        had rounded get their exact values back (hyperparams.restore_exact)."""
        out = super()._apply(fn, recurse)
        for key, exact in getattr(self, "_exact_values", {}).items():
            restore_exact(getattr(self, key, None), exact)
        return out

    # --- hyperparameters --------------------------------------------------------------------------
    def hp(self, key: str, k: int) -> Tensor | None:
        """Value of hyperparameter `key` at iteration k (0-d tensor), or None."""
        values = getattr(self, key)
        if values is None:
            return None
        return values[k] if values.numel() > 1 else values[0]

    def hyperparameters(self) -> dict[str, Tensor]:
        """Current values, 1-D (length 1 or max_iter), for logging."""
        return {k: getattr(self, k).detach() for k in self.hyperparameter_names if getattr(self, k) is not None}

    # --- the algorithm ----------------------------------------------------------------------------
    def init_state(self, y: Tensor, physics: LinearPhysics, init=None) -> State:
        """x₀ = Aᵀy, or `init` (else `custom_init`): a tensor, tuple, dict or callable (options.resolve_init)."""
        init = self.custom_init if init is None else init
        if init is None:
            return self.init_from(physics.A_adjoint(y), (), y)
        x0, rest = resolve_init(init, y, physics)
        physics.check_measurement(y, x0.shape)
        return self.init_from(x0, rest, y)

    def init_from(self, x0: Tensor, rest: tuple, y: Tensor) -> State:
        """The state from x₀ and the other given variables (`rest`, possibly empty); GD/PGD/HQS have no other
        variable to start (the reference's z₀ is unused by their iterations as well)."""
        return (x0,)

    def step(self, state: State, y: Tensor, physics: LinearPhysics, k: int) -> State:
        raise NotImplementedError

    def output(self, state: State) -> Tensor:
        return state[0] if self.get_output is None else self.get_output({"est": state})

    def relax(self, x_new: Tensor, x_prev: Tensor, k: int) -> Tensor:
        """x ← βx + (1−β)x_prev (β = 1: no relaxation)."""
        if self._no_relaxation:
            return x_new
        beta = self.hp("beta", k)
        return beta * x_new + (1 - beta) * x_prev

    def prior_at(self, k: int) -> Prior:
        return at_iteration(self.prior, k)

    def data_fidelity_at(self, k: int) -> DataFidelity:
        fidelity = at_iteration(self.data_fidelity, k)
        return fidelity if self._anchor is None else Anchored(fidelity, *self._anchor)

    def prior_prox(self, x: Tensor, k: int) -> Tensor:
        return self.prior_at(k).prox(x, self.hp("sigma_denoiser", k),
                                     gamma=self.hp("lambda_reg", k) * self.hp("stepsize", k))

    def f_prox(self, x: Tensor, y: Tensor, physics: LinearPhysics, k: int) -> Tensor:
        return self.data_fidelity_at(k).prox(x, y, physics, gamma=self.hp("stepsize", k))

    def fixed_point_map(self, x: Tensor, y: Tensor, physics: LinearPhysics,
                        anchor: tuple[float, Tensor] | None = None) -> Tensor:
        """T(x): one iteration with the (single) hyperparameter values; used by DEQ and Anderson.
        `anchor` = (μ, x₀): the iteration with the data fidelity f + μ/2‖x − x₀‖² (data_fidelity.Anchored)."""
        self._anchor = anchor
        try:
            return self.step((x,), y, physics, 0)[0]
        finally:
            self._anchor = None

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
        refuse_forward_keywords(type(self).__name__, kwargs)
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
        self.has_converged = False
        for k, x in enumerate(self.iterates(y, physics, init)):
            if compute_metrics or self.early_stop:
                if prev is not None:
                    with torch.no_grad():
                        change = (x - prev).flatten(1).norm(dim=1) / prev.flatten(1).norm(dim=1).clamp_min(1e-30)
                    residuals.append(change)
                    if self.early_stop and k >= 2 and self._converged(k, prev, x):
                        if compute_metrics and x_gt is not None:
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

    def _converged(self, k: int, prev: Tensor, x: Tensor) -> bool:
        """The reference's stopping test (options.convergence_criterion), from its third iteration."""
        crit = convergence_criterion(prev, x)
        if crit < self.thres_conv:
            self.has_converged = True
            if self.verbose:
                print(f"Iteration {k}, current converge crit. = {crit:.2E}, objective = {self.thres_conv:.2E}")
            return True
        return False
