"""Data fidelities, priors and (unfolded / deep-equilibrium) iterative algorithms."""

from ..solvers.cg import ConvergenceWarning
from ..solvers.fixed_point import AndersonAccelerationConfig
from . import data_fidelity, prior
from .algorithms import ADMM, GD, HQS, PGD, BaseOptim
from .data_fidelity import L2, DataFidelity
from .deq import DEQConfig
from .prior import RED, PnP, Prior

__all__ = ["L2", "DataFidelity", "PnP", "RED", "Prior", "BaseOptim", "GD", "PGD", "HQS", "ADMM", "DEQConfig",
           "AndersonAccelerationConfig", "ConvergenceWarning", "data_fidelity", "prior"]
