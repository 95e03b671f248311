"""Property-based tests: adjointness of every blur configuration and the optimality of prox_l2."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unfolded.physics import Blur, BlurFFT, Inpainting

paddings = st.sampled_from(["valid", "circular", "reflect", "replicate", "constant"])


@st.composite
def blur_problem(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    H, W = draw(st.integers(max(h, 3), 12)), draw(st.integers(max(w, 3), 12))
    B, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    b, c = draw(st.sampled_from([1, B])), draw(st.sampled_from([1, C]))
    seed = draw(st.integers(0, 2**31 - 1))
    return (B, C, H, W), (b, c, h, w), draw(paddings), draw(st.booleans()), seed


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
        x = physics.prox_l2(z, y, gamma)
        # (AᵀA + I/γ) x = Aᵀy + z/γ
        r = physics.A_adjoint(physics.A(x) - y) + (x - z) / gamma
        b = physics.A_adjoint(y) + z / gamma
        assert r.norm() <= 1e-9 * b.norm() + 1e-12
