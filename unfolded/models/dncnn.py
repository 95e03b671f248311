"""DnCNN (Zhang et al. 2017) with the reference's layer names, so its checkpoints load strictly."""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn


class DnCNN(nn.Module):
    """Residual CNN denoiser: x + out_conv(ReLU(conv ... ReLU(in_conv(x)))).

    `forward(x, sigma=None)` ignores σ (`uses_sigma = False`). `pretrained` is a local checkpoint path
    (there are no downloads). `last_layer_init="zero"` starts the network as the identity, which makes
    an unrolled network start as a plain least-squares solver (a much better training start).
    """

    uses_sigma = False

    def __init__(self, in_channels: int = 3, out_channels: int = 3, depth: int = 20, bias: bool = True,
                 nf: int = 64, pretrained: str | None = None, device=None, last_layer_init: str = "kaiming"):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"DnCNN is residual: in_channels ({in_channels}) must equal out_channels "
                             f"({out_channels})")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"DnCNN: depth must be an integer >= 2, got {depth!r}")
        if last_layer_init not in ("kaiming", "zero"):
            raise ValueError(f"DnCNN: last_layer_init must be 'kaiming' or 'zero', got {last_layer_init!r}")
        self.in_channels = in_channels
        self.in_conv = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=bias)
        self.conv_list = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1, bias=bias) for _ in range(depth - 2))
        self.out_conv = nn.Conv2d(nf, out_channels, 3, 1, 1, bias=bias)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if last_layer_init == "zero":
            nn.init.zeros_(self.out_conv.weight)
        if pretrained is not None:
            if not os.path.isfile(pretrained):
                raise ValueError(f"DnCNN: pretrained must be a path to a local checkpoint file, got {pretrained!r}")
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
            self.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state, strict=True)
            self.eval()
        if device is not None:
            self.to(device)

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DnCNN expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = torch.relu(self.in_conv(x))
        for conv in self.conv_list:
            h = torch.relu(conv(h))
        return x + self.out_conv(h)
