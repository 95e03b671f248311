"""Numerical solvers shared by physics and algorithms: CG with statistics, the least-squares autograd Function."""

from .cg import ConvergenceWarning, SolveInfo, SolverLog, conjugate_gradient, record_solves

__all__ = ["ConvergenceWarning", "SolveInfo", "SolverLog", "conjugate_gradient", "record_solves"]
