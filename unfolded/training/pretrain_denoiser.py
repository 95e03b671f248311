"""`python -m unfolded.training.pretrain_denoiser OUT.pt [--steps N] [overrides]`: the prior's denoiser trained
alone, as a Gaussian denoiser told each sample's noise level, then saved for `algo.prior.denoiser.pretrained=OUT.pt`.

Why: DnCNN starts as the identity (`last_layer_init: zero`), so an unrolled network built on it starts as a
least-squares solver; DRUNet (the reference's architecture, no global skip) has no such start, and from its random
init 200 HQS steps on physics=blur_random left it 12 dB below Tikhonov (docs/GENERALISATION.md). The reference's
remedy is a pretrained DRUNet; without downloads, this trains one on the training crops of the run's data.

The denoiser is the one `prior=...` and the overrides build (default `prior=drunet`: it must take σ). Sample n
(crop by `seed`, as in training) gets σ_n ~ U[sigma_min, sigma_max] and its noise from generators seeded by
(seed, n); the network sees σ_n as its noise-level map; loss ‖D(x + σ_n·e, σ_n) − x‖²; Adam with a cosine
schedule. The file holds the network's state dict (the reference's key names), read with weights_only=True.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from unfolded.physics.generators import SigmaGenerator

from . import seeding
from .atomic import write_atomically
from .building import build
from .config import compose
from .samples import RandomCrops


def pretrain(overrides: list[str], steps: int, sigma_min: float, sigma_max: float, lr: float, seed: int,
             log_every: int = 50):
    """The trained denoiser; `overrides` choose it (`prior=...`, its keys) and the data (`data.*`)."""
    cfg = compose(["prior=drunet", "algo.sigma_denoiser=0.05", *overrides])
    torch.manual_seed(seed)
    denoiser = build(cfg.algo.prior.denoiser, "algo.prior.denoiser")
    if getattr(denoiser, "uses_sigma", False) is not True:
        raise ValueError(f"{type(denoiser).__name__} does not take the noise level as an input: pretraining is "
                         "for a denoiser such as DRUNet (prior=drunet)")
    data = build(cfg.data, "data", seed=seed)
    batch = data.batch_size
    crops = RandomCrops(data.images["train"], data.crop_size, steps * batch, data.flips, seed)
    levels = SigmaGenerator(sigma_min, sigma_max)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr / 100)
    denoiser.train()
    start = time.time()
    for step in range(steps):
        numbers = torch.arange(step * batch, (step + 1) * batch)
        x = torch.stack([crops[int(n)]["image"] for n in numbers])
        sigma = levels.draw(numbers, seed=seed)["sigma"]
        noise = seeding.per_sample(torch.randn_like, x, [seeding.training_seed(seed, int(n)) for n in numbers])
        loss = (denoiser(x + sigma.view(-1, 1, 1, 1) * noise, sigma) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            mse = float(loss.detach())
            print(f"step {step + 1}/{steps} | loss {mse:.3g} | psnr {-10 * math.log10(mse):.2f} | "
                  f"{time.time() - start:.0f} s", flush=True)
    return denoiser.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unfolded.training.pretrain_denoiser",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the state dict file to write (e.g. drunet_denoiser.pt)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides choosing the denoiser and the data")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--sigma-min", type=float, default=0.005)
    parser.add_argument("--sigma-max", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    denoiser = pretrain(args.overrides, args.steps, args.sigma_min, args.sigma_max, args.lr, args.seed)
    state = {k: v.detach().cpu() for k, v in denoiser.state_dict().items()}
    write_atomically(args.out, lambda f: torch.save(state, f))
    print(f"wrote {args.out}: use it with algo.prior.denoiser.pretrained={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
