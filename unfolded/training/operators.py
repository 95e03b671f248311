"""Operators drawn per sample: a physics generator's parameters made into the physics of one batch, and the
batch's measurements in one call of the operator.

- `physics_with(physics, params)`: a copy of the run's physics holding the drawn tensors (a filter
  (B, 1, h, w), a noise level σ (B,), ...). The run's physics is never changed: evaluation keeps its operator,
  and a batch's physics stays valid as long as anything refers to it (the Tikhonov tuning keeps several).
- `measure(physics, x, seeds)`: y = A x + σ·n with A applied once to the whole batch; sample i's n drawn from
  the global generator seeded by seeds[i], exactly as `seeding.per_sample` draws it for a physics called on
  one sample at a time, so a sample's measurement depends on its seed alone, not on its batch.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from unfolded.physics import GaussianNoise
from unfolded.physics.generators import PhysicsGenerator

from . import seeding


def physics_with(physics, params: dict[str, Tensor]):
    """A copy of `physics` whose operator tensors and noise-model parameters are `params` (one value per
    sample or one for all)."""
    copy = physics.clone()
    copy.update(**params)  # validated and stored on the device of the tensors they replace
    return copy


def noise_level(physics, like: Tensor) -> Tensor:
    """σ of the physics' Gaussian noise, shaped to scale a batch like `like` (0-d or (B, 1, ..., 1))."""
    noise = physics.noise_model
    if not isinstance(noise, GaussianNoise):
        raise ValueError(f"per-sample operators need physics with a GaussianNoise noise model, got "
                         f"{type(noise).__name__}")
    sigma = noise.sigma.to(device=like.device, dtype=like.dtype)
    if sigma.dim() == 1:
        if sigma.shape[0] not in (1, like.shape[0]):
            raise ValueError(f"noise level holds {sigma.shape[0]} values for a batch of {like.shape[0]} samples")
        sigma = sigma.view(-1, *([1] * (like.dim() - 1)))
    return sigma


def measure(physics, x: Tensor, seeds: Sequence[int] | None) -> Tensor:
    """y = A x + σ·n for the batch, A called once; n of sample i seeded by seeds[i] (None: fresh noise)."""
    if seeds is None:
        return physics(x)
    Ax = physics.A(x)
    sigma = noise_level(physics, Ax)
    n = seeding.per_sample(torch.randn_like, Ax, seeds)
    return physics.sensor(Ax + sigma * n)


def combined(generators: Sequence[PhysicsGenerator]) -> PhysicsGenerator:
    """generators[0] + generators[1] + ...: one generator drawing all their parameters (a configuration
    cannot write `+`)."""
    generators = list(generators)
    if not generators or not all(isinstance(g, PhysicsGenerator) for g in generators):
        raise ValueError("combined: generators must be a non-empty list of physics generators")
    return functools.reduce(operator.add, generators)


def check_generator(generator: PhysicsGenerator, physics, img_size: tuple[int, int, int]):
    """The generator's parameters fit the physics: one draw, stored in a copy and applied to an image of
    `img_size`, with a Gaussian noise model to scale per sample. Raises the operator's own error; returns the
    copy."""
    if not isinstance(generator, PhysicsGenerator):
        raise ValueError(f"must be a physics generator (unfolded.physics.generators), got {type(generator).__name__}")
    drawn = physics_with(physics, generator.draw([0], seed=0))
    with torch.no_grad():
        Ax = drawn.A(torch.zeros(1, *img_size))
    noise_level(drawn, Ax)
    return drawn
