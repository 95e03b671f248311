"""Losses on magnitude images: fastMRI's reference (the RSS of the coil images) has no phase, and the phase
of a reconstruction depends on the coil maps' convention (ESPIRiT's, or maps a network learns)."""

from __future__ import annotations

from torch import Tensor, nn

from ..metrics import magnitude


class MagnitudeLoss(nn.Module):
    """`base`(|x̂|, |x|) for complex images (B, 2, H, W) (others unchanged); `base` defaults to MSE."""

    def __init__(self, base: nn.Module | None = None):
        super().__init__()
        self.base = nn.MSELoss() if base is None else base

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return self.base(magnitude(x_hat), magnitude(x))
