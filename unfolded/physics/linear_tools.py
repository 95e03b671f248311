"""The reference's LinearPhysics utilities: adjointness test, operator norm (power method), condition
number (Lanczos), clone, and composition by `*`. A mixin of LinearPhysics, kept apart from the operator."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from ..solvers.cg import active_log, warn_unconverged


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a.conj() * b).sum().real


def _report(kind: str, iterations: int, change: float, tol: float, converged: bool, verbose: bool) -> None:
    """Record an eigenvalue iteration in the active SolverLog and warn when it stopped at max_iter."""
    log = active_log()
    if log is not None:
        log.add(kind, iterations, change, converged)
    if verbose:
        print(f"{kind}: {iterations} iterations, relative change {change:.2e} (tol {tol:.1e})")
    if not converged:
        warn_unconverged(kind, f"{kind} did not converge: relative change {change:.2e} > tol {tol:.1e} after "
                         f"{iterations} iterations; raise max_iter or tol", stacklevel=3)


class LinearTools:
    """Mixin for LinearPhysics (which provides A, A_adjoint, img_size, max_iter, tol)."""

    def adjointness_test(self, u: Tensor | None = None, img_size=None, num_samples: int = 1, device=None,
                         dtype=None, **params) -> Tensor:
        """Monte-Carlo estimate of ‖A − Bᵀ‖_F / ‖A‖_F for B = A_adjoint, from ⟨v, Au⟩ − ⟨Bv, u⟩ with Gaussian u,
        v (the reference's definition): ~1e-7 in float32, ~1e-16 in float64 for an exact adjoint. `u` only
        gives the image size, device and dtype."""
        if u is not None:
            img_size, device, dtype = tuple(u.shape[1:]), u.device if device is None else device, u.dtype
        elif img_size is None:
            img_size = getattr(self, "img_size", None)
            if img_size is None:
                raise ValueError("adjointness_test: give u (an example image) or img_size")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        x = torch.randn((num_samples, *tuple(img_size)), device=device, dtype=dtype)
        Ax = self.A(x, **params)
        v = torch.randn_like(Ax)
        s1 = (v.conj() * Ax).reshape(num_samples, -1).sum(-1)
        s2 = (x.conj() * self.A_adjoint(v, **params)).reshape(num_samples, -1).sum(-1)
        return (s1.conj() - s2).abs().pow(2).mean().sqrt() / s1.abs().pow(2).mean().sqrt()

    def compute_sqnorm(self, x0: Tensor, *, max_iter: int = 100, tol: float = 1e-3, verbose: bool = True,
                       rng: torch.Generator | None = None, **params) -> Tensor:
        """‖AᵀA‖₂ = ‖A‖₂² by the power method on AᵀA from a random start shaped like x0 (its values are
        unused), the whole tensor being one vector. Stops when the Rayleigh quotient changes by ≤ tol
        relatively; the iterations and that change go to the SolverLog ('power_method')."""
        if params:
            self.update_parameters(**params)
        x = torch.randn(x0.shape, generator=rng, dtype=x0.dtype, device=x0.device)
        x = x / x.norm()
        z_old, change, it = None, float("inf"), 0
        with torch.no_grad():
            while it < max_iter:
                it += 1
                y = self.A_adjoint(self.A(x))
                z = _dot(x, y)
                if z_old is not None:
                    change = float((z - z_old).abs() / z.abs().clamp_min(torch.finfo(z.dtype).tiny))
                    if change <= tol:
                        break
                z_old = z
                norm = y.norm()
                if norm == 0:  # A x = 0: x is in the kernel; the estimate 0 is exact only if A = 0
                    change = 0.0
                    break
                x = y / norm
        _report("power_method", it, change, tol, change <= tol, verbose)
        return z

    def compute_norm(self, x0: Tensor, max_iter: int = 100, tol: float = 1e-3, verbose: bool = True,
                     squared: bool = True, **params) -> Tensor:
        """The reference's (deprecated-default) name: ‖AᵀA‖₂ when squared=True, ‖A‖₂ when False."""
        if squared not in (True, False):
            raise ValueError(f"squared must be True or False, got {squared!r}")
        sq = self.compute_sqnorm(x0, max_iter=max_iter, tol=tol, verbose=verbose, **params)
        return sq if squared else sq.sqrt()

    def condition_number(self, x: Tensor, max_iter: int = 500, tol: float = 1e-6, verbose: bool = False,
                         **params) -> Tensor:
        """σ_max/σ_min of A restricted to its row space, from the extreme Ritz values of Lanczos on AᵀA.

        Lanczos starts at AᵀA x, inside the row space, so a kernel (A wider than tall) does not make the
        estimate infinite: the reference's LSQR-based estimate has the same meaning. Extreme Ritz values
        converge first, and are accurate even after Lanczos loses orthogonality. Stops when the estimate
        changes by ≤ tol relatively between iterations.
        """
        if params:
            self.update_parameters(**params)
        with torch.no_grad():
            q = self.A_adjoint(self.A(x))
            beta = q.norm()
            if beta == 0:
                raise ValueError("condition_number: A x = 0 for this x; give another x (e.g. torch.randn_like(x))")
            q, q_prev, b_prev = q / beta, torch.zeros_like(q), 0.0
            alphas, betas = [], []
            cond_old, change, it = None, float("inf"), 0
            while it < max_iter:
                it += 1
                w = self.A_adjoint(self.A(q)) - b_prev * q_prev
                a = float(_dot(q, w))
                w = w - a * q
                alphas.append(a)
                ritz = torch.linalg.eigvalsh(torch.diag(torch.tensor(alphas, dtype=torch.float64))
                                             + torch.diag(torch.tensor(betas, dtype=torch.float64), 1)
                                             + torch.diag(torch.tensor(betas, dtype=torch.float64), -1))
                cond = math.sqrt(float(ritz[-1]) / float(ritz[0])) if float(ritz[0]) > 0 else math.inf
                if cond_old is not None:
                    change = abs(cond - cond_old) / cond
                    if change <= tol:
                        break
                cond_old = cond
                b = float(w.norm())
                if b <= 1e-14 * abs(a):  # invariant subspace found: the Ritz values are exact
                    change = 0.0
                    break
                q_prev, q, b_prev = q, w / b, b
                betas.append(b)
        _report("condition_number", it, change, tol, change <= tol, verbose)
        return torch.tensor(cond, dtype=x.dtype if x.is_floating_point() else torch.float64)

    def clone(self):
        """A deep copy that also copies torch.Generator attributes (deepcopy refuses them): the copy's
        generators start from the same state and then draw independently."""
        memo = {}
        for module in self.modules():
            for value in vars(module).values():
                if isinstance(value, torch.Generator) and id(value) not in memo:
                    twin = torch.Generator(value.device)
                    twin.set_state(value.get_state())
                    memo[id(value)] = twin
        return copy.deepcopy(self, memo)

    def __mul__(self, other):
        """physics1 * physics2 = A₁∘A₂ (A₂ applied first), with physics1's noise model, as in the reference."""
        if not isinstance(other, LinearTools):
            return NotImplemented
        from .composition import ComposedLinearPhysics

        return ComposedLinearPhysics(other, self)

    def __add__(self, other):
        raise NotImplementedError(
            "physics1 + physics2 is not an operation of the reference; compose with physics1 * physics2, or build "
            "LinearPhysics(A=lambda x: p1.A(x) + p2.A(x), A_adjoint=lambda y: p1.A_adjoint(y) + p2.A_adjoint(y))")

    def A_vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """(∂A/∂x)ᵀ v = Aᵀv for a linear operator (x is unused), as in the reference."""
        return self.A_adjoint(v)

    def set_ls_solver(self, solver: str, max_iter: int | None = None, tol: float | None = None) -> None:
        """The default solver (and limits) of A_dagger / prox_l2 calls made with solver=None."""
        from ..solvers.krylov import check_solver

        self.solver = check_solver(solver)
        if max_iter is not None:
            if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
                raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
            self.max_iter = max_iter
        if tol is not None:
            if not float(tol) > 0:
                raise ValueError(f"tol must be > 0, got {tol!r}")
            self.tol = float(tol)

    def stack(self, other):
        raise NotImplementedError(
            "stack (measurements as a TensorList) is not supported: its prox would need list-valued CG. Use two "
            "physics objects and sum their data-fidelity terms, or compose operators with physics1 * physics2")
