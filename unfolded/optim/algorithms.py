"""Iterative algorithms GD, PGD, HQS, ADMM; with `unfold=True` their hyperparameters are learnable.

Each algorithm is one `step` that reads like its formula (SPEC §5); the loop and everything else they
share is BaseOptim (base_optim.py).
"""

from __future__ import annotations

from .base_optim import BaseOptim

__all__ = ["BaseOptim", "GD", "PGD", "HQS", "ADMM"]


class GD(BaseOptim):
    """Gradient descent: x ← x − γ(∇f(x) + λ∇g(x, σ)); `prior` needs a gradient (RED) or is None."""

    needs_prox = False

    def step(self, state, y, physics, k):
        (x,) = state
        grad = self.data_fidelity_at(k).grad(x, y, physics)
        if self.prior is not None:
            grad = grad + self.hp("lambda_reg", k) * self.prior_at(k).grad(x, self.hp("sigma_denoiser", k))
        return (self.relax(x - self.hp("stepsize", k) * grad, x, k),)


class PGD(BaseOptim):
    """Proximal gradient: u = x − γ∇f(x); x ← prox_g(u, σ, λγ).

    g_first=True (the reference's order swap): u = x − λγ∇g(x, σ); x ← prox_{γf}(u), with a RED prior.
    """

    supports_g_first = True
    g_first_needs_prox = False

    def step(self, state, y, physics, k):
        (x,) = state
        gamma = self.hp("stepsize", k)
        if self.g_first:
            u = x - self.hp("lambda_reg", k) * gamma * self.prior_at(k).grad(x, self.hp("sigma_denoiser", k))
            return (self.relax(self.f_prox(u, y, physics, k), x, k),)
        u = x - gamma * self.data_fidelity_at(k).grad(x, y, physics)
        return (self.relax(self.prior_prox(u, k), x, k),)


class HQS(BaseOptim):
    """Half-quadratic splitting: u = prox_{γf}(x); x ← prox_g(u, σ, λγ).

    g_first=True: u = prox_g(x, σ, λγ); x ← prox_{γf}(u) (the output ends on data consistency).
    """

    supports_g_first = True

    def step(self, state, y, physics, k):
        (x,) = state
        if self.g_first:
            return (self.relax(self.f_prox(self.prior_prox(x, k), y, physics, k), x, k),)
        u = self.f_prox(x, y, physics, k)
        return (self.relax(self.prior_prox(u, k), x, k),)


class ADMM(BaseOptim):
    """Scaled ADMM from z₀ = w₀ = Aᵀy: x ← prox_{γf}(z − w); z ← prox_g(x + w, σ, λγ); w ← w + β(x − z).

    The output is z. `beta` is the dual step (not a relaxation).
    """

    supports_deq = False

    def init_from(self, x0, rest, y):
        if rest:
            raise NotImplementedError("ADMM: an initialisation with dual variables (x0, z0, ...) is not supported "
                                      "(this ADMM starts z0 = w0 = x0); give x0 alone")
        return (x0, x0, x0)

    def step(self, state, y, physics, k):
        _, z, w = state
        x = self.f_prox(z - w, y, physics, k)
        z = self.prior_prox(x + w, k)
        w = w + self.hp("beta", k) * (x - z)
        return (x, z, w)

    def output(self, state):
        return state[1]

    def relax(self, x_new, x_prev, k):  # β is the dual step here
        return x_new
