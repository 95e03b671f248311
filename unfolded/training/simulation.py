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

    def batch(self, batch: dict, split: str, params: dict | None = None) -> tuple[Tensor, object, Tensor]:
        """(x, physics, y) of a batch {"image", "index"} of `split` ('train', 'val' or 'test'): the interface
        the module uses, shared with the measurements of real k-space (`kspace_measurements.py`); `params`
        (evaluation only): a test-grid cell's operator tensors and noise level."""
        if "kspace" in batch:  # measured data must not be re-simulated from its reference image
            raise ValueError("the batches hold measured k-space (data=fastmri): use physics=fastmri, which measures "
                             "them, instead of a simulated physics")
        x = batch["image"]
        physics, y = (self.training(x, batch["index"]) if split == "train"
                      else self.evaluation(x, batch["index"], split, params))
        return x, physics, y

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


def is_measured(physics) -> bool:
    """The one rule for "this physics measures real k-space files" (`physics=fastmri`), not simulated data."""
    from ..physics.kspace import KspacePhysics

    return isinstance(physics, KspacePhysics)


def measurements(physics, train_noise_seed: int | None, eval_seed: int, generator=None):
    """The run's source of measurements: for settings of measured k-space (`KspacePhysics`), the
    `KspaceMeasurements` of the files' slices, else a `Simulator` of y = physics(x), with operators drawn per
    sample by `generator` when one is given."""
    if is_measured(physics):
        from .kspace_measurements import KspaceMeasurements

        if generator is not None:
            raise ValueError(f"module.physics_generator draws operators for simulated measurements, but "
                             f"{type(physics).__name__} measures real data; remove the generator")
        return KspaceMeasurements(physics, train_noise_seed, eval_seed)
    return Simulator(physics, train_noise_seed, eval_seed, generator)
