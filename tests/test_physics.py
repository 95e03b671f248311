import math

import pytest
import torch

import unfolded as dinv
from unfolded.physics import Blur, BlurFFT, Denoising, GaussianNoise, Inpainting, LinearPhysics
from unfolded.physics.blur import gaussian_blur

PADDINGS = ["valid", "circular", "reflect", "replicate", "constant"]
FILTER_SHAPES = [(1, 1, 3, 3), (1, 1, 4, 5), (1, 3, 3, 2), (2, 1, 5, 4), (2, 3, 3, 3)]


def _physics_cases():
    g = torch.Generator().manual_seed(1)
    cases = [("denoising", Denoising(), (2, 3, 9, 8))]
    for padding in PADDINGS:
        for fs in FILTER_SHAPES:
            for use_fft in (False, True):
                k = torch.rand(fs, generator=g, dtype=torch.float64)
                cases.append((f"blur-{padding}-{fs}-fft{use_fft}", Blur(k, padding=padding, use_fft=use_fft),
                              (2, 3, 9, 8)))
    for fs in [(1, 1, 3, 3), (1, 1, 4, 4), (2, 3, 5, 2)]:
        cases.append((f"blurfft-{fs}", BlurFFT((3, 9, 8), torch.rand(fs, generator=g, dtype=torch.float64)),
                      (2, 3, 9, 8)))
    cases.append(("inpainting", Inpainting((3, 9, 8), mask=0.5), (2, 3, 9, 8)))
    return cases


@pytest.mark.parametrize("name,physics,shape", _physics_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_adjoint_dot_product(name, physics, shape):
    x = torch.randn(shape, dtype=torch.float64)
    Ax = physics.A(x)
    y = torch.randn_like(Ax)
    lhs = (Ax * y).sum()
    rhs = (x * physics.A_adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_adjoint_dot_product_float32():
    physics = Blur(gaussian_blur(1.0), padding="reflect")
    x = torch.randn(2, 1, 16, 16)
    y = torch.randn(2, 1, 16, 16)
    lhs, rhs = (physics.A(x) * y).sum(), (x * physics.A_adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_blur_is_a_true_convolution():
    """A delta image returns the filter itself (not flipped), centred at the delta."""
    k = torch.arange(1.0, 13.0).reshape(1, 1, 3, 4)
    x = torch.zeros(1, 1, 7, 8)
    x[0, 0, 3, 4] = 1
    for padding in ["circular", "constant", "reflect", "replicate"]:
        out = Blur(k, padding=padding).A(x)[0, 0]
        top, left = 3 - 3 // 2, 4 - 4 // 2
        assert torch.equal(out[top : top + 3, left : left + 4], k[0, 0]), padding
    valid = Blur(k, padding="valid").A(x)
    assert valid.shape == (1, 1, 5, 5)


def test_padding_follows_the_spec_centre_for_even_filters():
    """pad left w//2 − (w−1)%2, right w//2, top h//2 − (h−1)%2, bottom h//2, then a valid convolution."""
    k = torch.rand(1, 1, 4, 2)
    x = torch.rand(1, 1, 6, 7)
    padded = torch.nn.functional.pad(x, (0, 1, 1, 2))
    expected = Blur(k, padding="valid").A(padded)
    assert torch.allclose(Blur(k, padding="constant").A(x), expected)


@pytest.mark.parametrize("size", [3, 4, 5])
def test_blurfft_matches_circular_blur(size):
    k = torch.rand(1, 1, size, size, dtype=torch.float64)
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    assert torch.allclose(BlurFFT((3, 10, 9), k).A(x), Blur(k, padding="circular").A(x), atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_fft_blur_matches_direct_blur(padding):
    k = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    x = torch.randn(2, 3, 12, 11, dtype=torch.float64)
    assert torch.allclose(Blur(k, padding=padding, use_fft=True).A(x), Blur(k, padding=padding).A(x), atol=1e-12)


def test_gaussian_blur_matches_the_formula(float64):
    k = gaussian_blur(sigma=(1.0, 2.0), angle=30)
    assert k.dtype == torch.float32 and k.shape == (1, 1, 15, 15)  # c = int(2/0.3 + 1) = 7
    assert abs(float(k.sum()) - 1) < 1e-6
    c = 7
    Y, X = torch.meshgrid(torch.arange(-c, c + 1.0), torch.arange(-c, c + 1.0), indexing="ij")
    t = torch.deg2rad(torch.tensor(30.0))
    u, v = torch.cos(t) * X - torch.sin(t) * Y, torch.sin(t) * X + torch.cos(t) * Y
    ref = torch.exp(-(u**2) / (2 * 4.0) - v**2 / 2)
    assert torch.allclose(k[0, 0].double(), ref / ref.sum(), atol=1e-7)
    assert torch.equal(gaussian_blur(1.5), gaussian_blur((1.5, 1.5)))
    assert torch.equal(gaussian_blur(torch.tensor(1.5)), gaussian_blur(1.5))
    # sigma_h along rows: a tall filter has larger row spread
    tall = gaussian_blur((3.0, 1.0))[0, 0]
    assert tall.sum(1).var() < tall.sum(0).var()
    assert dinv.physics.functional.gaussian_blur is gaussian_blur


def test_noise_is_fresh_and_has_the_right_level():
    physics = Denoising(GaussianNoise(0.1))
    x = torch.zeros(4, 1, 64, 64)
    y1, y2 = physics(x), physics(x)
    assert not torch.equal(y1, y2)
    assert abs(float(y1.std()) - 0.1) < 0.005
    blur = Blur(gaussian_blur(1.0), padding="circular")
    assert torch.equal(blur(x + 1), blur.A(x + 1))  # no noise model: no noise


def _prox_cases():
    k = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    cases = [Denoising(), BlurFFT((1, 8, 8), k), Inpainting((1, 8, 8), mask=0.6)]
    cases += [Blur(k, padding=p, tol=1e-12, max_iter=500) for p in PADDINGS]
    return cases


@pytest.mark.parametrize("physics", _prox_cases(), ids=lambda p: f"{type(p).__name__}-{getattr(p, 'padding', '')}")
@pytest.mark.parametrize("gamma", [0.3, "batch"])
def test_prox_l2_satisfies_the_optimality_condition(physics, gamma):
    z = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    y = physics.A(torch.randn_like(z))
    g = torch.tensor([0.3, 2.0], dtype=torch.float64) if gamma == "batch" else gamma
    x = physics.prox_l2(z, y, g)
    gv = g.view(-1, 1, 1, 1) if gamma == "batch" else g
    residual = physics.A_adjoint(physics.A(x) - y) + (x - z) / gv
    assert residual.norm() <= 1e-9 * (physics.A_adjoint(y).norm() + (z / gv).norm())


def test_cg_relative_tolerance_is_honoured_without_a_floor():
    physics = Blur(gaussian_blur(1.0).double(), padding="valid", tol=1e-13, max_iter=1000)
    z = torch.randn(1, 1, 16, 16, dtype=torch.float64) * 1e-6  # tiny scale: relative tolerance still met
    y = physics.A(torch.randn_like(z)) * 1e-6
    x = physics.prox_l2(z, y, 0.5)
    r = physics.A_adjoint(physics.A(x) - y) + (x - z) / 0.5
    b = physics.A_adjoint(y) + z / 0.5
    assert r.norm() <= 1e-12 * b.norm()


def test_prox_l2_does_not_mutate_the_physics():
    k = torch.rand(1, 1, 3, 3, requires_grad=True)
    physics = Blur(k, padding="reflect")
    before = dict(vars(physics))
    buffers = {n: b.clone() for n, b in physics.named_buffers()}
    x = physics.prox_l2(torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8), 0.5)
    x.sum().backward()
    assert dict(vars(physics)).keys() == before.keys()
    for key, value in before.items():
        assert vars(physics)[key] is value or vars(physics)[key] == value, key
    for n, b in physics.named_buffers():
        assert torch.equal(b, buffers[n])


def test_A_dagger():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    mask = torch.ones(1, 8, 8, dtype=torch.float64)
    mask[0, :4] = 0
    inp = Inpainting((1, 8, 8), mask=mask)
    assert torch.allclose(inp.A_dagger(inp.A(x)), x * mask)
    blur = Blur(gaussian_blur(0.7).double(), padding="circular", tol=1e-12, max_iter=500)
    assert torch.allclose(blur.A(blur.A_dagger(blur.A(x))), blur.A(x), atol=1e-8)
    fft = BlurFFT((1, 8, 8), gaussian_blur(0.7).double())
    assert torch.allclose(fft.A(fft.A_dagger(fft.A(x))), fft.A(x), atol=1e-8)


def test_generic_linear_physics_uses_given_operators():
    W = torch.randn(5, 4, dtype=torch.float64)
    physics = LinearPhysics(A=lambda x: x @ W.T, A_adjoint=lambda y: y @ W, tol=1e-12, max_iter=100)
    z, y = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    x = physics.prox_l2(z, y, 2.0)
    exact = torch.linalg.solve(W.T @ W + torch.eye(4, dtype=torch.float64) / 2, (y @ W + z / 2).T).T
    assert torch.allclose(x, exact, atol=1e-10)


def test_filter_is_moved_and_cast_with_the_physics():
    physics = Blur(gaussian_blur(1.0))
    physics.to(torch.float64)
    assert physics.filter.dtype == torch.float64
    assert physics.A(torch.rand(1, 1, 12, 12, dtype=torch.float64)).dtype == torch.float64


# --- bad inputs: one message each, naming what was wrong and what is allowed ---------------------
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Blur(torch.ones(3, 3, 3)), "filter must be a 2-D"),
        (lambda: Blur(torch.ones(3, 3), padding="mirror"), "padding must be one of valid, circular"),
        (lambda: Blur(None), "filter is required"),
        (lambda: Inpainting((1, 4, 4), mask=torch.zeros(1, 4, 4)), "mask is empty"),
        (lambda: Inpainting((1, 4, 4), mask=torch.ones(1, 3, 4)), "does not broadcast to img_size"),
        (lambda: Inpainting((1, 4, 4), mask=1.5), r"must be in \(0, 1\]"),
        (lambda: GaussianNoise(-1), "sigma must be >= 0"),
        (lambda: Blur(torch.ones(3, 3), max_iter=0), "max_iter must be an integer >= 1"),
        (lambda: Blur(torch.ones(3, 3), tol=0), "tol must be > 0"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_calls():
    blur = Blur(torch.ones(1, 1, 3, 3) / 9)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"y has shape \(1, 1, 8, 8\) but Blur maps images of shape"):
        blur.prox_l2(x, torch.rand(1, 1, 8, 8), 1.0)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        blur.prox_l2(x, blur.A(x), 0.0)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        Denoising().prox_l2(x, x, -1.0)
    with pytest.raises(ValueError, match="images must be 4-D"):
        blur.A(torch.rand(8, 8))
    with pytest.raises(ValueError, match="does not broadcast over images"):
        Blur(torch.ones(2, 2, 3, 3)).A(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="does not match the mask's image size"):
        Inpainting((1, 4, 4), mask=0.5).A(torch.rand(1, 1, 5, 4))
    with pytest.raises(TypeError, match="filter must be a torch.Tensor"):
        Blur([[1.0]])


@pytest.mark.parametrize("padding", PADDINGS)
def test_fast_normal_operator_matches_the_definition(padding):
    k = torch.rand(2, 1, 5, 4, dtype=torch.float64)
    physics = Blur(k, padding=padding)
    v = torch.randn(2, 3, 11, 12, dtype=torch.float64)
    gamma = torch.tensor([0.5, 2.0], dtype=torch.float64).view(2, 1, 1, 1)
    fast = physics.normal_operator(gamma, v)(v)
    assert torch.allclose(fast, physics.A_adjoint(physics.A(v)) + v / gamma, atol=1e-12)


def test_circular_blur_prox_is_the_closed_form_without_a_solve():
    from unfolded.solvers import SolverLog, record_solves

    k = gaussian_blur(2.0).double()
    z = torch.randn(2, 1, 32, 31, dtype=torch.float64)
    y = torch.randn_like(z)
    log = SolverLog()
    with record_solves(log):
        x = Blur(k, padding="circular").prox_l2(z, y, 3.0)
    assert log.records == []
    assert torch.allclose(x, BlurFFT((1, 32, 31), k).prox_l2(z, y, 3.0), atol=1e-12)
    small = torch.randn(1, 1, 6, 7, dtype=torch.float64)  # a 9×9 filter wraps around a 6×7 image
    wide = Blur(gaussian_blur(1.0).double(), padding="circular")
    x = wide.prox_l2(small, small, 0.5)
    residual = wide.A_adjoint(wide.A(x) - small) + (x - small) / 0.5
    assert residual.norm() <= 1e-12 * small.norm()


@pytest.mark.parametrize("padding", PADDINGS)
def test_large_filters_take_the_fft_path_and_match_direct_convolution(padding):
    from unfolded.physics import functional as Fn

    k = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    physics = Blur(k, padding=padding)
    assert physics._by_fft(k) and not physics._by_fft(k[..., :3, :3])
    x = torch.randn(2, 3, 20, 19, dtype=torch.float64)
    y = Fn.conv2d(x, k, padding)
    assert torch.allclose(physics.A(x), y, atol=1e-12)
    assert torch.allclose(physics.A_adjoint(y), Fn.conv_transpose2d(y, k, padding), atol=1e-12)


def _dense_normal_matrix(physics, gamma: float, shape) -> torch.Tensor:
    """(AᵀA + I/γ) as an n×n matrix for one image of `shape` (C, H, W)."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    columns = physics.A_adjoint(physics.A(basis)) + basis / gamma
    return columns.reshape(n, n).T


@pytest.mark.parametrize("width", [12, 13])  # the half spectrum's last column is a pair or not
@pytest.mark.parametrize("warm", [False, True])
def test_valid_blur_strip_solve_is_exact(width, warm):
    """The wrap-around strip reduction solves the same normal equations as a dense solver, per sample
    (batch filters, channels, one γ per sample), from a cold or a warm start, and reports the residual of
    the full system."""
    k = torch.rand(2, 1, 5, 4, dtype=torch.float64)
    physics = Blur(k, padding="valid")
    gamma = torch.tensor([0.5, 20.0], dtype=torch.float64).view(2, 1, 1, 1)
    rhs = torch.randn(2, 2, 11, width, dtype=torch.float64)
    x0 = torch.randn_like(rhs) if warm else None
    x, info = physics.normal_system(gamma, rhs).solve(rhs, x0, tol=1e-12, max_iter=100)
    assert info.converged
    for i in range(2):
        one = Blur(k[i : i + 1], padding="valid")
        dense = _dense_normal_matrix(one, float(gamma[i]), (2, 11, width))
        exact = torch.linalg.solve(dense, rhs[i].flatten()).reshape(2, 11, width)
        assert torch.allclose(x[i], exact, atol=1e-9)
    x, info = physics.normal_system(gamma, rhs).solve(rhs, x0, tol=1e-3, max_iter=100)
    residual = physics.A_adjoint(physics.A(x)) + x / gamma - rhs
    true = residual.flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1)
    assert torch.allclose(info.rel_residual, true, rtol=1e-6) and bool((true <= 1e-3).all())


def test_valid_blur_strip_solve_needs_far_fewer_iterations_than_plain_cg():
    """Issue #6's claim: the same relative residual in far fewer iterations (smooth 64² image, Gaussian
    blur, γ = 100, where plain CG is slow)."""
    from unfolded.solvers.cg import NormalSystem

    physics = Blur(gaussian_blur(1.6).double(), padding="valid")
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 72, 72, dtype=torch.float64), 9, 1)
    y = physics.A(x)
    rhs = physics.A_adjoint(y + 0.02 * torch.randn_like(y)) + x / 100
    gamma = torch.tensor(100.0, dtype=torch.float64)
    _, strip = physics.normal_system(gamma, rhs).solve(rhs, None, tol=1e-6, max_iter=500)
    _, plain = NormalSystem(physics.normal_operator(gamma, rhs)).solve(rhs, None, tol=1e-6, max_iter=500)
    assert strip.converged and plain.converged
    assert strip.iterations * 3 <= plain.iterations, (strip.iterations, plain.iterations)


def test_valid_blur_strip_solve_edge_cases():
    z = torch.randn(2, 1, 9, 8, dtype=torch.float64)
    gamma = torch.tensor(2.0, dtype=torch.float64)
    one_tap = Blur(torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64), padding="valid")  # no strip: exact at once
    x, info = one_tap.normal_system(gamma, z).solve(z, z, 1e-10, 50)
    assert info.iterations == 0 and info.converged
    assert torch.allclose(x, z / (0.25 + 0.5))
    zero = Blur(torch.zeros(1, 1, 3, 3, dtype=torch.float64), padding="valid")  # A = 0: x = γ·rhs
    x, info = zero.normal_system(gamma, z).solve(z, None, 1e-10, 50)
    assert info.converged and torch.allclose(x, 2 * z)
    x, info = zero.normal_system(gamma, z).solve(torch.zeros_like(z), z, 1e-10, 50)
    assert info.converged and torch.equal(x, torch.zeros_like(z))
