"""WaveletPrior, L1Prior and Tikhonov (issue #21): the wavelet prox against an independent computation with
PyWavelets (C filters, numpy thresholds; the reference uses ptwt), the closed forms, values and gradients,
gradcheck in float64, and bad inputs."""

import math
import warnings

import numpy as np
import pytest
import pywt
import torch

from unfolded.optim import L1Prior, Tikhonov, WaveletPrior

D = torch.float64


def _pywt_prox(x, wv, level, t, mode="zero", kind="soft", wvdim=2):
    """Pad odd sizes by one replicated row/column, threshold the details of each image, reconstruct, crop."""
    arr = x.detach().numpy()
    spatial = arr.shape[-wvdim:]
    pad = [(0, 0)] * (arr.ndim - wvdim) + [(0, n % 2) for n in spatial]
    arr = np.pad(arr, pad, mode="edge")
    out = np.empty_like(arr)
    ts = np.broadcast_to(np.asarray(t, dtype=float).reshape(-1), (arr.shape[0],))
    for b in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "Level value of 3 is too high": as intended
                co = pywt.wavedecn(arr[b, c], wv, mode=mode, level=level)
            co = [co[0]] + [{k: _shrink(v, ts[b], kind) for k, v in lev.items()} for lev in co[1:]]
            out[b, c] = pywt.waverecn(co, wv, mode=mode)
    return torch.from_numpy(out[(..., *(slice(0, n) for n in spatial))].copy())


def _shrink(v, t, kind):
    if kind == "topk":  # keep the largest proportion t of the sub-band
        k = int(t * v.size)
        keep = np.zeros(v.size, dtype=bool)
        keep[np.argsort(-np.abs(v).ravel(), kind="stable")[:k]] = True
        return np.where(keep.reshape(v.shape), v, 0.0)
    return pywt.threshold(v, t, mode=kind)


@pytest.mark.parametrize("shape,wv,mode,p", [
    ((2, 1, 32, 32), "db8", "zero", 1), ((1, 3, 33, 30), "db4", "symmetric", 1),
    ((2, 1, 16, 18), "haar", "periodic", 0), ((1, 2, 17, 16), "sym4", "zero", 0),
    ((2, 1, 16, 16), "db2", "reflect", math.inf)])
def test_prox_matches_pywavelets(shape, wv, mode, p):
    x = torch.rand(*shape, dtype=D)
    kind = {1: "soft", 0: "hard", math.inf: "topk"}[p]
    prior = WaveletPrior(level=2, wv=wv, p=p, mode=mode)
    ths, gamma = (0.1, 0.5) if p != math.inf else (0.3, 1.0)
    out = prior.prox(x, torch.tensor(0.7), ths=ths, gamma=gamma)  # the algorithms' σ is accepted, unused
    assert (out - _pywt_prox(x, wv, 2, ths * gamma, mode, kind)).abs().max() <= 1e-12


def test_reference_defaults_per_sample_thresholds_3d_complex_and_clamp():
    x = torch.rand(2, 1, 20, 22, dtype=D)
    assert (WaveletPrior().prox(x) - _pywt_prox(x, "db8", 3, 0.1)).abs().max() <= 1e-12  # ths = 0.1, γ = 1
    g = torch.tensor([0.5, 2.0], dtype=D)
    assert (WaveletPrior().prox(x, gamma=g) - _pywt_prox(x, "db8", 3, 0.1 * g)).abs().max() <= 1e-12
    v = torch.rand(1, 1, 6, 8, 10, dtype=D)
    out = WaveletPrior(level=1, wv="db2", wvdim=3).prox(v, gamma=2.0)
    assert (out - _pywt_prox(v, "db2", 1, 0.2, wvdim=3)).abs().max() <= 1e-12
    z = torch.complex(torch.rand(1, 1, 16, 16, dtype=D), torch.rand(1, 1, 16, 16, dtype=D))
    out = WaveletPrior(wv="db2", is_complex=True).prox(z)
    assert (out.real - _pywt_prox(z.real, "db2", 3, 0.1)).abs().max() <= 1e-12
    assert (out.imag - _pywt_prox(z.imag, "db2", 3, 0.1)).abs().max() <= 1e-12
    clamped = WaveletPrior(clamp_min=0.2, clamp_max=0.7).prox(x)
    assert (clamped - _pywt_prox(x, "db8", 3, 0.1).clamp(0.2, 0.7)).abs().max() <= 1e-12


def test_value_is_the_norm_of_the_detail_coefficients():
    x = torch.rand(2, 1, 16, 16, dtype=D)
    for p in (0, 1, math.inf):
        expected = [sum(np.linalg.norm(np.ravel(d), ord=p) for lev in pywt.wavedec2(x[b, 0].numpy(), "db2", mode="zero",
                                                                                    level=2)[1:] for d in lev)
                    for b in range(2)]
        assert torch.allclose(WaveletPrior(level=2, wv="db2", p=p)(x), torch.tensor(expected, dtype=D))
    per_band = WaveletPrior(level=2, wv="db2").fn(x, reduce=False)
    assert per_band.shape == (2, 6) and torch.allclose(per_band.sum(1), WaveletPrior(level=2, wv="db2").fn(x))
    xg = x.clone().requires_grad_()
    (auto,) = torch.autograd.grad(WaveletPrior(level=2, wv="db2").fn(xg).sum(), xg)
    assert torch.allclose(WaveletPrior(level=2, wv="db2").grad(x), auto)


def test_prox_gradients_pass_gradcheck():
    x = torch.rand(1, 1, 8, 8, dtype=D, requires_grad=True)
    g = torch.tensor(0.4, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g: WaveletPrior(level=1, wv="db2").prox(x, gamma=g), (x, g))
    assert torch.autograd.gradcheck(lambda x, g: L1Prior().prox(x - 0.5, gamma=g), (x, g))
    assert torch.autograd.gradcheck(lambda x, g: Tikhonov().prox(x, gamma=g), (x, g))


def test_l1_and_tikhonov_closed_forms():
    x = torch.randn(3, 2, 4, 4, dtype=D)
    t = 0.3 * 0.5
    assert torch.equal(L1Prior().prox(x, ths=0.3, gamma=0.5), torch.sign(x) * torch.clamp(x.abs() - t, min=0))
    assert torch.allclose(L1Prior().prox(x, gamma=0.5), torch.nn.functional.softshrink(x, 0.5))  # ths = 1
    g = torch.tensor([0.1, 1.0, 2.0], dtype=D)
    assert torch.allclose(L1Prior().prox(x, gamma=g)[2], torch.nn.functional.softshrink(x[2], 2.0))
    assert torch.allclose(L1Prior()(x), x.abs().flatten(1).sum(1)) and torch.equal(L1Prior().grad(x), torch.sign(x))
    assert torch.allclose(Tikhonov().prox(x, gamma=g), x / (1 + g.view(3, 1, 1, 1)))
    assert torch.allclose(Tikhonov()(x), 0.5 * x.pow(2).flatten(1).sum(1)) and torch.equal(Tikhonov().grad(x), x)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: WaveletPrior(wv="nope"), ValueError, "unknown wavelet wv='nope'; use a PyWavelets"),
    (lambda: WaveletPrior(wv=["db1", "db4"]), NotImplementedError, "list of wavelets .* give one wavelet name"),
    (lambda: WaveletPrior(p=2), ValueError, "p must be 0, 1 or inf, got 2"),
    (lambda: WaveletPrior(wvdim=1), ValueError, "wvdim must be 2 or 3"),
    (lambda: WaveletPrior(mode="wrap"), ValueError, "mode must be one of zero, constant"),
    (lambda: WaveletPrior(level=0), ValueError, "level must be an integer >= 1"),
    (lambda: WaveletPrior(clamp_min=1, clamp_max=0), ValueError, "clamp_min=1 > clamp_max=0"),
    (lambda: WaveletPrior(p=0).grad(torch.rand(1, 1, 8, 8)), NotImplementedError, r"p=0\) has no gradient; use p=1"),
    (lambda: WaveletPrior().prox(torch.rand(1, 8, 8)), ValueError, r"input must be \(B, C, ...\) with 2 spatial"),
    (lambda: WaveletPrior().prox(torch.rand(1, 1, 8, 8, dtype=torch.complex64)), ValueError, "is_complex=True"),
    (lambda: WaveletPrior(is_complex=True).prox(torch.rand(1, 1, 8, 8)), ValueError, "expects a complex tensor"),
    (lambda: WaveletPrior().prox(torch.rand(2, 1, 8, 8), gamma=torch.ones(3)), ValueError,
     r"gamma must have 1 value or one per sample \(2\), got shape \(3,\)"),
    (lambda: L1Prior().prox(torch.rand(2, 1, 4, 4), gamma=-0.1), ValueError, "gamma must be >= 0, got -0.1"),
    (lambda: L1Prior().prox(torch.rand(2, 1, 4, 4), gamma=torch.tensor(-1.0)), ValueError, "went negative"),
    (lambda: Tikhonov().prox(torch.rand(2, 1, 4, 4), gamma="1"), TypeError, "gamma must be a number or a tensor"),
])
def test_bad_inputs_name_what_is_allowed(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
