"""MRI physics: exact adjoints, closed-form prox, masks, bad inputs."""

import pytest
import torch

from unfolded.physics import MRI, MultiCoilMRI, birdcage_maps, equispaced_mask, random_mask
from unfolded.physics.mri import fft2c, ifft2c


def rel_adjoint_error(physics, x_shape):
    x = torch.randn(x_shape)
    y = torch.randn(physics.output_shape(x_shape))
    lhs, rhs = (physics.A(x) * y).sum(), (x * physics.A_adjoint(y)).sum()
    return float((lhs - rhs).abs() / lhs.abs())


@pytest.mark.parametrize("mask_shape", [(16, 12), (1, 16, 12), (2, 16, 12), (3, 1, 16, 12)])
def test_mri_adjoint_float64(float64, mask_shape):
    mask = (torch.rand(mask_shape[-2:]) < 0.4).double().expand(mask_shape).clone()
    assert rel_adjoint_error(MRI(mask), (3, 2, 16, 12)) <= 1e-10


@pytest.mark.parametrize("maps_shape", [(4, 16, 12), (3, 4, 16, 12)])
def test_multicoil_adjoint_float64(float64, maps_shape):
    maps = torch.randn(maps_shape, dtype=torch.complex128)
    physics = MultiCoilMRI(random_mask((16, 12), 3), maps)
    assert physics.output_shape((3, 2, 16, 12)) == (3, 2, 4, 16, 12)
    assert rel_adjoint_error(physics, (3, 2, 16, 12)) <= 1e-10


def test_adjoint_float32():
    assert rel_adjoint_error(MRI(random_mask((16, 16), 4)), (2, 2, 16, 16)) <= 1e-5
    assert rel_adjoint_error(MultiCoilMRI(random_mask((16, 16), 4), 3), (2, 2, 16, 16)) <= 1e-5


def test_fft_is_orthonormal_and_centred(float64):
    z = torch.randn(2, 8, 8, dtype=torch.complex128)
    assert torch.allclose(ifft2c(fft2c(z)), z)
    assert torch.allclose(fft2c(z).abs().pow(2).sum(), z.abs().pow(2).sum())
    const = torch.ones(1, 8, 8, dtype=torch.complex128)
    assert fft2c(const).abs().argmax() == 4 * 8 + 4  # DC in the middle of k-space


def test_full_sampling_is_unitary(float64):
    x = torch.randn(2, 2, 8, 10)
    assert torch.allclose(MRI(img_size=(2, 8, 10)).A_adjoint(MRI(img_size=(8, 10)).A(x)), x)
    multi = MultiCoilMRI(img_size=(8, 10), coil_maps=birdcage_maps((8, 10), 5))  # Σ|S|² = 1
    assert torch.allclose(multi.A_adjoint(multi.A(x)), x)


@pytest.mark.parametrize("batch_gamma", [False, True])
def test_mri_prox_closed_form_solves_normal_equations(float64, batch_gamma):
    physics = MRI(random_mask((16, 16), 4))
    z, y = torch.randn(2, 2, 16, 16), physics.A(torch.randn(2, 2, 16, 16))
    gamma = torch.tensor([0.3, 2.0]) if batch_gamma else 0.7
    g = torch.as_tensor(gamma).reshape(-1, 1, 1, 1)
    x = physics.prox_l2(z, y, gamma)
    residual = physics.A_adjoint(physics.A(x)) + x / g - physics.A_adjoint(y) - z / g
    assert residual.norm() <= 1e-12 * z.norm()


def test_multicoil_prox_by_cg(float64):
    physics = MultiCoilMRI(random_mask((16, 16), 4), 4, tol=1e-10, max_iter=200)
    z, y = torch.randn(2, 2, 16, 16), physics.A(torch.randn(2, 2, 16, 16))
    x = physics.prox_l2(z, y, 0.5)
    residual = physics.A_adjoint(physics.A(x)) + 2 * x - physics.A_adjoint(y) - 2 * z
    assert residual.norm() <= 1e-8 * z.norm()


def test_prox_gradcheck(float64):
    physics = MRI(random_mask((6, 6), 2))
    z, y = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(1, 2, 6, 6, requires_grad=True)
    gamma = torch.tensor(0.7, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, g: physics.prox_l2(a, b, g), (z, y, gamma))
    multi = MultiCoilMRI(random_mask((6, 6), 2), 2, tol=1e-12, max_iter=100)
    y2 = torch.randn(1, 2, 2, 6, 6, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, g: multi.prox_l2(a, b, g), (z, y2, gamma))


def test_multicoil_implicit_gradient_reaches_coil_maps(float64):
    """Maps produced upstream (requires_grad) get the same gradient from the implicit and unrolled backward."""
    mask = random_mask((8, 8), 2)
    z, target = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    grads = []
    for implicit in (True, False):
        raw = birdcage_maps((8, 8), 3).clone().requires_grad_(True)
        physics = MultiCoilMRI(mask, raw * 1.5, tol=1e-12, max_iter=200, implicit_backward_solver=implicit)
        y = physics.A(target).detach()
        ((physics.prox_l2(z, y, 0.8) - target) ** 2).sum().backward()
        grads.append(raw.grad)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [random_mask, equispaced_mask])
@pytest.mark.parametrize("acc", [4, 8])
def test_masks(make, acc):
    mask = make((32, 96), acc)
    assert mask.shape == (32, 96)
    assert torch.equal(mask, mask[:1].expand_as(mask))  # whole phase-encoding columns
    cols = mask[0]
    assert abs(float(cols.sum()) - 96 / acc) <= 2  # about W / acceleration lines
    centre = round(96 * 0.32 / acc)
    start = (96 - centre + 1) // 2
    assert bool(cols[start:start + centre].all())  # fully sampled centre


def test_random_mask_seeded():
    assert torch.equal(random_mask((8, 64), 4, seed=1), random_mask((8, 64), 4, seed=1))
    assert not torch.equal(random_mask((8, 64), 4, seed=1), random_mask((8, 64), 4, seed=2))


def test_noise_is_added():
    from unfolded.physics import GaussianNoise

    physics = MRI(img_size=(8, 8), noise_model=GaussianNoise(0.1))
    x = torch.randn(1, 2, 8, 8)
    assert not torch.allclose(physics(x), physics.A(x))
    mask = random_mask((8, 8), 4)
    for p in (MRI(mask, noise_model=GaussianNoise(0.1)), MultiCoilMRI(mask, 2, noise_model=GaussianNoise(0.1))):
        y = p(x)
        assert torch.equal(y, y * mask)  # noise only where k-space is sampled


@pytest.mark.parametrize("kwargs, match", [
    ({}, "img_size"),
    ({"mask": torch.zeros(8, 8)}, "empty"),
    ({"mask": torch.ones(3, 8, 8)}, "channel"),
    ({"mask": torch.stack((torch.ones(8, 8), torch.zeros(8, 8)))}, "same"),
    ({"mask": torch.ones(8)}, "mask"),
    ({"mask": torch.ones(8, 8), "img_size": (2, 8, 9)}, "img_size"),
])
def test_mri_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MRI(**kwargs)


def test_bad_shapes_and_args():
    physics = MRI(img_size=(8, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        physics.A(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="y has shape"):
        physics.prox_l2(torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 7), 1.0)
    with pytest.raises(ValueError, match="coil_maps"):
        MultiCoilMRI(torch.ones(8, 8), torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="acceleration"):
        random_mask((8, 8), 0.5)
    with pytest.raises(ValueError, match="img_size"):
        equispaced_mask(8, 4)
    with pytest.raises(ValueError, match="img_size"):
        MRI(torch.ones(8, 8), img_size=8)
    multi = MultiCoilMRI(torch.ones(8, 8), torch.ones(3, 2, 8, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="batch"):
        multi.A(torch.randn(2, 2, 8, 8))


def test_cartesian_mask_names_the_pattern():
    from unfolded.physics.mri import cartesian_mask

    assert torch.equal(cartesian_mask((8, 64), "random", 4, seed=3), random_mask((8, 64), 4, seed=3))
    assert torch.equal(cartesian_mask((8, 64), "equispaced", 8), equispaced_mask((8, 64), 8))
    with pytest.raises(ValueError, match="'random' or 'equispaced'"):
        cartesian_mask((8, 64), "radial")


def test_mask_as_a_function_of_the_image_size():
    """What configurations use: one mask recipe, an operator per image size (sizes from a config list)."""
    from functools import partial

    from omegaconf import ListConfig

    from unfolded.physics.mri import cartesian_mask

    recipe = partial(cartesian_mask, acceleration=4, seed=0)
    for size in ((2, 16, 24), [2, 32, 32], ListConfig([2, 8, 40])):
        for physics in (MRI(recipe, img_size=size), MultiCoilMRI(recipe, 2, img_size=size)):
            assert torch.equal(physics.mask[0, 0], random_mask(tuple(size), 4, seed=0))
    with pytest.raises(ValueError, match="needs img_size"):
        MRI(recipe)
    assert torch.equal(MRI(img_size=ListConfig([2, 4, 6])).mask[0, 0], torch.ones(4, 6))
