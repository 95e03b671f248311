"""Explicit priors with closed-form proximal operators: Tikhonov ½‖x‖² and L1 ‖x‖₁ (the reference's
`Tikhonov` and `L1Prior`), and what every explicit prior shares (`ExplicitPrior`, `prox_weight`).

As in the reference, an algorithm's σ (`sigma_denoiser`/`g_param`, passed positionally) is accepted and
unused by these priors; their prox weight is γ (the algorithm passes λ·stepsize), times `ths` for L1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .prior import Prior


def prox_weight(owner: str, name: str, value, x: Tensor) -> float | Tensor:
    """A prox weight or threshold as a number, or a tensor shaped to broadcast over x: one value (any shape
    with one element) or one per sample (B values). Must be >= 0: the prox of a negatively weighted convex
    function is not defined (a trained λ or step size that went negative shows up here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{owner}: {name} must be a number or a tensor, got {type(value).__name__}")
    if isinstance(value, Tensor):
        if value.numel() == 1:
            value = value.reshape(())
        elif value.numel() == x.shape[0] and value.dim() >= 1 and value.shape[0] == x.shape[0]:
            value = value.reshape(-1, *([1] * (x.dim() - 1)))
        else:
            raise ValueError(f"{owner}: {name} must have 1 value or one per sample ({x.shape[0]}), got shape "
                             f"{tuple(value.shape)}")
        bad = bool((value.detach() < 0).any()) or bool(torch.isnan(value.detach()).any())
        if bad:
            raise ValueError(f"{owner}: {name} must be >= 0, got {value.detach().flatten().tolist()[:4]} "
                             "(a trained lambda_reg or stepsize that went negative?)")
        return value
    if not value >= 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return float(value)


def per_sample_sum(v: Tensor) -> Tensor:
    """Sum over every dimension but the first: a value per sample, shape (B,)."""
    return v.flatten(1).sum(1)


class ExplicitPrior(Prior):
    """A prior with a value `fn(x)` (per sample, shape (B,); `prior(x)` calls it), a (sub)gradient `grad`
    and a proximal operator `prox(x, *args, gamma)`. Positional arguments after x (the algorithms' σ) are
    accepted and unused, as in the reference."""

    has_prox = True
    has_grad = True

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.fn(x, *args, **kwargs)


class Tikhonov(ExplicitPrior):
    """g(x) = ½‖x‖²;  ∇g(x) = x;  prox_{γg}(x) = x / (1 + γ)."""

    def fn(self, x: Tensor, *args) -> Tensor:
        return 0.5 * per_sample_sum(x.abs().pow(2))

    def grad(self, x: Tensor, *args) -> Tensor:
        return x

    def prox(self, x: Tensor, *args, gamma=1.0) -> Tensor:
        return x / (1 + prox_weight("Tikhonov.prox", "gamma", gamma, x))


class L1Prior(ExplicitPrior):
    """g(x) = ‖x‖₁;  ∂g ∋ sign(x) (0 at 0, the subgradient autograd gives |x|);
    prox_{γg}(x) = sign(x)·max(|x| − ths·γ, 0), soft thresholding (`ths` = 1 by default, as in the reference)."""

    def fn(self, x: Tensor, *args) -> Tensor:
        return per_sample_sum(x.abs())

    def grad(self, x: Tensor, *args) -> Tensor:
        return torch.sign(x)

    def prox(self, x: Tensor, *args, ths=1.0, gamma=1.0) -> Tensor:
        t = prox_weight("L1Prior.prox", "ths", ths, x) * prox_weight("L1Prior.prox", "gamma", gamma, x)
        return soft_threshold(x, t)


def soft_threshold(x: Tensor, t) -> Tensor:
    """sign(x)·max(|x| − t, 0) for t >= 0 (a number or a tensor broadcasting over x)."""
    return torch.sign(x) * torch.relu(x.abs() - t)
