"""The fixed-point solver registry: each solver reaches the exact solution, reports its true residual,
and the backward solvers compare by the number of products they need."""

import pytest
import torch

from unfolded.solvers import (
    BACKWARD_SOLVERS,
    FORWARD_SOLVERS,
    AndersonAccelerationConfig,
    solve_fixed_point,
    solve_linear_fixed_point,
)
from unfolded.solvers.gmres import gmres

ANDERSON = AndersonAccelerationConfig(5, 1.0, 1e-4)


def _linear(radius: float, n: int = 40, B: int = 3, normal: bool = False):
    """v = L v + u with L = M per sample: a nonsymmetric M of spectral radius `radius` (or symmetric)."""
    g = torch.Generator().manual_seed(1)
    M = torch.randn(B, n, n, dtype=torch.float64, generator=g)
    if normal:
        M = M + M.transpose(1, 2)
    M = M * radius / torch.linalg.eigvals(M).abs().amax(1)[:, None, None]
    u = torch.randn(B, 1, n, dtype=torch.float64, generator=g)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - M, u.reshape(B, n, 1)).reshape(u.shape)
    return (lambda v: torch.einsum("bij,bj->bi", M, v.reshape(B, n)).reshape(v.shape)), u, exact


def _true_residual(L, u, v):
    return float(((u - v + L(v)).flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1)).max())


@pytest.mark.parametrize("name", BACKWARD_SOLVERS)
def test_backward_solvers_reach_the_exact_solution_and_report_the_true_residual(name):
    L, u, exact = _linear(0.9)
    v, stats = solve_linear_fixed_point(name, L, u, 3000, 1e-11, ANDERSON, restart=40)
    assert stats.converged and stats.solver == name
    assert len(stats.residuals) == stats.iterations
    assert (v - exact).norm() / exact.norm() < 1e-9
    # the stopping residual is the linear system's, whatever the solver (fixed-point solvers return one
    # more step, which only improves it)
    assert _true_residual(L, u, v) <= 1.01 * stats.residuals[-1] + 1e-14 <= 1.02e-11


def test_gmres_converges_where_the_neumann_series_diverges_and_in_fewer_products():
    L, u, exact = _linear(1.5, normal=True)  # eigenvalues of L beyond 1: fixed-point iteration diverges
    v, stats = solve_linear_fixed_point("gmres", L, u, 200, 1e-10, restart=50)
    assert stats.converged and stats.iterations <= 42  # at most n + the final true residual
    assert (v - exact).norm() / exact.norm() < 1e-8
    _, fp = solve_linear_fixed_point("fixed_point", L, u, 200, 1e-10)
    assert not fp.converged and fp.residuals[-1] > 1
    L, u, _ = _linear(0.95, normal=True)
    counts = {n: solve_linear_fixed_point(n, L, u, 3000, 1e-8, ANDERSON)[1].iterations for n in BACKWARD_SOLVERS}
    assert counts["gmres"] < counts["fixed_point"] / 4 and counts["broyden"] < counts["fixed_point"] / 4


def test_gmres_restarts_and_stops_at_its_budget_with_an_honest_residual():
    L, u, _ = _linear(0.99)
    v, stats = solve_linear_fixed_point("gmres", L, u, 30, 1e-14, restart=5)
    assert not stats.converged and stats.iterations <= 30
    assert abs(_true_residual(L, u, v) - stats.residuals[-1]) < 1e-12
    restarts = stats.iterations // 6  # 5 Arnoldi products + 1 residual product per cycle
    assert restarts >= 4


def test_gmres_zero_right_hand_side_sample():
    L, u, _ = _linear(0.5)
    u[1] = 0
    v, stats = gmres(lambda x: x - L(x), u, 100, 1e-10)
    assert stats.converged and torch.isfinite(v).all() and torch.equal(v[1], torch.zeros_like(v[1]))
    v, stats = gmres(lambda x: x - L(x), torch.zeros_like(u), 100, 1e-10)
    assert stats.converged and stats.iterations == 0 and torch.equal(v, torch.zeros_like(u))


@pytest.mark.parametrize("name", FORWARD_SOLVERS)
def test_forward_solvers_on_a_nonlinear_contraction(name):
    g = torch.Generator().manual_seed(2)
    Q = torch.linalg.qr(torch.randn(2, 30, 30, dtype=torch.float64, generator=g))[0]
    W = Q @ torch.diag(torch.linspace(0, 0.95, 30, dtype=torch.float64)) @ Q.transpose(1, 2)
    b = torch.randn(2, 30, dtype=torch.float64, generator=g)

    def f(x):
        return torch.einsum("bij,bj->bi", W, x) + 0.03 * torch.sin(x) + b  # Lipschitz 0.98

    x, stats = solve_fixed_point(name, f, torch.zeros_like(b), 2000, 1e-12, ANDERSON)
    assert stats.converged and stats.solver == name and len(stats.residuals) == stats.iterations
    assert (f(x) - x).norm() / x.norm() < 1e-11
    if name != "fixed_point":
        plain = solve_fixed_point("fixed_point", f, torch.zeros_like(b), 2000, 1e-12)[1].iterations
        assert stats.iterations < plain / 3, (stats.iterations, plain)


def test_unknown_solver_names_are_refused():
    with pytest.raises(ValueError, match="unknown fixed-point solver 'gmres'"):
        solve_fixed_point("gmres", lambda x: x, torch.zeros(1, 2), 3, 1e-3)


def test_anderson_full_backprop_keeps_the_graph_of_the_whole_history():
    """Unrolled Anderson: full_backprop=False detaches all but the current history entry (the reference's
    meaning), so its gradient differs from the full one; both are finite and the full one is autograd's."""
    a = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)

    def f(x):
        return torch.tanh(0.5 * x.flip(1) + a)

    grads = {}
    for full in (False, True):
        x, _ = solve_fixed_point("anderson", f, torch.zeros(1, 2, dtype=torch.float64), 6, 0.0,
                                 AndersonAccelerationConfig(3, 1.0, 1e-6, full_backprop=full))
        (grads[full],) = torch.autograd.grad(x.sum(), a)
    assert torch.isfinite(grads[False]).all() and not torch.allclose(grads[False], grads[True])
    # full backprop = autograd through the very same computation written out without detaching
    assert torch.autograd.gradcheck(
        lambda a_: solve_fixed_point("anderson", lambda x: torch.tanh(0.5 * x.flip(1) + a_),
                                     torch.zeros(1, 2, dtype=torch.float64), 6, 0.0,
                                     AndersonAccelerationConfig(3, 1.0, 1e-6, full_backprop=True))[0], (a,))
    with pytest.raises(ValueError, match="full_backprop must be True or False"):
        AndersonAccelerationConfig(full_backprop="yes")
