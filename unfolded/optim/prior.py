"""Priors g(x): built from a denoiser D(x, σ) (plug-and-play: prox = D; RED: ∇g = x − D(x)), or explicit
ones with a value, a gradient and a proximal operator (classical_priors.py, tv_prior.py, wavelet_prior.py)."""

from __future__ import annotations

from torch import Tensor, nn


class Prior(nn.Module):
    """Base class. `has_prox` / `has_grad` say which steps an algorithm may use; `prox_uses_gamma`
    says whether the prox depends on its weight γ (so whether λ can matter); `uses_sigma` whether the prox
    or gradient depends on σ (`sigma_denoiser`/`g_param`, the algorithms' first positional argument)."""

    has_prox = False
    has_grad = False
    prox_uses_gamma = True
    uses_sigma = False

    def prox_conjugate(self, x: Tensor, *args, gamma=1.0, lamb=1.0, **kwargs) -> Tensor:
        """prox of γ(λg)* by Moreau's identity, x − γ·prox_{(λ/γ)g}(x/γ), as the reference computes it
        (PDCP with g_first=True). Valid for a convex g."""
        return x - gamma * self.prox(x / gamma, *args, gamma=lamb / gamma, **kwargs)


class DenoiserPrior(Prior):
    """A prior defined by a denoiser module D(x, σ)."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"{type(self).__name__}: denoiser must be a torch.nn.Module such as DnCNN, "
                            f"got {type(denoiser).__name__}")
        self.denoiser = denoiser

    @property
    def uses_sigma(self) -> bool:
        return bool(getattr(self.denoiser, "uses_sigma", True))


class PnP(DenoiserPrior):
    """Plug-and-play: prox_g(x, σ, γ) = D(x, σ); γ is unused."""

    has_prox = True
    prox_uses_gamma = False

    def prox(self, x: Tensor, sigma_denoiser=None, *args, gamma=None, **kwargs) -> Tensor:
        return self.denoiser(x, sigma_denoiser)


class RED(DenoiserPrior):
    """Regularisation by denoising: ∇g(x, σ) = x − D(x, σ)."""

    has_grad = True

    def grad(self, x: Tensor, sigma_denoiser=None, *args, **kwargs) -> Tensor:
        return x - self.denoiser(x, sigma_denoiser)


# The explicit priors, also reachable as unfolded.optim.prior.<name> as in the reference. Imported last:
# their modules import Prior from this one.
from .classical_priors import L1Prior, Tikhonov  # noqa: E402
from .tv_prior import TVPrior  # noqa: E402
from .wavelet_prior import WaveletPrior  # noqa: E402

__all__ = ["Prior", "DenoiserPrior", "PnP", "RED", "Tikhonov", "L1Prior", "TVPrior", "WaveletPrior"]
