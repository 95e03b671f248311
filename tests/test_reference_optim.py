"""The reference's algorithm and model API beyond the seed examples (issue #17): L2's value, params_algo,
per-iteration priors, g_first, early stopping, custom_init / get_output, exact hyperparameters, and the
refused options; PDNet blocks' dim, VarNet's mode names."""

import pytest
import torch
from torch import nn

from unfolded.models import VarNet
from unfolded.models.pdnet import PDNet_DualBlock, PDNet_PrimalBlock
from unfolded.optim import ADMM, GD, HQS, L2, PGD, RED, PnP
from unfolded.physics import Blur, Denoising, GaussianNoise, Inpainting

D = torch.float64


class Scale(nn.Module):
    """D(x, σ) = a·x + σ: a closed form to check iterations against."""

    def __init__(self, a=0.8):
        super().__init__()
        self.a = a

    def forward(self, x, sigma=None):
        return self.a * x + (0 if sigma is None else sigma)


def _problem():
    physics = Blur(torch.tensor([[0.2, 0.5, 0.3]], dtype=D)[None, None], padding="circular")
    y = torch.rand(2, 1, 6, 6, dtype=D, generator=torch.Generator().manual_seed(0))
    return physics, y


def test_l2_call_returns_the_data_fidelity_value():
    physics, y = _problem()
    x = torch.randn(2, 1, 6, 6, dtype=D)
    value = L2(sigma=0.5)(x, y, physics)
    assert torch.allclose(value, 0.5 / 0.25 * (physics.A(x) - y).pow(2).flatten(1).sum(1))
    assert torch.allclose(L2().prox(x, y, physics, gamma=0.3), physics.prox_l2(x, y, 0.3))
    assert torch.allclose(L2().prox(x, y, physics, 0.3), physics.prox_l2(x, y, 0.3))  # positional gamma is used


def test_params_algo_dictionary_equals_keywords():
    physics, y = _problem()
    steps, lams, sigmas = [0.5, 0.9, 1.1], [1.0, 0.5, 2.0], [0.01, 0.02, 0.03]
    by_dict = HQS(prior=PnP(Scale()), max_iter=3, params_algo={"stepsize": steps, "lambda": lams, "g_param": sigmas})
    by_kw = HQS(prior=PnP(Scale()), max_iter=3, stepsize=steps, lambda_reg=lams, sigma_denoiser=sigmas)
    assert torch.equal(by_dict(y, physics), by_kw(y, physics))
    trainable = HQS(prior=PnP(Scale()), max_iter=3, unfold=True, params_algo={"stepsize": steps, "g_param": 0.1},
                    trainable_params=["stepsize", "g_param"])
    assert isinstance(trainable.stepsize, nn.Parameter) and trainable.stepsize.numel() == 3
    with pytest.raises(ValueError, match=r"unknown key\(s\) a; valid keys: beta"):
        HQS(prior=PnP(Scale()), params_algo={"a": 3})
    with pytest.raises(ValueError, match="stepsize is given both as a keyword"):
        HQS(prior=PnP(Scale()), stepsize=0.5, params_algo={"stepsize": 0.7})
    with pytest.raises(ValueError, match="under two names"):
        HQS(prior=PnP(Scale()), params_algo={"lambda": 1.0, "lambda_reg": 2.0})


def test_one_prior_per_iteration():
    physics, y = _problem()
    priors = [PnP(Scale(a)) for a in (0.5, 0.7, 0.9)]
    model = PGD(prior=priors, max_iter=3, stepsize=0.8)
    x = physics.A_adjoint(y)
    for a in (0.5, 0.7, 0.9):
        x = a * (x - 0.8 * physics.A_adjoint(physics.A(x) - y))
    assert torch.allclose(model(y, physics), x)
    assert isinstance(model.prior, nn.ModuleList) and len(list(model.parameters())) == 0
    with pytest.raises(ValueError, match="1 or max_iter=3 entries"):
        PGD(prior=priors[:2], max_iter=3)
    with pytest.raises(ValueError, match="per-iteration values of .*prior"):
        PGD(prior=priors, max_iter=3, DEQ=True)


def test_g_first_orders():
    physics, y = _problem()
    x0 = physics.A_adjoint(y)
    hqs = HQS(prior=PnP(Scale()), max_iter=1, stepsize=0.7, g_first=True)(y, physics)
    assert torch.allclose(hqs, physics.prox_l2(0.8 * x0, y, 0.7))
    pgd = PGD(prior=RED(Scale()), max_iter=1, stepsize=0.7, lambda_reg=2.0, g_first=True)(y, physics)
    assert torch.allclose(pgd, physics.prox_l2(x0 - 2.0 * 0.7 * (x0 - 0.8 * x0), y, 0.7))
    with pytest.raises(ValueError, match=r"PGD\(g_first=True\) needs a prior with a gradient"):
        PGD(prior=PnP(Scale()), g_first=True)
    for cls in (GD, ADMM):
        with pytest.raises(NotImplementedError, match="use PGD\\(g_first=True\\) or HQS\\(g_first=True\\)"):
            cls(prior=PnP(Scale()) if cls is ADMM else RED(Scale()), g_first=True)


def test_early_stop_stops_with_the_reference_criterion_and_sets_has_converged(capsys):
    physics, y = _problem()
    model = PGD(prior=PnP(Scale(0.5)), max_iter=200, stepsize=0.5, early_stop=True, thres_conv=1e-6, verbose=True)
    assert model.has_converged is False
    out, metrics = model(y, physics, compute_metrics=True)
    stopped = metrics["residual"].shape[0] + 1  # iterations run
    assert model.has_converged and stopped < 200
    x, crit, k = physics.A_adjoint(y), None, 0
    for k in range(200):  # the reference's rule: crit = mean ‖x_prev − x‖/(‖x‖ + 1e-6), tested from k = 2
        new = 0.5 * (x - 0.5 * physics.A_adjoint(physics.A(x) - y))
        crit = float(((x - new).flatten(1).norm(dim=1) / (new.flatten(1).norm(dim=1) + 1e-6)).mean())
        x = new
        if k >= 2 and crit < 1e-6:
            break
    assert stopped == k + 1 and torch.equal(out, x)
    assert "current converge crit." in capsys.readouterr().out
    model.early_stop = False
    model(y, physics)
    assert model.has_converged is False  # reset at every call


def test_custom_init_and_get_output():
    physics, y = _problem()
    start = torch.zeros(2, 1, 6, 6, dtype=D)
    plain = HQS(prior=PnP(Scale()), max_iter=2)(y, physics, init=start)
    for init in (start, (start, start), {"est": (start,)}, lambda y, physics: start):
        model = HQS(prior=PnP(Scale()), max_iter=2, custom_init=init)
        assert torch.equal(model(y, physics), plain)
    doubled = HQS(prior=PnP(Scale()), max_iter=2, custom_init=start, get_output=lambda X: 2 * X["est"][0])
    assert torch.equal(doubled(y, physics), 2 * plain)
    with pytest.raises(NotImplementedError, match="ADMM: an initialisation with dual variables"):
        ADMM(prior=PnP(Scale()), max_iter=2)(y, physics, init=(start, start))
    with pytest.raises(ValueError, match="init must be a tensor x0"):
        HQS(prior=PnP(Scale()), max_iter=2, custom_init=lambda y, p: "x")(y, physics)


def test_hyperparameters_keep_full_precision():
    model = PGD(prior=PnP(Scale()), stepsize=0.8, lambda_reg=[0.1, 0.3], max_iter=2).double()
    assert model.stepsize.item() == 0.8 and model.lambda_reg.tolist() == [0.1, 0.3]
    trained = PGD(prior=PnP(Scale()), stepsize=0.8, unfold=True, trainable_params=["stepsize"])
    with torch.no_grad():
        trained.stepsize.add_(0.25)
    assert trained.double().stepsize.item() == pytest.approx(1.05, abs=1e-7)  # a trained value is kept
    assert trained.stepsize.item() != 1.05  # (its float32 rounding is not replaced by a guess)


@pytest.mark.parametrize("kwargs,match", [
    (dict(backtracking=True), "backtracking line search is not supported"),
    (dict(custom_metrics={"m": lambda *a: 0}), "compute_metrics=True"),
    (dict(cost_fn=lambda *a: 0), "cost_fn is not supported"),
    (dict(show_progress_bar=True), "use verbose=True"),
])
def test_unsupported_reference_options_name_the_alternative(kwargs, match):
    with pytest.raises(NotImplementedError, match=match):
        PGD(prior=PnP(Scale()), **kwargs)


def test_inpainting_and_denoising_run_through_params_algo():
    physics = Inpainting((1, 6, 6), mask=0.5, rng=torch.Generator().manual_seed(1), noise_model=GaussianNoise(0.0))
    y = physics(torch.rand(1, 1, 6, 6))
    out = HQS(prior=PnP(Scale()), params_algo={"stepsize": 1.0, "lambda": 1.0}, max_iter=2)(y, physics)
    assert out.shape == y.shape
    assert HQS(prior=PnP(Scale()), max_iter=2)(y, Denoising(GaussianNoise(0.0))).shape == y.shape


# --- models ------------------------------------------------------------------------------------------
def test_pdnet_blocks_accept_dim():
    primal = PDNet_PrimalBlock(dim=2)
    assert primal(torch.zeros(1, 5, 4, 4), torch.zeros(1, 1, 4, 4)).shape == (1, 5, 4, 4)
    assert PDNet_DualBlock(dim="2d")(torch.zeros(1, 5, 4, 4), torch.zeros(1, 1, 4, 4),
                                     torch.zeros(1, 1, 4, 4)).shape == (1, 5, 4, 4)
    for block in (PDNet_PrimalBlock, PDNet_DualBlock):
        with pytest.raises(NotImplementedError, match="dim=3.*2-D"):
            block(dim=3)
        with pytest.raises(ValueError, match="dim must be 2 or 3"):
            block(dim=4)


def test_varnet_mode_is_case_insensitive_like_the_reference():
    assert VarNet(num_cascades=1, mode="E2E-VarNet").mode == "e2e-varnet"


def test_modl_and_varnet_take_the_reference_keywords():
    from unfolded.models import DnCNN, MoDL, SensitivityModel
    from unfolded.physics import MultiCoilMRI

    den = DnCNN(2, 2, depth=3, nf=4)
    modl = MoDL(denoiser=den, num_iter=2)
    assert modl.num_iter == 2 and modl.denoiser is den
    varnet = VarNet(denoiser=den, sensitivity_model=SensitivityModel(), num_cascades=2, mode="e2e-varnet")
    physics = MultiCoilMRI(mask=torch.ones(8, 8), coil_maps=2)
    y = physics(torch.randn(1, 2, 8, 8))
    assert varnet(y, physics).shape == (1, 2, 8, 8) and len(varnet.denoisers) == 2


def test_models_refuse_unknown_forward_keywords():
    from unfolded.models import MoDL, PDNet

    physics, y = _problem()
    for model in (HQS(prior=PnP(Scale()), max_iter=1), MoDL(num_iter=1), PDNet(num_iter=1), VarNet(num_cascades=1)):
        with pytest.raises(ValueError, match="forward: unknown keyword.*verbose.*accepts init, x_gt"):
            model(y, physics, verbose=True)
