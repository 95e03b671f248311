"""Linear forward operators with noise, their adjoints and the least-squares proximal step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..solvers.cg import NormalEquations, NormalSystem, active_log, conjugate_gradient, report_solve
from ..solvers.least_squares import prox_l2_cg


class GaussianNoise(nn.Module):
    """y = x + σ·n with n ~ N(0, I), drawn afresh at every call."""

    def __init__(self, sigma: float = 0.1, rng: torch.Generator | None = None):
        super().__init__()
        if not float(sigma) >= 0:
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.rng = rng

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma == 0:
            return x
        return x + self.sigma * torch.randn(x.shape, generator=self.rng, dtype=x.dtype, device=x.device)


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


def check_measurement_values(y: Tensor) -> None:
    """NaN or inf in y would silently turn every estimate into NaN: refuse it up front."""
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or infinite values; measurements must be finite")


class LinearPhysics(nn.Module):
    """y = N(A x) for a linear A, with exact adjoint `A_adjoint`.

    Subclasses override `A`, `A_adjoint` (both accept overrides of the operator tensors listed by
    `operator_params`, used by the implicit backward) and, where one exists, `prox_l2_closed_form`.
    With A and A_adjoint given as callables, the implicit backward differentiates y, z and γ only: tensors
    captured by the callables get no gradient (use implicit_backward_solver=False, or a subclass).
    """

    def __init__(
        self,
        A: Callable[[Tensor], Tensor] | None = None,
        A_adjoint: Callable[[Tensor], Tensor] | None = None,
        noise_model: nn.Module | None = None,
        max_iter: int = 50,
        tol: float = 1e-4,
        implicit_backward_solver: bool = True,
    ):
        super().__init__()
        if (A is None) != (A_adjoint is None):
            raise ValueError("LinearPhysics: give both A and A_adjoint, or neither (identity)")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if not float(tol) > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        self._A, self._A_adjoint = A, A_adjoint
        self.noise_model = noise_model if noise_model is not None else GaussianNoise(0.0)
        self.max_iter = max_iter
        self.tol = float(tol)
        self.implicit_backward_solver = bool(implicit_backward_solver)

    # --- operator -------------------------------------------------------------------------------
    def A(self, x: Tensor, **params) -> Tensor:
        return x if self._A is None else self._A(x)

    def A_adjoint(self, y: Tensor, **params) -> Tensor:
        return y if self._A_adjoint is None else self._A_adjoint(y)

    def forward(self, x: Tensor) -> Tensor:
        """Simulate a measurement: A x plus fresh noise."""
        return self.noise_model(self.A(x))

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

    def prox_l2(self, z: Tensor, y: Tensor, gamma, tol: float | None = None, max_iter: int | None = None) -> Tensor:
        """argmin_x ½‖Ax − y‖² + 1/(2γ)‖x − z‖², i.e. (AᵀA + I/γ) x = Aᵀy + z/γ.

        Closed form where the operator has one; otherwise CG warm-started at z, stopping at a relative
        residual `tol` (default: the physics' own) or `max_iter` iterations. Never mutates the physics.
        """
        self.check_measurement(y, z.shape)
        gamma = as_gamma(gamma, z)
        closed = self.prox_l2_closed_form(z, y, gamma)
        if closed is not None:
            return closed
        tol = self.tol if tol is None else float(tol)
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        return prox_l2_cg(self, z, y, gamma, tol, max_iter, self.implicit_backward_solver)

    def A_dagger(self, y: Tensor, tol: float | None = None, max_iter: int | None = None) -> Tensor:
        """Least-squares (minimum-norm) solution of A x = y, by CG on the normal equations from 0."""
        tol = self.tol if tol is None else float(tol)
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        rhs = self.A_adjoint(y)
        x, info = conjugate_gradient(lambda v: self.A_adjoint(self.A(v)), rhs, max_iter=max_iter, tol=tol)
        report_solve("A_dagger", info, tol, active_log())
        return x


class Denoising(LinearPhysics):
    """A = I: y = x + noise."""

    def __init__(self, noise_model: nn.Module | None = None, **kwargs):
        super().__init__(noise_model=GaussianNoise(0.1) if noise_model is None else noise_model, **kwargs)

    def output_shape(self, x_shape):
        return tuple(x_shape)

    def prox_l2_closed_form(self, z, y, gamma):
        return (gamma * y + z) / (gamma + 1)

    def A_dagger(self, y, tol=None, max_iter=None):
        return y
