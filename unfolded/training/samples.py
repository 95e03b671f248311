"""Numbered samples: every item is a dict {"image": (C, H, W), "index": its number}, and everything random
about a sample is seeded by its number (`seeding.py`).

- `RandomCrops`: training sample n, a random crop (with flips) drawn by (seed, n);
- `SampleNumbers` + `ResumableLoader`: the numbers of an epoch for process r of w (r, r + w, ... of each
  global batch), and a loader whose position is kept in checkpoints, so a resumed epoch goes on with the
  next batch;
- `FixedImages`: evaluation images with their numbers in the split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from . import seeding


class RandomCrops(Dataset):
    """Random `crop_size`² crops with random horizontal/vertical flips; item n is drawn from a generator
    seeded by (seed, n), so any n may be asked for (the sampler asks for the run's sample numbers)."""

    def __init__(self, images: Sequence[Tensor], crop_size: int, length: int, flips: bool = True, seed: int = 0):
        self.images, self.crop_size, self.length, self.flips = list(images), crop_size, length, flips
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        g = seeding.generator(seeding.training_seed(self.seed, index))
        img = self.images[int(torch.randint(len(self.images), (), generator=g))]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - self.crop_size + 1, (), generator=g))
        left = int(torch.randint(w - self.crop_size + 1, (), generator=g))
        crop = img[..., top:top + self.crop_size, left:left + self.crop_size]
        if self.flips:
            if torch.rand((), generator=g) < 0.5:
                crop = crop.flip(-1)
            if torch.rand((), generator=g) < 0.5:
                crop = crop.flip(-2)
        return {"image": crop.contiguous(), "index": int(index)}


class SampleNumbers(Sampler[int]):
    """Sample numbers of one epoch for process `rank` of `world`: epoch·length + j for j = rank,
    rank + world, ... The epoch comes from `epoch()` (the trainer's) unless a resume set where to start."""

    def __init__(self, length: int, rank: int, world: int, epoch: Callable[[], int]):
        self.length, self.rank, self.world, self.epoch = length, rank, world, epoch
        self._resume_at: tuple[int, int] | None = None  # (epoch, first local sample)

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))

    def resume_at(self, epoch: int, first: int) -> None:
        self._resume_at = (epoch, first)

    def __iter__(self):
        epoch, first = self._resume_at or (self.epoch(), 0)
        self._resume_at = None
        for j in range(self.rank, self.length, self.world)[first:]:
            yield epoch * self.length + j


class ResumableLoader(DataLoader):
    """Training loader whose state Lightning keeps in checkpoints: the epoch and the number of batches
    trained in it (`progress()`), so that a resumed epoch continues with the next batch instead of
    starting over (and the samples seen equal those of an uninterrupted run)."""

    def __init__(self, *args, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict:
        epoch, batches_done = self.progress()
        return {"epoch": int(epoch), "batches_done": int(batches_done)}

    def load_state_dict(self, state: dict) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of an epoch: the next starts afresh
            epoch, done = epoch + 1, 0
        self.sampler.resume_at(epoch, done * self.batch_size)


class FixedImages(Dataset):
    """Evaluation images with their numbers in the split (a process's share keeps the global numbers)."""

    def __init__(self, images: Sequence[Tensor], numbers: Sequence[int]):
        self.images, self.numbers = list(images), list(numbers)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "index": self.numbers[i]}
