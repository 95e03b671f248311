"""DRUNet (Zhang et al. 2021, "Plug-and-play image restoration with deep denoiser prior"): a 4-scale U-Net of
residual blocks whose input carries the noise level σ as one more channel, so σ is a live input (and a
trainable `sigma_denoiser` of an unfolded algorithm gets gradients through it).

Module names and nesting are the reference's (deepinv.models.DRUNet, after KAIR): a block built from one
layer is that layer itself, several layers form an nn.Sequential whose nested Sequentials are flattened.
That rule fixes the state-dict keys (`m_down1.0.res.0.weight`, `m_down1.4.weight`, and `m_body.res.0.weight`
when nb = 1), so the reference's checkpoints load with strict=True.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

_LAYERS = {
    "R": lambda c: nn.ReLU(inplace=True), "r": lambda c: nn.ReLU(),
    "L": lambda c: nn.LeakyReLU(0.2, inplace=True), "l": lambda c: nn.LeakyReLU(0.2),
    "E": lambda c: nn.ELU(), "s": lambda c: nn.Softplus(),
    "B": lambda c: nn.BatchNorm2d(c, momentum=0.9, eps=1e-4, affine=True),
    "I": lambda c: nn.InstanceNorm2d(c, affine=True),
}
DOWNSAMPLE_MODES = ("strideconv", "avgpool", "maxpool")
UPSAMPLE_MODES = ("convtranspose", "upconv", "pixelshuffle")


def _sequential(*modules: nn.Module) -> nn.Module:
    """One module stays bare; several become one flat nn.Sequential (the key-naming rule above)."""
    flat = [m for mod in modules for m in (mod.children() if isinstance(mod, nn.Sequential) else [mod])]
    return flat[0] if len(flat) == 1 else nn.Sequential(*flat)


def _block(mode: str, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Module:
    """Layers spelled by `mode`: C conv, T transposed conv, U nearest ×2 upsampling, A/M 2×2 average/max
    pooling, 2 pixel shuffle, otherwise a `_LAYERS` letter; convolutions have no bias (as in DRUNet)."""
    layers: list[nn.Module] = []
    for t in mode:
        if t == "C":
            layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False))
        elif t == "T":
            layers.append(nn.ConvTranspose2d(cin, cout, kernel, stride, padding, bias=False))
        elif t == "U":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        elif t in "AM":
            layers.append((nn.AvgPool2d if t == "A" else nn.MaxPool2d)(kernel_size=2, stride=2, padding=0))
        elif t == "2":
            layers.append(nn.PixelShuffle(2))
        else:
            layers.append(_LAYERS[t](cout))
    return _sequential(*layers)


class ResBlock(nn.Module):
    """x + res(x), res = conv · activation · conv (3×3, no bias)."""

    def __init__(self, channels: int, act_mode: str = "R"):
        super().__init__()
        self.res = _block("C" + act_mode + "C", channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res(x)


def _down(mode: str, cin: int, cout: int) -> nn.Module:
    if mode == "strideconv":
        return _block("C", cin, cout, kernel=2, stride=2, padding=0)
    return _sequential(_block("A" if mode == "avgpool" else "M", cin, cin), _block("C", cin, cout))


def _up(mode: str, cin: int, cout: int) -> nn.Module:
    if mode == "convtranspose":
        return _block("T", cin, cout, kernel=2, stride=2, padding=0)
    if mode == "upconv":
        return _block("UC", cin, cout)
    return _block("C2", cin, 4 * cout)


def _pad_run(run, x: Tensor, modulo: int) -> Tensor:
    """run() on x replicate-padded (bottom, right) to a multiple of `modulo`, cropped back."""
    H, W = x.shape[-2:]
    padded = nn.functional.pad(x, (0, -W % modulo, 0, -H % modulo), mode="replicate")
    return run(padded)[..., :H, :W]


def _quadrants(run, x: Tensor, refield: int = 64) -> Tensor:
    """run() on four overlapping corner crops (sides a multiple of `refield`), each result keeping its own
    quarter: the reference's evaluation path for large images whose size is not a multiple of 8."""
    H, W = x.shape[-2:]
    th, tw = (H // 2 // refield + 1) * refield, (W // 2 // refield + 1) * refield
    h2, w2 = H // 2, W // 2
    top_left, top_right = run(x[..., :th, :tw]), run(x[..., :th, W - tw:])
    bottom_left, bottom_right = run(x[..., H - th:, :tw]), run(x[..., H - th:, W - tw:])
    top = torch.cat((top_left[..., :h2, :w2], top_right[..., :h2, tw - (W - w2):]), dim=-1)
    bottom = torch.cat((bottom_left[..., th - (H - h2):, :w2], bottom_right[..., th - (H - h2):, tw - (W - w2):]),
                       dim=-1)
    return torch.cat((top, bottom), dim=-2)


def _check_local_file(path) -> None:
    text = str(path)
    if not isinstance(path, (str, os.PathLike)) or text.startswith(("download", "http://", "https://")):
        raise ValueError(f"DRUNet: pretrained weights must be a local file (there are no downloads), got {text!r}; "
                         "download the checkpoint yourself and pass its path")
    if not os.path.isfile(path):
        raise ValueError(f"DRUNet: pretrained={text!r}: no such file")


class DRUNet(nn.Module):
    """DRUNet denoiser: `forward(x, sigma)`, σ a number or a per-sample tensor ((B,), (B, 1, 1, 1)) or a
    noise-level map (B, 1, H, W), concatenated to x as one more input channel.

    `nc`: channels at the 4 scales; `nb`: residual blocks per scale; `act_mode`: activation letters (R/r ReLU,
    L/l LeakyReLU, E ELU, s Softplus, B/I batch/instance norm); `pretrained`: a local checkpoint path (there
    are no downloads), loaded strictly, then `.eval()`; otherwise orthogonal init, gain 0.2 (the reference's).
    """

    uses_sigma = True

    def __init__(self, in_channels: int = 3, out_channels: int = 3, nc=(64, 128, 256, 512), nb: int = 4,
                 act_mode: str = "R", downsample_mode: str = "strideconv", upsample_mode: str = "convtranspose",
                 pretrained: str | None = None, pretrained_2d_isotropic: bool = False, device=None, dim=2):
        super().__init__()
        if str(dim).lower() not in ("2", "2d"):
            raise NotImplementedError(f"DRUNet: only 2-D networks are implemented (dim=2), got dim={dim!r}")
        if pretrained_2d_isotropic:
            raise NotImplementedError("DRUNet: pretrained_2d_isotropic applies to 3-D networks, which are not "
                                      "implemented; use pretrained_2d_isotropic=False")
        nc = tuple(int(c) for c in nc)
        if len(nc) != 4 or min(nc) < 1:
            raise ValueError(f"DRUNet: nc must be 4 positive channel counts (one per scale), got {nc}")
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 0:
            raise ValueError(f"DRUNet: nb must be an integer >= 0, got {nb!r}")
        if not act_mode or any(t not in _LAYERS for t in act_mode):
            raise ValueError(f"DRUNet: act_mode must be letters among {', '.join(_LAYERS)}, got {act_mode!r}")
        if downsample_mode not in DOWNSAMPLE_MODES:
            raise ValueError(f"DRUNet: downsample_mode must be one of {', '.join(DOWNSAMPLE_MODES)}, "
                             f"got {downsample_mode!r}")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"DRUNet: upsample_mode must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample_mode!r}")
        if pretrained is not None:
            _check_local_file(pretrained)  # before building: a bad path fails fast
        self.in_channels, self.out_channels = in_channels, out_channels

        def blocks(c: int) -> list[nn.Module]:
            return [ResBlock(c, act_mode) for _ in range(nb)]

        self.m_head = _block("C", in_channels + 1, nc[0])  # + 1: the noise-level channel
        self.m_down1 = _sequential(*blocks(nc[0]), _down(downsample_mode, nc[0], nc[1]))
        self.m_down2 = _sequential(*blocks(nc[1]), _down(downsample_mode, nc[1], nc[2]))
        self.m_down3 = _sequential(*blocks(nc[2]), _down(downsample_mode, nc[2], nc[3]))
        self.m_body = _sequential(*blocks(nc[3])) if nb else nn.Sequential()
        self.m_up3 = _sequential(_up(upsample_mode, nc[3], nc[2]), *blocks(nc[2]))
        self.m_up2 = _sequential(_up(upsample_mode, nc[2], nc[1]), *blocks(nc[1]))
        self.m_up1 = _sequential(_up(upsample_mode, nc[1], nc[0]), *blocks(nc[0]))
        self.m_tail = _block("C", nc[0], out_channels)
        if pretrained is not None:
            self.load_pretrained(pretrained)
        else:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.orthogonal_(m.weight, gain=0.2)
        if device is not None:
            self.to(device)

    def load_pretrained(self, path) -> None:
        """Load a local checkpoint (a state dict, or a dict holding one under 'state_dict') strictly, read
        with weights_only=True (a shared file cannot run code), then switch to eval mode."""
        _check_local_file(path)
        text = str(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch's advice (weights_only=False) is what we refuse to do
            raise ValueError(f"DRUNet: {text} is not a checkpoint, or it holds objects that could run code when "
                             f"loaded; refused ({type(e).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = [line.strip() for line in str(e).splitlines() if line.strip()][1:2] or [""]
            raise ValueError(f"DRUNet: {text} does not fit this architecture (check in_channels, nc, nb, the "
                             f"modes): {first[0][:200]}") from None
        self.eval()

    def forward_unet(self, x0: Tensor) -> Tensor:
        x1 = self.m_head(x0)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        return self.m_tail(x + x1)

    def noise_level_map(self, x: Tensor, sigma) -> Tensor:
        """σ as a (B, 1, H, W) map in x's dtype; differentiable in σ."""
        B, _, H, W = x.shape
        if sigma is None:
            raise ValueError("DRUNet needs the noise level: forward(x, sigma) with sigma a number or one value per "
                             "sample (in an unfolded algorithm: sigma_denoiser=..., e.g. algo.sigma_denoiser=0.05)")
        if not isinstance(sigma, Tensor):
            return x.new_full((B, 1, H, W), float(sigma))
        sigma = sigma.to(device=x.device, dtype=x.dtype)
        if sigma.numel() == 1:
            return sigma.reshape(1, 1, 1, 1).expand(B, 1, H, W)
        if sigma.shape in ((B,), (B, 1, 1, 1)):
            return sigma.reshape(B, 1, 1, 1).expand(B, 1, H, W)
        if sigma.shape == (B, 1, H, W):
            return sigma
        raise ValueError(f"DRUNet: sigma must be a number, or of shape ({B},), ({B}, 1, 1, 1) or ({B}, 1, {H}, {W}) "
                         f"for images {tuple(x.shape)}, got shape {tuple(sigma.shape)}")

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DRUNet expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = torch.cat((x, self.noise_level_map(x, sigma)), dim=1)
        H, W = x.shape[-2:]
        # Three halvings need sides divisible by 8; the reference's fallbacks (same outputs as it gives):
        if all(s % 8 == 0 and s > 31 for s in (H, W)):
            return self.forward_unet(x)
        if self.training or min(H, W) < 64:
            return _pad_run(self.forward_unet, x, modulo=16)
        return _quadrants(self.forward_unet, x, refield=64)
