"""Measurements of the samples and the model's start x₀: what the model sees, in training and evaluation.

- y = physics(x) per sample, with the noise seeded by the sample's number (`seeding.py`): training noise
  by (`train_noise_seed`, n), evaluation noise by (`eval_seed`, split, i), so the model and the baselines
  see the same draws at every validation, in any number of processes, after any resume;
- x₀: `adjoint` (the algorithm's own, Aᵀy) or `mean_fill` (Aᵀy + m·(1 − Aᵀ1), m the mean of y: what A
  barely sees — the ring of a valid blur, the missing pixels of inpainting — starts at the mean instead of
  black). The same rule serves training, evaluation and every later use of a trained model.
"""

from __future__ import annotations

from torch import Tensor

from . import seeding
from .physics_bank import PhysicsBank

INITS = ("adjoint", "mean_fill")


def initial_estimate(init: str, y: Tensor, physics) -> Tensor | None:
    """x₀ for the model under the policy `init` (None: the model's own start, Aᵀy)."""
    if init == "adjoint":
        return None
    m = y.mean(dim=tuple(range(1, y.dim())), keepdim=True)
    return physics.A_adjoint(y) + m * (1 - physics.A_adjoint(y.new_ones(y.shape)))


class Simulator:
    """One physics per image size (`PhysicsBank`) and the seeded measurements of numbered samples."""

    def __init__(self, physics, train_noise_seed: int | None, eval_seed: int):
        self.physics_bank = PhysicsBank.wrap(physics)
        self.train_noise_seed, self.eval_seed = train_noise_seed, int(eval_seed)

    def physics_for(self, x: Tensor):
        return self.physics_bank.get(x)

    def training(self, x: Tensor, numbers: Tensor) -> tuple[object, Tensor]:
        """(physics, y) for training samples with these numbers; fresh (unseeded) noise when
        `train_noise_seed` is None."""
        physics = self.physics_for(x)
        if self.train_noise_seed is None:
            return physics, physics(x)
        seeds = [seeding.training_seed(self.train_noise_seed, n) for n in numbers.tolist()]
        return physics, seeding.per_sample(physics, x, seeds)

    def evaluation(self, x: Tensor, numbers: Tensor, split: str) -> tuple[object, Tensor]:
        """(physics, y) for evaluation images with these numbers in `split` ('val' or 'test')."""
        physics = self.physics_for(x)
        seeds = [seeding.evaluation_seed(self.eval_seed, split, i) for i in numbers.tolist()]
        return physics, seeding.per_sample(physics, x, seeds)
