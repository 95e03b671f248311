"""Exact fast solves of a blur's prox normal equations (AᵀA + I/γ) x = b, with μ = 1/γ.

Circular padding: AᵀA is circulant, so the prox has a closed form (`circular_prox_l2`).

Valid padding: A = W·C, where C is the circular convolution on the image grid (transfer function K) and W
keeps the outputs that did not wrap around. With the circulant P = CᵀC + μI and E the restriction to the
wrap-around strip (the first h−1 rows and w−1 columns), AᵀA + μI = P − CᵀEᵀEC, and Woodbury gives

    x = u + P⁻¹CᵀEᵀs,   u = P⁻¹b,   S s = E C u,   S = I − E C P⁻¹ Cᵀ Eᵀ = E·F⁻¹[μ/(|K|² + μ)]F·Eᵀ.

CG on S works on the strip alone, preconditioned by the restriction of the inverse symbol,
E·F⁻¹[(|K|² + μ)/μ]F·Eᵀ (scaled by μ, which leaves CG unchanged). The circulant preconditioner P⁻¹ on
the full system leaves the strip's eigenvalues as spread as they were; this one clusters them, and CG
needs 2.5–8× fewer iterations (benchmarks/bench_cg_iterations.py). At the solution s = E C x, so a warm
start x0 becomes s0 = E C x0. The residual of the full system is CᵀEᵀr_S, whose norm CG measures exactly
(one weighted sum over the spectrum the preconditioner computes anyway): it stops, and reports, on the
relative residual of the system it was asked to solve.
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
        H, W = self.size = tuple(like.shape[-2:])
        K = torch.fft.rfft2(filter, s=self.size)
        power = K.real**2 + K.imag**2
        mu = 1 / gamma
        circulant = power + mu  # P
        # Every factor complex: mixed real-complex products take a slow type-promotion path on CPU.
        self.K = K
        self.inverse_circulant = (1 / circulant).to(K.dtype)
        self.back_to_image = K.conj() / circulant  # P⁻¹Cᵀ
        self.schur_symbol = (mu / circulant).to(K.dtype)
        self.precond_symbol = circulant.to(K.dtype)
        strip = torch.zeros(self.size, dtype=like.dtype, device=like.device)
        strip[: h - 1] = 1
        strip[:, : w - 1] = 1
        self.strip = strip
        # ‖CᵀEᵀr‖² = Σ |K|²·|rfft2(r)|² over the full spectrum / (H·W): in the half spectrum, every column
        # but the first (and the last for even W) stands for a conjugate pair. Shaped (..., 2) to match
        # view_as_real exactly: a broadcast last axis is several times slower on CPU.
        pairs = torch.full((W // 2 + 1,), 2.0, dtype=power.dtype, device=power.device)
        pairs[0] = 1
        if W % 2 == 0:
            pairs[-1] = 1
        self.residual_weight = (power * pairs / (H * W)).unsqueeze(-1).expand(*power.shape, 2).contiguous()
        self._last_spectrum: tuple[Tensor, Tensor] | None = None  # (r, rfft2(r)): shared by norm and precond

    def _spectrum(self, r: Tensor) -> Tensor:
        if self._last_spectrum is not None and self._last_spectrum[0] is r:
            return self._last_spectrum[1]
        R = torch.fft.rfft2(r)
        self._last_spectrum = (r, R)
        return R

    def _strip_filtered(self, spectrum: Tensor) -> Tensor:
        return torch.fft.irfft2(spectrum, s=self.size) * self.strip

    def _schur(self, s: Tensor) -> Tensor:
        return self._strip_filtered(torch.fft.rfft2(s) * self.schur_symbol)

    def _precond(self, r: Tensor) -> Tensor:
        return self._strip_filtered(self._spectrum(r) * self.precond_symbol)

    def _full_residual_sq(self, r: Tensor) -> Tensor:
        """‖CᵀEᵀr‖² per sample: the squared residual of the full system when the strip's residual is r."""
        R = torch.view_as_real(self._spectrum(r))
        return (R * R * self.residual_weight).flatten(1).sum(1).view(-1, 1, 1, 1)

    def solve(self, rhs: Tensor, x0: Tensor | None, tol: float, max_iter: int) -> tuple[Tensor, SolveInfo]:
        U = torch.fft.rfft2(rhs) * self.inverse_circulant
        strip_rhs = self._strip_filtered(U * self.K)
        s0 = None if x0 is None else self._strip_filtered(torch.fft.rfft2(x0) * self.K)
        s, info = conjugate_gradient(self._schur, strip_rhs, x0=s0, max_iter=max_iter, tol=tol,
                                     precond=self._precond, residual_sq=self._full_residual_sq,
                                     reference=batch_dot(rhs, rhs))
        self._last_spectrum = None
        x = torch.fft.irfft2(U + self.back_to_image * torch.fft.rfft2(s), s=self.size)
        return x, info
