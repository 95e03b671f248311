"""DEQ backward modes (every solver, phantom), Jacobian regularisation, forward budget, and the settings
that combine badly. The problem is test_deq's GD on a quadratic, whose fixed point has a closed form."""

import warnings

import pytest
import torch

from unfolded.optim import GD, HQS, PGD, RED, AndersonAccelerationConfig, DEQConfig, PnP
from unfolded.optim.deq import jacobian_frobenius
from unfolded.solvers import BACKWARD_SOLVERS

from .test_deq import LinearDenoiser, _closed_form_grads, _dense, _deq_grads, _problem


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver", BACKWARD_SOLVERS)
def test_every_backward_solver_gives_the_implicit_function_gradient(solver):
    for settings, bound in [({}, 1e-3), (dict(tol_forward=1e-13, tol_backward=1e-12, max_iter_backward=3000), 1e-7)]:
        model, physics, k, x, y = _problem(backward_solver=solver, **settings)
        exact = _closed_form_grads(model, physics, k, x, y)
        got = _deq_grads(model, physics, k, x, y)
        for g, e in zip(got[:4], exact):
            assert _rel(g, e) <= bound, (solver, settings)
        back = model.deq_stats["backward"]
        assert back["solver"] == solver and back["converged"] and back["residual"] <= model.DEQ.tol_backward


@pytest.mark.parametrize("solver", BACKWARD_SOLVERS)
def test_deq_map_passes_gradcheck_in_float64(solver):
    """The whole map (y, λ) ↦ x*: finite differences of converged forward solves against the implicit
    backward."""
    model, physics, k, x, y = _problem(backward_solver=solver, anderson_acceleration_forward=True,
                                       tol_forward=1e-14, tol_backward=1e-12, max_iter_backward=3000)
    y = y[:1].detach().requires_grad_()

    def f(y_, lam):
        model.lambda_reg.data = lam.detach().reshape(1)  # the parameter itself carries the gradient
        return model(y_, physics)

    lam = model.lambda_reg.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y_: f(y_, lam), (y,), atol=1e-6, rtol=1e-4)


def test_gmres_needs_far_fewer_vector_jacobian_products_than_fixed_point():
    iters = {}
    for solver in BACKWARD_SOLVERS:
        model, physics, k, x, y = _problem(backward_solver=solver, tol_backward=1e-8, max_iter_backward=2000)
        _deq_grads(model, physics, k, x, y)
        assert model.deq_stats["backward"]["converged"], solver
        iters[solver] = model.deq_stats["backward"]["iterations"]
    assert iters["gmres"] < iters["fixed_point"] / 4 and iters["broyden"] < iters["fixed_point"] / 2, iters


def test_phantom_gradient_approximates_and_with_many_steps_equals_the_implicit_one():
    model, physics, k, x, y = _problem()
    exact = _closed_form_grads(model, physics, k, x, y)
    model, physics, k, x, y = _problem(backward="phantom", phantom_steps=5, phantom_tau=0.5)
    got = _deq_grads(model, physics, k, x, y)
    cos = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in got[:4]]),
                                                torch.cat([e.flatten() for e in exact]), 0)
    assert 0.5 < float(cos) < 0.999999  # an approximation: close in direction, not equal
    assert model.deq_stats["backward"] == {"solver": "phantom", "iterations": 5, "residual": model.deq_stats[
        "backward"]["residual"], "residuals": [], "converged": None}
    # Its gradient is the truncated series Σ_{i<k} (I − τ(I − J))ⁱ τ: with many steps, the implicit gradient.
    model, physics, k, x, y = _problem(backward="phantom", phantom_steps=250, phantom_tau=1.0, tol_forward=1e-13)
    got = _deq_grads(model, physics, k, x, y)
    for g, e in zip(got[:4], exact):
        assert _rel(g, e) <= 1e-3


def test_jacobian_free_statistics_say_no_solve():
    model, physics, k, x, y = _problem(jacobian_free=True)
    _deq_grads(model, physics, k, x, y)
    assert model.deq_stats["backward"]["solver"] == "jacobian_free" and model.deq_stats["backward"]["converged"] is None
    assert not [r for r in model.solver_log.records if r[0] == "deq_backward"]  # nothing counted as a solve


def _dense_jacobian_of_T(model, physics, k, y):
    """T(x) = x − γ(Aᵀ(Ax − y) + λ(I − W)x) is affine: J = I − γ(AᵀA + λ(I − W))."""
    W = _dense(model.prior.denoiser, 64)
    A = _dense(lambda v: physics.A(v, filter=k), 64)
    eye = torch.eye(64, dtype=torch.float64)
    return eye - model.stepsize[0] * (A.T @ A + model.lambda_reg[0] * (eye - W))


def test_jacobian_regulariser_is_hutchinson_and_differentiable():
    model, physics, k, x, y = _problem(jacobian_reg=0.1)
    J = _dense_jacobian_of_T(model, physics, k, y[:1])
    exact = J.pow(2).sum() / 64
    # with the probes √d·eᵢ (E[εεᵀ] = I), one per sample, the estimator averages to ‖J‖²_F / d exactly
    xs = torch.rand(64, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    fx = model.fixed_point_map(xs, y[:1].expand(64, -1, -1, -1), physics)
    probes = 8.0 * torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    T = lambda v: model.fixed_point_map(v, y[:1].expand(64, -1, -1, -1), physics)  # noqa: E731
    est = jacobian_frobenius(T, xs, fx, probes).mean()
    assert abs(float((est - exact).detach())) <= 1e-8 * float(exact.detach())
    params = [model.lambda_reg, model.stepsize, model.prior.denoiser.weight]
    assert all(_rel(a, b) < 1e-8 for a, b in zip(torch.autograd.grad(est, params), torch.autograd.grad(exact, params)))
    # Gaussian probes: unbiased (mean of many single-probe estimates within 3 standard errors)
    gauss = torch.stack([jacobian_frobenius(T, xs, fx).mean().detach() for _ in range(20)])
    assert abs(float(gauss.mean() - exact.detach())) < 3 * float(gauss.std()) / 20**0.5 + 1e-12


def test_model_exposes_the_jacobian_loss_for_the_trainer():
    model, physics, k, x, y = _problem(jacobian_reg=0.1)
    x_hat = model(y, physics)
    jl = model.deq_jacobian_loss
    assert isinstance(jl, torch.Tensor) and jl.dim() == 0 and jl.requires_grad
    assert abs(float(jl) - 0.1 * model.deq_stats["jacobian_frobenius"]) < 1e-12
    (g,) = torch.autograd.grad((x_hat - x).pow(2).sum() + jl, [model.prior.denoiser.weight])
    assert torch.isfinite(g).all()
    with torch.no_grad():
        model(y, physics)
    assert model.deq_jacobian_loss is None and "jacobian_frobenius" not in model.deq_stats
    model, physics, k, x, y = _problem()
    model(y, physics)
    assert model.deq_jacobian_loss is None
    # phantom mode: the regulariser is evaluated at x* too
    model, physics, k, x, y = _problem(jacobian_reg=0.1, backward="phantom")
    model(y, physics)
    assert model.deq_jacobian_loss.requires_grad


def test_jacobian_regulariser_makes_the_map_more_contractive_when_trained():
    model, physics, k, x, y = _problem(jacobian_reg=1.0, tol_forward=1e-4)
    opt = torch.optim.Adam(model.prior.parameters(), lr=2e-2)
    start = float(_dense_jacobian_of_T(model, physics, k, y).pow(2).sum().detach())
    for _ in range(10):
        opt.zero_grad()
        model(y, physics)
        model.deq_jacobian_loss.backward()
        opt.step()
    assert float(_dense_jacobian_of_T(model, physics, k, y).pow(2).sum().detach()) < 0.9 * start


def test_forward_budget_and_forward_solvers():
    model, physics, k, x, y = _problem(max_iter_forward=7, tol_forward=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(y, physics)
    assert model.deq_stats["forward"]["iterations"] == 7 and model.max_iter == 500
    model, physics, k, x, y = _problem(tol_forward=1e-30)
    model.max_iter = 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(y, physics)
    assert model.deq_stats["forward"]["iterations"] == 60  # None: the algorithm's max_iter (SPEC meaning)
    iters = {}
    for solver in ("fixed_point", "anderson", "broyden"):
        model, physics, k, x, y = _problem(forward_solver=solver, tol_forward=1e-10)
        model(y, physics)
        assert model.deq_stats["forward"]["converged"] and model.deq_stats["forward"]["solver"] == solver
        iters[solver] = model.deq_stats["forward"]["iterations"]
    assert iters["broyden"] < iters["fixed_point"] / 2 and iters["anderson"] < iters["fixed_point"] / 2


def test_deq_makes_the_algorithm_trainable_even_with_unfold_false():
    """As the reference (parameters when `unfold or DEQ`): a DEQ's listed hyperparameters are trained."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = HQS(prior=PnP(LinearDenoiser()), unfold=False, DEQ=DEQConfig(), stepsize=0.5,
                    trainable_params=["stepsize"]).double()
    assert isinstance(model.stepsize, torch.nn.Parameter) and not model.unfold
    physics = _problem()[1]
    y = physics(torch.rand(1, 1, 8, 8, dtype=torch.float64))
    model(y, physics).sum().backward()
    assert model.stepsize.grad is not None and model.stepsize.grad.abs() > 0
    with pytest.warns(UserWarning, match="ignored because unfold=False"):
        plain = HQS(prior=PnP(LinearDenoiser()), unfold=False, stepsize=0.5, trainable_params=["stepsize"])
    assert not isinstance(plain.stepsize, torch.nn.Parameter)


@pytest.mark.parametrize("kwargs,message", [
    (dict(backward_solver="cg"), "backward_solver must be one of 'fixed_point', 'anderson', 'broyden', 'gmres'"),
    (dict(forward_solver="gmres"), "forward_solver must be one of 'fixed_point', 'anderson', 'broyden', got 'gmres'"),
    (dict(backward="neumann"), "backward must be one of 'implicit', 'phantom'"),
    (dict(anderson_acceleration_backward=True, backward_solver="gmres"), "anderson_acceleration_backward=True "
                                                                         "contradicts backward_solver='gmres'"),
    (dict(anderson_acceleration_forward=True, forward_solver="broyden"), "contradicts forward_solver='broyden'"),
    (dict(jacobian_free=True, backward="phantom"), "two different gradients"),
    (dict(backward="phantom", backward_solver="gmres"), "backward_solver set, but backward='phantom' solves no"),
    (dict(jacobian_free=True, anderson_acceleration_backward=True), "jacobian_free=True solves no backward"),
    (dict(phantom_tau=0.0), "phantom_tau must be in \\(0, 1\\]"),
    (dict(phantom_steps=0), "phantom_steps must be an integer >= 1"),
    (dict(max_iter_forward=0), "max_iter_forward must be an integer >= 1"),
    (dict(gmres_restart=True), "gmres_restart must be an integer >= 1"),
    (dict(jacobian_reg=-1.0), "jacobian_reg must be >= 0"),
    (dict(anchor_weight=-0.5), "anchor_weight must be >= 0"),
])
def test_bad_deq_settings_raise_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DEQConfig(**kwargs)


def test_anderson_argument_must_agree_with_the_deq_forward():
    with pytest.raises(ValueError, match="anderson_acceleration contradicts DEQConfig\\(forward_solver='broyden'\\)"):
        PGD(prior=PnP(LinearDenoiser()), DEQ=DEQConfig(forward_solver="broyden"), anderson_acceleration=True)
    with pytest.raises(ValueError, match="full_backprop=True needs the iterations differentiated by autograd"):
        GD(prior=RED(LinearDenoiser()), DEQ=True,
           anderson_acceleration=AndersonAccelerationConfig(full_backprop=True))
    GD(prior=RED(LinearDenoiser()), anderson_acceleration=AndersonAccelerationConfig(full_backprop=True))


def test_jacobian_regulariser_through_the_implicit_prox():
    """HQS's prox is a once-differentiable Function: the regulariser must need only one backward."""
    import unfolded as dinv
    from unfolded.physics import Blur
    from unfolded.physics.blur import gaussian_blur

    model = HQS(prior=PnP(dinv.models.DnCNN(1, 1, depth=3, nf=4)), unfold=True, trainable_params=["stepsize"],
                DEQ=DEQConfig(jacobian_reg=1.0, max_iter_forward=5, max_iter_backward=3, backward_solver="gmres"))
    physics = Blur(gaussian_blur(1.0), padding="valid")
    y = physics(torch.rand(2, 1, 16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_hat = model(y, physics)
        (x_hat.pow(2).mean() + model.deq_jacobian_loss).backward()
    assert model.stepsize.grad is not None and all(p.grad is not None for p in model.prior.parameters())
    assert model.deq_stats["backward"]["solver"] == "gmres"


def test_training_module_adds_the_jacobian_term_to_its_loss():
    """DEQConfig(jacobian_reg=w) takes effect in training: UnfoldedModule's loss is the image loss plus the
    model's w·‖J‖²_F/d (the same batch, noise and weights without the term give the image loss alone)."""
    from unfolded.models import DnCNN
    from unfolded.physics import Blur
    from unfolded.physics.blur import gaussian_blur
    from unfolded.training.module import UnfoldedModule

    physics = Blur(gaussian_blur(1.0), padding="valid")
    batch = {"image": torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0)), "index": torch.arange(2)}
    losses = {}
    for w in (0.0, 0.5):
        torch.manual_seed(0)
        model = HQS(prior=PnP(DnCNN(1, 1, depth=3, nf=4, last_layer_init="zero")), max_iter=5,
                    trainable_params=["stepsize"], DEQ=DEQConfig(jacobian_reg=w, max_iter_forward=30, tol_forward=1e-3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            losses[w] = float(UnfoldedModule(model, physics, init="adjoint").training_step(batch, 0))
    term = 0.5 * model.deq_stats["jacobian_frobenius"]
    assert term > 1e-3 and float(model.deq_jacobian_loss) == pytest.approx(term, rel=1e-6)
    assert losses[0.5] == pytest.approx(losses[0.0] + term, rel=1e-5)


def test_deq_configs_carry_their_own_forward_budget_and_the_spec_defaults_stay():
    """conf/deq/*.yaml do not inherit the algorithm's max_iter (K=5 unrolled iterations) as their forward
    budget; DEQConfig given directly keeps the SPEC defaults (forward budget = max_iter, tolerances 1e-5)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    for path in sorted((Path(__file__).parents[1] / "conf" / "deq").glob("*.yaml")):
        settings = OmegaConf.to_container(OmegaConf.load(path))
        if path.stem == "off":
            assert "_target_" not in settings
            continue
        settings.pop("_target_")
        cfg = DEQConfig(**settings)
        assert cfg.max_iter_forward is not None and cfg.max_iter_forward >= 20, path.name
        assert 0 < cfg.tol_forward <= 1e-3 and 0 < cfg.tol_backward <= 1e-3, path.name
    spec = DEQConfig()
    assert (spec.max_iter_forward, spec.max_iter_backward, spec.tol_forward, spec.tol_backward, spec.jacobian_reg,
            spec.anchor_weight, spec.backward_method(), spec.forward_method()) == (
        None, 50, 1e-5, 1e-5, 0.0, 0.0, "fixed_point", "fixed_point")
    model = HQS(prior=PnP(LinearDenoiser()), max_iter=7, DEQ=DEQConfig(tol_forward=0.0)).double()
    y = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    from unfolded.physics import Denoising

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(y, Denoising())
    assert model.deq_stats["forward"]["iterations"] == 7  # None: the algorithm's max_iter
