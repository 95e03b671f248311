"""Per-sample operators (one blur kernel per sample, as a physics generator draws them): the batched prox equals
each sample's own, and the implicit least-squares backward, the valid-padding strip solver and the DEQ
backward keep their gradient accuracy (float64, against unrolled autograd, finite differences and the dense
closed form)."""

import pytest
import torch
from torch.autograd import gradcheck

import unfolded as dinv
from unfolded.optim import GD, HQS, L2, RED, DEQConfig, PnP
from unfolded.physics import Blur, BlurFFT
from unfolded.physics.generators import GaussianBlurGenerator, GeneratorMixture, MotionBlurGenerator, SigmaGenerator

from .test_deq import LinearDenoiser, _dense

PADDINGS = ["valid", "circular", "reflect", "replicate", "constant"]
TIGHT = dict(tol=1e-13, max_iter=1000)


def _kernels(batch=3, size=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(batch, 1, size, size, generator=g, dtype=torch.float64) + 0.1
    return k / k.sum(dim=(-2, -1), keepdim=True)


@pytest.mark.parametrize("padding", PADDINGS)
def test_batched_prox_equals_each_samples_own(padding):
    k = _kernels()
    z = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    batch = Blur(k, padding=padding, **TIGHT)
    y = batch.A(torch.randn_like(z))
    gamma = torch.tensor([0.3, 1.0, 5.0], dtype=torch.float64)
    x = batch.prox_l2(z, y, gamma)
    for i in range(3):
        alone = Blur(k[i:i + 1], padding=padding, **TIGHT).prox_l2(z[i:i + 1], y[i:i + 1], gamma[i])
        torch.testing.assert_close(x[i:i + 1], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padding", ["valid", "circular", "reflect"])
def test_gradcheck_per_sample_filters(padding):
    z = torch.randn(2, 1, 7, 7, dtype=torch.float64)
    k = _kernels(2).requires_grad_()
    y = torch.randn_like(Blur(k.detach(), padding=padding).A(z))
    assert gradcheck(lambda k: Blur(k, padding=padding, **TIGHT).prox_l2(z, y, 0.8), (k,), atol=1e-7, rtol=1e-6)


def _hqs_grads(padding, implicit, loss_scale):
    torch.manual_seed(3)
    denoiser = dinv.models.DnCNN(1, 1, depth=3, nf=4).double()
    model = HQS(unfold=True, data_fidelity=L2(), prior=PnP(denoiser), stepsize=0.8, max_iter=3,
                trainable_params=["stepsize"]).double()
    k = _kernels(3, seed=1).requires_grad_()  # one kernel per sample, as a generator draws them
    physics = Blur(k, padding=padding, implicit_backward_solver=implicit, **TIGHT)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = (physics.A(x) + 0.05 * torch.randn_like(physics.A(x))).detach().requires_grad_()
    loss = loss_scale * (model(y, physics) - x).pow(2).sum()
    return torch.autograd.grad(loss, [model.stepsize, denoiser.in_conv.weight, k, y])


@pytest.mark.parametrize("padding", PADDINGS)
def test_implicit_matches_unrolled_gradients_with_per_sample_filters(padding):
    for scale in (1.0, 1e-8):
        implicit, unrolled = _hqs_grads(padding, True, scale), _hqs_grads(padding, False, scale)
        for gi, gu in zip(implicit, unrolled):
            assert gu.abs().max() > 0
            assert float((gi - gu).norm() / gu.norm()) <= 1e-6, (padding, scale)
        assert all(float(gu[i].abs().max()) > 0 for i in range(3) for gu in implicit[2:3])  # every kernel


def _deq_problem(per_sample: bool):
    torch.manual_seed(0)
    k = (_kernels(2, seed=4) if per_sample else _kernels(1, seed=4)).requires_grad_()
    physics = Blur(k, padding="valid")
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y = (physics.A(x) + 0.01 * torch.randn_like(physics.A(x))).detach().requires_grad_()
    model = GD(prior=RED(LinearDenoiser()), stepsize=0.6, lambda_reg=0.5, max_iter=500, unfold=True,
               trainable_params=["stepsize", "lambda_reg"],
               DEQ=DEQConfig(tol_forward=1e-13, tol_backward=1e-13, max_iter_backward=2000)).double()
    return model, physics, k, x, y


def test_deq_gradients_with_per_sample_filters_match_the_closed_form():
    """x*_b = (A_bᵀA_b + λ(I − W))⁻¹ A_bᵀ y_b per sample, differentiated through dense solves, against the DEQ's
    implicit backward through the per-sample strip solver."""
    model, physics, k, x, y = _deq_problem(per_sample=True)
    W = _dense(model.prior.denoiser, 64)
    lam = model.lambda_reg[0]
    loss = 0
    for b in range(2):
        A = _dense(lambda v, b=b: Blur(k[b:b + 1], padding="valid").A(v), 64)
        M = A.T @ A + lam * (torch.eye(64, dtype=torch.float64) - W)
        x_star = torch.linalg.solve(M, A.T @ y[b].flatten())
        loss = loss + 0.5 * (x_star - x[b].flatten()).pow(2).sum()
    exact = torch.autograd.grad(loss, [model.lambda_reg, model.prior.denoiser.weight, y, k])
    got = torch.autograd.grad(0.5 * (model(y, physics) - x).pow(2).sum(),
                              [model.lambda_reg, model.prior.denoiser.weight, y, k])
    for g, e in zip(got, exact):
        assert float((g - e).norm() / e.norm()) <= 1e-6
    assert model.deq_stats["forward"]["converged"] and model.deq_stats["backward"]["converged"]


def test_blurfft_takes_per_sample_filters_with_exact_prox():
    k = _kernels(2, size=5)
    physics = BlurFFT((1, 8, 8), k)
    z, y = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    x = physics.prox_l2(z, y, 0.5)
    for i in range(2):
        torch.testing.assert_close(x[i:i + 1], BlurFFT((1, 8, 8), k[i:i + 1]).prox_l2(z[i:i + 1], y[i:i + 1], 0.5))


def test_mixture_draws_per_sample_and_follows_the_reference_per_batch():
    gauss, motion = GaussianBlurGenerator(15, 0.5, 2.5), MotionBlurGenerator(15, n_steps=200)
    mix = GeneratorMixture([gauss, motion], [0.5, 0.5])
    k = mix.draw(torch.arange(40), seed=0)["filter"]
    is_gauss = torch.tensor([torch.allclose(k[i], k[i].flip(-1).flip(-2), atol=1e-6) for i in range(40)])
    assert 5 < int(is_gauss.sum()) < 35  # both kinds in one batch (a Gaussian kernel is point-symmetric)
    assert torch.equal(mix.draw([7], seed=0)["filter"], k[7:8])  # the sample's draw, whatever its batch
    batch = mix.step(6, seed=1)["filter"]  # the reference: one generator for the whole batch
    symmetric = [torch.allclose(b, b.flip(-1).flip(-2), atol=1e-6) for b in batch]
    assert all(symmetric) or not any(symmetric)
    only_motion = GeneratorMixture([gauss, motion], [0.0, 1.0]).draw(torch.arange(10), seed=0)["filter"]
    assert not any(torch.allclose(m, m.flip(-1).flip(-2), atol=1e-6) for m in only_motion)
    joint = (mix + SigmaGenerator(0.01, 0.05)).draw(torch.arange(4), seed=2)
    assert joint["filter"].shape == (4, 1, 15, 15) and joint["sigma"].shape == (4,)


@pytest.mark.parametrize("make,pattern", [
    (lambda: GeneratorMixture([], []), r"non-empty list of physics generators"),
    (lambda: GeneratorMixture([SigmaGenerator()], [0.5]), r"probs must be 1 numbers >= 0 summing to 1"),
    (lambda: GeneratorMixture([GaussianBlurGenerator(9), MotionBlurGenerator(15)], [0.5, 0.5]),
     r"kernels of different sizes \[\(9, 9\), \(15, 15\)\]; give them one psf_size"),
])
def test_mixture_refuses_bad_arguments_in_one_line(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)
