"""The reference's physics API beyond the seed examples (issue #17): operator keywords used (and stored)
or refused, update / update_parameters, noise per call, rng, batched masks, the Krylov solvers against
dense float64 solves, and the LinearPhysics utilities."""

import warnings

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import unfolded as dinv
from unfolded.physics import MRI, Blur, BlurFFT, Denoising, GaussianNoise, Inpainting, LinearPhysics, MultiCoilMRI
from unfolded.solvers import ConvergenceWarning, SolverLog, record_solves
from unfolded.solvers.krylov import SOLVERS

D = torch.float64


def dense(op, in_shape):
    """The matrix of a linear map on tensors of `in_shape` (batch 1), columns = images of basis vectors."""
    n = int(torch.tensor(in_shape).prod())
    cols = [op(torch.eye(n, dtype=D)[i].reshape(in_shape)).flatten() for i in range(n)]
    return torch.stack(cols, 1)


def kernel(seed=0, h=3, w=3):
    k = torch.rand(1, 1, h, w, dtype=D, generator=torch.Generator().manual_seed(seed)) + 0.1
    return k / k.sum()


def mask2d(H=6, W=6, seed=1):
    m = (torch.rand(H, W, generator=torch.Generator().manual_seed(seed)) < 0.5).to(D)
    m[0, 0] = 1
    return m


# --- operator keywords: used, stored, or refused ----------------------------------------------------
def test_mri_mask_keyword_is_used_and_stored():
    m1, m2 = mask2d(seed=1), mask2d(seed=2)
    physics = MRI(mask=m1)
    x = torch.randn(2, 2, 6, 6, dtype=D)
    y = physics.A(x, mask=m2)
    assert torch.allclose(y, MRI(mask=m2).A(x))
    assert not torch.allclose(y, MRI(mask=m1).A(x))
    assert torch.equal(physics.mask[0, 0], m2)  # stored, as in the reference: A_adjoint now uses m2
    assert torch.allclose(physics.A_adjoint(y), MRI(mask=m2).A_adjoint(y))
    assert torch.allclose(physics.A_adjoint(y, mask=m1), MRI(mask=m1).A_adjoint(y))


def test_multicoil_mask_and_coil_maps_keywords_are_used_and_stored():
    m1, m2 = mask2d(seed=1), mask2d(seed=2)
    maps2 = torch.randn(3, 6, 6, dtype=torch.complex128)
    physics = MultiCoilMRI(mask=m1, coil_maps=3)
    x = torch.randn(1, 2, 6, 6, dtype=D)
    y = physics.A(x, mask=m2, coil_maps=maps2)
    reference = MultiCoilMRI(mask=m2, coil_maps=maps2)
    assert torch.allclose(y, reference.A(x))
    assert torch.equal(physics.mask[0, 0], m2) and torch.equal(physics.coil_maps[0], maps2)
    assert torch.allclose(physics.A_adjoint(y), reference.A_adjoint(y))


def test_inpainting_mask_keyword_is_used_and_stored():
    m2 = mask2d(seed=2)[None]
    physics = Inpainting((1, 6, 6), mask=mask2d(seed=1)[None])
    x = torch.randn(2, 1, 6, 6, dtype=D)
    assert torch.equal(physics.A(x, mask=m2), x * m2)
    assert torch.equal(physics.A_adjoint(x), x * m2)
    y = Inpainting((1, 6, 6), mask=m2, noise_model=GaussianNoise(0.0))(x, mask=mask2d(seed=3)[None])
    assert torch.equal(y, x * mask2d(seed=3))


@pytest.mark.parametrize("cls", [Blur, BlurFFT])
def test_filter_keyword_in_forward_is_used_and_stored(cls):
    k1, k2 = kernel(0), kernel(1)
    make = (lambda k: Blur(k, padding="circular")) if cls is Blur else (lambda k: BlurFFT((1, 8, 8), k))
    physics = make(k1)
    x = torch.randn(2, 1, 8, 8, dtype=D)
    y = physics(x, filter=k2)  # no noise model: y = A x with k2
    assert torch.allclose(y, make(k2).A(x))
    assert torch.equal(physics.filter, k2)
    assert torch.allclose(physics.A_adjoint(y), make(k2).A_adjoint(y))


def _public_physics():
    k = kernel()
    return [
        ("LinearPhysics", LinearPhysics(), (1, 1, 6, 6)),
        ("Denoising", Denoising(GaussianNoise(0.0)), (1, 1, 6, 6)),
        ("Blur", Blur(k), (1, 1, 6, 6)),
        ("BlurFFT", BlurFFT((1, 6, 6), k), (1, 1, 6, 6)),
        ("Inpainting", Inpainting((1, 6, 6), mask=0.5), (1, 1, 6, 6)),
        ("MRI", MRI(mask=mask2d()), (1, 2, 6, 6)),
        ("MultiCoilMRI", MultiCoilMRI(mask=mask2d(), coil_maps=2), (1, 2, 6, 6)),
        ("Composed", Blur(k) * Denoising(GaussianNoise(0.0)), (1, 1, 6, 6)),
        ("Downsampling", dinv.physics.Downsampling(filter="bilinear"), (1, 1, 6, 6)),
    ]


@pytest.mark.parametrize("name,physics,shape", _public_physics(), ids=[c[0] for c in _public_physics()])
@pytest.mark.parametrize("method", ["A", "A_adjoint", "forward"])
def test_every_public_operator_rejects_an_unknown_keyword(name, physics, shape, method):
    x = torch.randn(shape, dtype=D)
    arg = physics.A(x) if method == "A_adjoint" else x
    call = physics if method == "forward" else getattr(physics, method)
    with pytest.raises(ValueError, match=r"unknown keyword.*bogus"):
        call(arg, bogus=torch.ones(3))


def test_the_keyword_test_covers_every_public_operator():
    members = {name: getattr(dinv.physics, name) for name in dinv.physics.__all__}
    public = {name for name, m in members.items() if isinstance(m, type) and issubclass(m, LinearPhysics)}
    assert public <= {type(physics).__name__ for _, physics, _ in _public_physics()}


def test_update_and_update_parameters():
    physics = Blur(kernel(0), padding="circular", noise_model=GaussianNoise(0.1))
    physics.update(filter=kernel(1), sigma=0.3)
    assert torch.equal(physics.filter, kernel(1)) and physics.noise_model.sigma == 0.3
    physics.update(noise_model=GaussianNoise(0.05))
    assert physics.noise_model.sigma == 0.05
    physics.update_parameters(filter=kernel(2))
    assert torch.equal(physics.filter, kernel(2))
    with pytest.raises(ValueError, match="unknown keyword.*mask"):
        physics.update_parameters(mask=torch.ones(1))
    with pytest.raises(ValueError, match="unknown keyword.*bogus"):
        physics.update(bogus=1.0)
    with pytest.raises(ValueError, match="filter must be a 2-D"):
        physics.update(filter=torch.ones(3))


def test_implicit_backward_does_not_replace_a_learnable_filter():
    """The implicit backward evaluates A at detached aliases of the filter: they must not be stored."""
    k = nn.Parameter(kernel())
    physics = Blur(k, padding="reflect", tol=1e-12, max_iter=500)
    z = torch.randn(1, 1, 6, 6, dtype=D)
    physics.prox_l2(z, torch.randn(1, 1, 6, 6, dtype=D), 0.5).sum().backward()
    assert physics.filter is k and k.grad is not None and float(k.grad.abs().sum()) > 0


# --- noise ---------------------------------------------------------------------------------------
def test_gaussian_noise_per_call_sigma_per_sample_and_rng():
    x = torch.zeros(3, 1, 4, 4, dtype=D)
    noise = GaussianNoise(0.1, rng=torch.Generator().manual_seed(5))
    sigma = torch.tensor([0.0, 0.2, 0.5], dtype=D)
    y = noise(x, sigma=sigma)
    expected = sigma.view(3, 1, 1, 1) * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=D)
    assert torch.equal(y, expected) and torch.equal(noise.sigma, sigma)  # stored, as in the reference
    y1 = noise(x, sigma=0.2, seed=7)
    assert noise.sigma == 0.2 and torch.equal(y1, noise(x, seed=7))
    assert not torch.equal(y1, noise(x))  # without seed: fresh draws
    with pytest.raises(ValueError, match="seed= needs a generator.*has none"):
        GaussianNoise(0.1)(x, seed=1)
    with pytest.raises(ValueError, match="holds 2 values but the batch has 3"):
        GaussianNoise(torch.tensor([0.1, 0.2]))(x)
    physics = Denoising(GaussianNoise(0.1))
    assert torch.equal(physics(x, sigma=0.0), x) and physics.noise_model.sigma == 0.0


def test_noise_sigma_keeps_full_precision_as_a_tensor():
    noise = GaussianNoise(0.8)
    assert noise.sigma.item() == 0.8 and "sigma" not in noise.state_dict()  # .item() as in the reference
    x = torch.zeros(1, 1, 3, 3)
    noise.sigma = 0.0  # assignment is the same as update_parameters
    assert torch.equal(noise(x), x)
    noise.sigma.fill_(0.5)  # an in-place change is seen too
    assert float(noise(x).abs().max()) > 0
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        noise.sigma = -1.0
    with torch.inference_mode():  # inference tensors have no version counter: still built and applied
        built = GaussianNoise(0.0)
        assert torch.equal(built(x), x)


# --- Inpainting: rng, pixelwise, batched masks -------------------------------------------------------
def test_inpainting_random_mask_from_rng():
    physics = Inpainting((2, 6, 6), mask=0.5, rng=torch.Generator().manual_seed(3))
    expected = (torch.rand(6, 6, generator=torch.Generator().manual_seed(3)) < 0.5).to(physics.mask.dtype)
    assert torch.equal(physics.mask[0, 0], expected) and torch.equal(physics.mask[0, 1], expected)
    per_channel = Inpainting((2, 6, 6), mask=0.5, pixelwise=False, rng=torch.Generator().manual_seed(3))
    assert not torch.equal(per_channel.mask[0, 0], per_channel.mask[0, 1])
    with pytest.raises(ValueError, match="rng .* or seed, not both"):
        Inpainting((1, 6, 6), mask=0.5, rng=torch.Generator(), seed=1)


@pytest.mark.parametrize("batch", [1, 3])
def test_inpainting_accepts_a_batched_mask(batch):
    masks = (torch.rand(batch, 2, 5, 5, dtype=D) < 0.5).to(D)
    masks[:, :, 0, 0] = 1
    physics = Inpainting((2, 5, 5), mask=masks)
    x = torch.randn(3, 2, 5, 5, dtype=D)
    assert torch.equal(physics.A(x), x * masks)
    z, y, gamma = torch.randn_like(x), x * masks, 0.7
    x_prox = physics.prox_l2(z, y, gamma)
    residual = physics.A_adjoint(physics.A(x_prox) - y) + (x_prox - z) / gamma
    assert float(residual.abs().max()) < 1e-12
    if batch == 3:
        with pytest.raises(ValueError, match="does not match the mask's image size"):
            physics.A(torch.randn(2, 2, 5, 5, dtype=D))


# --- solvers against dense float64 solves -----------------------------------------------------------
def _dense_problem():
    physics = Blur(kernel(), padding="reflect", tol=1e-12, max_iter=500)  # no closed form: a Krylov solve
    A = dense(physics.A, (1, 1, 6, 6))
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 1, 6, 6, dtype=D, generator=g)
    y = torch.randn(2, 1, 6, 6, dtype=D, generator=g)
    return physics, A, z, y


@pytest.mark.parametrize("solver", SOLVERS)
def test_prox_l2_solver_matches_dense_solve(solver):
    physics, A, z, y = _dense_problem()
    gamma = torch.tensor([0.3, 2.0], dtype=D)
    x = physics.prox_l2(z, y, gamma, solver=solver)
    M = A.T @ A
    for b in range(2):
        rhs = A.T @ y[b].flatten() + z[b].flatten() / gamma[b]
        exact = torch.linalg.solve(M + torch.eye(36, dtype=D) / gamma[b], rhs)
        error = float((x[b].flatten() - exact).norm() / exact.norm())
        assert error < 1e-10, (solver, error)


@pytest.mark.parametrize("solver", SOLVERS)
def test_A_dagger_solver_matches_dense_pseudo_inverse(solver):
    physics = Blur(kernel(), padding="valid", tol=1e-12, max_iter=500)  # 16 rows, 36 columns: a kernel
    A = dense(physics.A, (1, 1, 6, 6))
    y = torch.randn(2, 1, 4, 4, dtype=D)
    x = physics.A_dagger(y, solver=solver)
    exact = (torch.linalg.pinv(A) @ y.flatten(1).T).T
    error = float((x.flatten(1) - exact).norm() / exact.norm())
    assert error < 1e-9, (solver, error)


@pytest.mark.parametrize("solver", SOLVERS)
def test_implicit_prox_gradcheck_with_each_solver(solver):
    physics, _, z, y = _dense_problem()
    z, y = z[:1].clone().requires_grad_(), y[:1].clone().requires_grad_()
    gamma = torch.tensor(0.7, dtype=D, requires_grad=True)
    assert gradcheck(lambda z, y, g: physics.prox_l2(z, y, g, solver=solver), (z, y, gamma), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("solver", ["BiCGStab", "minres", "lsqr"])
def test_new_solvers_report_non_convergence(solver):
    physics, _, z, y = _dense_problem()
    log = SolverLog()
    with record_solves(log), pytest.warns(ConvergenceWarning, match=f"{solver.lower()}"):
        physics.prox_l2(z, y, 5.0, solver=solver, max_iter=1)
    kind = f"{solver.lower()}_forward"
    assert log.summary()[f"{kind}/unconverged"] == 1.0 and log.summary()[f"{kind}/iters_mean"] == 1.0
    assert log.summary()[f"{kind}/max_rel_residual"] > 1e-12


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="solver must be one of"):
        Denoising().prox_l2(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 1.0, solver="gmres")


# --- LinearPhysics utilities ------------------------------------------------------------------------
def test_adjointness_test():
    for _, physics, shape in _public_physics():
        assert float(physics.adjointness_test(torch.zeros(shape, dtype=D))) < 1e-13
    wrong = LinearPhysics(A=lambda x: 2 * x, A_adjoint=lambda y: y)
    assert float(wrong.adjointness_test(torch.zeros(1, 1, 4, 4, dtype=D))) == pytest.approx(0.5)


def test_compute_sqnorm_and_condition_number_match_dense():
    physics = Blur(kernel(), padding="valid")
    singular = torch.linalg.svdvals(dense(physics.A, (1, 1, 6, 6)))
    sq = physics.compute_sqnorm(torch.zeros(1, 1, 6, 6, dtype=D), max_iter=2000, tol=1e-12, verbose=False)
    assert float(sq) == pytest.approx(float(singular[0] ** 2), rel=1e-8)
    assert float(physics.compute_norm(torch.zeros(1, 1, 6, 6, dtype=D), tol=1e-12, max_iter=2000, verbose=False,
                                      squared=False)) == pytest.approx(float(singular[0]), rel=1e-8)
    cond = physics.condition_number(torch.randn(1, 1, 6, 6, dtype=D), tol=1e-12)
    assert float(cond) == pytest.approx(float(singular[0] / singular[-1]), rel=1e-6)  # 16 non-zero σ (rank 16)


def test_power_method_reports_non_convergence():
    physics = Blur(kernel(), padding="valid")
    log = SolverLog()
    with record_solves(log), pytest.warns(ConvergenceWarning, match="power_method"):
        physics.compute_sqnorm(torch.zeros(1, 1, 6, 6, dtype=D), max_iter=2, tol=1e-14, verbose=False)
    assert log.summary()["power_method/unconverged"] == 1.0


def test_clone_copies_generators_and_tensors():
    physics = Denoising(GaussianNoise(0.1, rng=torch.Generator().manual_seed(4)))
    twin = physics.clone()
    x = torch.zeros(1, 1, 3, 3)
    assert twin.noise_model.rng is not physics.noise_model.rng and torch.equal(twin(x), physics(x))
    blur = Blur(kernel())
    copy = blur.clone()
    copy.update(filter=kernel(1))
    assert torch.equal(blur.filter, kernel())


def test_composition_matches_dense_product():
    outer, inner = Blur(kernel(0), padding="circular"), Inpainting((1, 6, 6), mask=mask2d()[None])
    composed = outer * inner  # outer ∘ inner
    assert torch.allclose(dense(composed.A, (1, 1, 6, 6)), dense(outer.A, (1, 1, 6, 6)) @ dense(inner.A, (1, 1, 6, 6)))
    assert float(composed.adjointness_test(torch.zeros(1, 1, 6, 6, dtype=D))) < 1e-13
    with pytest.raises(NotImplementedError, match="physics1 \\* physics2"):
        outer.stack(inner)


def test_linear_physics_constructor_accepts_reference_keywords():
    physics = LinearPhysics(A=lambda x: 2 * x, A_adjoint=lambda y: 2 * y, img_size=(1, 3, 3), solver="minres",
                            sensor_model=lambda y: y.clamp(0, 1))
    assert physics.img_size == (1, 3, 3)
    assert torch.equal(physics(torch.ones(1, 1, 3, 3)), torch.ones(1, 1, 3, 3))  # sensor clamps 2 to 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        x = physics.A_dagger(torch.full((1, 1, 3, 3), 2.0, dtype=D), solver=None, tol=1e-10)  # the physics' own
    assert torch.allclose(x, torch.ones(1, 1, 3, 3, dtype=D))
    assert dinv.physics.ComposedLinearPhysics is type(Blur(kernel()) * Blur(kernel()))


def test_small_reference_methods():
    physics = Blur(kernel(), padding="reflect")
    v = torch.randn(1, 1, 6, 6, dtype=D)
    assert torch.equal(physics.A_vjp(torch.zeros_like(v), v), physics.A_adjoint(v))
    assert torch.allclose(physics.A_adjoint_A(v), physics.A_adjoint(physics.A(v)))
    physics.set_ls_solver("minres", max_iter=7, tol=1e-3)
    assert (physics.solver, physics.max_iter, physics.tol) == ("minres", 7, 1e-3)
    log = SolverLog()
    with record_solves(log), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        physics.prox_l2(v, physics.A(v), 1.0, solver=None)
    assert "minres_forward/solves" in log.summary()  # solver=None: the physics' own
    with pytest.raises(ValueError, match="solver must be one of"):
        physics.set_ls_solver("gmres")
    with pytest.raises(NotImplementedError, match="physics1 \\* physics2"):
        physics + physics


def test_noise_rng_reset_and_mri_random_mask_rng():
    noise = GaussianNoise(0.1, rng=torch.Generator().manual_seed(9))
    x = torch.zeros(1, 1, 4, 4)
    first = noise(x)
    noise.reset_rng()
    assert torch.equal(noise(x), first)
    with pytest.raises(ValueError, match="reset_rng needs a generator"):
        GaussianNoise(0.1).reset_rng()
    from unfolded.physics import random_mask

    a = random_mask((8, 16), rng=torch.Generator().manual_seed(4))
    assert torch.equal(a, random_mask((8, 16), rng=torch.Generator().manual_seed(4)))
    assert torch.equal(a, random_mask((8, 16), seed=4))  # the same draws as seeding by number
    with pytest.raises(ValueError, match="rng .* or seed, not both"):
        random_mask((8, 16), seed=3, rng=torch.Generator())
