"""Linear forward operators with noise, their adjoints and the least-squares proximal step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..solvers.cg import (
    NormalEquations,
    NormalSystem,
    SolverLog,
    active_log,
    batch_dot,
    conjugate_gradient,
    record_solves,
    report_solve,
)
from ..solvers.krylov import KrylovSystem, check_solver, lsqr, solve_info
from ..solvers.least_squares import prox_l2_cg
from .linear_tools import LinearTools
from .noise import GaussianNoise
from .parameters import OperatorParameters


def as_gamma(gamma, like: Tensor) -> Tensor:
    """γ as a 0-d tensor or one value per sample shaped (B, 1, ..., 1); it must be positive."""
    if isinstance(gamma, Tensor):
        g = gamma.to(dtype=like.dtype, device=like.device)
    else:
        g = torch.tensor(float(gamma), dtype=like.dtype, device=like.device)
    if g.numel() == 1:
        g = g.reshape(())
    elif g.numel() == like.shape[0]:
        g = g.reshape(-1, *([1] * (like.dim() - 1)))
    else:
        raise ValueError(f"gamma must be a scalar or hold one value per sample ({like.shape[0]}), got shape "
                         f"{tuple(g.shape)}")
    if not bool((g > 0).all()):
        raise ValueError(f"gamma must be > 0, got {g.detach().flatten()[:4].tolist()}")
    return g


def check_physics(owner: str, physics) -> None:
    """A model's one-line error when it is handed something that is not a physics operator."""
    if not isinstance(physics, LinearPhysics):
        raise TypeError(f"{owner}: physics must be a unfolded.physics operator, got {type(physics).__name__}")


def refuse_forward_keywords(owner: str, kwargs: dict) -> None:
    """`model(y, physics, ...)` takes init, x_gt and compute_metrics; anything else is refused, not ignored."""
    if kwargs:
        raise ValueError(f"{owner}.forward: unknown keyword(s) {', '.join(sorted(kwargs))}; it accepts init, x_gt "
                         "and compute_metrics")


def check_measurement_values(y: Tensor) -> None:
    """NaN or inf in y would silently turn every estimate into NaN: refuse it up front."""
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or infinite values; measurements must be finite")


class LinearPhysics(OperatorParameters, LinearTools, nn.Module):
    """y = N(A x) for a linear A, with exact adjoint `A_adjoint`.

    Subclasses override `A`, `A_adjoint` and, where one exists, `prox_l2_closed_form`, and list the
    operator tensors they accept by keyword in `parameter_names` (physics.parameters: a tensor given by
    keyword is validated and stored, as in the reference; an unknown keyword is a ValueError).
    With A and A_adjoint given as callables, keywords are passed on to them, and the implicit backward
    differentiates y, z and γ only: tensors captured by the callables get no gradient (use
    implicit_backward_solver=False, or a subclass).
    """

    def __init__(
        self,
        A: Callable[[Tensor], Tensor] | None = None,
        A_adjoint: Callable[[Tensor], Tensor] | None = None,
        noise_model: nn.Module | None = None,
        max_iter: int = 50,
        tol: float = 1e-4,
        implicit_backward_solver: bool = True,
        img_size=None,
        sensor_model: Callable[[Tensor], Tensor] | None = None,
        solver: str = "CG",
        device=None,
    ):
        super().__init__()
        if (A is None) != (A_adjoint is None):
            raise ValueError("LinearPhysics: give both A and A_adjoint, or neither (identity)")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if not float(tol) > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        self._A, self._A_adjoint = A, A_adjoint
        self.noise_model = noise_model if noise_model is not None else GaussianNoise(0.0)
        self.sensor_model = sensor_model
        self.max_iter = max_iter
        self.tol = float(tol)
        self.implicit_backward_solver = bool(implicit_backward_solver)
        self.solver = check_solver(solver)
        if img_size is not None:
            self.img_size = tuple(img_size)
        if device is not None:
            self.to(device)

    # --- operator -------------------------------------------------------------------------------
    def A(self, x: Tensor, **params) -> Tensor:
        if self._A is None:
            if params:
                raise self._unknown("A", params)
            return x
        return self._A(x, **params) if params else self._A(x)

    def A_adjoint(self, y: Tensor, **params) -> Tensor:
        if self._A_adjoint is None:
            if params:
                raise self._unknown("A_adjoint", params)
            return y
        return self._A_adjoint(y, **params) if params else self._A_adjoint(y)

    def A_adjoint_A(self, x: Tensor, **params) -> Tensor:
        return self.A_adjoint(self.A(x, **params))

    def A_A_adjoint(self, y: Tensor, **params) -> Tensor:
        return self.A(self.A_adjoint(y, **params))

    def forward(self, x: Tensor, **params) -> Tensor:
        """Simulate a measurement: A x plus fresh noise. Keywords are operator tensors (stored, as in
        the reference: `physics(x, filter=k)`) or the noise model's (`sigma=`, `seed=`)."""
        if not params:
            y = self.noise(self.A(x))
        else:
            operator = {k: params.pop(k) for k in list(params) if k in self.parameter_names}
            y = self.noise(self.A(x, **operator), **params)
        return y if self.sensor_model is None else self.sensor_model(y)

    def noise(self, y: Tensor, **params) -> Tensor:
        """N(y); keywords go to the noise model, which must declare them (`call_parameters`)."""
        if not params:
            return self.noise_model(y)
        self._check_noise_keywords("", params, getattr(self.noise_model, "call_parameters", ()))
        return self.noise_model(y, **params)

    def sensor(self, y: Tensor) -> Tensor:
        return y if self.sensor_model is None else self.sensor_model(y)

    def operator_params(self) -> dict[str, Tensor]:
        """Tensors the operator depends on that may need gradients (e.g. a blur filter)."""
        return {}

    def output_shape(self, x_shape: torch.Size) -> tuple[int, ...] | None:
        """Shape of A x for an x of `x_shape`; None when the operator cannot say without applying A."""
        return None

    def normal_operator(self, gamma: Tensor, like: Tensor, **params) -> Callable[[Tensor], Tensor]:
        """v ↦ (AᵀA + I/γ) v for images shaped like `like`; subclasses may compute it faster."""
        return lambda v: self.A_adjoint(self.A(v, **params), **params) + v / gamma

    def normal_preconditioner(self, gamma: Tensor, rhs: Tensor, **params) -> Callable[[Tensor], Tensor] | None:
        """An approximate inverse of AᵀA + I/γ for CG, or None."""
        return None

    def normal_system(self, gamma: Tensor, like: Tensor, **params) -> NormalEquations:
        """The prox's normal equations, as an object whose `solve(rhs, x0, tol, max_iter)` returns
        (x, SolveInfo): by default CG with `normal_operator` and `normal_preconditioner` on images; a
        subclass may return an exact reduction that converges faster (Blur with valid padding)."""
        return NormalSystem(self.normal_operator(gamma, like, **params),
                            self.normal_preconditioner(gamma, like, **params))

    def check_measurement(self, y: Tensor, x_shape: torch.Size) -> None:
        expected = self.output_shape(x_shape)
        if expected is not None and tuple(y.shape) != tuple(expected):
            raise ValueError(
                f"y has shape {tuple(y.shape)} but {type(self).__name__} maps images of shape "
                f"{tuple(x_shape)} to {tuple(expected)}"
            )

    # --- least squares ----------------------------------------------------------------------------
    def prox_l2_closed_form(self, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor | None:
        return None

    def prox_l2(self, z: Tensor | float | None, y: Tensor, gamma, solver: str | None = "CG",
                max_iter: int | None = None, tol: float | None = None, verbose: bool = False) -> Tensor:
        """argmin_x ½‖Ax − y‖² + 1/(2γ)‖x − z‖², i.e. (AᵀA + I/γ) x = Aᵀy + z/γ.

        Closed form where the operator has one (then `solver` only has to be a valid name: every solver
        converges to that exact solution); otherwise the normal equations are solved by `solver` ('CG',
        'BiCGStab', 'minres' or 'lsqr'; None: the physics' own `solver`) warm-started at z, stopping at a
        relative residual `tol` (default: the physics' own) or `max_iter` iterations. The implicit backward
        (implicit_backward_solver=True) solves with the same method. z None or a number: a constant image.
        Never mutates the physics. `verbose` prints the forward solve's statistics.
        """
        solver = check_solver(self.solver if solver is None else solver)
        if not isinstance(z, Tensor):
            z = torch.full_like(self.A_adjoint(y), 0.0 if z is None else float(z))
        self.check_measurement(y, z.shape)
        gamma = as_gamma(gamma, z)
        closed = self.prox_l2_closed_form(z, y, gamma)
        if closed is not None:
            return closed
        tol = self.tol if tol is None else float(tol)
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        target = self if solver == "CG" else SolvedBy(self, solver)
        if not verbose:
            return prox_l2_cg(target, z, y, gamma, tol, max_iter, self.implicit_backward_solver)
        outer, local = active_log(), SolverLog()
        with record_solves(local):
            x = prox_l2_cg(target, z, y, gamma, tol, max_iter, self.implicit_backward_solver)
        if outer is not None:
            outer.records.extend(local.records)
        print(f"{type(self).__name__}.prox_l2: {local.summary()}")
        return x

    def A_dagger(self, y: Tensor, solver: str | None = "CG", max_iter: int | None = None, tol: float | None = None,
                 verbose: bool = False, **params) -> Tensor:
        """Least-squares (minimum-norm) solution of A x = y: the normal equations AᵀA x = Aᵀy solved from 0 by
        `solver` (from 0 every Krylov iterate stays in the row space, hence the minimum-norm solution), or
        LSQR on A itself. Operator keywords are stored first (as in the reference)."""
        solver = check_solver(self.solver if solver is None else solver)
        if params:
            self.update_parameters(**params)
        tol = self.tol if tol is None else float(tol)
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        rhs = self.A_adjoint(y)
        x, info = least_squares_solve(self.A, self.A_adjoint, y, rhs, solver, max_iter, tol)
        if verbose:
            print(f"{type(self).__name__}.A_dagger ({solver}): {info.iterations} iterations, relative residual "
                  f"{float(info.rel_residual.max()):.2e}")
        report_solve("A_dagger", info, tol, active_log())
        return x

    def _closed_form_dagger(self, solver, params) -> None:
        """Checks of A_dagger's arguments where the pseudo-inverse has a closed form (which every solver
        would converge to, so max_iter, tol and the solver's name have nothing left to choose)."""
        check_solver(self.solver if solver is None else solver)
        if params:
            self.update_parameters(**params)


class SolvedBy:
    """A physics whose prox normal equations are solved by another Krylov method than CG: `prox_l2_cg`
    and its implicit backward ask `normal_system`, which this view answers; everything else is the
    physics' own."""

    def __init__(self, physics: LinearPhysics, method: str):
        self.physics, self.method = physics, method

    def __getattr__(self, name):
        return getattr(self.physics, name)

    def normal_system(self, gamma: Tensor, like: Tensor, **params) -> KrylovSystem:
        p = self.physics
        return KrylovSystem(self.method, p.normal_operator(gamma, like, **params),
                            lambda v: p.A(v, **params), lambda u: p.A_adjoint(u, **params), gamma)


def least_squares_solve(A, A_adjoint, y: Tensor, rhs: Tensor, solver: str, max_iter: int, tol: float):
    """AᵀA x = rhs (= Aᵀy) from 0 by the named method; LSQR works on (A, y) directly."""
    def normal(v):
        return A_adjoint(A(v))

    if solver == "lsqr":
        x, it = lsqr(A, A_adjoint, y, rhs, max_iter=max_iter, tol=tol, reference=batch_dot(rhs, rhs))
        return x, solve_info("lsqr", normal, x, rhs, tol, it)
    if solver == "CG":
        return conjugate_gradient(normal, rhs, max_iter=max_iter, tol=tol)
    return KrylovSystem(solver, normal).solve(rhs, None, tol, max_iter)


class Denoising(LinearPhysics):
    """A = I: y = x + noise."""

    def __init__(self, noise_model: nn.Module | None = None, **kwargs):
        super().__init__(noise_model=GaussianNoise(0.1) if noise_model is None else noise_model, **kwargs)

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        return (gamma * y + z) / (gamma + 1)

    def A_dagger(self, y, solver="CG", max_iter=None, tol=None, verbose=False, **params):
        self._closed_form_dagger(solver, params)
        return y
