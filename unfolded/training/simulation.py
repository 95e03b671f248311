"""Measurements of the samples and the model's start x₀: what the model sees, in training and evaluation.

- y = physics(x) per sample, with the noise seeded by the sample's number (`seeding.py`): training noise
  by (`train_noise_seed`, n), evaluation noise by (`eval_seed`, split, i), so the model and the baselines
  see the same draws at every validation, in any number of processes, after any resume;
- with a physics generator (`module.physics_generator`), every sample also gets its own operator and noise
  level, drawn by the same numbers: `generator.draw(n, seed=train_noise_seed)` in training, and fixed draws
  per split and image in evaluation (`operators.py`: one physics per batch, A applied once);
- x₀: `adjoint` (the algorithm's own, Aᵀy) or `mean_fill` (Aᵀy + m·(1 − Aᵀ1), m the mean of y: what A
  barely sees — the ring of a valid blur, the missing pixels of inpainting — starts at the mean instead of
  black). The same rule serves training, evaluation and every later use of a trained model.
"""

from __future__ import annotations

from torch import Tensor

from . import seeding
from .operators import measure, physics_with
from .physics_bank import PhysicsBank

INITS = ("adjoint", "mean_fill")


def initial_estimate(init: str, y: Tensor, physics) -> Tensor | None:
    """x₀ for the model under the policy `init` (None: the model's own start, Aᵀy)."""
    if init == "adjoint":
        return None
    m = y.mean(dim=tuple(range(1, y.dim())), keepdim=True)
    return physics.A_adjoint(y) + m * (1 - physics.A_adjoint(y.new_ones(y.shape)))


class Simulator:
    """One physics per image size (`PhysicsBank`), an optional generator of per-sample operators, and the
    seeded measurements of numbered samples."""

    def __init__(self, physics, train_noise_seed: int | None, eval_seed: int, generator=None):
        self.physics_bank = PhysicsBank.wrap(physics)
        self.train_noise_seed, self.eval_seed = train_noise_seed, int(eval_seed)
        self.generator = generator

    def physics_for(self, x: Tensor):
        """The run's operator for images like x (with a generator: the one whose parameters draws replace)."""
        return self.physics_bank.get(x)

    def training(self, x: Tensor, numbers: Tensor) -> tuple[object, Tensor]:
        """(physics, y) for training samples with these numbers; fresh (unseeded) noise and operators when
        `train_noise_seed` is None."""
        physics = self.physics_for(x)
        if self.train_noise_seed is None:
            if self.generator is not None:
                physics = physics_with(physics, self.generator.step(x.shape[0]))
            return physics, physics(x)
        seeds = [seeding.training_seed(self.train_noise_seed, n) for n in numbers.tolist()]
        if self.generator is None:
            return physics, seeding.per_sample(physics, x, seeds)
        physics = physics_with(physics, self.generator.draw(numbers, seed=self.train_noise_seed))
        return physics, measure(physics, x, seeds)

    def evaluation(self, x: Tensor, numbers: Tensor, split: str, params: dict | None = None) -> tuple[object, Tensor]:
        """(physics, y) for evaluation images with these numbers in `split` ('val' or 'test'): the run's
        operator, or with a generator the split's fixed draws; `params` (a test-grid cell) fixes them instead."""
        physics = self.physics_for(x)
        seeds = [seeding.evaluation_seed(self.eval_seed, split, i) for i in numbers.tolist()]
        if params is None and self.generator is None:
            return physics, seeding.per_sample(physics, x, seeds)
        if params is None:
            params = self.generator.draw(numbers, seed=seeding.evaluation_stream(self.eval_seed, split))
        physics = physics_with(physics, params)
        return physics, measure(physics, x, seeds)
