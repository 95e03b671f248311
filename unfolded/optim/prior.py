"""Priors built from a denoiser D(x, σ): plug-and-play (prox = D) and RED (∇g = x − D(x))."""

from __future__ import annotations

from torch import Tensor, nn


class Prior(nn.Module):
    """Base class. `has_prox` / `has_grad` say which steps an algorithm may use; `prox_uses_gamma`
    says whether the prox depends on its weight γ (so whether λ can matter)."""

    has_prox = False
    has_grad = False
    prox_uses_gamma = True

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"{type(self).__name__}: denoiser must be a torch.nn.Module such as DnCNN, "
                            f"got {type(denoiser).__name__}")
        self.denoiser = denoiser

    @property
    def uses_sigma(self) -> bool:
        return bool(getattr(self.denoiser, "uses_sigma", True))


class PnP(Prior):
    """Plug-and-play: prox_g(x, σ, γ) = D(x, σ); γ is unused."""

    has_prox = True
    prox_uses_gamma = False

    def prox(self, x: Tensor, sigma_denoiser=None, *args, gamma=None, **kwargs) -> Tensor:
        return self.denoiser(x, sigma_denoiser)


class RED(Prior):
    """Regularisation by denoising: ∇g(x, σ) = x − D(x, σ)."""

    has_grad = True

    def grad(self, x: Tensor, sigma_denoiser=None, *args, **kwargs) -> Tensor:
        return x - self.denoiser(x, sigma_denoiser)
