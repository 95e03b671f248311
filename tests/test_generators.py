"""Physics generators: per-sample draws reproducible from (seed, sample number) whatever the batch, the
reference's step() API and draws, and parameters that the physics take per sample."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from unfolded.physics import Blur, GaussianNoise, Inpainting
from unfolded.physics.filters import gaussian_kernels
from unfolded.physics.generators import (
    BernoulliSplittingMaskGenerator,
    GaussianBlurGenerator,
    KernelFolderGenerator,
    MotionBlurGenerator,
    SigmaGenerator,
    sample_seed,
)


def _folder(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 5)))
    torch.save(torch.arange(1.0, 10.0).reshape(3, 3), tmp_path / "b.pt")
    Image.fromarray(np.eye(7, dtype=np.uint8) * 255).save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not a kernel")
    return tmp_path


GENERATORS = {
    "sigma": lambda d: SigmaGenerator(0.01, 0.2),
    "gaussian": lambda d: GaussianBlurGenerator((9, 9), sigma_min=0.5, sigma_max=3.0, isotropic=False),
    "motion": lambda d: MotionBlurGenerator((11, 11), n_steps=200),
    "folder": lambda d: KernelFolderGenerator(_folder(d), augment=True),
    "mask": lambda d: BernoulliSplittingMaskGenerator((2, 8, 8), 0.5, random_split_ratio=True),
    "sum": lambda d: MotionBlurGenerator((5, 5), n_steps=100) + SigmaGenerator(),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_a_sample_draws_the_same_whatever_its_batch(name, tmp_path):
    gen = GENERATORS[name](tmp_path)
    batch = gen.draw(torch.tensor([3, 17, 42]), seed=5)
    alone = gen.draw([17], seed=5)
    other_batch = gen.draw([99, 17], seed=5)
    gen.step(4, seed=1)  # the generator's own stream does not matter
    again = gen.draw([42, 3], seed=5)
    for key, value in batch.items():
        assert value.shape[0] == 3
        assert torch.equal(value[1:2], alone[key]) and torch.equal(value[1:2], other_batch[key][1:2])
        assert torch.equal(value[2:3], again[key][0:1]) and torch.equal(value[0:1], again[key][1:2])
    other_seed = gen.draw([3, 17, 42], seed=6)
    if name != "folder":  # three kernels only: two seeds may well pick the same ones
        assert any(not torch.equal(batch[k], other_seed[k]) for k in batch)
        assert any(not torch.equal(batch[k][0], batch[k][1]) for k in batch)


def test_sample_seeds_are_mixed_and_refuse_negative_numbers():
    seeds = {sample_seed(s, n) for s in range(20) for n in range(50)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match=r"seed and sample numbers must be >= 0"):
        sample_seed(0, -1)


def test_step_is_the_reference_stream():
    gen = SigmaGenerator()
    first, second = gen.step(3)["sigma"], gen.step(3)["sigma"]
    assert not torch.equal(first, second)
    assert torch.equal(gen.step(3, seed=0)["sigma"], SigmaGenerator().step(3, seed=0)["sigma"])
    gen.reset_rng()
    assert torch.equal(gen.step(3)["sigma"], first)
    # deepinv 0.5.0 docstring: SigmaGenerator().step(seed=0) -> tensor([0.2532])
    assert abs(float(SigmaGenerator().step(seed=0)["sigma"][0]) - 0.2532) < 1e-4
    assert torch.equal(gen.step(2, seed="run-a")["sigma"], gen.step(2, seed="run-a")["sigma"])


def test_sigma_ranges_and_the_noise_model_takes_them_per_sample():
    sigma = SigmaGenerator(0.05, 0.15).step(4000, seed=0)["sigma"]
    assert sigma.shape == (4000,) and float(sigma.min()) >= 0.05 and float(sigma.max()) <= 0.15
    assert abs(float(sigma.mean()) - 0.1) < 0.003
    noise = GaussianNoise(sigma[:2])
    y = noise(torch.zeros(2, 1, 64, 64))
    assert torch.allclose(y.flatten(1).std(1), sigma[:2], rtol=0.1)


def test_gaussian_kernels_follow_their_sigma_and_angle():
    gen = GaussianBlurGenerator((41, 41), sigma_min=(1.0, 2.0), sigma_max=(1.5, 4.0), isotropic=False,
                                angle_min=0, angle_max=0)
    k = gen.step(64, seed=0)["filter"]
    assert k.shape == (64, 1, 41, 41) and torch.allclose(k.sum(dim=(-2, -1)), torch.ones(64, 1))
    c = torch.arange(41.0) - 20
    var_rows = (k[:, 0].sum(-1) * c**2).sum(-1)
    var_cols = (k[:, 0].sum(-2) * c**2).sum(-1)
    assert float(var_rows.sqrt().min()) > 0.99 and float(var_rows.sqrt().max()) < 1.51
    assert float(var_cols.sqrt().min()) > 1.99 and float(var_cols.sqrt().max()) < 4.01
    fixed = gen.step(2, sigma=torch.tensor([[1.0, 3.0], [2.0, 2.0]]), angle=torch.tensor([30.0, 0.0]))["filter"]
    assert torch.allclose(fixed, gaussian_kernels((41, 41), torch.tensor([[1.0, 3.0], [2.0, 2.0]]),
                                                  torch.tensor([30.0, 0.0]), dtype=torch.float32))
    iso = GaussianBlurGenerator((7, 7), isotropic=True).step(8, seed=0)["filter"]
    assert torch.allclose(iso, iso.transpose(-2, -1), atol=1e-7)  # one σ: any rotation is symmetric too


def _radius(k):
    h, w = k.shape[-2:]
    Y, X = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    k = k[:, 0]
    mx, my = (k * X).sum((-2, -1)), (k * Y).sum((-2, -1))
    return (k * ((X - mx[:, None, None]) ** 2 + (Y - my[:, None, None]) ** 2)).sum((-2, -1)).sqrt()


def test_motion_kernels_are_trajectories_whose_extent_follows_sigma():
    small = MotionBlurGenerator((15, 15), sigma=0.1).step(200, seed=0)["filter"]
    large = MotionBlurGenerator((15, 15), sigma=0.3).step(200, seed=0)["filter"]
    for k in (small, large):
        assert k.shape == (200, 1, 15, 15) and bool((k >= 0).all())
        assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones(200, 1), atol=1e-6)
    # deepinv 0.5.0 at its defaults (l=0.3, σ=0.25, 15x15): mean radius of gyration 1.77 px (2000 kernels)
    default = MotionBlurGenerator((15, 15)).step(500, seed=1)["filter"]
    assert 1.6 < float(_radius(default).mean()) < 2.0
    assert float(_radius(large).mean()) > 2 * float(_radius(small).mean())
    huge = MotionBlurGenerator((9, 9), sigma=3.0).step(20, seed=0)["filter"]  # shrunk to fit, never empty
    assert torch.allclose(huge.sum(dim=(-2, -1)), torch.ones(20, 1), atol=1e-6)


def test_kernel_folder_draws_the_files_kernels_centred(tmp_path):
    gen = KernelFolderGenerator(_folder(tmp_path))
    assert [p.name for p in gen.files] == ["a.npy", "b.pt", "c.png"] and gen.psf_size == (7, 7)
    k = gen.step(60, seed=0)["filter"]
    assert k.shape == (60, 1, 7, 7) and torch.allclose(k.sum(dim=(-2, -1)), torch.ones(60, 1))
    drawn = {tuple(v.flatten().tolist()) for v in k}
    assert len(drawn) == 3
    small = gen.kernels[1]  # b.pt, 3x3 padded to 7x7 about its centre
    assert float(small[3, 3]) == pytest.approx(5 / 45) and float(small[:2].abs().sum()) == 0
    flipped = KernelFolderGenerator(tmp_path, augment=True, psf_size=9).step(200, seed=0)["filter"]
    assert flipped.shape[-2:] == (9, 9) and len({tuple(v.flatten().tolist()) for v in flipped}) > 3
    with pytest.raises(ValueError, match=r"no kernel files \(.npy, .pt, .pth, .png\) in"):
        KernelFolderGenerator(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"a 7x7 kernel does not fit in psf_size 5x5"):
        KernelFolderGenerator(tmp_path, psf_size=(5, 5))


def test_blur_and_inpainting_take_the_draws_per_sample():
    filters = GaussianBlurGenerator((7, 7), sigma_min=0.5, sigma_max=2.0).draw([0, 1, 2], seed=3)["filter"]
    x = torch.rand(3, 2, 16, 16)
    y = Blur(filters, padding="circular")(x)
    for i in range(3):
        assert torch.allclose(y[i:i + 1], Blur(filters[i:i + 1], padding="circular")(x[i:i + 1]), atol=1e-6)
    masks = BernoulliSplittingMaskGenerator((2, 16, 16), 0.3).draw([5, 6], seed=0)["mask"]
    assert masks.shape == (2, 2, 16, 16) and torch.equal(masks[:, 0], masks[:, 1])  # pixelwise
    assert torch.equal(Inpainting((2, 16, 16), masks).A(x[:2]), x[:2] * masks)
    keep = BernoulliSplittingMaskGenerator((1, 64, 64), 0.3, pixelwise=False).step(8, seed=0)["mask"].mean()
    assert abs(float(keep) - 0.3) < 0.02


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: SigmaGenerator(0.5, 0.1), ValueError, r"need 0 <= min <= max, got min=0.5, max=0.1"),
    (lambda: GaussianBlurGenerator((5, 5, 5)), NotImplementedError, r"only 2-D kernels are implemented"),
    (lambda: GaussianBlurGenerator((5, 5), angle_min=(0, 0, 0)), NotImplementedError, r"give one angle range"),
    (lambda: MotionBlurGenerator(9, l=0), ValueError, r"need l > 0"),
    (lambda: SigmaGenerator(rng=3), TypeError, r"rng must be a torch.Generator"),
    (lambda: SigmaGenerator().step(2, sigma=0.1), ValueError, r"unknown keyword\(s\) sigma"),
    (lambda: SigmaGenerator().step(2, seed=1.5), ValueError, r"seed must be an int or a str"),
    (lambda: SigmaGenerator().draw([]), ValueError, r"no sample numbers"),
    (lambda: BernoulliSplittingMaskGenerator((8, 8), 0.5), NotImplementedError, r"img_size must be \(C, H, W\)"),
    (lambda: BernoulliSplittingMaskGenerator((1, 8, 8), 0.5).step(input_mask=torch.ones(1, 8, 8)),
     NotImplementedError, r"splitting an input_mask"),
    (lambda: (SigmaGenerator() + SigmaGenerator()).step(2), ValueError, r"both draw \['sigma'\]"),
])
def test_bad_arguments_are_one_line_errors(make, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


def test_sum_of_generators_holds_both_parameters():
    params = (MotionBlurGenerator(5, n_steps=100) + SigmaGenerator(0.1, 0.2)).step(3, seed=0)
    assert params["filter"].shape == (3, 1, 5, 5) and params["sigma"].shape == (3,)
    assert math.isclose(float(params["filter"][0].sum()), 1.0, rel_tol=1e-6)
