"""fastMRI's mask functions (physics.mri_masks.fastmri_*): the same masks as the fastmri package's for the
same seed when it is importable, and always the line counts of fastMRI's definitions at 4x and 8x."""

import numpy as np
import pytest
import torch

from unfolded.physics.mri_masks import (
    center_lines,
    fastmri_equispaced_fraction_mask,
    fastmri_equispaced_mask,
    fastmri_mask,
    fastmri_random_mask,
    poisson_disc_mask,
)
from unfolded.training import seeding

KNEE = (640, 368)  # fastMRI knee k-space: 640 readout rows, 368 phase-encoding columns
PAIRS = [(4, 0.08), (8, 0.04)]  # fastMRI's accelerations with their centre fractions


def _lines(mask):
    return int(mask[0].sum())


@pytest.mark.parametrize("acc, cf", PAIRS)
def test_centre_lines_and_counts_follow_fastmri_definitions(acc, cf):
    W = KNEE[1]
    first, count = center_lines(W, cf)
    assert count == round(W * cf) and first == (W - count + 1) // 2  # 29 at 4x, 15 at 8x
    counts = []
    for seed in range(200):
        m = fastmri_random_mask(KNEE, acc, cf, seed=seed)
        assert torch.equal(m, m[:1].expand_as(m)) and bool(m[0, first:first + count].all())  # whole columns
        counts.append(_lines(m))
    # RandomMaskFunc samples W/acc columns on average (each outer column with prob (W/acc - n)/(W - n))
    assert abs(np.mean(counts) - W / acc) < 0.03 * W / acc and np.std(counts) > 0
    # EquispacedMaskFractionFunc hits W/acc within rounding; EquiSpacedMaskFunc adds the centre to W/acc
    frac = _lines(fastmri_equispaced_fraction_mask(KNEE, acc, cf, offset=0))
    assert abs(frac - W / acc) <= 2
    eq = fastmri_equispaced_mask(KNEE, acc, cf, offset=0)
    outer = np.arange(0, W, acc)
    assert _lines(eq) == len(set(outer) | set(range(first, first + count)))


@pytest.mark.parametrize("acc, cf", PAIRS)
def test_masks_equal_the_fastmri_package_for_the_same_seed(acc, cf):
    subsample = pytest.importorskip("fastmri.data.subsample", reason="fastmri not installed")
    shape = (1, *KNEE, 2)  # fastMRI's k-space layout: (..., rows, columns, real/imag); masks along dim -2
    for cls, ours in ((subsample.RandomMaskFunc, fastmri_random_mask),
                      (subsample.EquiSpacedMaskFunc, fastmri_equispaced_mask),
                      (subsample.EquispacedMaskFractionFunc, fastmri_equispaced_fraction_mask)):
        for seed in (0, 7, (1, 2, 3), 2**40 + 5):
            if isinstance(seed, int) and seed >= 2**32:
                seed_ref = [(seed >> s) & 0xFFFFFFFF for s in (0, 32)]  # how we pass a 64-bit seed on
            else:
                seed_ref = seed
            ref, n_low = cls([cf], [acc])(shape, seed=seed_ref)
            mine = ours(KNEE, acc, cf, seed=seed)
            assert n_low == center_lines(KNEE[1], cf)[1]
            assert torch.equal(mine[0], ref.reshape(-1).to(mine.dtype)), (cls.__name__, seed)


def test_seeded_draws_are_reproducible_per_sample():
    a = fastmri_mask((32, 64), "random", 4, seed=seeding.training_seed(3, 10))
    assert torch.equal(a, fastmri_mask((32, 64), "random", 4, seed=seeding.training_seed(3, 10)))
    assert not torch.equal(a, fastmri_mask((32, 64), "random", 4, seed=seeding.training_seed(3, 11)))
    g = fastmri_mask((32, 64), "equispaced_fraction", 4, rng=torch.Generator().manual_seed(1))
    assert torch.equal(g, fastmri_mask((32, 64), "equispaced_fraction", 4, rng=torch.Generator().manual_seed(1)))


def test_poisson_disc_mask():
    pytest.importorskip("sigpy")
    m = poisson_disc_mask((64, 64), 4, 0.08, seed=3)
    assert torch.equal(m, poisson_disc_mask((64, 64), 4, 0.08, seed=3))
    assert not torch.equal(m, poisson_disc_mask((64, 64), 4, 0.08, seed=4))
    assert abs(m.numel() / m.sum().item() - 4) < 0.1  # sigpy's tolerance on the acceleration
    c = round(64 * 0.08)
    assert bool(m[32 - c // 2:32 + c // 2, 32 - c // 2:32 + c // 2].all())  # calibration centre
    assert not torch.equal(m, m[:1].expand_as(m))  # 2-D: not whole columns


@pytest.mark.parametrize("call, match", [
    (lambda: fastmri_mask((8, 64), "radial"), "pattern must be one of random, equispaced"),
    (lambda: fastmri_random_mask((8, 64), 1), "acceleration must be > 1"),
    (lambda: fastmri_random_mask((8, 64), 4, 0.5), r"center_fraction must be in \(0, 1/acceleration\)"),
    (lambda: fastmri_equispaced_mask((8, 64), 2.5, 0.1), "acceleration must be an integer"),
    (lambda: fastmri_random_mask((8, 64), 4, seed=1, rng=torch.Generator()), "rng .* or seed, not both"),
    (lambda: fastmri_random_mask(64, 4), r"img_size must be a tuple ending with \(H, W\)"),
])
def test_bad_mask_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
