"""Exact fast solves of a blur's prox normal equations (AᵀA + I/γ) x = b, with μ = 1/γ.

Circular padding: AᵀA is circulant, so the prox has a closed form (`circular_prox_l2`).

Valid padding: A = W·C, where C is the circular convolution on the image grid (transfer function K) and W
keeps the outputs that did not wrap around. With the circulant P = CᵀC + μI and E the restriction to the
wrap-around strip (the first h−1 rows and w−1 columns), AᵀA + μI = P − CᵀEᵀEC, and Woodbury gives

    x = u + P⁻¹CᵀEᵀs,   u = P⁻¹b,   S s = E C u,   S = I − E C P⁻¹ Cᵀ Eᵀ = E·F⁻¹[μ/(|K|² + μ)]F·Eᵀ.

CG on S works on the strip alone, and the restriction of the inverse symbol, E·F⁻¹[(|K|² + μ)/μ]F·Eᵀ,
preconditions it well: it needs 2–4× fewer iterations than CG on the full system with the circulant
preconditioner P⁻¹, whose eigenvalues on the strip stay as spread as without it (numbers in
benchmarks/bench_cg_iterations.py). At the solution s = E C x, so the warm start x0 becomes s0 = E C x0.
The full residual is CᵀEᵀr_S, so ‖r‖ ≤ max|K|·‖r_S‖: CG stops when that bound is below tol·‖b‖, and the
relative residual it reports is that bound.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..solvers.cg import SolveInfo, batch_dot, conjugate_gradient


def circular_prox_l2(K: Tensor, z: Tensor, y: Tensor, gamma: Tensor) -> Tensor:
    """argmin ½‖Cx − y‖² + 1/(2γ)‖x − z‖² for a circular convolution C with transfer function K."""
    numerator = K.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(z) / gamma
    return torch.fft.irfft2(numerator / (K.abs() ** 2 + 1 / gamma), s=z.shape[-2:])


class ValidBlurSystem:
    """(AᵀA + I/γ) x = b for a valid-padding blur, solved through the wrap-around strip (module docstring).

    `filter` is (b, c, h, w) in the images' dtype; γ is 0-d or (B, 1, 1, 1); `like` gives the image size.
    """

    def __init__(self, filter: Tensor, gamma: Tensor, like: Tensor):
        h, w = filter.shape[-2:]
        self.size = tuple(like.shape[-2:])
        K = torch.fft.rfft2(filter, s=self.size)
        power = K.real**2 + K.imag**2
        mu = 1 / gamma
        circulant = power + mu  # P
        # Every factor complex: mixed real-complex products take a slow type-promotion path on CPU.
        self.K = K
        self.inverse_circulant = (1 / circulant).to(K.dtype)
        self.back_to_image = K.conj() / circulant  # P⁻¹Cᵀ
        self.schur_symbol = (mu / circulant).to(K.dtype)
        self.precond_symbol = (circulant / mu).to(K.dtype)
        strip = torch.zeros(self.size, dtype=like.dtype, device=like.device)
        strip[: h - 1] = 1
        strip[:, : w - 1] = 1
        self.strip = strip
        # max|K|² per sample, the factor between the strip residual and the full one (never 0: a zero
        # filter has a zero strip right-hand side, solved before the first step).
        self.max_gain_sq = power.amax(dim=(-3, -2, -1), keepdim=True).clamp_min(torch.finfo(power.dtype).tiny)

    def _strip_filtered(self, spectrum: Tensor) -> Tensor:
        return torch.fft.irfft2(spectrum, s=self.size) * self.strip

    def _schur(self, s: Tensor) -> Tensor:
        return self._strip_filtered(torch.fft.rfft2(s) * self.schur_symbol)

    def _precond(self, r: Tensor) -> Tensor:
        return self._strip_filtered(torch.fft.rfft2(r) * self.precond_symbol)

    def solve(self, rhs: Tensor, x0: Tensor | None, tol: float, max_iter: int) -> tuple[Tensor, SolveInfo]:
        U = torch.fft.rfft2(rhs) * self.inverse_circulant
        strip_rhs = self._strip_filtered(U * self.K)
        s0 = None if x0 is None else self._strip_filtered(torch.fft.rfft2(x0) * self.K)
        reference = batch_dot(rhs, rhs) / self.max_gain_sq
        s, info = conjugate_gradient(self._schur, strip_rhs, x0=s0, max_iter=max_iter, tol=tol,
                                     precond=self._precond, reference=reference)
        x = torch.fft.irfft2(U + self.back_to_image * torch.fft.rfft2(s), s=self.size)
        return x, info
