"""The one seeding rule of a run: every random draw of a sample (its crop, its noise) is seeded by the
sample's number, which the dataset hands over with the sample. So a draw does not depend on the
process that makes it, on the batch it lands in, or on whether the run was resumed.

- training sample n: stream seed s (the run's `seed` for crops, `module.train_noise_seed` for noise),
  generator seed s·STRIDE + n;
- evaluation image i of a split: `module.eval_seed` + the split's offset + i (the same draws for the
  model and the baselines, at every validation);
- operators drawn per sample (physics generators) by (stream, n) through `generators.sample_seed`, a
  hash of the pair: training sample n by (`module.train_noise_seed`, n), evaluation image i by
  (`evaluation_stream(eval_seed, split)`, i).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

STRIDE = 1_000_000_007  # separates the streams of different seeds (a prime above any sample number)
SPLIT_OFFSET = {"val": 0, "test": 1_000_003}
EVAL_SEED = 1234  # default `module.eval_seed`


def training_seed(stream: int, n: int) -> int:
    return (int(stream) * STRIDE + int(n)) % 2**63


def evaluation_seed(eval_seed: int, split: str, index: int) -> int:
    return int(eval_seed) + SPLIT_OFFSET[split] + int(index)


def evaluation_stream(eval_seed: int, split: str) -> int:
    """The stream of a split's operator draws: `generator.draw(i, seed=...)` mixes it with the image number."""
    return int(eval_seed) + SPLIT_OFFSET[split]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def per_sample(fn: Callable[[Tensor], Tensor], x: Tensor, seeds: Sequence[int]) -> Tensor:
    """fn(x[i]) for each sample i with the global RNG seeded by seeds[i] (the caller's RNG state is kept),
    concatenated: what the physics draws for a sample depends on its seed alone."""
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    out = []
    with torch.random.fork_rng(devices=devices):
        for i, seed in enumerate(seeds):
            torch.manual_seed(seed)
            out.append(fn(x[i:i + 1]))
    return torch.cat(out)
