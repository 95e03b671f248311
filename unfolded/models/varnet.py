"""Variational networks: VarNet (Hammernik et al. 2018) and E2E-VarNet (Sriram et al. 2020).

Each cascade t has its **own** regulariser network D_t and data-consistency weight η_t:
- mode="varnet" (image domain):  x ← x − η_t Aᵀ(Ax − y) − (x − D_t(x))
- mode="e2e-varnet" (k-space):   k ← k − η_t M(k − y) + E(D_t(R k) − R k),
  with R k = Σₙ Sₙ* Fᴴ kₙ (reduce coils to one image) and E x = (M-free) F(Sₙ x) (expand to coils).
The regulariser term x − D_t(x) of a residual denoiser is the learned gradient of the paper's
regulariser; with D_t zero-initialised each cascade starts as a plain gradient step on the data term.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..physics.base import LinearPhysics, check_physics, refuse_forward_keywords
from ..physics.mri import MRI, MultiCoilMRI, fft2c, ifft2c, to_complex, to_real
from ..solvers.cg import SolverLog
from .dncnn import DnCNN
from .modl import IterateMetrics


class SensitivityModel(nn.Module):
    """Coil maps from the fully sampled k-space centre (E2E-VarNet's sensitivity network, small).

    Each coil's low-resolution image is refined by a CNN (shared across coils), then the maps are
    divided by their root-sum-of-squares so that Σₙ|Sₙ|² = 1.
    """

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        self.net = DnCNN(2, 2, depth=4, nf=16, last_layer_init="zero") if net is None else net

    def forward(self, y: Tensor, physics: MultiCoilMRI) -> Tensor:
        B, _, N, H, W = y.shape
        line = physics.mask[0, 0, H // 2] != 0  # sampled columns on the centre row
        c, lo, hi = W // 2, W // 2, W // 2
        while lo > 0 and line[lo - 1]:
            lo -= 1
        while hi < W - 1 and line[hi + 1]:
            hi += 1
        acs = torch.zeros(W, dtype=y.dtype, device=y.device)
        acs[lo:hi + 1] = 1.0 if bool(line[c]) else 0.0
        images = to_real(ifft2c(to_complex(y * acs)))  # (B, 2, N, H, W)
        images = images.permute(0, 2, 1, 3, 4).reshape(B * N, 2, H, W)
        maps = to_complex(self.net(images)).reshape(B, N, H, W)
        rss = maps.abs().pow(2).sum(1, keepdim=True).sqrt()
        return maps / (rss + 1e-12 * rss.amax(dim=(-3, -2, -1), keepdim=True))


def _per_cascade(denoiser, num_cascades: int) -> nn.ModuleList:
    """A list of num_cascades modules used as is, or one module deep-copied per cascade (own weights)."""
    if denoiser is None:
        return nn.ModuleList(DnCNN(2, 2, depth=5, nf=32, last_layer_init="zero") for _ in range(num_cascades))
    if isinstance(denoiser, (list, tuple, nn.ModuleList)):
        if len(denoiser) != num_cascades:
            raise ValueError(f"VarNet: a list of denoisers must have num_cascades ({num_cascades}) entries, "
                             f"got {len(denoiser)}")
        return nn.ModuleList(denoiser)
    if not isinstance(denoiser, nn.Module):
        raise TypeError(f"VarNet: denoiser must be a torch.nn.Module or a list of them, got {type(denoiser).__name__}")
    return nn.ModuleList(copy.deepcopy(denoiser) for _ in range(num_cascades))


class VarNet(nn.Module):
    """`model(y, physics)` for MRI / MultiCoilMRI (varnet mode works with any LinearPhysics).

    `denoiser`: one module (copied per cascade) or a list with one per cascade; default DnCNN(2, 2,
    depth=5, nf=32) zero-initialised. `sensitivity_model`: e2e-varnet only; a module
    `(y, physics) -> coil maps` (e.g. `SensitivityModel()`); None uses the physics' known maps.
    """

    def __init__(self, denoiser=None, sensitivity_model: nn.Module | None = None, num_cascades: int = 12,
                 mode: str = "varnet", dc_weight_init: float = 1.0):
        super().__init__()
        if isinstance(num_cascades, bool) or not isinstance(num_cascades, int) or num_cascades < 1:
            raise ValueError(f"VarNet: num_cascades must be an integer >= 1, got {num_cascades!r}")
        mode = mode.lower() if isinstance(mode, str) else mode  # the reference's names are case-insensitive
        if mode not in ("varnet", "e2e-varnet"):
            raise ValueError(f"VarNet: mode must be 'varnet' or 'e2e-varnet', got {mode!r}")
        if sensitivity_model is not None and mode != "e2e-varnet":
            raise ValueError("VarNet: sensitivity_model is only used with mode='e2e-varnet'")
        self.mode, self.num_cascades = mode, num_cascades
        self.denoisers = _per_cascade(denoiser, num_cascades)
        self.sensitivity_model = sensitivity_model
        self.dc_weight = nn.Parameter(torch.full((num_cascades,), float(dc_weight_init)))
        self.solver_log = SolverLog()  # VarNet solves nothing; kept so every model logs alike

    def hyperparameters(self) -> dict[str, Tensor]:
        return {"dc_weight": self.dc_weight.detach()}

    def forward(self, y: Tensor, physics: LinearPhysics, init: Tensor | None = None, x_gt: Tensor | None = None,
                compute_metrics: bool = False, **kwargs):
        refuse_forward_keywords("VarNet", kwargs)
        check_physics("VarNet", physics)
        trace = IterateMetrics(x_gt if compute_metrics else None)
        x = self._varnet(y, physics, init, trace) if self.mode == "varnet" else self._e2e(y, physics, init, trace)
        return (x, trace.result()) if compute_metrics else x

    def _varnet(self, y, physics, init, trace):
        x = physics.A_adjoint(y) if init is None else init
        for t, D in enumerate(self.denoisers):
            x = D(x) - self.dc_weight[t] * physics.A_adjoint(physics.A(x) - y)  # = x − ηAᵀ(Ax−y) − (x − D(x))
            trace.add(x)
        return x

    def _e2e(self, y, physics, init, trace):
        if not isinstance(physics, (MRI, MultiCoilMRI)):
            raise TypeError("VarNet: mode='e2e-varnet' needs MRI or MultiCoilMRI physics, got "
                            f"{type(physics).__name__}")
        multi = isinstance(physics, MultiCoilMRI)
        maps = None
        if multi:
            maps = physics.coil_maps if self.sensitivity_model is None else self.sensitivity_model(y, physics)
            maps = physics._maps(y, maps)
        mask = physics._mask(y)

        def reduce(k):  # coil k-space → one image (B, 2, H, W)
            return to_real((maps.conj() * ifft2c(to_complex(k))).sum(1)) if multi else to_real(ifft2c(to_complex(k)))

        def expand(x):  # image → coil k-space, unmasked
            return to_real(fft2c(maps * to_complex(x).unsqueeze(1))) if multi else to_real(fft2c(to_complex(x)))

        k = mask * y if init is None else expand(init)  # as the paper's code: start from the measured k-space
        for t, D in enumerate(self.denoisers):
            image = reduce(k)
            k = k - self.dc_weight[t] * mask * (k - y) + expand(D(image) - image)
            if trace.x_gt is not None:
                trace.add(reduce(k))
        return reduce(k)
