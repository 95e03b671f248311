"""The implicit least-squares backward (SPEC §3): gradcheck, and agreement with unrolled autograd."""

import warnings

import pytest
import torch
from torch.autograd import gradcheck

import unfolded as dinv
from unfolded.optim import HQS, L2, PnP
from unfolded.physics import Blur
from unfolded.physics.blur import gaussian_blur
from unfolded.solvers import ConvergenceWarning, SolverLog, record_solves

from .helpers import saved_numel

PADDINGS = ["valid", "circular", "reflect", "replicate", "constant"]
TIGHT = dict(tol=1e-13, max_iter=1000)


def _setup(padding, batch=2, size=7):
    k = torch.rand(1, 1, 3, 3, dtype=torch.float64) + 0.1
    physics = Blur(k / k.sum(), padding=padding, **TIGHT)
    z = torch.randn(batch, 1, size, size, dtype=torch.float64)
    y = physics.A(torch.randn_like(z))
    return physics, z, y


@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_y_z_gamma(padding):
    physics, z, y = _setup(padding)
    z.requires_grad_()
    y.requires_grad_()
    gamma = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda z, y, g: physics.prox_l2(z, y, g), (z, y, gamma), atol=1e-7, rtol=1e-6)
    per_sample = torch.tensor([0.4, 1.5], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda g: physics.prox_l2(z.detach(), y.detach(), g), (per_sample,), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_filter(padding):
    _, z, _ = _setup(padding)
    k = (torch.rand(1, 1, 3, 3, dtype=torch.float64) + 0.1).requires_grad_()
    y = torch.randn_like(Blur(k.detach(), padding=padding).A(z))

    def f(k):
        return Blur(k, padding=padding, **TIGHT).prox_l2(z, y, 0.8)

    assert gradcheck(f, (k,), atol=1e-7, rtol=1e-6)


def test_gradient_reaches_upstream_tensor_of_the_filter():
    """A filter computed from another tensor (here a learnable width) gets its gradient by autograd."""
    log_width = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    offsets = torch.arange(-2.0, 3.0, dtype=torch.float64)

    def make(w):
        g = torch.exp(-offsets**2 / (2 * w.exp() ** 2))
        k = g[:, None] * g[None, :]
        return (k / k.sum())[None, None]

    z = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    y = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    for implicit in (True, False):
        physics = Blur(make(log_width), implicit_backward_solver=implicit, **TIGHT)
        (grad,) = torch.autograd.grad(physics.prox_l2(z, y, 0.5).pow(2).sum(), log_width)
        if implicit:
            implicit_grad = grad
    assert torch.isfinite(implicit_grad) and implicit_grad != 0
    assert torch.allclose(implicit_grad, grad, rtol=1e-8)
    assert gradcheck(lambda w: Blur(make(w), **TIGHT).prox_l2(z, y, 0.5), (log_width,))


def _hqs_grads(padding, implicit, loss_scale):
    torch.manual_seed(3)
    denoiser = dinv.models.DnCNN(1, 1, depth=3, nf=4).double()
    model = HQS(unfold=True, data_fidelity=L2(), prior=PnP(denoiser), stepsize=0.8, max_iter=3,
                trainable_params=["stepsize"]).double()
    k = (torch.rand(1, 1, 3, 3, dtype=torch.float64) + 0.1).requires_grad_()
    physics = Blur(k, padding=padding, implicit_backward_solver=implicit, **TIGHT)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y = (physics.A(x) + 0.05 * torch.randn_like(physics.A(x))).detach().requires_grad_()
    loss = loss_scale * (model(y, physics) - x).pow(2).sum()
    params = [model.stepsize, denoiser.in_conv.weight, k, y]
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("padding", PADDINGS)
def test_implicit_matches_unrolled_gradients(padding):
    for scale in (1.0, 1e-8):  # a tiny loss must not change gradient accuracy (relative tolerance)
        implicit = _hqs_grads(padding, True, scale)
        unrolled = _hqs_grads(padding, False, scale)
        for gi, gu in zip(implicit, unrolled):
            assert gu.abs().max() > 0
            rel = (gi - gu).norm() / gu.norm()
            assert rel <= 1e-6, (padding, scale, float(rel))


def test_unconverged_solve_warns_and_reports_its_residual():
    physics = Blur(gaussian_blur(2.0), padding="valid", max_iter=2, tol=1e-10)
    z = torch.randn(1, 1, 32, 32, requires_grad=True)
    y = physics.A(torch.randn(1, 1, 32, 32))
    log = SolverLog()
    with record_solves(log), pytest.warns(ConvergenceWarning, match=r"did not converge: relative residual .* after 2"):
        x = physics.prox_l2(z, y, 10.0)
    with pytest.warns(ConvergenceWarning, match="backward"):
        x.sum().backward()
    summary = log.summary()
    assert summary["cg_forward/unconverged"] == 1 and summary["cg_backward/unconverged"] == 1
    assert summary["cg_forward/max_rel_residual"] > 1e-10
    assert summary["cg_forward/iters_mean"] == 2


def test_converged_solves_are_logged_on_the_model():
    model = HQS(prior=PnP(dinv.models.DnCNN(1, 1, depth=3, nf=4)), max_iter=2, unfold=True,
                trainable_params=["stepsize"])
    physics = Blur(gaussian_blur(1.0), padding="valid")
    x = torch.rand(1, 1, 16, 16)
    model(physics(x), physics).sum().backward()
    s = model.solver_log.summary()
    assert s["cg_forward/solves"] == 2 and s["cg_backward/solves"] == 2
    assert s["cg_forward/unconverged"] == 0 and 0 < s["cg_forward/max_rel_residual"] <= 1e-4


def test_implicit_backward_saves_no_solver_iterations():
    """The graph of an implicit prox holds (x, y, z, γ, filter) whatever the CG iteration count."""
    sizes, iterations = [], []
    for max_iter in (2, 200):  # tol 1e-30: CG runs until max_iter or until float32 residuals reach 0
        physics = Blur(gaussian_blur(2.0), padding="valid", max_iter=max_iter, tol=1e-30)
        z = torch.randn(1, 1, 64, 64, requires_grad=True)
        y = physics.A(torch.randn(1, 1, 64, 64))
        log = SolverLog()
        with record_solves(log):
            size, _ = saved_numel(lambda: physics.prox_l2(z, y, 1.0))  # noqa: B023 (called at once)
        sizes.append(size)
        iterations.append(log.records[0][1])
    assert iterations[1] > 4 * iterations[0]
    assert sizes[0] == sizes[1]
    assert sizes[0] <= 4 * 64 * 64 + 64 * 64  # x, z, y (smaller) and a few scalars/filters


@pytest.mark.parametrize("padding", ["circular", "valid", "reflect"])
def test_implicit_refuses_operator_tensors_it_cannot_differentiate(padding):
    """A subclass that changes A must not get Blur's fast solvers (built on Blur's own A): it takes
    generic CG, whose implicit backward refuses the tensor operator_params() does not list."""

    class ScaledBlur(Blur):
        """A physics with an extra learnable tensor that operator_params() forgets to list."""

        def __init__(self, k):
            super().__init__(k, padding=padding)
            self.gain = torch.nn.Parameter(torch.tensor(1.0))

        def A(self, x, filter=None):
            return self.gain * super().A(x, filter)

        def A_adjoint(self, y, filter=None):
            return self.gain * super().A_adjoint(y, filter)

    physics = ScaledBlur(gaussian_blur(1.0))
    z = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="ScaledBlur.gain requires grad but is not listed by operator_params"):
        physics.prox_l2(z, physics.A(z), 1.0)
    physics.implicit_backward_solver = False  # unrolled: the prox of the scaled operator, not of Blur's
    with torch.no_grad():
        physics.gain.fill_(2.0)
    x = physics.prox_l2(z, physics.A(z) + 0.1, 1.0)
    residual = physics.A_adjoint(physics.A(x) - physics.A(z) - 0.1) + (x - z)
    assert residual.norm() <= 1e-3 * z.norm()


def test_zero_right_hand_side_is_solved_exactly_from_any_warm_start():
    from unfolded.solvers import conjugate_gradient

    b = torch.zeros(2, 1, 4, 4)
    b[1] = 1
    x, info = conjugate_gradient(lambda v: 2 * v, b, x0=torch.ones_like(b), max_iter=5, tol=1e-6)
    assert info.converged and torch.equal(x[0], torch.zeros_like(x[0])) and torch.allclose(x[1], b[1] / 2)


def test_unconverged_warning_is_not_repeated_at_every_step():
    physics = Blur(gaussian_blur(2.0), padding="valid", max_iter=2, tol=1e-10)
    y = physics.A(torch.randn(1, 1, 32, 32))
    log = SolverLog()
    with warnings.catch_warnings(record=True) as caught, record_solves(log):
        warnings.simplefilter("always")
        for _ in range(3):  # the same call site, different residuals each time
            physics.prox_l2(torch.randn(1, 1, 32, 32), y, 10.0)
    assert len([w for w in caught if issubclass(w.category, ConvergenceWarning)]) == 1
    assert log.summary()["cg_forward/unconverged"] == 3



def test_convergence_warning_points_at_the_line_that_called_the_model():
    """Not at torch's Module.__call__ or a solver inside the library: the user's line."""
    import warnings

    from unfolded.models import DnCNN
    from unfolded.optim import HQS, PnP
    from unfolded.physics import Blur
    from unfolded.physics.blur import gaussian_blur
    from unfolded.solvers import ConvergenceWarning

    model = HQS(prior=PnP(DnCNN(1, 1, depth=2, nf=4)), max_iter=2)
    physics = Blur(gaussian_blur(2.0), padding="reflect", max_iter=1, tol=1e-12)
    y = physics(torch.rand(1, 1, 24, 24))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(y, physics)  # this line
    hits = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert hits and hits[0].filename == __file__, [w.filename for w in hits]
