"""Noise models: y = N(A x)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _version(t: Tensor) -> int | None:
    """The in-place modification counter; inference-mode tensors have none (None: assume unchanged)."""
    return None if t.is_inference() else t._version


class GaussianNoise(nn.Module):
    """y = x + σ·n with n ~ N(0, I), drawn afresh at every call (from `rng` when given).

    σ is a number (held exactly, in a 0-d float64 tensor) or a tensor with one value per sample, shape (B,).
    `noise(x, sigma=s)` stores s as the new σ, as in the reference; `seed=` reseeds `rng` first.
    """

    parameter_names = ("sigma",)  # stored by update_parameters / physics.update
    call_parameters = ("sigma", "seed")  # accepted by forward (and physics(x, ...))

    def __init__(self, sigma: float | Tensor = 0.1, rng: torch.Generator | None = None):
        super().__init__()
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(f"GaussianNoise: rng must be a torch.Generator, got {type(rng).__name__}")
        self.rng = rng
        self._initial_state = None if rng is None else rng.get_state()
        self._set_sigma(sigma)

    def rng_manual_seed(self, seed: int | None = None) -> None:
        """Reseed the generator (None: leave it as it is)."""
        if seed is not None:
            self._need_rng("rng_manual_seed")
            self.rng.manual_seed(int(seed))

    def reset_rng(self) -> None:
        """Put the generator back to its state at construction: the same noise draws again."""
        self._need_rng("reset_rng")
        self.rng.set_state(self._initial_state)

    def _need_rng(self, what: str) -> None:
        if self.rng is None:
            raise ValueError(f"GaussianNoise: {what} needs a generator, and this noise model has none; build it "
                             "with GaussianNoise(sigma, rng=torch.Generator())")

    def _set_sigma(self, sigma) -> None:
        """σ as a tensor buffer (the reference's `noise.sigma.item()` works): a number becomes a 0-d float64
        tensor, which holds it exactly; not persistent, so state dicts are as before."""
        if not isinstance(sigma, Tensor):
            if isinstance(sigma, bool) or not float(sigma) >= 0:
                raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma}")
            sigma = torch.tensor(float(sigma), dtype=torch.float64)
        if sigma.dim() > 1 or not sigma.is_floating_point():
            raise ValueError(f"GaussianNoise: a tensor sigma must be a floating 0-d or (B,) tensor (one value per "
                             f"sample), got dtype {sigma.dtype} and shape {tuple(sigma.shape)}")
        if not bool((sigma.detach() >= 0).all()):
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma.detach().flatten()[:4].tolist()}")
        current = self._buffers.get("sigma")
        self.register_buffer("sigma", sigma if current is None else sigma.to(current.device), persistent=False)
        # Decided here, not per call: a constant scalar σ is applied as a Python float (no tensor op, no
        # sync) while the buffer is the very tensor seen here, unmodified (its version counter unchanged).
        scalar = float(sigma) if sigma.dim() == 0 and not sigma.requires_grad else None
        stored = self._buffers["sigma"]
        self.__dict__["_seen"] = (stored, _version(stored), scalar)

    def __setattr__(self, name, value):
        if name == "sigma" and "_buffers" in self.__dict__:  # `noise.sigma = 0.2` is checked like the constructor's
            self._set_sigma(value)
        else:
            super().__setattr__(name, value)

    def _constant_scalar(self) -> float | None:
        tensor, version, scalar = self._seen
        return scalar if tensor is self.sigma and _version(tensor) == version else None

    def update_parameters(self, sigma=None, **params) -> None:
        if params:
            raise ValueError(f"GaussianNoise.update_parameters: unknown keyword(s) {', '.join(sorted(params))}; "
                             "it accepts: sigma")
        if sigma is not None:
            self._set_sigma(sigma)

    def forward(self, x: Tensor, sigma=None, seed: int | None = None) -> Tensor:
        if sigma is not None:
            self._set_sigma(sigma)
        if seed is not None:
            self._need_rng("seed=")
            self.rng_manual_seed(seed)
        scalar = self._constant_scalar()
        if scalar == 0.0:
            return x
        if scalar is not None:
            return x + scalar * torch.randn(x.shape, generator=self.rng, dtype=x.dtype, device=x.device)
        s = self.sigma
        if s.dim() == 1:
            if s.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"GaussianNoise: sigma holds {s.shape[0]} values but the batch has {x.shape[0]} "
                                 "samples")
            s = s.view(-1, *([1] * (x.dim() - 1)))
        n = torch.randn(x.shape, generator=self.rng, dtype=x.dtype, device=x.device)
        return x + s.to(dtype=x.dtype, device=x.device) * n
