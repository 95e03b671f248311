"""GD/PGD/HQS/ADMM: the SPEC examples, the iteration formulas, hyperparameters and bad inputs."""

import warnings

import pytest
import torch
from torch import nn

import unfolded as dinv
from unfolded.optim import ADMM, GD, HQS, L2, PGD, RED, PnP
from unfolded.physics import Blur, Denoising, Inpainting
from unfolded.physics.blur import gaussian_blur


class Shrink(nn.Module):
    """A tiny denoiser with a closed form: D(x, σ) = a·x (+ σ if used), learnable a."""

    def __init__(self, uses_sigma=True):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.8))
        self.uses_sigma = uses_sigma

    def forward(self, x, sigma=None):
        return self.a * x + (sigma if (self.uses_sigma and sigma is not None) else 0)


def test_spec_example_pgd_denoising():
    with pytest.warns(UserWarning, match="sigma_denoiser is trainable but DnCNN ignores sigma"):
        model = PGD(unfold=True, data_fidelity=dinv.optim.L2(), prior=dinv.optim.PnP(dinv.models.DnCNN()),
                    stepsize=1.0, sigma_denoiser=0.1, lambda_reg=1, max_iter=5,
                    trainable_params=["stepsize", "sigma_denoiser", "lambda_reg"])
    x = torch.randn(1, 3, 16, 16); physics = dinv.physics.Denoising(); y = physics(x); x_hat = model(y, physics)  # noqa: E702
    assert x_hat.shape == x.shape
    (x_hat - x).pow(2).mean().backward()
    for g in (model.stepsize.grad, model.prior.denoiser.in_conv.weight.grad):
        assert torch.isfinite(g).all() and g.abs().max() > 0


def test_spec_example_hqs_blur():
    with pytest.warns(UserWarning, match="sigma_denoiser"):
        model = HQS(unfold=True, data_fidelity=dinv.optim.L2(), prior=dinv.optim.PnP(dinv.models.DnCNN()),
                    stepsize=1.0, sigma_denoiser=1.0, trainable_params=["stepsize", "sigma_denoiser"])
    x = torch.randn(1, 3, 16, 16)
    physics = dinv.physics.Blur(filter=torch.ones(1, 1, 3, 3) / 9., implicit_backward_solver=True, max_iter=50)
    y = physics(x); x_hat = model(y, physics)  # noqa: E702
    assert model.max_iter == 100 and x_hat.shape == x.shape
    # An untrained Kaiming DnCNN expands its input (~1.35× per call), so 100 iterations grow the iterate
    # by ~1e13; a scale-free loss keeps float32 gradients finite.
    loss = (x_hat - x).pow(2).mean() / x_hat.detach().pow(2).mean()
    loss.backward()
    for g in (model.stepsize.grad, model.prior.denoiser.in_conv.weight.grad):
        assert torch.isfinite(g).all() and g.abs().max() > 0


def _manual(algo, y, physics, prior, K, gamma, lam, sigma, beta=1.0):
    f = L2()
    x = physics.A_adjoint(y)
    if algo == "ADMM":
        z = w = x
        for _ in range(K):
            x = physics.prox_l2(z - w, y, gamma)
            z = prior.prox(x + w, sigma, gamma=lam * gamma)
            w = w + beta * (x - z)
        return z
    for _ in range(K):
        if algo == "GD":
            new = x - gamma * (f.grad(x, y, physics) + lam * prior.grad(x, sigma))
        elif algo == "PGD":
            new = prior.prox(x - gamma * f.grad(x, y, physics), sigma, gamma=lam * gamma)
        else:
            new = prior.prox(physics.prox_l2(x, y, gamma), sigma, gamma=lam * gamma)
        x = beta * new + (1 - beta) * x
    return x


@pytest.mark.parametrize("algo", ["GD", "PGD", "HQS", "ADMM"])
def test_iterations_follow_the_formulas(algo, float64):
    cls = {"GD": GD, "PGD": PGD, "HQS": HQS, "ADMM": ADMM}[algo]
    prior = RED(Shrink()) if algo == "GD" else PnP(Shrink())
    beta = 0.7
    model = cls(prior=prior, stepsize=0.4, lambda_reg=0.3, sigma_denoiser=0.05, max_iter=4, beta=beta)
    physics = Blur(gaussian_blur(1.0).double(), padding="reflect", tol=1e-12, max_iter=300)
    y = physics(torch.rand(2, 1, 10, 10))
    expected = _manual(algo, y, physics, prior, 4, 0.4, 0.3, 0.05, beta)
    assert torch.allclose(model(y, physics), expected, atol=1e-10)


def test_per_iteration_values_are_used_in_order(float64):
    prior = PnP(Shrink())
    model = PGD(prior=prior, stepsize=[0.1, 0.2, 0.3], sigma_denoiser=[0.0, 0.01, 0.02], max_iter=3, unfold=True,
                trainable_params=["stepsize"])
    assert model.stepsize.shape == (3,) and isinstance(model.stepsize, nn.Parameter)
    physics = Denoising()
    y = torch.rand(1, 1, 6, 6)
    x = x0 = torch.zeros_like(y)  # from Aᵀy = y the first gradient step would be 0
    for g, s in [(0.1, 0.0), (0.2, 0.01), (0.3, 0.02)]:
        x = prior.prox(x - g * (x - y), s)
    assert torch.allclose(model(y, physics, init=x0), x)
    model(y, physics, init=x0).sum().backward()
    assert (model.stepsize.grad != 0).all()


def test_trainable_parameters_and_aliases():
    model = HQS(prior=PnP(Shrink()), unfold=True, max_iter=3, sigma_denoiser=0.1,
                trainable_params=["stepsize", "g_param", "lambda"])
    names = {n for n, _ in model.named_parameters()}
    assert {"stepsize", "sigma_denoiser", "lambda_reg"} <= names
    assert model.trainable_params == ["stepsize", "sigma_denoiser", "lambda_reg"]
    plain = HQS(prior=PnP(Shrink()), max_iter=3)
    assert {n for n, _ in plain.named_parameters()} == {"prior.denoiser.a"}
    none = HQS(prior=PnP(Shrink()), unfold=True, trainable_params=None, max_iter=3)
    assert none.trainable_params == [] and none(torch.rand(1, 1, 4, 4), Denoising()).shape == (1, 1, 4, 4)
    g_param_wins = HQS(prior=PnP(Shrink()), sigma_denoiser=0.1, g_param=0.3, max_iter=2)
    assert float(g_param_wins.sigma_denoiser) == pytest.approx(0.3)
    assert set(plain.hyperparameters()) == {"stepsize", "lambda_reg", "beta"}


def test_untrainable_parameter_warnings():
    with pytest.warns(UserWarning, match="lambda_reg is trainable but the PnP prox ignores"):
        HQS(prior=PnP(Shrink()), unfold=True, trainable_params=["lambda_reg"], max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GD(prior=RED(Shrink()), unfold=True, trainable_params=["lambda_reg", "sigma_denoiser"], sigma_denoiser=0.1,
           max_iter=2)
        HQS(prior=PnP(Shrink()), unfold=True, trainable_params=["sigma_denoiser"], sigma_denoiser=0.1, max_iter=2)


def test_learned_parameters_get_gradients(float64):
    model = GD(prior=RED(Shrink()), unfold=True, max_iter=3, sigma_denoiser=0.1, stepsize=0.5,
               trainable_params=["stepsize", "lambda_reg", "sigma_denoiser"])
    physics = Inpainting((1, 6, 6), mask=0.5)
    y = physics(torch.rand(2, 1, 6, 6))
    model(y, physics).pow(2).sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0


def test_float64_model_stays_float64_and_to_moves_everything():
    model = HQS(prior=PnP(dinv.models.DnCNN(1, 1, depth=3, nf=4)), unfold=True, trainable_params=["stepsize"],
                max_iter=2).double()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(b.dtype == torch.float64 for b in model.buffers())
    physics = Blur(gaussian_blur(1.0)).double()
    out = model(physics(torch.rand(1, 1, 12, 12, dtype=torch.float64)), physics)
    assert out.dtype == torch.float64
    model.to("meta")
    assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])


def test_compute_metrics_and_iterates():
    model = PGD(prior=PnP(Shrink(uses_sigma=False)), stepsize=0.5, max_iter=4)
    physics = Denoising()
    x = torch.rand(3, 1, 8, 8)
    y = physics(x)
    out, metrics = model(y, physics, x_gt=x, compute_metrics=True)
    assert metrics["psnr"].shape == (4, 3) and metrics["residual"].shape == (3, 3)
    iterates = list(model.iterates(y, physics))
    assert len(iterates) == 4 and torch.equal(iterates[-1], out)
    mse = (iterates[1].clamp(0, 1) - x).pow(2).flatten(1).mean(1)
    assert torch.allclose(metrics["psnr"][1], 10 * torch.log10(1 / mse))


def test_init_overrides_the_start_and_early_stop():
    model = PGD(prior=PnP(Shrink(uses_sigma=False)), stepsize=1.0, max_iter=50, early_stop=True, thres_conv=1e-3)
    y = torch.rand(1, 1, 8, 8)
    out, metrics = model(y, Denoising(), init=torch.zeros_like(y), compute_metrics=True)
    assert metrics["residual"].shape[0] < 49  # stopped early
    first = next(model.iterates(y, Denoising(), init=torch.zeros_like(y)))
    assert torch.allclose(first, 0.8 * y)  # from init 0: u = 0 − 1·(0 − y) = y, D(y) = 0.8 y


# --- bad inputs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(trainable_params=["step"]), ValueError, "unknown trainable parameter 'step'; valid names: beta, g_param"),
        (dict(stepsize=[1.0, 2.0]), ValueError, r"stepsize has 2 values; give 1 .* or max_iter=3"),
        (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1"),
        (dict(max_iter=2.5), ValueError, "max_iter must be an integer >= 1"),
        (dict(stepsize=-1.0), ValueError, "stepsize must be > 0, got -1.0"),
        (dict(stepsize=[1.0, 0.0, 1.0]), ValueError, "stepsize must be > 0, got 0.0"),
        (dict(lambda_reg=-0.1), ValueError, "lambda_reg must be >= 0"),
        (dict(prior=Shrink()), TypeError, "prior must be a unfolded.optim prior such as PnP"),
        (dict(data_fidelity=Shrink()), TypeError, "data_fidelity must be a unfolded.optim data-fidelity"),
        (dict(prior=RED(Shrink())), ValueError, "needs a prior with a prox"),
        (dict(trainable_params=["sigma_denoiser"], unfold=True), ValueError,
         "sigma_denoiser is trainable but has no value"),
        (dict(crit_conv="cost"), NotImplementedError, "crit_conv='cost' is not supported.*use crit_conv='residual'"),
        (dict(crit_conv="energy"), ValueError, "crit_conv must be 'residual'"),
        (dict(DEQ="yes"), TypeError, "DEQ must be None, a bool or a DEQConfig"),
    ],
)
def test_bad_algorithm_arguments(kwargs, error, match):
    args = dict(prior=PnP(Shrink()), max_iter=3) | kwargs
    with pytest.raises(error, match=match):
        PGD(**args)


def test_deq_on_admm_is_refused():
    with pytest.raises(ValueError, match="ADMM cannot run as a deep equilibrium model"):
        ADMM(prior=PnP(Shrink()), DEQ=True, max_iter=3)


def test_gd_needs_a_gradient_prior():
    with pytest.raises(ValueError, match="GD needs a prior with a gradient"):
        GD(prior=PnP(Shrink()))


def test_channel_mismatch_and_wrong_physics():
    model = HQS(prior=PnP(dinv.models.DnCNN(3, 3, depth=3, nf=4)), max_iter=2)
    with pytest.raises(ValueError, match=r"DnCNN expects images of shape \(B, 3, H, W\), got \(1, 1, 8, 8\)"):
        model(torch.rand(1, 1, 8, 8), Denoising())
    with pytest.raises(TypeError, match="physics must be a unfolded.physics operator"):
        model(torch.rand(1, 3, 8, 8), lambda x: x)
    with pytest.raises(ValueError, match="y has shape"):
        model(torch.rand(1, 3, 8, 8), Blur(gaussian_blur(1.0)), init=torch.rand(1, 3, 8, 8))
