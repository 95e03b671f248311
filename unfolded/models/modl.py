"""MoDL (Aggarwal, Mani & Jacob 2019): a shared CNN denoiser alternated with conjugate-gradient data consistency."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..metrics import psnr
from ..physics.base import LinearPhysics, check_physics, refuse_forward_keywords
from ..solvers.cg import SolverLog, record_solves
from .dncnn import DnCNN


class MoDL(nn.Module):
    """x₀ = Aᵀy; K times: z = D(x), x = argmin ½‖Ax − y‖² + λ/2‖x − z‖² (= physics.prox_l2(z, y, 1/λ)).

    One denoiser D shared by all iterations and one learnable λ > 0 (stored as log λ so it stays
    positive). The output is the last data-consistency step, as in the paper. The solve is the physics'
    own: a closed form for single-coil MRI, otherwise CG with the memory-light implicit backward when the
    physics has `implicit_backward_solver=True`.

    Default denoiser: DnCNN(2, 2, depth=7) (the reference's) with its last layer zero-initialised, so
    the untrained network is the identity and MoDL starts as a plain least-squares reconstruction.
    """

    def __init__(self, denoiser: nn.Module | None = None, num_iter: int = 3, lambda_init: float = 0.05):
        super().__init__()
        if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
            raise ValueError(f"MoDL: num_iter must be an integer >= 1, got {num_iter!r}")
        if not float(lambda_init) > 0:
            raise ValueError(f"MoDL: lambda_init must be > 0, got {lambda_init!r}")
        if denoiser is not None and not isinstance(denoiser, nn.Module):
            raise TypeError(f"MoDL: denoiser must be a torch.nn.Module, got {type(denoiser).__name__}")
        self.denoiser = DnCNN(2, 2, depth=7, last_layer_init="zero") if denoiser is None else denoiser
        self.num_iter = num_iter
        self.log_lambda = nn.Parameter(torch.tensor([math.log(float(lambda_init))]))
        self.solver_log = SolverLog()

    @property
    def lambda_dc(self) -> Tensor:
        return self.log_lambda.exp()

    def hyperparameters(self) -> dict[str, Tensor]:
        return {"lambda": self.lambda_dc.detach()}

    def forward(self, y: Tensor, physics: LinearPhysics, init: Tensor | None = None, x_gt: Tensor | None = None,
                compute_metrics: bool = False, **kwargs):
        refuse_forward_keywords("MoDL", kwargs)
        check_physics("MoDL", physics)
        x = physics.A_adjoint(y) if init is None else init
        gamma = 1 / self.lambda_dc[0]
        trace = IterateMetrics(x_gt if compute_metrics else None)
        with record_solves(self.solver_log):
            for _ in range(self.num_iter):
                x = physics.prox_l2(self.denoiser(x), y, gamma)
                trace.add(x)
        return (x, trace.result()) if compute_metrics else x


class IterateMetrics:
    """PSNR (of magnitudes, for complex images) of every iterate against x_gt, as the algorithms report
    it: `result()` is {"psnr": (K, B)}, or {} without x_gt."""

    def __init__(self, x_gt: Tensor | None):
        self.x_gt, self.psnr = x_gt, []

    def add(self, x: Tensor) -> None:
        if self.x_gt is not None:
            self.psnr.append(psnr(x, self.x_gt))  # of magnitudes for complex images

    def result(self) -> dict[str, Tensor]:
        return {"psnr": torch.stack(self.psnr)} if self.psnr else {}
