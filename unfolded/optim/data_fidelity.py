"""Data-fidelity terms f(x) = distance(A x, y)."""

from __future__ import annotations

from torch import Tensor, nn


class DataFidelity(nn.Module):
    """Base class: `fn(x, y, physics)`, `grad(x, y, physics)`, `prox(x, y, physics, gamma)`; calling it,
    `f(x, y, physics)`, gives the value, as in the reference."""

    def forward(self, x: Tensor, y: Tensor, physics) -> Tensor:
        return self.fn(x, y, physics)

    def prox_conjugate(self, x: Tensor, y: Tensor, physics, *args, gamma=1.0, lamb=1.0) -> Tensor:
        """prox of γ(λf)* by Moreau's identity, x − γ·prox_{(λ/γ)f}(x/γ), as the reference computes it (the
        dual step of PDCP). Valid for a convex f."""
        return x - gamma * self.prox(x / gamma, y, physics, gamma=lamb / gamma)


class L2(DataFidelity):
    """f(x) = 1/(2σ²)‖Ax − y‖²;  ∇f = Aᵀ(Ax − y)/σ²;  prox_{γf}(z) = physics.prox_l2(z, y, γ/σ²)."""

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        if not float(sigma) > 0:
            raise ValueError(f"L2: sigma must be > 0, got {sigma}")
        self.norm = 1.0 / float(sigma) ** 2

    def fn(self, x: Tensor, y: Tensor, physics) -> Tensor:
        """Per-sample value, shape (B,)."""
        return 0.5 * self.norm * (physics.A(x) - y).pow(2).flatten(1).sum(1)

    def grad(self, x: Tensor, y: Tensor, physics) -> Tensor:
        return self.norm * physics.A_adjoint(physics.A(x) - y)

    def prox(self, x: Tensor, y: Tensor, physics, gamma=1.0, **solver_options) -> Tensor:
        """`solver_options` (solver, max_iter, tol, verbose) go to physics.prox_l2, as in the reference."""
        return physics.prox_l2(x, y, gamma * self.norm, **solver_options)


class Anchored:
    """f(x) + μ/2‖x − x₀‖²: a data fidelity made μ-strongly convex (DEQConfig(anchor_weight=μ)).

    prox_{γ(f + μ/2‖·−x₀‖²)}(z) = prox_{γ'f}(w) with γ' = γ/(1+γμ) and w = (z + γμx₀)/(1+γμ) (complete the
    square), so the anchored prox is the plain one at another point and step, and its Jacobian in z is the
    plain one's times 1/(1+γμ) < 1: directions the measurements barely see (a valid blur's border, the
    frequencies a blur removes) contract by that factor instead of ≈ 1, which is what lets a fixed point
    of an iteration through it be found in a few steps. Built for one solve (x₀ is that solve's start).
    """

    def __init__(self, fidelity, weight: float, x0: Tensor):
        self.fidelity, self.weight, self.x0 = fidelity, weight, x0

    def fn(self, x: Tensor, y: Tensor, physics) -> Tensor:
        return self.fidelity.fn(x, y, physics) + 0.5 * self.weight * (x - self.x0).pow(2).flatten(1).sum(1)

    def grad(self, x: Tensor, y: Tensor, physics) -> Tensor:
        return self.fidelity.grad(x, y, physics) + self.weight * (x - self.x0)

    def prox(self, x: Tensor, y: Tensor, physics, gamma=1.0, **solver_options) -> Tensor:
        scale = 1 + gamma * self.weight
        return self.fidelity.prox((x + gamma * self.weight * self.x0) / scale, y, physics, gamma=gamma / scale,
                                  **solver_options)
