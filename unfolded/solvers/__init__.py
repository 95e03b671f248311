"""Numerical solvers shared by physics and algorithms: CG with statistics, the least-squares autograd Function,
fixed-point solvers (plain, Anderson, Broyden) and GMRES."""

from .cg import ConvergenceWarning, SolveInfo, SolverLog, conjugate_gradient, record_solves
from .fixed_point import AndersonAccelerationConfig, FixedPointStats
from .registry import BACKWARD_SOLVERS, FORWARD_SOLVERS, solve_fixed_point, solve_linear_fixed_point

__all__ = ["ConvergenceWarning", "SolveInfo", "SolverLog", "conjugate_gradient", "record_solves",
           "AndersonAccelerationConfig", "FixedPointStats", "BACKWARD_SOLVERS", "FORWARD_SOLVERS",
           "solve_fixed_point", "solve_linear_fixed_point"]
