"""A plain U-Net denoiser (Jin et al. 2017 style: zero padding, global residual connection) with the reference's
name, signature and module names (deepinv.models.UNet: `Conv1..`, `Up2..`, `Up_conv2..`, `Conv_1x1`)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .drunet import _pad_run


class UNet(nn.Module):
    """Encoder of `scales` stages (two 3×3 conv · [batch norm] · ReLU, 2×2 max-pooling between stages), decoder
    of nearest ×2 upsampling + conv, concatenated skip connections (`cat`), 1×1 output conv; output + input
    when `residual` and in_channels == out_channels. `forward(x, sigma=None)` ignores σ. Image sides that are
    not a multiple of 2^(scales−1) are replicate-padded and cropped back.

    `channels_per_scale` gives the widths (default 64·2^k); `scales` alone gives 64·2^k for k < scales.
    `last_layer_init="zero"` zeroes the output conv, so a residual network starts as the identity (as DnCNN's).
    """

    uses_sigma = False

    def __init__(self, in_channels: int = 1, out_channels: int = 1, residual: bool = True,
                 circular_padding: bool = False, cat: bool = True, bias: bool = True, batch_norm: bool | str = True,
                 scales: int | None = None, channels_per_scale=None, device="cpu", dim=2,
                 last_layer_init: str = "default"):
        super().__init__()
        if str(dim).lower() not in ("2", "2d"):
            raise NotImplementedError(f"UNet: only 2-D networks are implemented (dim=2), got dim={dim!r}")
        if batch_norm == "biasfree":
            raise NotImplementedError("UNet: batch_norm='biasfree' is not implemented; use batch_norm=True or False")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"UNet: batch_norm must be True or False, got {batch_norm!r}")
        if channels_per_scale is not None:
            channels_per_scale = [int(c) for c in channels_per_scale]
            if scales is not None and scales != len(channels_per_scale):
                raise ValueError(f"UNet: scales={scales} but channels_per_scale has {len(channels_per_scale)} entries")
            scales = len(channels_per_scale)
        if last_layer_init not in ("default", "zero"):
            raise ValueError(f"UNet: last_layer_init must be 'default' or 'zero', got {last_layer_init!r}")
        scales = 4 if scales is None else int(scales)
        if scales < 2:
            raise ValueError(f"UNet: needs at least 2 scales, got {scales}")
        cps = channels_per_scale or [64 * 2**k for k in range(scales)]
        if residual and in_channels != out_channels:
            warnings.warn("UNet: residual=True needs in_channels == out_channels; building a non-residual network",
                          stacklevel=2)
        self.in_channels, self.out_channels, self.residual, self.cat = in_channels, out_channels, residual, cat
        self.scales = scales
        pad_mode = "circular" if circular_padding else "zeros"

        def conv_norm_relu(cin: int, cout: int) -> list[nn.Module]:
            layers = [nn.Conv2d(cin, cout, 3, 1, 1, bias=bias, padding_mode=pad_mode)]
            layers += [nn.BatchNorm2d(cout)] if batch_norm else []
            return layers + [nn.ReLU(inplace=True)]

        self.Maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        for i in range(scales):
            cin = in_channels if i == 0 else cps[i - 1]
            setattr(self, f"Conv{i + 1}", nn.Sequential(*conv_norm_relu(cin, cps[i]), *conv_norm_relu(cps[i], cps[i])))
        for i in range(scales - 1):  # registered deepest first, as in the reference (state-dict order)
            cin, cout = cps[-i - 1], cps[-i - 2]
            setattr(self, f"Up{scales - i}", nn.Sequential(nn.Upsample(scale_factor=2), *conv_norm_relu(cin, cout)))
            setattr(self, f"Up_conv{scales - i}",
                    nn.Sequential(*conv_norm_relu(2 * cout, cout), *conv_norm_relu(cout, cout)))
        self.Conv_1x1 = nn.Conv2d(cps[0], out_channels, kernel_size=1, stride=1, padding=0, bias=bias)
        if last_layer_init == "zero":
            nn.init.zeros_(self.Conv_1x1.weight)
            if bias:
                nn.init.zeros_(self.Conv_1x1.bias)
        if device is not None:
            self.to(device)

    def _forward(self, x: Tensor) -> Tensor:
        features = []
        for i in range(self.scales):
            block = getattr(self, f"Conv{i + 1}")
            x = block(x if i == 0 else self.Maxpool(x))
            features.append(x)
        for level in range(self.scales, 1, -1):
            x = getattr(self, f"Up{level}")(x)
            if self.cat:
                x = getattr(self, f"Up_conv{level}")(torch.cat((features[level - 2], x), dim=1))
        return self.Conv_1x1(x)

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        modulo = 2 ** (self.scales - 1)
        H, W = x.shape[-2:]
        out = self._forward(x) if H % modulo == 0 and W % modulo == 0 else _pad_run(self._forward, x, modulo)
        return out + x if self.residual and self.in_channels == self.out_channels else out
