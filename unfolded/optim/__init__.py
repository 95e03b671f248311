"""Data fidelities, priors and (unfolded / deep-equilibrium) iterative algorithms."""

from ..solvers.cg import ConvergenceWarning
from ..solvers.fixed_point import AndersonAccelerationConfig
from . import data_fidelity, prior
from .algorithms import ADMM, GD, HQS, PGD, BaseOptim
from .data_fidelity import L2, DataFidelity
from .deq import DEQConfig
from .prior import RED, L1Prior, PnP, Prior, Tikhonov, TVPrior, WaveletPrior
from .splitting import DRS, FISTA, PDCP

__all__ = ["L2", "DataFidelity", "PnP", "RED", "Prior", "TVPrior", "WaveletPrior", "L1Prior", "Tikhonov",
           "BaseOptim", "GD", "PGD", "HQS", "ADMM", "FISTA", "DRS", "PDCP", "DEQConfig",
           "AndersonAccelerationConfig", "ConvergenceWarning", "data_fidelity", "prior"]
