"""Deep equilibrium (SPEC §6): implicit gradients against the closed-form fixed point, Anderson, stats."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unfolded as dinv
from unfolded.optim import GD, HQS, PGD, RED, AndersonAccelerationConfig, DEQConfig, PnP
from unfolded.physics import Blur
from unfolded.physics.blur import gaussian_blur
from unfolded.solvers import ConvergenceWarning

from .helpers import saved_numel


class LinearDenoiser(nn.Module):
    """D(x) = W x, a learnable circular 3×3 convolution (so ∇g = (I − W)x is linear)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(0.08 * torch.randn(1, 1, 3, 3, dtype=torch.float64))

    def forward(self, x, sigma=None):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), self.weight)


def _problem(**deq):
    torch.manual_seed(0)
    k = gaussian_blur(0.8).double().requires_grad_()
    physics = Blur(k, padding="valid")
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y = (physics.A(x) + 0.01 * torch.randn_like(physics.A(x))).detach().requires_grad_()
    model = GD(prior=RED(LinearDenoiser()), stepsize=0.6, lambda_reg=0.5, max_iter=500, unfold=True,
               trainable_params=["stepsize", "lambda_reg"], DEQ=DEQConfig(**deq)).double()
    return model, physics, k, x, y


def _dense(op, n):
    return torch.stack([op(e.reshape(1, 1, 8, 8)).flatten() for e in torch.eye(n, dtype=torch.float64)], 1)


def _closed_form_grads(model, physics, k, x, y):
    """x* = (AᵀA + λ(I − W))⁻¹ Aᵀy, differentiated by autograd through the dense solve."""
    W = _dense(model.prior.denoiser, 64)
    A = _dense(lambda v: physics.A(v, filter=k), 64)
    lam = model.lambda_reg[0]
    M = A.T @ A + lam * (torch.eye(64, dtype=torch.float64) - W)
    x_star = torch.linalg.solve(M, A.T @ y.flatten(1).T).T.reshape(x.shape)
    loss = 0.5 * (x_star - x).pow(2).sum()
    return torch.autograd.grad(loss, [model.lambda_reg, model.prior.denoiser.weight, y, k])


def _deq_grads(model, physics, k, x, y):
    x_hat = model(y, physics)
    loss = 0.5 * (x_hat - x).pow(2).sum()
    return torch.autograd.grad(loss, [model.lambda_reg, model.prior.denoiser.weight, y, k, model.stepsize])


@pytest.mark.parametrize("settings,bound", [({}, 1e-3), (dict(tol_forward=1e-13, tol_backward=1e-13,
                                                              max_iter_backward=2000), 1e-6)])
def test_deq_gradients_match_the_implicit_function_theorem(settings, bound):
    model, physics, k, x, y = _problem(**settings)
    exact = _closed_form_grads(model, physics, k, x, y)
    got = _deq_grads(model, physics, k, x, y)
    for g, e in zip(got[:4], exact):
        assert (g - e).norm() / e.norm() <= bound
    # The fixed point does not depend on the step size: its gradient vanishes.
    assert abs(float(got[4])) <= bound * float(exact[0].abs())
    stats = model.deq_stats
    assert stats["forward"]["converged"] and stats["backward"]["converged"]
    assert stats["forward"]["iterations"] > 1 and len(stats["backward"]["residuals"]) == stats["backward"]["iterations"]


def test_anderson_converges_in_fewer_iterations_forward_and_backward():
    counts = {}
    for name, anderson in [("plain", False), ("anderson", True)]:
        model, physics, k, x, y = _problem(anderson_acceleration_forward=anderson,
                                           anderson_acceleration_backward=anderson, tol_forward=1e-8,
                                           tol_backward=1e-8, max_iter_backward=500)
        _deq_grads(model, physics, k, x, y)
        s = model.deq_stats
        assert s["forward"]["converged"] and s["backward"]["converged"], name
        counts[name] = (s["forward"]["iterations"], s["backward"]["iterations"])
    assert counts["anderson"][0] < counts["plain"][0] / 2
    assert counts["anderson"][1] < counts["plain"][1] / 2


def test_anderson_acceleration_argument_aliases():
    cfg = DEQConfig(anderson_acceleration_backward=True, beta_backward=0.5, eps_backward=1e-3)
    assert cfg.beta_anderson_acc_backward == 0.5 and cfg.eps_anderson_acc_backward == 1e-3
    model = PGD(prior=PnP(LinearDenoiser()), DEQ=True, max_iter=10,
                anderson_acceleration=AndersonAccelerationConfig(history_size=3))
    assert model.DEQ == DEQConfig() and model.anderson.history_size == 3
    assert DEQConfig().max_iter_backward == 50 and DEQConfig().history_size_forward == 5
    assert DEQConfig().eps_anderson_acc_forward == 1e-4 and DEQConfig().beta_anderson_acc_backward == 1.0


def test_jacobian_free_uses_the_incoming_gradient():
    model, physics, k, x, y = _problem(jacobian_free=True)
    x_hat = model(y, physics)
    (g,) = torch.autograd.grad(0.5 * (x_hat - x).pow(2).sum(), [y])
    # v = u, so ∂L/∂y = vᵀ ∂T/∂y = γ A u with u = x* − x
    expected = model.stepsize * physics.A(x_hat.detach() - x)
    assert torch.allclose(g, expected)


def test_unconverged_solves_warn_and_show_in_stats():
    model, physics, k, x, y = _problem(tol_forward=1e-14, max_iter_backward=3, tol_backward=1e-14)
    model.max_iter = 4
    with pytest.warns(ConvergenceWarning, match="DEQ forward solve did not converge"):
        x_hat = model(y, physics)
    with pytest.warns(ConvergenceWarning, match="DEQ backward solve did not converge"):
        x_hat.sum().backward()
    assert not model.deq_stats["forward"]["converged"] and model.deq_stats["forward"]["iterations"] == 4
    assert not model.deq_stats["backward"]["converged"] and model.deq_stats["backward"]["iterations"] == 3
    logged = model.solver_log.summary()  # what the training module logs
    assert logged["deq_forward/unconverged"] == 1 and logged["deq_backward/unconverged"] == 1
    assert logged["deq_forward/iters_mean"] == 4 and logged["deq_backward/max_rel_residual"] > 1e-14


def test_deq_hqs_with_dncnn_reaches_every_parameter_with_flat_memory():
    sizes = []
    for max_iter in (3, 30):
        torch.manual_seed(0)
        net = dinv.models.DnCNN(1, 1, depth=3, nf=4)
        model = HQS(prior=PnP(net), max_iter=max_iter, unfold=True, stepsize=0.5,
                    trainable_params=["stepsize"], DEQ=DEQConfig(anderson_acceleration_forward=True))
        physics = Blur(gaussian_blur(1.0), padding="valid")
        y = physics(torch.rand(2, 1, 16, 16))
        size, _ = saved_numel(lambda: model(y, physics).pow(2).mean().backward())  # noqa: B023
        sizes.append(size)
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().max() > 0, name
    assert sizes[0] == sizes[1]


def test_deq_refuses_per_iteration_values():
    with pytest.raises(ValueError, match="per-iteration values of \\['stepsize'\\] make no sense for a fixed point"):
        HQS(prior=PnP(LinearDenoiser()), stepsize=[1.0, 0.5], max_iter=2, DEQ=True)
    with pytest.raises(ValueError, match="max_iter_backward must be an integer >= 1"):
        DEQConfig(max_iter_backward=0)
    with pytest.raises(ValueError, match="Anderson beta must be in"):
        DEQConfig(anderson_acceleration_forward=True, beta_anderson_acc_forward=2.0)


def test_anderson_survives_a_sample_that_is_already_a_fixed_point():
    """One all-zero measurement (a zero residual) must not turn the whole batch into NaN."""
    model = PGD(prior=PnP(LinearDenoiser()), stepsize=0.5, max_iter=6, unfold=True, trainable_params=["stepsize"],
                anderson_acceleration=True).double()
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y[0] = 0
    x_hat = model(y, dinv.physics.Denoising())
    assert torch.isfinite(x_hat).all() and torch.equal(x_hat[0], torch.zeros_like(x_hat[0]))
    x_hat.sum().backward()
    assert torch.isfinite(model.stepsize.grad).all()
    # DEQ backward where one sample's incoming gradient is zero
    model, physics, k, x, y = _problem(anderson_acceleration_backward=True)
    (g,) = torch.autograd.grad(model(y, physics)[1].sum(), [model.lambda_reg])
    assert torch.isfinite(g).all() and model.deq_stats["backward"]["converged"]


def test_anderson_without_deq_refuses_per_iteration_values():
    with pytest.raises(ValueError, match="per-iteration values of \\['stepsize'\\].*Anderson"):
        PGD(prior=PnP(LinearDenoiser()), stepsize=[0.1, 0.5, 0.9], max_iter=3, anderson_acceleration=True)
