"""Learned primal-dual (Adler & Öktem 2018): CNN blocks alternating in measurement and image space.

With primal memory f (m·c channels) and dual memory h (m·c channels), c the image channels (1 for
tomography, 2 for complex MRI) and m = 5 in the paper, iteration i reads
    h ← h + Γ_i(h, A f⁽¹⁾, y),    f ← f + Λ_i(f, Aᵀ h⁽¹⁾),
where f⁽¹⁾, h⁽¹⁾ are the first c channels; the output is f⁽¹⁾. The paper starts both memories at zero;
here f⁽¹⁾ starts at Aᵀy (or `init`) and the default primal blocks' last convolutions are zero, so the untrained
network returns Aᵀy and training starts from the zero-filled / back-projected image, not from 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..physics.base import LinearPhysics, check_physics, refuse_forward_keywords
from ..solvers.cg import SolverLog
from .modl import IterateMetrics


def _check_dim(dim, who: str) -> None:
    """The reference's `dim` (2, 3, '2', '2d', '3D', …): 2-D only here."""
    text = str(dim).lower().removesuffix("d")
    if isinstance(dim, bool) or text not in ("2", "3"):
        raise ValueError(f"{who}: dim must be 2 or 3 (or '2d', '3d'), got {dim!r}")
    if text == "3":
        raise NotImplementedError(f"{who}: dim=3 (3-D convolutions) is not supported; use dim=2 on 2-D images "
                                  "(a volume slice by slice)")


class _Block(nn.Module):
    """depth 3×3 convolutions with a PReLU after each but the last, as in the paper's blocks; submodules
    named as the reference's (in_conv, conv_list, out_conv, nl_list) so its checkpoints load."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, bias: bool, nf: int, dim):
        super().__init__()
        _check_dim(dim, type(self).__name__)
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"{type(self).__name__}: depth must be an integer >= 2, got {depth!r}")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.in_conv = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=bias)
        self.conv_list = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1, bias=bias) for _ in range(depth - 2))
        self.out_conv = nn.Conv2d(nf, out_channels, 3, 1, 1, bias=bias)
        self.nl_list = nn.ModuleList(nn.PReLU() for _ in range(depth - 1))

    def cnn(self, inp: Tensor) -> Tensor:
        h = self.nl_list[0](self.in_conv(inp))
        for conv, nl in zip(self.conv_list, self.nl_list[1:]):
            h = nl(conv(h))
        return self.out_conv(h)


class PDNet_PrimalBlock(_Block):
    """x + CNN([x, Aᵀu]): `forward(x, Atu)` with x the primal memory (out_channels) and Atu the rest."""

    def __init__(self, in_channels: int = 6, out_channels: int = 5, depth: int = 3, bias: bool = True, nf: int = 32,
                 dim: int | str = 2):
        super().__init__(in_channels, out_channels, depth, bias, nf, dim)

    def forward(self, x: Tensor, Atu: Tensor) -> Tensor:
        inp = torch.cat((x, Atu), dim=1)
        if inp.shape[1] != self.in_channels or x.shape[1] != self.out_channels:
            raise ValueError(f"PDNet_PrimalBlock: x ({x.shape[1]} channels) + Atu ({Atu.shape[1]}) must give "
                             f"in_channels={self.in_channels}, with x of out_channels={self.out_channels}")
        return x + self.cnn(inp)


class PDNet_DualBlock(_Block):
    """u + CNN([u, A x, y]): `forward(u, Ax_cur, y)` with u the dual memory (out_channels)."""

    def __init__(self, in_channels: int = 7, out_channels: int = 5, depth: int = 3, bias: bool = True, nf: int = 32,
                 dim: int | str = 2):
        super().__init__(in_channels, out_channels, depth, bias, nf, dim)

    def forward(self, u: Tensor, Ax_cur: Tensor, y: Tensor) -> Tensor:
        inp = torch.cat((u, Ax_cur, y), dim=1)
        if inp.shape[1] != self.in_channels or u.shape[1] != self.out_channels:
            raise ValueError(f"PDNet_DualBlock: u ({u.shape[1]} channels) + Ax_cur ({Ax_cur.shape[1]}) + y "
                             f"({y.shape[1]}) must give in_channels={self.in_channels}, with u of "
                             f"out_channels={self.out_channels}")
        return u + self.cnn(inp)


class PDNet(nn.Module):
    """Learned primal-dual network: `model(y, physics)`, y of shape (B, c, …) with 4-D measurements.

    `channels` c = 1 (tomography) or 2 (complex MRI); `memory` m; each of `num_iter` iterations has its
    own primal and dual block (own weights). Blocks may be given as lists of PDNet_PrimalBlock /
    PDNet_DualBlock; by default they are built with in/out channels from c and m (6/5 and 7/5 for c=1).
    """

    def __init__(self, num_iter: int = 10, channels: int = 1, memory: int = 5, primal_blocks=None,
                 dual_blocks=None, depth: int = 3, nf: int = 32):
        super().__init__()
        if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
            raise ValueError(f"PDNet: num_iter must be an integer >= 1, got {num_iter!r}")
        if channels not in (1, 2) or not isinstance(memory, int) or memory < 1:
            raise ValueError(f"PDNet: channels must be 1 or 2 and memory an integer >= 1, got {channels!r}, {memory!r}")
        c, m = channels, memory
        if primal_blocks is None:
            primal_blocks = [PDNet_PrimalBlock(c * (m + 1), c * m, depth, True, nf) for _ in range(num_iter)]
            for block in primal_blocks:  # zero primal updates: the untrained network returns Aᵀy
                nn.init.zeros_(block.out_conv.weight)
                nn.init.zeros_(block.out_conv.bias)
        if dual_blocks is None:
            dual_blocks = [PDNet_DualBlock(c * (m + 2), c * m, depth, True, nf) for _ in range(num_iter)]
        if len(primal_blocks) != num_iter or len(dual_blocks) != num_iter:
            raise ValueError(f"PDNet: give num_iter ({num_iter}) primal and dual blocks, got "
                             f"{len(primal_blocks)} and {len(dual_blocks)}")
        self.primal_blocks, self.dual_blocks = nn.ModuleList(primal_blocks), nn.ModuleList(dual_blocks)
        self.channels, self.memory, self.num_iter = c, m, num_iter
        self.solver_log = SolverLog()  # PDNet solves nothing; kept so every model logs alike

    def hyperparameters(self) -> dict[str, Tensor]:
        return {}  # no learnable scalars: the step sizes live inside the blocks

    def forward(self, y: Tensor, physics: LinearPhysics, init: Tensor | None = None, x_gt: Tensor | None = None,
                compute_metrics: bool = False, **kwargs):
        refuse_forward_keywords("PDNet", kwargs)
        check_physics("PDNet", physics)
        c, m = self.channels, self.memory
        if y.dim() != 4 or y.shape[1] != c:
            raise ValueError(f"PDNet: y must have shape (B, {c}, H', W') for channels={c}, got {tuple(y.shape)}")
        x0 = physics.A_adjoint(y) if init is None else init
        f = torch.cat((x0, x0.new_zeros(x0.shape[0], c * (m - 1), *x0.shape[2:])), dim=1)
        h = y.new_zeros(y.shape[0], c * m, *y.shape[2:])
        trace = IterateMetrics(x_gt if compute_metrics else None)
        for primal, dual in zip(self.primal_blocks, self.dual_blocks):
            h = dual(h, physics.A(f[:, :c]), y)
            f = primal(f, physics.A_adjoint(h[:, :c]))
            trace.add(f[:, :c])
        x = f[:, :c]
        return (x, trace.result()) if compute_metrics else x
