"""Downsampling (SPEC §10): filter then decimate, exact adjoint for every padding, closed-form prox (circular, or
no filter) equal to the solution of the normal equations, CG otherwise, gradients, dtypes, the reference's
named filters and keywords."""

import pytest
import torch

from unfolded.physics import Blur, Downsampling, GaussianNoise
from unfolded.physics.filters import downsampling_filter
from unfolded.solvers.cg import SolverLog, record_solves

D = torch.float64
PADDINGS = ("circular", "reflect", "replicate", "constant", "valid")
FILTERS = (None, "bicubic", "gaussian", "per-sample")


def _filter(name, factor=2):
    if name == "per-sample":  # (B, C, h, w) = one filter per sample and channel, even-sized
        return torch.rand(2, 3, 4, 6, dtype=D, generator=torch.Generator().manual_seed(1)) + 0.1
    return name if name is None else downsampling_filter(name, factor)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("factor,size", [(2, (30, 36)), (3, (31, 35))])
def test_adjoint_is_exact_in_float64(padding, name, factor, size):
    p = Downsampling(img_size=(3, *size), filter=_filter(name, factor), factor=factor, padding=padding)
    x = torch.randn(2, 3, *size, dtype=D)
    y = torch.randn_like(p.A(x))
    lhs, rhs = (p.A(x) * y).sum(), (x * p.A_adjoint(y)).sum()
    assert float((lhs - rhs).abs() / lhs.abs()) < 1e-12
    assert p.A_adjoint(y).shape == x.shape


def test_adjoint_in_float32_and_the_reference_adjointness_test():
    p = Downsampling(filter="bicubic", factor=2, padding="reflect")
    x = torch.randn(2, 1, 32, 32)
    y = torch.randn_like(p.A(x))
    lhs, rhs = (p.A(x) * y).sum(), (x * p.A_adjoint(y)).sum()
    assert float((lhs - rhs).abs() / lhs.abs()) < 1e-5
    assert float(p.adjointness_test(x.double())) < 1e-13


@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_is_the_blur_then_every_factor_th_pixel(padding):
    k = _filter("per-sample")
    x = torch.randn(2, 3, 21, 26, dtype=D)
    expected = Blur(k, padding=padding).A(x)[..., ::3, ::3]
    assert torch.allclose(Downsampling(filter=k, factor=3, padding=padding).A(x), expected, atol=1e-13)
    assert torch.equal(Downsampling(filter=None, factor=3).A(x), x[..., ::3, ::3])


def test_named_filters_are_the_reference_ones():
    # rows printed by deepinv 0.5.0: bicubic_filter(2)[0,0,3], sinc_filter(2, length=8)[0,0,3],
    # bilinear_filter(3)[0,0,2], gaussian_blur(sigma=(2, 2))[0,0,7,5:10]
    expected = {
        ("bicubic", 2): (3, slice(None), [-0.00508118, -0.01524353, 0.04911804, 0.18800354, 0.18800354, 0.04911804,
                                          -0.01524353, -0.00508118]),
        ("sinc", 2): (3, slice(None), [-0.00540508, -0.01926503, 0.05172399, 0.19208185, 0.19208185, 0.05172399,
                                       -0.01926503, -0.00540508]),
        ("bilinear", 3): (2, slice(None), [0.01543210, 0.04629629, 0.07716049, 0.07716049, 0.04629629, 0.01543210]),
        ("gaussian", 2): (7, slice(5, 10), [0.02414040, 0.03512407, 0.03980079, 0.03512407, 0.02414040]),
    }
    sizes = {"bicubic": 8, "sinc": 8, "bilinear": 6, "gaussian": 15}
    for (name, factor), (row, cols, values) in expected.items():
        k = downsampling_filter(name, factor)
        assert k.shape == (1, 1, sizes[name], sizes[name]) and k.dtype == D
        assert torch.allclose(k[0, 0, row, cols], torch.tensor(values, dtype=D), atol=1e-7), name
        assert abs(float(k.sum()) - 1) < 1e-12


def _dense(p, size):
    """The matrix of A, column by column, for images (1, 1, *size)."""
    n = size[0] * size[1]
    basis = torch.eye(n, dtype=D).reshape(n, 1, *size)
    return torch.stack([p.A(b[None]).flatten() for b in basis], dim=1)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", [None, "bicubic"])
def test_prox_solves_the_normal_equations(padding, name):
    size = (12, 10)
    p = Downsampling(img_size=(1, *size), filter=_filter(name), factor=2, padding=padding, tol=1e-13, max_iter=1000)
    A = _dense(p, size)
    z = torch.randn(1, 1, *size, dtype=D)
    y = torch.randn(1, 1, *p.output_shape((1, 1, *size))[-2:], dtype=D)
    gamma = 0.37
    x = torch.linalg.solve(A.T @ A + torch.eye(A.shape[1], dtype=D) / gamma, A.T @ y.flatten() + z.flatten() / gamma)
    assert torch.allclose(p.prox_l2(z, y, gamma).flatten(), x, atol=1e-10)


def test_closed_form_equals_cg_with_per_sample_filters_and_gammas():
    k = _filter("per-sample")
    p = Downsampling(filter=k, factor=2, padding="circular", tol=1e-13, max_iter=2000)
    z, gamma = torch.randn(2, 3, 16, 20, dtype=D), torch.tensor([0.3, 4.0], dtype=D).view(2, 1, 1, 1)
    y = torch.randn_like(p.A(z))
    assert torch.allclose(p.prox_l2(z, y, gamma), p.prox_l2(z, y, gamma, use_fft=False), atol=1e-10)


def test_cg_reports_its_convergence():
    p = Downsampling(filter="bicubic", factor=2, padding="reflect", tol=1e-8, max_iter=500)
    x = torch.rand(1, 1, 32, 32, dtype=D)
    log = SolverLog()
    with record_solves(log):
        p.prox_l2(x, p.A(x), 10.0)
        p.prox_l2(x, p.A(x), 0.5)  # circular would not log; reflect does
    assert [r[0] for r in log.records] == ["cg_forward", "cg_forward"] and all(r[3] for r in log.records)
    assert all(r[2] <= 1e-8 for r in log.records)
    with record_solves(log), pytest.warns(UserWarning, match="did not converge"):
        Downsampling(filter="gaussian", factor=2, padding="reflect", tol=1e-14, max_iter=2).prox_l2(x, p.A(x), 1e3)


@pytest.mark.parametrize("padding", ["circular", "reflect"])
def test_prox_gradients_pass_gradcheck(padding):
    k = (torch.rand(1, 1, 3, 4, dtype=D, generator=torch.Generator().manual_seed(0)) + 0.2).requires_grad_()
    z = torch.randn(1, 2, 8, 8, dtype=D, requires_grad=True)
    y = torch.randn(1, 2, 4, 4, dtype=D, requires_grad=True)
    gamma = torch.tensor(0.8, dtype=D, requires_grad=True)

    def prox(z, y, gamma, k):
        return Downsampling(filter=k, factor=2, padding=padding, tol=1e-14, max_iter=500).prox_l2(z, y, gamma)

    assert torch.autograd.gradcheck(prox, (z, y, gamma, k), atol=1e-7)


def test_implicit_unrolled_and_closed_form_gradients_agree():
    """Circular padding: autograd through the closed form, through unrolled CG and the implicit backward."""
    torch.manual_seed(0)
    x, w = torch.rand(2, 1, 16, 16, dtype=D), torch.randn(2, 1, 16, 16, dtype=D)
    # y ≠ A z: at y = A z the prox is z itself and unrolled CG takes no step (so no gradient to the filter)
    y = Downsampling(filter="bicubic").A(x) + 0.05 * torch.randn(2, 1, 8, 8, dtype=D)
    grads = []
    for kw, use_fft in (({}, True), ({"implicit_backward_solver": False}, False), ({}, False)):
        k = downsampling_filter("bicubic", 2).clone().requires_grad_()
        p = Downsampling(filter=k, factor=2, padding="circular", tol=1e-13, max_iter=500, **kw)
        z = x.clone().requires_grad_()
        gamma = torch.tensor(2.0, dtype=D, requires_grad=True)
        (p.prox_l2(z, y, gamma, use_fft=use_fft) * w).sum().backward()
        grads.append(torch.cat([z.grad.flatten(), k.grad.flatten(), gamma.grad.flatten()]))
    for g in grads[1:]:
        assert float((g - grads[0]).norm() / grads[0].norm()) < 1e-8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_keeps_the_dtype_of_its_inputs(dtype):
    p = Downsampling(filter="bicubic", factor=2)
    x = torch.rand(1, 1, 16, 16, dtype=dtype)
    y = p.A(x)
    assert y.dtype == dtype and p.A_adjoint(y).dtype == dtype and p.prox_l2(x, y, 1.0).dtype == dtype
    assert Downsampling(filter="bicubic", padding="reflect").prox_l2(x, y, 1.0).dtype == dtype
    # float64 images use the float64 filter: not limited by a float32 one (which would err by ~1e-8)
    exact = Blur(downsampling_filter("bicubic", 2), padding="circular").A(x.double())[..., ::2, ::2]
    assert float((p.A(x.double()) - exact).abs().max()) < 1e-15


def test_image_size_and_its_one_line_errors():
    p = Downsampling(img_size=(1, 33, 31), filter="bilinear", factor=2, padding="reflect", tol=1e-10, max_iter=300)
    x = torch.rand(1, 1, 33, 31, dtype=D)
    y = p.A(x)
    assert y.shape[-2:] == (17, 16) and p.A_adjoint(y).shape == x.shape
    assert p.prox_l2(x, y, 1.0).shape == x.shape
    free = Downsampling(filter="bilinear", factor=2, padding="reflect")
    assert free.A_adjoint(y).shape[-2:] == (34, 32)  # factor × y's size
    with pytest.raises(ValueError, match=r"^Downsampling.prox_l2: z is 33x31 but .*give img_size=\(C, H, W\)"):
        free.prox_l2(x, y, 1.0)
    with pytest.raises(ValueError, match=r"y of shape \(1, 1, 5, 5\) is not a measurement of 33x31 images"):
        p.A_adjoint(torch.zeros(1, 1, 5, 5))
    valid = Downsampling(filter="bicubic", factor=2, padding="valid")
    assert valid.A_adjoint(torch.zeros(1, 1, 10, 10)).shape[-2:] == (27, 27)  # 2·10 + 8 − 1
    assert valid.interior_margin((1, 1, 64, 64)) == (7, 7) and p.interior_margin((1, 1, 33, 31)) == (0, 0)


def test_keywords_are_stored_and_a_named_filter_follows_the_factor():
    p = Downsampling(filter="bicubic", factor=2, noise_model=GaussianNoise(0.0))
    x = torch.rand(1, 1, 32, 32)
    assert p.A(x, factor=4).shape[-2:] == (8, 8) and p.factor == 4 and p.filter.shape[-1] == 16
    p.update(filter="bilinear", factor=2)
    assert p.filter.shape[-1] == 4 and p.factor == 2
    assert p(x, filter=["gaussian", "gaussian"]).shape[-2:] == (16, 16) and p.filter.shape[-1] == 15
    k = torch.ones(3, 3) / 9
    p.update(filter=k)
    assert torch.equal(p.filter[0, 0], k) and p.A(x, factor=torch.tensor([2, 2])).shape[-2:] == (16, 16)
    assert p.filter.shape[-1] == 3  # a tensor filter is kept when the factor changes
    bare = Downsampling(filter=None)
    bare.update_parameters(filter="bicubic", device="cpu")
    assert bare.filter.shape == (1, 1, 8, 8) and bare.A(x).shape[-2:] == (16, 16)


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: Downsampling(filter="lanczos"), ValueError,
     r"filter 'lanczos' is neither one of gaussian, bilinear, bicubic, sinc nor a kernel file"),
    (lambda: Downsampling(factor=2.5), ValueError, r"factor must be an integer >= 1, got 2.5"),
    (lambda: Downsampling(factor=0), ValueError, r"factor must be an integer >= 1"),
    (lambda: Downsampling(padding="wrap"), ValueError, r"padding must be one of valid, circular"),
    (lambda: Downsampling(filter=["bicubic", "gaussian"]), ValueError, r"must repeat one name"),
    (lambda: Downsampling(img_size=(8,)), ValueError, r"img_size must be \(C, H, W\)"),
    (lambda: Downsampling().A(torch.rand(1, 1, 8, 8), sigma=0.1), ValueError, r"unknown keyword\(s\) sigma"),
    (lambda: Downsampling().update_parameters(mask=torch.ones(1)), ValueError, r"accepts: filter, factor"),
    (lambda: Downsampling(factor=torch.tensor([2, 4])), ValueError, r"one factor per batch, got factors \[2, 4\]"),
    (lambda: Downsampling().prox_l2(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 4, 4), 0.0), ValueError,
     r"gamma must be > 0"),
])
def test_bad_inputs_are_one_line_errors(make, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


def test_tikhonov_baseline_and_sr_gain():
    """The training's mean-centred Tikhonov works for Downsampling, and beats Aᵀy on a smooth image."""
    from unfolded.metrics import psnr
    from unfolded.training.baselines import tikhonov

    t = torch.linspace(0, 1, 32, dtype=D)
    x = (0.5 + 0.3 * torch.sin(6 * t)[:, None] * torch.cos(4 * t)[None, :])[None, None]
    for padding in ("circular", "reflect"):
        p = Downsampling(img_size=(1, 32, 32), filter="bicubic", factor=2, padding=padding)
        y = p.A(x)
        x_t = tikhonov(p, y, x.shape, lam=1e-3)
        assert x_t.shape == x.shape and float(psnr(x_t, x)) > float(psnr(p.A_adjoint(y), x)) + 15


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_like_on_cpu():
    from unfolded.models import DRUNet
    from unfolded.physics.generators import MotionBlurGenerator

    x = torch.rand(2, 1, 32, 32, dtype=D)
    for padding in ("circular", "reflect"):
        cpu = Downsampling(filter="bicubic", padding=padding, tol=1e-12, max_iter=500)
        gpu = Downsampling(filter="bicubic", padding=padding, tol=1e-12, max_iter=500, device="cuda")
        y = cpu.A(x)
        assert torch.allclose(gpu.prox_l2(x.cuda(), y.cuda(), 0.5).cpu(), cpu.prox_l2(x, y, 0.5), atol=1e-10)
    k = MotionBlurGenerator(9, device="cuda").draw([0, 1], seed=0)["filter"]
    assert k.device.type == "cuda" and torch.allclose(k.sum(dim=(-2, -1)).cpu(), torch.ones(2, 1), atol=1e-6)
    net = DRUNet(1, 1, nc=(4, 4, 8, 8), nb=1, device="cuda")
    assert net(torch.rand(1, 1, 32, 32, device="cuda"), torch.tensor([0.1], device="cuda")).device.type == "cuda"
