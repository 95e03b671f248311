"""FISTA, DRS, PDCP and the classical priors inside every algorithm (issue #21): outputs against independent
transcriptions of the reference's iterations (deepinv 0.5.0) in float64, unfolding (trainable a, σ_dual, β,
per-iteration thresholds), the reference's keywords, and what is refused."""

import pytest
import torch
from torch import nn

from tests.test_tv_prior import _reference_tv_prox
from tests.test_wavelet_prior import _pywt_prox
from unfolded.optim import ADMM, DRS, FISTA, GD, HQS, L2, PDCP, PGD, L1Prior, PnP, Tikhonov, TVPrior, WaveletPrior
from unfolded.physics import Blur, Denoising, Inpainting

D = torch.float64
pytestmark = pytest.mark.usefixtures("float64")  # hyperparameters in float64 too (0.3 is not a float32)
UNCONVERGED_OK = pytest.mark.filterwarnings("ignore::unfolded.solvers.cg.ConvergenceWarning")


def _problem():
    """An inpainting problem (closed-form data prox: x = (m·y + z/γ)/(m + 1/γ)) with its y = mask ⊙ x."""
    g = torch.Generator().manual_seed(3)
    mask = (torch.rand(1, 1, 12, 12, generator=g) > 0.3).to(D)
    physics = Inpainting((1, 12, 12), mask=mask)
    y = mask * torch.rand(2, 1, 12, 12, generator=g, dtype=D)
    return physics, y, mask


# The priors' proxes and gradients, written independently (numpy PyWavelets, the reference's TV loop).
PROX = {
    "l1": (L1Prior, lambda v, t: torch.sign(v) * torch.clamp(v.abs() - t, min=0)),
    "tikhonov": (Tikhonov, lambda v, t: v / (1 + t)),
    "wavelet": (lambda: WaveletPrior(level=2, wv="db4"), lambda v, t: _pywt_prox(v, "db4", 2, 0.1 * float(t))),
    "tv": (lambda: TVPrior(def_crit=1e-6), lambda v, t: _reference_tv_prox(v, float(t), crit=1e-6)),
}
GRAD = {"l1": torch.sign, "tikhonov": lambda v: v}


def _f_prox(v, y, mask, gamma):
    return (mask * y + v / gamma) / (mask + 1 / gamma)


def _f_grad(v, y, mask):
    return mask * (mask * v - y)


def _reference(algo, y, mask, prox_g, gamma, lam, n, g_first=False, **kw):
    """The reference's iterations (optim_iterators/*.py), from its start x₀ = z₀ = Aᵀy (PDCP: u₀ = y)."""
    x = z = mask * y
    u = y
    for k in range(n):
        if algo == "fista":
            a = kw["a"]
            if g_first:
                xn = _f_prox(z - lam * gamma * GRAD[kw["prior"]](z), y, mask, gamma)
            else:
                xn = prox_g(z - gamma * _f_grad(z, y, mask), lam * gamma)
            z, x = xn + (k + a - 1) / (k + a) * (xn - x), xn
        elif algo == "drs":
            if g_first:
                v = prox_g(z, lam * gamma)
                x = _f_prox(2 * v - z, y, mask, gamma)
            else:
                v = _f_prox(z, y, mask, gamma)
                x = prox_g(2 * v - z, lam * gamma)
            z = z + kw["beta"] * (x - v)
        elif algo == "pdcp":
            sig, p = kw["stepsize_dual"], u + kw["stepsize_dual"] * z
            if g_first:  # prox of (λσ)(λg)* by Moreau: p − λσ·prox_{g/σ}(p/(λσ))
                u = p - lam * sig * prox_g(p / (lam * sig), 1 / sig)
                xn = _f_prox(x - gamma * u, y, mask, gamma)
            else:  # prox of σ f*: p − σ·prox_{f/σ}(p/σ)
                u = p - sig * _f_prox(p / sig, y, mask, 1 / sig)
                xn = prox_g(x - gamma * u, gamma * lam)
            z, x = xn + kw["beta"] * (xn - x), xn
    return x


CASES = [("fista", False, "l1"), ("fista", False, "wavelet"), ("fista", False, "tv"), ("fista", True, "l1"),
         ("fista", True, "tikhonov"), ("drs", False, "l1"), ("drs", False, "wavelet"), ("drs", True, "tv"),
         ("drs", True, "tikhonov"), ("pdcp", False, "l1"), ("pdcp", False, "tv"), ("pdcp", True, "wavelet"),
         ("pdcp", True, "l1"), ("pdcp", False, "tikhonov")]


@UNCONVERGED_OK
@pytest.mark.parametrize("algo,g_first,prior", CASES)
def test_iterations_equal_the_reference(algo, g_first, prior):
    physics, y, mask = _problem()
    make, prox_g = PROX[prior]
    kw = {"fista": dict(a=3.5), "drs": dict(beta=0.8), "pdcp": dict(stepsize_dual=0.9, beta=0.7)}[algo]
    model = {"fista": FISTA, "drs": DRS, "pdcp": PDCP}[algo](
        data_fidelity=L2(), prior=make(), stepsize=0.8, lambda_reg=0.3, g_param=0.05, max_iter=6, g_first=g_first, **kw)
    expected = _reference(algo, y, mask, prox_g, 0.8, 0.3, 6, g_first=g_first, prior=prior, **kw)
    tol = 1e-4 if prior == "tv" else 1e-5
    assert (model(y, physics) - expected).abs().max() <= tol


@UNCONVERGED_OK
def test_classical_priors_in_pgd_hqs_admm_gd():
    physics, y, mask = _problem()
    for make, prox_g in PROX.values():
        x = mask * y
        for _ in range(4):  # PGD: ISTA when the prior is L1
            x = prox_g(x - 0.9 * _f_grad(x, y, mask), 0.3 * 0.9)
        assert (PGD(prior=make(), stepsize=0.9, lambda_reg=0.3, max_iter=4)(y, physics) - x).abs().max() <= 1e-4
        x = mask * y
        for _ in range(4):
            x = prox_g(_f_prox(x, y, mask, 0.9), 0.3 * 0.9)
        assert (HQS(prior=make(), stepsize=0.9, lambda_reg=0.3, max_iter=4)(y, physics) - x).abs().max() <= 1e-4
        x = z = w = mask * y
        for _ in range(4):
            x = _f_prox(z - w, y, mask, 0.9)
            z = prox_g(x + w, 0.3 * 0.9)
            w = w + (x - z)
        assert (ADMM(prior=make(), stepsize=0.9, lambda_reg=0.3, max_iter=4)(y, physics) - z).abs().max() <= 1e-4
    for prior in (TVPrior(), L1Prior(), Tikhonov(), WaveletPrior(level=2, wv="db4")):
        x = mask * y
        expected = x - 0.5 * (_f_grad(x, y, mask) + 0.3 * prior.grad(x))
        assert (GD(prior=prior, stepsize=0.5, lambda_reg=0.3, max_iter=1)(y, physics) - expected).abs().max() <= 1e-12


def test_fista_accelerates_ista_on_a_lasso_problem():
    physics = Blur(torch.ones(1, 1, 5, 5, dtype=D) / 25, padding="circular")
    y = physics(torch.rand(1, 1, 16, 16, dtype=D))

    def objective(x):
        return float(0.5 * (physics.A(x) - y).pow(2).sum() + 0.01 * x.abs().sum())

    ista = PGD(prior=L1Prior(), stepsize=1.0, lambda_reg=0.01, max_iter=50)(y, physics)
    fista = FISTA(prior=L1Prior(), stepsize=1.0, lambda_reg=0.01, max_iter=50)(y, physics)
    optimum = objective(FISTA(prior=L1Prior(), stepsize=1.0, lambda_reg=0.01, max_iter=3000)(y, physics))
    assert objective(fista) - optimum < 0.2 * (objective(ista) - optimum)


@UNCONVERGED_OK
def test_unfolded_parameters_get_gradients():
    physics, y, mask = _problem()
    x_true = torch.rand(2, 1, 12, 12, dtype=D)
    models = [
        FISTA(prior=L1Prior(), unfold=True, max_iter=3, lambda_reg=[0.1, 0.2, 0.3], a=[3, 4, 5], stepsize=0.7,
              trainable_params=["lambda", "stepsize", "a"]),
        DRS(prior=TVPrior(def_crit=1e-4, n_it_max=50), unfold=True, max_iter=2, lambda_reg=0.1, beta=0.9,
            trainable_params=["lambda_reg", "beta"]),
        PDCP(prior=WaveletPrior(level=1, wv="haar"), unfold=True, max_iter=3, stepsize_dual=[0.9, 0.8, 0.7],
             trainable_params=["stepsize", "stepsize_dual", "beta", "g_param"], sigma_denoiser=0.1),
    ]
    for model in models:
        model = model.double()
        loss = (model(y, physics) - x_true).pow(2).sum()
        params = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, g in zip(params, grads):
            if name == "sigma_denoiser":  # the wavelet prior ignores σ (warned at construction)
                assert g is None
                continue
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, (type(model).__name__, name)
        assert params["stepsize" if "stepsize" in params else "lambda_reg"].dtype == D
    assert models[0].a.shape == (3,) and models[2].stepsize_dual.shape == (3,)
    assert set(models[2].hyperparameters()) == {"stepsize", "lambda_reg", "sigma_denoiser", "beta", "stepsize_dual"}
    assert set(models[0].hyperparameters()) == {"stepsize", "lambda_reg", "a"}


def test_reference_keywords():
    physics, y, mask = _problem()
    by_dict = FISTA(prior=L1Prior(), max_iter=3, params_algo={"stepsize": [0.5, 0.6, 0.7], "lambda": 0.2, "a": 4})
    by_kw = FISTA(prior=L1Prior(), max_iter=3, stepsize=[0.5, 0.6, 0.7], lambda_reg=0.2, a=4)
    assert torch.equal(by_dict(y, physics), by_kw(y, physics))
    ident = lambda v: v  # noqa: E731
    k_dict = PDCP(prior=L1Prior(), max_iter=3, params_algo={"K": ident, "K_adjoint": ident, "stepsize_dual": 0.5})
    assert torch.equal(k_dict(y, physics), PDCP(prior=L1Prior(), max_iter=3, stepsize_dual=0.5)(y, physics))
    start = torch.zeros_like(y)
    custom = DRS(prior=L1Prior(), max_iter=2, custom_init=lambda y, p: (start, start))(y, physics)
    assert torch.equal(custom, DRS(prior=L1Prior(), max_iter=2)(y, physics, init=start))
    out, metrics = PDCP(prior=L1Prior(), max_iter=4)(y, physics, x_gt=y, compute_metrics=True)
    assert metrics["psnr"].shape == (4, 2) and metrics["residual"].shape == (3, 2)


def test_pdcp_starts_its_dual_at_zero_when_y_is_not_an_image():
    blur = Blur(torch.ones(1, 1, 3, 3, dtype=D) / 9)  # 'valid': y is smaller than x
    y = blur(torch.rand(1, 1, 10, 10, dtype=D))
    model = PDCP(prior=L1Prior(), stepsize=0.5, lambda_reg=0.01, max_iter=2)
    x0 = blur.A_adjoint(y)
    assert all(torch.equal(a, b) for a, b in zip(model.init_state(y, blur), (x0, x0, torch.zeros_like(x0))))
    assert model(y, blur).shape == (1, 1, 10, 10)
    den = Denoising()
    assert torch.equal(model.init_state(x0, den)[2], x0)  # y has the shape of K(x): u₀ = y, as in the reference


@pytest.mark.parametrize("make,exc,match", [
    (lambda: FISTA(prior=L1Prior(), beta=0.5), NotImplementedError, "FISTA has no relaxation beta.*use PGD"),
    (lambda: FISTA(prior=L1Prior(), unfold=True, trainable_params=["beta"]), ValueError,
     "unknown trainable parameter 'beta'; valid names: a, g_param, lambda"),
    (lambda: FISTA(prior=L1Prior(), a=0), ValueError, "a must be > 0, got 0"),
    (lambda: FISTA(prior=L1Prior(), a=4, params_algo={"a": 5}), ValueError, "a is given both as a keyword"),
    (lambda: FISTA(prior=PnP(nn.Identity()), g_first=True), ValueError, r"FISTA\(g_first=True\) needs a prior with a "
                                                                         "gradient"),
    (lambda: PDCP(prior=L1Prior(), stepsize_dual=-1), ValueError, "stepsize_dual must be > 0"),
    (lambda: PDCP(prior=L1Prior(), K=3), TypeError, "K must be a callable"),
    (lambda: PDCP(prior=L1Prior(), K=abs, params_algo={"K": abs}), ValueError, "K is given both"),
    (lambda: DRS(prior=L1Prior(), params_algo={"stepsize_dual": 1.0}), ValueError, "unknown key.*stepsize_dual"),
    (lambda: DRS(prior=L1Prior(), max_iter=2)(torch.rand(1, 1, 4, 4), Denoising(),
                                              init=(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 3, 3))),
     ValueError, r"DRS: every variable of the initialisation must have the shape of x0 \(1, 1, 4, 4\)"),
    (lambda: WaveletPrior(p=0) and GD(prior=WaveletPrior(p=0)), ValueError, "GD needs a prior with a gradient"),
])
def test_refusals_name_the_alternative(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("cls", [FISTA, DRS, PDCP])
def test_no_deq_for_algorithms_without_a_fixed_point_on_x(cls):
    with pytest.raises(ValueError, match="cannot run as a deep equilibrium model.*use GD, PGD or HQS"):
        cls(prior=L1Prior(), DEQ=True)
    with pytest.raises(ValueError, match="anderson_acceleration needs a fixed-point map"):
        cls(prior=L1Prior(), anderson_acceleration=True)


def test_trainable_sigma_with_a_classical_prior_warns():
    with pytest.warns(UserWarning, match="sigma_denoiser is trainable but TVPrior ignores sigma"):
        PGD(prior=TVPrior(), unfold=True, sigma_denoiser=0.1, trainable_params=["sigma_denoiser"])
