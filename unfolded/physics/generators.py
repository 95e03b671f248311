"""Physics generators: operator parameters drawn per sample (blur kernels, noise levels, inpainting masks).

Every generator has one sampler, `_draw(batch_size, rng)`, and two ways to call it:

- `step(batch_size=1, seed=None)`: the reference's API (deepinv.physics.generator): a batch drawn from the
  generator's own stream `rng`, reseeded first when `seed` is given;
- `draw(numbers, seed=0)`: one draw per sample number n, from a generator seeded by (seed, n) alone, so a
  sample gets the same parameters whatever batch, process or resumed run it lands in (the rule that
  training.seeding applies to crops and noise).

Both return {name: tensor with a leading batch dimension}, ready for the physics that takes it per sample:
`Blur(filter=...)` (B, 1, h, w), `GaussianNoise(sigma=...)` (B,), `Inpainting(mask=...)` (B, C, H, W).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .filters import KERNEL_SUFFIXES, centre_pad, gaussian_kernels, load_kernel, trajectory_kernels


def sample_seed(seed: int, n: int) -> int:
    """A 63-bit seed for sample n of stream `seed`, well mixed (numpy's SeedSequence) so that neighbouring
    (seed, n) pairs give unrelated streams."""
    if int(seed) < 0 or int(n) < 0:
        raise ValueError(f"seed and sample numbers must be >= 0, got seed={seed}, n={n}")
    return int(np.random.SeedSequence([int(seed), int(n)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _pair(value, name: str) -> tuple[float, float]:
    pair = tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else (float(value),) * 2
    if len(pair) != 2:
        raise ValueError(f"{name} must be a number or a pair (rows, columns), got {value!r}")
    return pair


def _interval(low: float, high: float, name: str, lowest: float = 0.0) -> None:
    if not lowest <= low <= high:
        raise ValueError(f"{name}: need {lowest:g} <= min <= max, got min={low:g}, max={high:g}")


class PhysicsGenerator(nn.Module):
    """Base class: `rng` (a torch.Generator on `device`; a fresh one by default), `dtype` of the draws."""

    def __init__(self, rng: torch.Generator | None = None, device="cpu", dtype=torch.float32):
        super().__init__()
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(f"{type(self).__name__}: rng must be a torch.Generator, got {type(rng).__name__}")
        self.rng = torch.Generator(device=device) if rng is None else rng
        if torch.device(self.rng.device).type != torch.device(device).type:
            raise ValueError(f"{type(self).__name__}: rng is on {self.rng.device} but device={device}")
        self.device, self.dtype = torch.device(device), dtype
        self.initial_random_state = self.rng.get_state()

    def _draw(self, batch_size: int, rng: torch.Generator, **overrides) -> dict[str, Tensor]:
        raise NotImplementedError

    def __getstate__(self):
        """Picklable into spawned processes (DDP-spawn). A torch.Generator pickles its state as a temporary
        tensor, which torch.multiprocessing shares by a file descriptor that is closed before the child reads
        it; the state travels as bytes instead, and the generator is rebuilt on arrival."""
        state = dict(super().__getstate__())
        state["rng"] = (str(self.rng.device), self.rng.get_state().numpy().tobytes())
        return state

    def __setstate__(self, state):
        device, rng_state = state["rng"]
        state["rng"] = torch.Generator(device=device)
        state["rng"].set_state(torch.frombuffer(bytearray(rng_state), dtype=torch.uint8))
        super().__setstate__(state)

    def rng_manual_seed(self, seed: int | str | None = None) -> None:
        """Reseed `rng` (a string is hashed to a seed, as in the reference); None leaves it as it is."""
        if seed is None:
            return
        if isinstance(seed, str):
            seed = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 0xFFFF_FFFF_FFFF_FFFF
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{type(self).__name__}: seed must be an int or a str, got {seed!r}")
        self.rng.manual_seed(seed)

    def reset_rng(self) -> None:
        self.rng.set_state(self.initial_random_state)

    def step(self, batch_size: int = 1, seed: int | str | None = None, **overrides) -> dict[str, Tensor]:
        """A batch from the generator's own stream (reseeded by `seed` first)."""
        self.rng_manual_seed(seed)
        return self._draw(int(batch_size), self.rng, **overrides)

    def draw(self, numbers: Tensor | Sequence[int], seed: int = 0) -> dict[str, Tensor]:
        """One draw per sample number, each from its own generator seeded by (seed, n) (module docstring)."""
        numbers = numbers.tolist() if isinstance(numbers, Tensor) else [int(n) for n in numbers]
        if not numbers:
            raise ValueError(f"{type(self).__name__}.draw: no sample numbers")
        parts = [self._draw(1, torch.Generator(device=self.device).manual_seed(sample_seed(seed, n)))
                 for n in numbers]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def __add__(self, other: PhysicsGenerator) -> PhysicsGenerator:
        """Both generators' parameters in one dict (e.g. a blur kernel and a noise level)."""
        return _Sum(self, other)


class _Sum(PhysicsGenerator):
    """Two generators' parameters in one dict; `step` draws each from its own stream (both reseeded by `seed`,
    as in the reference), `draw` both from the sample's generator."""

    def __init__(self, first: PhysicsGenerator, second: PhysicsGenerator):
        super().__init__(rng=first.rng, device=first.device, dtype=first.dtype)
        self.first, self.second = first, second

    @staticmethod
    def _merge(a: dict, b: dict) -> dict:
        if a.keys() & b.keys():
            both = sorted(a.keys() & b.keys())
            raise ValueError(f"generators to add must draw different parameters; both draw {both}")
        return {**a, **b}

    def _draw(self, batch_size, rng, **overrides):
        return self._merge(self.first._draw(batch_size, rng, **overrides), self.second._draw(batch_size, rng))

    def step(self, batch_size: int = 1, seed=None, **overrides):
        return self._merge(self.first.step(batch_size, seed, **overrides), self.second.step(batch_size, seed))


class GeneratorMixture(PhysicsGenerator):
    """One of `generators` per draw, the i-th with probability probs[i] (the reference's name and arguments).
    `step` picks one generator for the whole batch, as the reference does; `draw` picks one per sample (each
    sample draws from its own generator), so a batch mixes them. All must draw the same parameters, with the
    same shapes (e.g. Gaussian and motion kernels of one psf_size)."""

    def __init__(self, generators: Sequence[PhysicsGenerator], probs: Sequence[float], rng=None):
        generators = list(generators)
        if not generators or not all(isinstance(g, PhysicsGenerator) for g in generators):
            raise ValueError("GeneratorMixture: generators must be a non-empty list of physics generators")
        first = generators[0]
        super().__init__(rng=rng, device=first.device, dtype=first.dtype)
        probs = torch.as_tensor([float(p) for p in probs], dtype=torch.float32)  # the reference's float32 picks
        if len(probs) != len(generators) or bool((probs < 0).any()) or abs(float(probs.sum()) - 1) > 1e-6:
            raise ValueError(f"GeneratorMixture: probs must be {len(generators)} numbers >= 0 summing to 1, got "
                             f"{probs.tolist()}")
        sizes = {getattr(g, "psf_size", None) for g in generators}
        if len(sizes) > 1:
            raise ValueError(f"GeneratorMixture: the generators draw kernels of different sizes {sorted(sizes)}; "
                             "give them one psf_size")
        self.generators = nn.ModuleList(generators)
        self.probs, self.cum_probs = probs, torch.cumsum(probs, 0)

    def _pick(self, rng: torch.Generator) -> PhysicsGenerator:
        u = torch.rand(1, generator=rng, device=self.device, dtype=torch.float32).cpu()
        return self.generators[min(int(torch.searchsorted(self.cum_probs, u)), len(self.generators) - 1)]

    def _draw(self, batch_size, rng, **overrides):
        return self._pick(rng)._draw(batch_size, rng, **overrides)

    def step(self, batch_size: int = 1, seed=None, **overrides):
        self.rng_manual_seed(seed)
        return self._pick(self.rng).step(batch_size, seed, **overrides)


class SigmaGenerator(PhysicsGenerator):
    """Noise levels σ ~ U[sigma_min, sigma_max], one per sample: {"sigma": (B,)} for GaussianNoise."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 0.5, rng=None, device="cpu", dtype=torch.float32):
        super().__init__(rng=rng, device=device, dtype=dtype)
        _interval(float(sigma_min), float(sigma_max), "SigmaGenerator sigma")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def _draw(self, batch_size, rng, **overrides):
        if overrides:
            raise ValueError(f"SigmaGenerator.step: unknown keyword(s) {', '.join(sorted(overrides))}")
        u = torch.rand(batch_size, generator=rng, device=self.device, dtype=self.dtype)
        return {"sigma": u * (self.sigma_max - self.sigma_min) + self.sigma_min}


def _psf_size(psf_size) -> tuple[int, int]:
    size = (int(psf_size),) * 2 if isinstance(psf_size, int) else tuple(int(s) for s in psf_size)
    if len(size) != 2 or min(size) < 1:
        raise NotImplementedError(f"only 2-D kernels are implemented: psf_size must be (h, w), got {psf_size!r}")
    return size


class GaussianBlurGenerator(PhysicsGenerator):
    """Gaussian kernels (B, 1, h, w) with σ ~ U[sigma_min, sigma_max] (one σ when `isotropic`, else one per
    axis: (rows, columns)) and angle ~ U[angle_min, angle_max] degrees; SPEC §2's Gaussian on a fixed grid.
    Same draws as the reference's for the same seed."""

    def __init__(self, psf_size, sigma_min=0.5, sigma_max=5.0, isotropic: bool = True, angle_min=0.0,
                 angle_max=360.0, rng=None, device="cpu", dtype=torch.float32):
        super().__init__(rng=rng, device=device, dtype=dtype)
        self.psf_size = _psf_size(psf_size)
        self.sigma_min, self.sigma_max = _pair(sigma_min, "sigma_min"), _pair(sigma_max, "sigma_max")
        for lo, hi in zip(self.sigma_min, self.sigma_max):
            _interval(lo, hi, "GaussianBlurGenerator sigma", lowest=1e-12)
        if isinstance(angle_min, (list, tuple)) or isinstance(angle_max, (list, tuple)):
            raise NotImplementedError("GaussianBlurGenerator: three rotation angles are for 3-D kernels, which are "
                                      "not implemented; give one angle range (degrees)")
        _interval(float(angle_min), float(angle_max), "GaussianBlurGenerator angle", lowest=-math.inf)
        self.isotropic, self.angle_min, self.angle_max = bool(isotropic), float(angle_min), float(angle_max)

    def _uniform(self, batch_size, rng, low, high) -> Tensor:
        return torch.rand(batch_size, generator=rng, device=self.device, dtype=self.dtype) * (high - low) + low

    def _draw(self, batch_size, rng, sigma: Tensor | None = None, angle: Tensor | None = None):
        if sigma is None:
            if self.isotropic:
                s = self._uniform(batch_size, rng, self.sigma_min[0], self.sigma_max[0])
                sigma = torch.stack((s, s), dim=-1)
            else:
                sigma = torch.stack([self._uniform(batch_size, rng, lo, hi)
                                     for lo, hi in zip(self.sigma_min, self.sigma_max)], dim=-1)
        if angle is None:
            angle = self._uniform(batch_size, rng, self.angle_min, self.angle_max)
        sigma = torch.as_tensor(sigma, device=self.device, dtype=self.dtype)
        sigma = sigma.reshape(1, 1) if sigma.numel() == 1 else sigma.reshape(batch_size, -1)
        angle = torch.as_tensor(angle, device=self.device, dtype=self.dtype).reshape(-1)
        sigma, angle = sigma.expand(batch_size, 2), angle.expand(batch_size)
        return {"filter": gaussian_kernels(self.psf_size, sigma, angle, dtype=self.dtype)}


class MotionBlurGenerator(PhysicsGenerator):
    """Motion-blur kernels (B, 1, h, w) from random camera trajectories (Schuler et al. 2016, as the reference):
    x(t) and y(t) independent Gaussian processes with the Matérn-5/2 covariance σ²(1 + √5d/l + 5d²/3l²)e^(−√5d/l),
    t over a unit time window, centred and splatted onto the kernel's support [−1, 1]². The process is sampled
    exactly (circulant embedding on `n_steps` points over t ∈ [−π, π)); a trajectory that leaves the support is
    shrunk to fit (the reference drops those points, which can leave an empty kernel)."""

    def __init__(self, psf_size, rng=None, device="cpu", dtype=torch.float32, l: float = 0.3, sigma: float = 0.25,
                 n_steps: int = 1000):
        super().__init__(rng=rng, device=device, dtype=dtype)
        self.psf_size = _psf_size(psf_size)
        if not (float(l) > 0 and float(sigma) > 0 and int(n_steps) >= 8):
            raise ValueError(f"MotionBlurGenerator: need l > 0, sigma > 0, n_steps >= 8; got {l}, {sigma}, {n_steps}")
        self.l, self.sigma, self.n_steps = float(l), float(sigma), int(n_steps)

    def _process(self, batch_size, rng, sigma: float, l: float) -> Tensor:
        n = self.n_steps
        j = torch.arange(n, device=self.device, dtype=torch.float64)
        d = 2 * math.pi * torch.minimum(j, n - j) / n / l * math.sqrt(5)  # √5·|lag|/l on the circle
        covariance = sigma**2 * (1 + d + d**2 / 3) * torch.exp(-d)
        root = torch.fft.rfft(covariance).real.clamp_min(0).sqrt()  # circulant eigenvalues, square-rooted
        white = torch.randn(batch_size, n, generator=rng, device=self.device, dtype=torch.float64)
        path = torch.fft.irfft(torch.fft.rfft(white) * root, n=n)
        return path[:, : int(n / (2 * math.pi))]  # the time window t ∈ [0, 1)

    def _draw(self, batch_size, rng, sigma: float | None = None, l: float | None = None):
        sigma, l = self.sigma if sigma is None else float(sigma), self.l if l is None else float(l)
        points = torch.stack((self._process(batch_size, rng, sigma, l), self._process(batch_size, rng, sigma, l)), -1)
        points = points - points.mean(dim=1, keepdim=True)
        points = points / points.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1.0)
        return {"filter": trajectory_kernels(points, self.psf_size).to(self.dtype)}


class KernelFolderGenerator(PhysicsGenerator):
    """Kernels drawn uniformly from the kernel files of a folder (.npy / .pt / PNG, each normalised:
    filters.load_kernel), zero-padded about their centre to `psf_size` (default: the largest); with
    `augment`, each draw is also randomly flipped and transposed (8 orientations)."""

    def __init__(self, folder, psf_size=None, augment: bool = False, rng=None, device="cpu", dtype=torch.float32):
        super().__init__(rng=rng, device=device, dtype=dtype)
        folder = Path(folder)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in KERNEL_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise ValueError(f"KernelFolderGenerator: no kernel files ({', '.join(KERNEL_SUFFIXES)}) in {folder}")
        kernels = [load_kernel(p)[0, 0].to(dtype) for p in files]
        size = (max(k.shape[0] for k in kernels), max(k.shape[1] for k in kernels)) if psf_size is None \
            else _psf_size(psf_size)
        self.files, self.psf_size, self.augment = files, size, bool(augment)
        self.register_buffer("kernels", torch.stack([centre_pad(k, size) for k in kernels]).to(self.device))

    def _draw(self, batch_size, rng, **overrides):
        if overrides:
            raise ValueError(f"KernelFolderGenerator.step: unknown keyword(s) {', '.join(sorted(overrides))}")
        index = torch.randint(len(self.files), (batch_size,), generator=rng, device=self.device)
        k = self.kernels[index]
        if self.augment:
            flips = torch.randint(2, (batch_size, 3), generator=rng, device=self.device).bool()
            k = torch.stack([_orient(k[b], *flips[b].tolist()) for b in range(batch_size)])
        return {"filter": k.unsqueeze(1)}


def _orient(k: Tensor, flip_rows: bool, flip_cols: bool, transpose: bool) -> Tensor:
    k = k.flip(0) if flip_rows else k
    k = k.flip(1) if flip_cols else k
    return k.transpose(0, 1) if transpose and k.shape[0] == k.shape[1] else k


class BernoulliSplittingMaskGenerator(PhysicsGenerator):
    """Random inpainting masks (B, *img_size) keeping each pixel with probability `split_ratio` (shared by all
    channels when `pixelwise`); with `random_split_ratio`, each sample draws its ratio from
    U[min_split_ratio, max_split_ratio] first. Same draws as the reference's for the same seed."""

    def __init__(self, img_size, split_ratio: float, pixelwise: bool = True, random_split_ratio: bool = False,
                 min_split_ratio: float = 0.0, max_split_ratio: float = 1.0, device="cpu", dtype=torch.float32,
                 rng=None):
        super().__init__(rng=rng, device=device, dtype=dtype)
        self.img_size = tuple(int(s) for s in img_size)
        if len(self.img_size) != 3:
            raise NotImplementedError(f"BernoulliSplittingMaskGenerator: img_size must be (C, H, W), got {img_size!r}")
        _interval(float(split_ratio), 1.0, "BernoulliSplittingMaskGenerator split_ratio")
        _interval(float(min_split_ratio), float(max_split_ratio), "BernoulliSplittingMaskGenerator split ratios")
        if float(max_split_ratio) > 1:
            raise ValueError(f"BernoulliSplittingMaskGenerator: max_split_ratio must be <= 1, got {max_split_ratio}")
        self.split_ratio, self.pixelwise, self.random_split_ratio = float(split_ratio), bool(pixelwise), \
            bool(random_split_ratio)
        self.min_split_ratio, self.max_split_ratio = float(min_split_ratio), float(max_split_ratio)

    def _draw(self, batch_size, rng, input_mask: Tensor | None = None, img_size=None):
        if input_mask is not None:
            raise NotImplementedError("BernoulliSplittingMaskGenerator: splitting an input_mask (for splitting "
                                      "losses) is not implemented; it draws inpainting masks from img_size")
        size = self.img_size if img_size is None else self.img_size[:-2] + tuple(img_size)[-2:]
        masks = []
        for _ in range(batch_size):  # per sample, in the reference's order of draws
            ratio = self.split_ratio
            if self.random_split_ratio:
                u = torch.rand(1, generator=rng, device=self.device, dtype=self.dtype)
                ratio = u * (self.max_split_ratio - self.min_split_ratio) + self.min_split_ratio
            u = torch.rand(size, generator=rng, device=self.device)
            keep = (u[:1] if self.pixelwise else u) <= ratio
            masks.append(keep.expand(size).to(self.dtype))
        return {"mask": torch.stack(masks)}
