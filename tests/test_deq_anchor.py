"""DEQConfig(anchor_weight=μ): the fixed-point map with the μ-strongly convex data term f + μ/2‖x − x₀‖²
(x₀ the solve's start). Its prox against the dense argmin, the implicit gradients against the closed-form
fixed point (x₀ = Aᵀy depends on y and the kernel: those paths count too), and the point of it: on a
valid blur, where the plain map has Jacobian eigenvalues ≈ 1, the solves converge."""

import warnings

import torch
from torch import nn

from unfolded.optim import HQS, L2, DEQConfig, PnP
from unfolded.optim.data_fidelity import Anchored
from unfolded.physics import Blur
from unfolded.physics.blur import gaussian_blur

from .test_deq import _dense, _problem


def _rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def test_anchored_prox_and_gradient_are_those_of_the_strongly_convex_term():
    torch.manual_seed(0)
    physics = Blur(gaussian_blur(0.8).double(), padding="valid", max_iter=500, tol=1e-14)
    z, x0, x = (torch.rand(1, 1, 8, 8, dtype=torch.float64) for _ in range(3))
    y = physics.A(torch.rand_like(z))
    mu, gamma = 0.7, 1.3
    f = Anchored(L2(), mu, x0)
    A = _dense(physics.A, 64)
    eye = torch.eye(64, dtype=torch.float64)
    rhs = A.T @ y.flatten() + mu * x0.flatten() + z.flatten() / gamma
    argmin = torch.linalg.solve(A.T @ A + (mu + 1 / gamma) * eye, rhs)
    assert _rel(f.prox(z, y, physics, gamma=gamma).flatten(), argmin) <= 1e-10
    gradient = A.T @ (A @ x.flatten() - y.flatten()) + mu * (x - x0).flatten()
    assert torch.allclose(f.grad(x, y, physics).flatten(), gradient)
    value = 0.5 * (A @ x.flatten() - y.flatten()).pow(2).sum() + 0.5 * mu * (x - x0).pow(2).sum()
    assert torch.allclose(f.fn(x, y, physics), value[None])


def test_anchored_deq_gradients_match_the_closed_form_fixed_point():
    """GD with RED(W): x* solves (AᵀA + μI + λ(I − W)) x = Aᵀy + μx₀ with x₀ = Aᵀy."""
    mu = 0.4
    model, physics, k, x, y = _problem(anchor_weight=mu, tol_forward=1e-13, tol_backward=1e-13,
                                       max_iter_backward=2000, backward_solver="gmres")
    W = _dense(model.prior.denoiser, 64)
    A = _dense(lambda v: physics.A(v, filter=k), 64)
    lam, eye = model.lambda_reg[0], torch.eye(64, dtype=torch.float64)
    aty = A.T @ y.flatten(1).T
    x_star = torch.linalg.solve(A.T @ A + mu * eye + lam * (eye - W), aty + mu * aty).T.reshape(x.shape)
    wrt = [model.lambda_reg, model.prior.denoiser.weight, y, k]
    exact = torch.autograd.grad(0.5 * (x_star - x).pow(2).sum(), wrt)
    x_hat = model(y, physics)
    assert _rel(x_hat, x_star) <= 1e-10
    got = torch.autograd.grad(0.5 * (x_hat - x).pow(2).sum(), wrt)
    for g, e, name in zip(got, exact, ["lambda", "W", "y", "kernel"]):
        assert _rel(g, e) <= 1e-7, name
    # without the anchor the fixed point is another one: the option is not ignored
    plain, *_ = _problem(tol_forward=1e-13)
    assert _rel(plain(y, physics), x_star) > 1e-3


class Identity(nn.Module):
    """The untrained denoiser of the training configurations (DnCNN with a zero last layer)."""

    def forward(self, x, sigma=None):
        return x


def _untrained_solves(mu: float) -> tuple[dict, dict]:
    torch.manual_seed(0)
    physics = Blur(gaussian_blur(1.6), padding="valid", use_fft=True, max_iter=50, tol=1e-4)
    y = physics(torch.rand(2, 1, 48, 48))
    deq = DEQConfig(anderson_acceleration_forward=True, backward_solver="gmres", gmres_restart=50,
                    max_iter_forward=50, max_iter_backward=50, tol_forward=1e-3, tol_backward=1e-3, anchor_weight=mu)
    model = HQS(prior=PnP(Identity()), stepsize=1.0, unfold=True, trainable_params=["stepsize"], DEQ=deq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(y, physics).pow(2).mean().backward()
    return model.deq_stats["forward"], model.deq_stats["backward"]


def test_the_anchor_makes_the_valid_blur_map_converge():
    """HQS with the identity denoiser on the default valid blur (conf/physics/blur.yaml) and the solver
    settings of conf/deq/anderson.yaml: the map is the data prox, whose Jacobian (I + γAᵀA)⁻¹ has
    eigenvalues → 1 on the border and the frequencies the blur removes. Anchored with μ = 0.5, every
    eigenvalue is ≤ 1/(1+γμ) = 2/3."""
    plain_forward, plain_backward = _untrained_solves(0.0)
    forward, backward = _untrained_solves(0.5)
    assert forward["converged"] and backward["converged"]
    assert forward["iterations"] <= 6 and backward["iterations"] <= 8, (forward, backward)
    assert not plain_backward["converged"] and plain_backward["iterations"] == 50
    assert plain_forward["iterations"] >= 3 * forward["iterations"]
