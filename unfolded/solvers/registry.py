"""The fixed-point solvers by name, for the DEQ forward x = T(x) and backward v = Jᵀv + u.

Every entry returns (solution, FixedPointStats). The forward solvers work on any map; the backward
problem is linear, so it also accepts GMRES, which solves (I − L)v = u directly.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .broyden import broyden
from .fixed_point import AndersonAccelerationConfig, FixedPointStats, fixed_point
from .gmres import gmres

FORWARD_SOLVERS = ("fixed_point", "anderson", "broyden")
BACKWARD_SOLVERS = FORWARD_SOLVERS + ("gmres",)


def check_solver(field: str, name: str, allowed: tuple[str, ...]) -> None:
    if name not in allowed:
        raise ValueError(f"DEQConfig: {field} must be one of {', '.join(map(repr, allowed))}, got {name!r}")


def solve_fixed_point(
    name: str,
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    max_iter: int,
    tol: float,
    anderson: AndersonAccelerationConfig | None = None,
    reference: Tensor | None = None,
) -> tuple[Tensor, FixedPointStats]:
    """x = f(x) from x0 with the named solver ('anderson' needs its configuration)."""
    if name == "fixed_point":
        return fixed_point(f, x0, max_iter, tol, None, reference)
    if name == "anderson":
        return fixed_point(f, x0, max_iter, tol, anderson or AndersonAccelerationConfig(), reference)
    if name == "broyden":
        return broyden(f, x0, max_iter, tol, reference)
    raise ValueError(f"unknown fixed-point solver {name!r}; one of {', '.join(FORWARD_SOLVERS)}")


def solve_linear_fixed_point(
    name: str,
    L: Callable[[Tensor], Tensor],
    u: Tensor,
    max_iter: int,
    tol: float,
    anderson: AndersonAccelerationConfig | None = None,
    restart: int = 20,
) -> tuple[Tensor, FixedPointStats]:
    """v = L v + u for a linear L, i.e. (I − L)v = u. Every solver stops on the same residual,
    ‖u − (I − L)v‖ ≤ tol·‖u‖ per sample, and counts its products with L, so their counts compare."""
    if name == "gmres":
        return gmres(lambda v: v - L(v), u, max_iter, tol, restart)
    reference = u.flatten(1).norm(dim=1)
    return solve_fixed_point(name, lambda v: L(v) + u, u, max_iter, tol, anderson, reference)
