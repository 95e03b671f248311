"""Property-based tests: adjointness of every operator (every blur configuration, inpainting, denoising,
single- and multi-coil MRI) and the optimality condition of prox_l2 for each."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unfolded.physics import MRI, Blur, BlurFFT, Denoising, Inpainting, MultiCoilMRI, random_mask

paddings = st.sampled_from(["valid", "circular", "reflect", "replicate", "constant"])


@st.composite
def blur_problem(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    H, W = draw(st.integers(max(h, 3), 12)), draw(st.integers(max(w, 3), 12))
    B, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    b, c = draw(st.sampled_from([1, B])), draw(st.sampled_from([1, C]))
    seed = draw(st.integers(0, 2**31 - 1))
    return (B, C, H, W), (b, c, h, w), draw(paddings), draw(st.booleans()), seed



def _assert_prox_optimal(physics, z, y, gamma):
    """x = prox_l2(z, y, γ) solves (AᵀA + I/γ) x = Aᵀy + z/γ."""
    x = physics.prox_l2(z, y, gamma)
    r = physics.A_adjoint(physics.A(x) - y) + (x - z) / gamma
    b = physics.A_adjoint(y) + z / gamma
    assert r.norm() <= 1e-9 * b.norm() + 1e-12

@settings(max_examples=60, deadline=None)
@given(blur_problem())
def test_blur_adjoint(problem):
    x_shape, k_shape, padding, use_fft, seed = problem
    g = torch.Generator().manual_seed(seed)
    physics = Blur(torch.rand(k_shape, generator=g, dtype=torch.float64), padding=padding, use_fft=use_fft)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64)
    Ax = physics.A(x)
    y = torch.randn(Ax.shape, generator=g, dtype=torch.float64)
    lhs, rhs = (Ax * y).sum(), (x * physics.A_adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-10 * (Ax.norm() * y.norm())


@settings(max_examples=40, deadline=None)
@given(blur_problem(), st.floats(0.01, 100.0))
def test_prox_l2_optimality(problem, gamma):
    x_shape, k_shape, padding, _, seed = problem
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(k_shape, generator=g, dtype=torch.float64)
    for physics in (Blur(k, padding=padding, tol=1e-12, max_iter=2000),
                    BlurFFT(x_shape[1:], k), Inpainting(x_shape[1:], mask=0.5, seed=seed)):
        z = torch.randn(x_shape, generator=g, dtype=torch.float64)
        y = physics.A(torch.randn(x_shape, generator=g, dtype=torch.float64))
        _assert_prox_optimal(physics, z, y, gamma)


# --- every other operator: adjointness and the optimality of prox_l2, on random sizes -------------------
@st.composite
def other_problem(draw):
    """(physics, image shape) for Denoising, BlurFFT, Inpainting, MRI and MultiCoilMRI of random size."""
    kind = draw(st.sampled_from(["denoising", "blur_fft", "inpainting", "mri", "multicoil_mri"]))
    B, H, W = draw(st.integers(1, 2)), draw(st.integers(3, 12)), draw(st.integers(3, 12))
    C = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if kind == "denoising":
        return Denoising(), (B, C, H, W), seed
    if kind == "blur_fft":
        k = torch.rand(draw(st.integers(1, min(5, H))), draw(st.integers(1, min(5, W))), generator=g,
                       dtype=torch.float64)
        return BlurFFT((C, H, W), k), (B, C, H, W), seed
    if kind == "inpainting":
        return Inpainting((C, H, W), mask=draw(st.floats(0.1, 1.0)), seed=seed), (B, C, H, W), seed
    mask = random_mask((H, W), acceleration=draw(st.sampled_from([1, 2, 4])), seed=seed).double()
    if kind == "mri":
        return MRI(mask), (B, 2, H, W), seed
    maps = torch.randn(draw(st.integers(1, 3)), H, W, generator=g, dtype=torch.complex128)
    return MultiCoilMRI(mask, maps, tol=1e-12, max_iter=2000), (B, 2, H, W), seed


@settings(max_examples=60, deadline=None)
@given(other_problem())
def test_adjoint_of_every_operator(problem):
    physics, x_shape, seed = problem
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64)
    Ax = physics.A(x)
    y = torch.randn(Ax.shape, generator=g, dtype=torch.float64)
    lhs, rhs = (Ax * y).sum(), (x * physics.A_adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-10 * (Ax.norm() * y.norm() + x.norm() * physics.A_adjoint(y).norm())


@settings(max_examples=40, deadline=None)
@given(other_problem(), st.floats(0.01, 100.0))
def test_prox_l2_optimality_of_every_operator(problem, gamma):
    physics, x_shape, seed = problem
    g = torch.Generator().manual_seed(seed + 2)
    z = torch.randn(x_shape, generator=g, dtype=torch.float64)
    y = physics.A(torch.randn(x_shape, generator=g, dtype=torch.float64))
    _assert_prox_optimal(physics, z, y, gamma)
