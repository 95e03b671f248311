"""FISTA, Douglas–Rachford (DRS) and primal–dual Chambolle–Pock (PDCP), with the reference's signatures.

Like algorithms.py, each is one `step` that reads like its formula (the reference's iterations, deepinv
0.5.0); the loop, hyperparameters, unfolding and initialisation are BaseOptim's. γ = stepsize, λ = lambda_reg,
σ = sigma_denoiser (g_param), k = the iteration (from 0). None of the three has a fixed-point map on x alone,
so DEQ and Anderson acceleration are refused (use GD, PGD or HQS for those).
"""

from __future__ import annotations

from collections.abc import Callable

from .base_optim import BaseOptim
from .hyperparams import HYPERPARAMETERS, is_default

__all__ = ["FISTA", "DRS", "PDCP"]


def identity(x):
    """The default K and Kᵀ of PDCP (a named function, not a lambda, so that a model can be pickled)."""
    return x


def own_values(owner: str, params_algo: dict | None, given: dict, defaults: dict) -> dict | None:
    """Fold an algorithm's own keyword hyperparameters (FISTA's a, PDCP's stepsize_dual) into `params_algo`,
    through which BaseOptim reads them; a value given both ways is ambiguous."""
    extra = {k: v for k, v in given.items() if not is_default(v, defaults[k])}
    if not extra:
        return params_algo
    params_algo = dict(params_algo or {})
    for key, value in extra.items():
        if key in params_algo:
            raise ValueError(f"{owner}: {key} is given both as a keyword ({value!r}) and in params_algo['{key}']; "
                             "give it once")
        params_algo[key] = value
    return params_algo


def _start(owner: str, x0, given):
    """A variable of the initial state: as given, else x₀; it lives where x does."""
    if given is None:
        return x0
    if given.shape != x0.shape:
        raise ValueError(f"{owner}: every variable of the initialisation must have the shape of x0 "
                         f"{tuple(x0.shape)}, got {tuple(given.shape)}")
    return given


class FISTA(BaseOptim):
    """FISTA (Chambolle–Dossal inertia), state (x, z) from x₀ = z₀ = Aᵀy:

        u = z − γ∇f(z);  x ← prox_g(u, σ, λγ);  z ← x + α_k(x − x_prev),  α_k = (k + a − 1)/(k + a)

    `a` (> 2 for convergence of the iterates; trainable, and per iteration, like the other hyperparameters).
    g_first=True: u = z − λγ∇g(z, σ) (a prior with a gradient); x ← prox_{γf}(u). No relaxation β.
    The output is x.
    """

    supports_deq = False
    supports_g_first = True
    g_first_needs_prox = False
    hyperparameter_names = ("stepsize", "lambda_reg", "sigma_denoiser", "a")
    own_defaults = {"a": 3.0}

    def __init__(self, data_fidelity=None, prior=None, lambda_reg=1.0, stepsize=1.0, a=3, g_param=None,
                 sigma_denoiser=None, max_iter: int = 100, crit_conv: str = "residual", thres_conv: float = 1e-5,
                 early_stop: bool = False, custom_metrics=None, custom_init=None, g_first: bool = False,
                 unfold: bool = False, trainable_params=None, cost_fn=None, params_algo: dict | None = None,
                 **kwargs):
        super().__init__(
            data_fidelity=data_fidelity, prior=prior, lambda_reg=lambda_reg, stepsize=stepsize, g_param=g_param,
            sigma_denoiser=sigma_denoiser, max_iter=max_iter, crit_conv=crit_conv, thres_conv=thres_conv,
            early_stop=early_stop, custom_metrics=custom_metrics, custom_init=custom_init, g_first=g_first,
            unfold=unfold, trainable_params=trainable_params, cost_fn=cost_fn,
            params_algo=own_values("FISTA", params_algo, {"a": a}, self.own_defaults), **kwargs)

    def init_from(self, x0, rest, y):
        return (x0, _start("FISTA", x0, rest[0] if rest else None))

    def step(self, state, y, physics, k):
        x_prev, z = state
        gamma, a = self.hp("stepsize", k), self.hp("a", k)
        if self.g_first:
            u = z - self.hp("lambda_reg", k) * gamma * self.prior_at(k).grad(z, self.hp("sigma_denoiser", k))
            x = self.f_prox(u, y, physics, k)
        else:
            x = self.prior_prox(z - gamma * self.data_fidelity_at(k).grad(z, y, physics), k)
        alpha = (k + a - 1) / (k + a)
        return (x, x + alpha * (x - x_prev))


class DRS(BaseOptim):
    """Douglas–Rachford splitting, state (x, z) from x₀ = z₀ = Aᵀy:

        u = prox_{γf}(z);  x ← prox_g(2u − z, σ, λγ);  z ← z + β(x − u)

    g_first=True swaps the two proxes (u = prox_g(z, σ, λγ); x ← prox_{γf}(2u − z)). β is the step of the
    z-update (not a relaxation of x). The output is x.
    """

    supports_deq = False
    supports_g_first = True

    def __init__(self, data_fidelity=None, prior=None, lambda_reg=1.0, stepsize=1.0, beta=1.0, g_param=None,
                 sigma_denoiser=None, max_iter: int = 100, crit_conv: str = "residual", thres_conv: float = 1e-5,
                 early_stop: bool = False, custom_metrics=None, custom_init=None, unfold: bool = False,
                 trainable_params=None, g_first: bool = False, cost_fn=None, params_algo: dict | None = None,
                 **kwargs):
        super().__init__(
            data_fidelity=data_fidelity, prior=prior, lambda_reg=lambda_reg, stepsize=stepsize, beta=beta,
            g_param=g_param, sigma_denoiser=sigma_denoiser, max_iter=max_iter, crit_conv=crit_conv,
            thres_conv=thres_conv, early_stop=early_stop, custom_metrics=custom_metrics, custom_init=custom_init,
            unfold=unfold, trainable_params=trainable_params, g_first=g_first, cost_fn=cost_fn,
            params_algo=params_algo, **kwargs)

    def init_from(self, x0, rest, y):
        return (x0, _start("DRS", x0, rest[0] if rest else None))

    def step(self, state, y, physics, k):
        _, z = state
        if self.g_first:
            u = self.prior_prox(z, k)
            x = self.f_prox(2 * u - z, y, physics, k)
        else:
            u = self.f_prox(z, y, physics, k)
            x = self.prior_prox(2 * u - z, k)
        return (x, z + self.hp("beta", k) * (x - u))

    def relax(self, x_new, x_prev, k):  # β is the z-step here
        return x_new


class PDCP(BaseOptim):
    """Primal–dual Chambolle–Pock for min F(Kx) + λG(x), state (x, z, u) (primal, extrapolated, dual):

        u ← prox_{σF*}(u + σK z);  x ← prox_G(x − τKᵀu, σ_d, λτ);  z ← x + β(x − x_prev)

    with τ = stepsize, σ = stepsize_dual (τσ‖K‖² ≤ 1 for convergence), F = the data-fidelity term (with the
    physics: K = identity by default makes the dual variable an image) and G the prior. g_first=True swaps
    them: u ← prox_{λσ(λG)*}(u + σKz) (the reference's weights); x ← prox_{τf}(x − τKᵀu).
    The start is x₀ = z₀ = Aᵀy and u₀ = y, as in the reference; when y does not have the shape of K(x₀)
    (e.g. a 'valid' blur with K = identity, where the reference fails) u₀ = 0. An initialisation
    (x₀, z₀, u₀) is taken as given. The output is x.
    """

    supports_deq = False
    supports_g_first = True
    hyperparameter_names = (*HYPERPARAMETERS, "stepsize_dual")
    own_defaults = {"stepsize_dual": 1.0}

    def __init__(self, K: Callable = identity, K_adjoint: Callable = identity, data_fidelity=None, prior=None,
                 lambda_reg=1.0, stepsize=1.0, stepsize_dual=1.0, beta=1.0, g_param=None, sigma_denoiser=None,
                 max_iter: int = 100, crit_conv: str = "residual", thres_conv: float = 1e-5,
                 early_stop: bool = False, custom_metrics=None, custom_init=None, g_first: bool = False,
                 unfold: bool = False, trainable_params=None, cost_fn=None, params_algo: dict | None = None,
                 **kwargs):
        if params_algo is not None and ("K" in params_algo or "K_adjoint" in params_algo):
            params_algo = dict(params_algo)  # the reference also takes K and Kᵀ in params_algo
            for key, given in (("K", K), ("K_adjoint", K_adjoint)):
                if key in params_algo:
                    if given is not identity:
                        raise ValueError(f"PDCP: {key} is given both as a keyword and in params_algo['{key}']; "
                                         "give it once")
                    value = params_algo.pop(key)
                    K, K_adjoint = (value, K_adjoint) if key == "K" else (K, value)
        for key, op in (("K", K), ("K_adjoint", K_adjoint)):
            if not callable(op):
                raise TypeError(f"PDCP: {key} must be a callable (a linear operator), got {type(op).__name__}")
        super().__init__(
            data_fidelity=data_fidelity, prior=prior, lambda_reg=lambda_reg, stepsize=stepsize, beta=beta,
            g_param=g_param, sigma_denoiser=sigma_denoiser, max_iter=max_iter, crit_conv=crit_conv,
            thres_conv=thres_conv, early_stop=early_stop, custom_metrics=custom_metrics, custom_init=custom_init,
            g_first=g_first, unfold=unfold, trainable_params=trainable_params, cost_fn=cost_fn,
            params_algo=own_values("PDCP", params_algo, {"stepsize_dual": stepsize_dual}, self.own_defaults),
            **kwargs)
        self.K, self.K_adjoint = K, K_adjoint

    def init_from(self, x0, rest, y):
        z0 = _start("PDCP", x0, rest[0] if rest else None)
        if len(rest) > 1:
            return (x0, z0, rest[1])
        Kx = self.K(x0)
        return (x0, z0, y if y.shape == Kx.shape else Kx.new_zeros(Kx.shape))

    def step(self, state, y, physics, k):
        x_prev, z, u = state
        tau, sigma, lam = self.hp("stepsize", k), self.hp("stepsize_dual", k), self.hp("lambda_reg", k)
        prior, f, g_param = self.prior_at(k), self.data_fidelity_at(k), self.hp("sigma_denoiser", k)
        if self.g_first:
            u = prior.prox_conjugate(u + sigma * self.K(z), g_param, gamma=lam * sigma, lamb=lam)
            x = f.prox(x_prev - tau * self.K_adjoint(u), y, physics, gamma=tau)
        else:
            u = f.prox_conjugate(u + sigma * self.K(z), y, physics, gamma=sigma)
            x = prior.prox(x_prev - tau * self.K_adjoint(u), g_param, gamma=tau * lam)
        return (x, x + self.hp("beta", k) * (x - x_prev), u)

    def relax(self, x_new, x_prev, k):  # β is the extrapolation here
        return x_new
