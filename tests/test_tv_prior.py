"""TVPrior (issue #21): the difference operators, the prox against an independent transcription of the
reference's iteration (deepinv 0.5.0 TVDenoiser), optimality, a closed-form case (value and Jacobian),
gradcheck / finite differences in float64, checkpointed memory, and convergence reporting."""

import warnings

import pytest
import torch

import unfolded.optim.tv_prior as tvmod
from tests.helpers import saved_numel
from unfolded.optim import PGD, ConvergenceWarning, TVPrior
from unfolded.optim.tv_prior import nabla, nabla_adjoint, tv_prox
from unfolded.physics import Denoising
from unfolded.solvers.cg import SolverLog, record_solves

D = torch.float64


def _grad_ref(x):
    """Forward differences written out with slices (zero across the last row / column)."""
    u = torch.zeros(*x.shape, x.dim() - 2, dtype=x.dtype)
    for i, d in enumerate(range(2, x.dim())):
        n = x.shape[d]
        u[..., i].narrow(d, 0, n - 1).copy_(x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1))
    return u


def _div_ref(u):
    """The adjoint of _grad_ref, slice by slice as the reference writes it."""
    x = torch.zeros(u.shape[:-1], dtype=u.dtype)
    for i, d in enumerate(range(2, x.dim())):
        n = x.shape[d]
        x.narrow(d, 0, n - 1).sub_(u[..., i].narrow(d, 0, n - 1))
        x.narrow(d, 1, n - 1).add_(u[..., i].narrow(d, 0, n - 1))
    return x


def _reference_tv_prox(y, lam, crit=1e-8, n_it_max=1000, tau=0.01, rho=1.99):
    """The reference's iteration as its source writes it (first call, no warm restart): one stopping
    test for the whole batch, ‖x_prev − x‖ / ‖x + 1e-12‖ < crit from the third iteration."""
    lam = torch.as_tensor(lam, dtype=y.dtype).reshape(-1, *([1] * (y.dim() - 1)))[..., None]
    sigma = 1 / tau / 2 ** (y.dim() - 1)
    x2, u2 = y.clone(), torch.zeros(*y.shape, y.dim() - 2, dtype=y.dtype)
    for it in range(n_it_max):
        x_prev = x2
        x = (x2 - tau * _div_ref(u2) + tau * y) / (1 + tau)
        u = u2 + sigma * _grad_ref(2 * x - x2)
        u = u / torch.clamp(u.norm(dim=-1, keepdim=True) / lam, min=1.0)
        x2, u2 = x2 + rho * (x - x2), u2 + rho * (u - u2)
        if it > 1 and (x_prev - x2).norm() / (x2.flatten() + 1e-12).norm() < crit:
            break
    return x2


def _objective(x, y, gamma):
    return 0.5 * (x - y).pow(2).flatten(1).sum(1) + gamma * TVPrior().fn(x)


def test_difference_operators_and_adjoint():
    for shape in [(2, 3, 7, 6), (2, 1, 4, 5, 6)]:
        x = torch.randn(*shape, dtype=D)
        v = torch.randn(*shape, len(shape) - 2, dtype=D)
        assert torch.equal(nabla(x), _grad_ref(x)) and torch.allclose(nabla_adjoint(v), _div_ref(v))
        assert abs(float((nabla(x) * v).sum() - (x * nabla_adjoint(v)).sum())) < 1e-12
    assert torch.equal(TVPrior.nabla(x), nabla(x)) and torch.equal(TVPrior.nabla_adjoint(v), nabla_adjoint(v))


UNCONVERGED_OK = pytest.mark.filterwarnings("ignore::unfolded.solvers.cg.ConvergenceWarning")


@UNCONVERGED_OK
@pytest.mark.parametrize("shape,gamma", [((2, 1, 12, 10), 0.1), ((2, 2, 9, 11), [0.05, 0.3]),
                                         ((1, 1, 5, 6, 7), 0.2)])
def test_prox_matches_the_reference_iteration(shape, gamma):
    y = torch.rand(*shape, dtype=D)
    g = torch.tensor(gamma, dtype=D) if isinstance(gamma, list) else gamma
    ours = TVPrior().prox(y, gamma=g)
    assert (ours - _reference_tv_prox(y, g)).abs().max() <= 1e-4
    loose = TVPrior(def_crit=1e-5).prox(y, gamma=g)  # stops earlier, per sample: still the same prox
    assert (loose - _reference_tv_prox(y, g, crit=1e-5)).abs().max() <= 1e-4


@UNCONVERGED_OK
def test_prox_minimises_its_objective():
    y = torch.rand(2, 1, 10, 10, dtype=D)
    x = TVPrior(def_crit=0.0, n_it_max=3000).prox(y, gamma=0.15)
    best = _objective(x, y, 0.15)
    for _ in range(50):
        other = x + 1e-3 * torch.randn_like(x)
        assert (_objective(other, y, 0.15) > best).all()
    assert (best <= _objective(_reference_tv_prox(y, 0.15), y, 0.15) + 1e-9).all()


def test_value_and_jacobian_of_a_closed_form_case():
    """A vertical step (0 | 1): every row is the 1-D problem, whose prox lowers the jump by γ/n on each side
    (n = 4 pixels per side); the derivative averages y over each flat side and ∂x/∂γ = ±1/n."""
    y = torch.zeros(1, 1, 6, 8, dtype=D)
    y[..., 4:] = 1.0
    y.requires_grad_(True)
    g = torch.tensor(0.2, dtype=D, requires_grad=True)
    x, info = tv_prox(y, g, def_crit=0.0, n_it_max=2000)
    left = torch.arange(8) < 4
    assert (x.detach() - torch.where(left, 0.05, 0.95)).abs().max() < 1e-7
    w = torch.zeros(1, 1, 6, 8, dtype=D)
    w[0, 0, 2, 1], w[0, 0, 5, 6] = 2.0, 1.0  # one pixel of each side
    gy, gg = torch.autograd.grad((w * x).sum(), (y, g))
    assert (gy[0, 0] - torch.where(left, 2 / 24, 1 / 24).expand(6, 8)).abs().max() < 1e-8
    assert abs(float(gg) - (2 * 0.25 - 0.25)) < 1e-8


def test_gradcheck_in_float64():
    y = torch.rand(2, 1, 4, 4, dtype=D, requires_grad=True)
    g = torch.tensor([0.05, 0.1], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, g: tv_prox(y, g, def_crit=0.0, n_it_max=200)[0], (y, g),
                                    eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_gradient_agrees_with_finite_differences():
    y = torch.rand(1, 1, 8, 8, dtype=D, requires_grad=True)
    g = torch.tensor(0.08, dtype=D, requires_grad=True)
    w = torch.randn(1, 1, 8, 8, dtype=D)
    loss = lambda y, g: (w * tv_prox(y, g, def_crit=0.0, n_it_max=500)[0]).sum()  # noqa: E731
    gy, gg = torch.autograd.grad(loss(y, g), (y, g))
    eps = 1e-6
    with torch.no_grad():
        d = torch.randn_like(y)
        fd_y = (loss(y + eps * d, g) - loss(y - eps * d, g)) / (2 * eps)
        fd_g = (loss(y, g + eps) - loss(y, g - eps)) / (2 * eps)
    assert abs(float(fd_y - (gy * d).sum())) <= 1e-7 * max(1.0, abs(float(fd_y)))
    assert abs(float(fd_g - gg)) <= 1e-7 * max(1.0, abs(float(fd_g)))


def test_checkpointed_gradient_equals_plain_autograd(monkeypatch):
    y = torch.rand(2, 1, 9, 9, dtype=D, requires_grad=True)
    g = torch.tensor([0.1, 0.2], dtype=D, requires_grad=True)
    w = torch.randn(2, 1, 9, 9, dtype=D)

    def grads():
        return torch.autograd.grad((w * tv_prox(y, g, def_crit=1e-6, n_it_max=200)[0]).sum(), (y, g))

    with_ckpt = grads()
    monkeypatch.setattr(tvmod, "checkpoint", lambda fn, *args, **kw: fn(*args))
    plain = grads()
    for a, b in zip(with_ckpt, plain):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_memory_grows_with_the_square_root_of_the_iterations():
    y = torch.rand(1, 1, 16, 16, dtype=D, requires_grad=True)
    n100, _ = saved_numel(lambda: tv_prox(y, 0.1, def_crit=0.0, n_it_max=100))
    n400, _ = saved_numel(lambda: tv_prox(y, 0.1, def_crit=0.0, n_it_max=400))
    assert n400 <= 2.2 * n100  # √4 = 2 (plain autograd: 4)
    assert n400 < 40 * 3 * y.numel()  # a few images per segment, not per iteration


def test_convergence_is_reported():
    y = torch.rand(2, 1, 12, 12, dtype=D)
    _, info = tv_prox(y, 0.1, def_crit=1e-8, n_it_max=20)
    assert not info.converged and info.iterations == 20 and info.rel_residual.shape == (2,)
    _, info = tv_prox(y, 0.1, def_crit=1e-3, n_it_max=1000)
    assert info.converged and 3 <= info.iterations < 1000 and (info.rel_residual < 1e-3).all()
    prior, log = TVPrior(n_it_max=20), SolverLog()

    def call():
        with record_solves(log):
            prior.prox(y, gamma=0.1)

    with pytest.warns(ConvergenceWarning, match=r"TV prox did not converge: relative change .* > def_crit 1\.0e-08 "
                                                r"after 20 iterations; raise n_it_max or def_crit"):
        call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per call site; the log counts every one
        call()
    assert log.summary()["tv_prox/unconverged"] == 2.0
    x, info = tv_prox(y, torch.tensor([0.0, 0.1], dtype=D), def_crit=1e-3)
    assert torch.equal(x[0], y[0]) and info.rel_residual[0] == 0 and info.converged  # γ = 0: the identity


def test_in_an_algorithm_the_solves_are_logged():
    y = torch.rand(1, 1, 8, 8, dtype=D)
    model = PGD(prior=TVPrior(def_crit=1e-4), stepsize=1.0, lambda_reg=0.1, max_iter=3)
    model(y, Denoising())
    assert model.solver_log.summary()["tv_prox/solves"] == 3.0


def test_value_and_subgradient():
    x = torch.rand(2, 1, 6, 7, dtype=D, requires_grad=True)
    value = TVPrior().fn(x)
    assert torch.allclose(value, _grad_ref(x).norm(dim=-1).flatten(1).sum(1))
    (auto,) = torch.autograd.grad(value.sum(), x)  # ∇x ≠ 0 everywhere here: TV is differentiable
    assert torch.allclose(TVPrior().grad(x.detach()), auto)
    assert torch.equal(TVPrior().grad(torch.ones(1, 1, 4, 4, dtype=D)), torch.zeros(1, 1, 4, 4, dtype=D))
    assert TVPrior()(x).shape == (2,)
