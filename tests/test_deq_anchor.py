"""DEQConfig(anchor_weight=μ): the fixed-point map with the μ-strongly convex data term f + μ/2‖x − x₀‖²
(x₀ the solve's start). Its prox against the dense argmin, the implicit gradients against the closed-form
fixed point (x₀ = Aᵀy depends on y and the kernel: those paths count too), and the point of it: on a
valid blur, where the plain map has Jacobian eigenvalues ≈ 1, the solves converge."""

import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from unfolded.optim import HQS, L2, DEQConfig, PnP
from unfolded.optim.data_fidelity import Anchored
from unfolded.physics import Blur
from unfolded.physics.blur import gaussian_blur
from unfolded.solvers import BACKWARD_SOLVERS

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


@pytest.mark.parametrize("solver", BACKWARD_SOLVERS)
def test_anchored_deq_gradients_match_the_closed_form_fixed_point(solver):
    """GD with RED(W): x* solves (AᵀA + μI + λ(I − W)) x = Aᵀy + μx₀ with x₀ = Aᵀy."""
    mu = 0.4
    model, physics, k, x, y = _problem(anchor_weight=mu, tol_forward=1e-13, tol_backward=1e-12,
                                       max_iter_backward=3000, backward_solver=solver)
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
        assert _rel(g, e) <= 1e-9, name
    # without the anchor the fixed point is another one: the option is not ignored
    plain, *_ = _problem(tol_forward=1e-13)
    assert _rel(plain(y, physics), x_star) > 1e-3


class Identity(nn.Module):
    """The untrained denoiser of the training configurations (DnCNN with a zero last layer)."""

    def forward(self, x, sigma=None):
        return x


def _config_settings(name: str, **change) -> dict:
    settings = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "conf" / "deq" / f"{name}.yaml"))
    settings.pop("_target_")
    return settings | change


def _untrained_solves(settings: dict) -> tuple[dict, dict]:
    """HQS with the identity denoiser on conf/physics/blur.yaml's valid blur, one training-like step."""
    torch.manual_seed(0)
    physics = Blur(gaussian_blur(1.6), padding="valid", use_fft=True, max_iter=50, tol=1e-4)
    y = physics(torch.rand(2, 1, 48, 48))
    model = HQS(prior=PnP(Identity()), stepsize=1.0, unfold=True, trainable_params=["stepsize"],
                DEQ=DEQConfig(**settings))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(y, physics).pow(2).mean().backward()
    return model.deq_stats["forward"], model.deq_stats["backward"]


@pytest.mark.parametrize("name", ["anderson", "fixed_point"])
def test_the_deq_configs_converge_on_the_default_problem_because_of_the_anchor(name):
    """The map is then the data prox, whose Jacobian (I + γAᵀA)⁻¹ has eigenvalues → 1 on the border and
    the frequencies the blur removes; anchored, every eigenvalue is ≤ 1/(1+γμ)."""
    settings = _config_settings(name)
    assert settings["anchor_weight"] > 0
    forward, backward = _untrained_solves(settings)
    assert forward["converged"] and backward["converged"], (forward, backward)
    plain_forward, plain_backward = _untrained_solves(settings | dict(anchor_weight=0.0))
    assert not plain_backward["converged"] and plain_backward["iterations"] == settings["max_iter_backward"]
    assert plain_forward["iterations"] >= 3 * forward["iterations"]
    assert backward["iterations"] <= settings["max_iter_backward"] / 5


def test_default_deq_training_converges_and_results_json_counts_its_solves(tmp_path, capsys):
    """`train.py algo=hqs physics=blur deq=anderson`, a few steps over two validations: every training solve
    reached its tolerance, and results.json (and the line after the results table) says so per kind."""
    import json

    from unfolded.training.config import compose
    from unfolded.training.pipeline import run

    cfg = compose(["algo=hqs", "physics=blur", "deq=anderson", "debug=fast", "trainer.fast_dev_run=false",
                   "trainer.max_steps=4", "trainer.val_check_interval=2", "callbacks.rich_progress_bar=null",
                   "trainer.enable_model_summary=false"], tmp_path)
    run(cfg)
    solves = json.loads((tmp_path / "results.json").read_text())["training_solves"]
    for kind in ("deq_forward", "deq_backward"):
        assert solves[kind]["solves"] == 4 and solves[kind]["converged"] == 4, solves
        assert 1 <= solves[kind]["iterations_mean"] <= solves[kind]["iterations_max"] <= 10, solves
    assert solves["deq_forward"]["worst_residual"] <= cfg.algo.DEQ.tol_forward
    assert "training solves that reached their tolerance: " in capsys.readouterr().out


def test_run_totals_add_up_the_epochs():
    from unfolded.solvers import SolverLog
    from unfolded.training.stats import SolverStats

    stats, model = SolverStats(), type("Model", (), {"solver_log": SolverLog()})()
    for epoch in ([(3, 1e-4, True), (7, 2e-3, False)], [(5, 5e-4, True)]):
        for iterations, residual, converged in epoch:
            model.solver_log.add("deq_forward", iterations, residual, converged)
        stats.harvest(model)
        stats.compute_and_reset()
    assert stats.run_totals() == {"deq_forward": {"solves": 3, "converged": 2, "iterations_mean": 5.0,
                                                  "iterations_max": 7, "worst_residual": 2e-3}}
