"""Sparsity in a wavelet basis, g(x) = ‖Ψx‖_p over the detail coefficients (the reference's
`WaveletPrior(level=3, wv="db8", p=1, device="cpu", wvdim=2, is_complex=False, mode="zero",
clamp_min=None, clamp_max=None)`).

Ψ is the discrete wavelet transform of PyWavelets' filters, computed in torch by `ptwt` (the library the
reference uses, so the coefficients, boundary handling and reconstruction are the same). As there, the
approximation coefficients are never thresholded, odd sizes are first extended by one replicated
row/column (then cropped), and `mode` is the transform's boundary extension. With an orthogonal wavelet
and mode="periodic" on even sizes Ψ is orthonormal and the prox below is exact; with other modes the
transform is a (slightly redundant) frame and thresholding its coefficients is the usual approximation.

prox(x, *args, ths=0.1, gamma=1.0) thresholds every detail coefficient at t = ths·γ (in an algorithm
γ = λ·stepsize, so a per-iteration `lambda_reg` list is a per-iteration threshold — trainable, LISTA-style):
p=1 soft (sign(c)·max(|c| − t, 0)), p=0 hard (c kept where |c| >= t), p=inf keeps the largest coefficients
of each sub-band: a proportion t of them (t a number or a 0-d tensor), or counts (t a tensor with one value
per sample), as in the reference; that top-k selection has no gradient with respect to t.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .classical_priors import ExplicitPrior, prox_weight, soft_threshold

MODES = ("zero", "constant", "reflect", "periodic", "symmetric")


def _wavelet_lib():
    try:
        import ptwt
        import pywt
    except ImportError:  # pragma: no cover - a declared dependency
        raise ImportError("WaveletPrior needs the wavelet packages ptwt and PyWavelets: pip install ptwt") from None
    return ptwt, pywt


class WaveletPrior(ExplicitPrior):
    """g(x) = Σ over detail sub-bands of ‖(Ψx)_band‖_p (+ the indicator of [clamp_min, clamp_max] when given:
    the prox then clamps its output). See the module docstring for the prox and the thresholds."""

    def __init__(self, level: int = 3, wv: str = "db8", p: float = 1, device="cpu", wvdim: int = 2,
                 is_complex: bool = False, mode: str = "zero", clamp_min: float | None = None,
                 clamp_max: float | None = None):
        super().__init__()
        ptwt, pywt = _wavelet_lib()
        if isinstance(level, bool) or not isinstance(level, int) or level < 1:
            raise ValueError(f"WaveletPrior: level must be an integer >= 1, got {level!r}")
        if isinstance(wv, (list, tuple)):
            raise NotImplementedError("WaveletPrior: a list of wavelets (the reference's wavelet dictionary) is not "
                                      "supported; give one wavelet name such as wv='db8'")
        try:
            self.wavelet = pywt.Wavelet(wv)
        except (ValueError, TypeError):
            raise ValueError(f"WaveletPrior: unknown wavelet wv={wv!r}; use a PyWavelets discrete wavelet name "
                             "such as 'haar', 'db4', 'db8', 'sym8'") from None
        if p in (1, 0):
            self.non_linearity = "soft" if p == 1 else "hard"
        elif p == math.inf or p == "inf":
            self.non_linearity = "topk"
        else:
            raise ValueError(f"WaveletPrior: p must be 0, 1 or inf, got {p!r}")
        if wvdim not in (2, 3):
            raise ValueError(f"WaveletPrior: wvdim must be 2 or 3, got {wvdim!r}")
        if mode not in MODES:
            raise ValueError(f"WaveletPrior: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if clamp_min is not None and clamp_max is not None and clamp_min > clamp_max:
            raise ValueError(f"WaveletPrior: clamp_min={clamp_min} > clamp_max={clamp_max}")
        self.device = torch.device(device)  # as in the reference, computations run where the input is
        self.level, self.wv, self.p, self.wvdim = level, wv, (math.inf if p == "inf" else p), wvdim
        self.is_complex, self.mode = bool(is_complex), mode
        self.clamp_min, self.clamp_max = clamp_min, clamp_max
        self.has_grad = self.non_linearity == "soft"  # ‖·‖₀ and ‖·‖_∞ of coefficients: no useful gradient

    def extra_repr(self) -> str:
        return f"wv={self.wv!r}, level={self.level}, p={self.p}, mode={self.mode!r}"

    # --- transform --------------------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.is_complex() != self.is_complex:
            raise ValueError("WaveletPrior: " + ("is_complex=True expects a complex tensor" if self.is_complex else
                                                 "complex input needs WaveletPrior(is_complex=True)"))
        if x.dim() < self.wvdim + 2:
            raise ValueError(f"WaveletPrior: with wvdim={self.wvdim} the input must be (B, C, ...) with "
                             f"{self.wvdim} spatial dimensions, got shape {tuple(x.shape)}")

    def _dec(self, x: Tensor) -> list:
        ptwt, _ = _wavelet_lib()
        if self.wvdim == 2:
            return list(ptwt.wavedec2(x, self.wavelet, mode=self.mode, level=self.level))
        return list(ptwt.wavedec3(x, self.wavelet, mode=self.mode, level=self.level))

    def _rec(self, coeffs: list) -> Tensor:
        ptwt, _ = _wavelet_lib()
        if self.wvdim == 2:
            return ptwt.waverec2(tuple(coeffs), self.wavelet)
        return ptwt.waverec3(tuple(coeffs), self.wavelet)

    @staticmethod
    def _bands(level_coeffs) -> list[Tensor]:
        return list(level_coeffs.values()) if isinstance(level_coeffs, dict) else list(level_coeffs)

    def psi(self, x: Tensor) -> list[Tensor]:
        """The detail coefficients, one (B, n) tensor per sub-band, coarsest level first."""
        self._check(x)
        if self.is_complex:
            return [torch.complex(r, i) for r, i in zip(self.psi_real(x.real), self.psi_real(x.imag))]
        return self.psi_real(x)

    def psi_real(self, x: Tensor) -> list[Tensor]:
        return [band.flatten(1) for lev in self._dec(x)[1:] for band in self._bands(lev)]

    # --- prior ------------------------------------------------------------------------------------------
    def fn(self, x: Tensor, *args, reduce: bool = True) -> Tensor:
        """Σ_bands ‖band‖_p per sample, shape (B,); with reduce=False one column per sub-band."""
        norms = torch.stack([torch.linalg.vector_norm(b, ord=self.p, dim=1) for b in self.psi(x)], dim=1)
        return norms.sum(1) if reduce else norms

    def grad(self, x: Tensor, *args) -> Tensor:
        """A subgradient of ‖Ψx‖₁ (p=1): Ψᵀ sign(Ψx) on the details, by autograd through the transform."""
        if not self.has_grad:
            raise NotImplementedError(f"WaveletPrior(p={self.p}) has no gradient; use p=1, or a prox-based "
                                      "algorithm (PGD, HQS, ADMM, FISTA, DRS, PDCP)")
        with torch.enable_grad():  # (detached: Ψᵀ sign(Ψx) is piecewise constant, its derivative is 0 a.e.)
            z = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(self.fn(z).sum(), z)
        return g

    def prox(self, x: Tensor, *args, ths=0.1, gamma=1.0) -> Tensor:
        self._check(x)
        if self.non_linearity == "topk":
            t = _topk_amount(ths, gamma, x)
        else:
            t = prox_weight("WaveletPrior.prox", "ths", ths, x) * prox_weight("WaveletPrior.prox", "gamma", gamma, x)
        out = torch.complex(self._threshold(x.real, t), self._threshold(x.imag, t)) if self.is_complex \
            else self._threshold(x, t)
        if self.clamp_min is not None or self.clamp_max is not None:
            out = torch.clamp(out, min=self.clamp_min, max=self.clamp_max)
        return out

    def _threshold(self, x: Tensor, t) -> Tensor:
        spatial = x.shape[-self.wvdim:]
        pad = [0, 0] * self.wvdim
        for i, n in enumerate(reversed(spatial)):  # odd sizes: one replicated row/column, cropped after
            pad[2 * i + 1] = n % 2
        xp = F.pad(x, pad, mode="replicate") if any(pad) else x
        coeffs = self._dec(xp)
        for lev in range(1, len(coeffs)):
            if isinstance(coeffs[lev], dict):
                coeffs[lev] = {key: self._shrink(c, t) for key, c in coeffs[lev].items()}
            else:
                coeffs[lev] = tuple(self._shrink(c, t) for c in coeffs[lev])
        out = self._rec(coeffs)
        return out[(..., *(slice(0, n) for n in spatial))]

    def _shrink(self, c: Tensor, t) -> Tensor:
        if self.non_linearity == "soft":
            return soft_threshold(c, t)
        if self.non_linearity == "hard":
            return torch.where(c.abs() < t, torch.zeros_like(c), c)
        return _keep_top(c, t)


def _topk_amount(ths, gamma, x: Tensor) -> float | Tensor:
    """p=inf: how much ths·γ keeps of each sub-band: a proportion when it is a number or a 0-d tensor (the
    reference's numbers; its 0-d tensors would be truncated to a count), one count per sample when it is a
    tensor with one value per sample. Checked like a prox weight (type, shape, >= 0)."""
    amount = prox_weight("WaveletPrior.prox", "ths", ths, x) * prox_weight("WaveletPrior.prox", "gamma", gamma, x)
    if isinstance(amount, Tensor) and amount.numel() > 1:
        return amount.detach().flatten().long()
    return float(amount)


def _keep_top(c: Tensor, amount) -> Tensor:
    """Keep the `amount` largest |c| of each sample (a proportion, or one count per sample)."""
    flat = c.flatten(1)
    n = flat.shape[1]
    if isinstance(amount, float):
        counts = [min(n, int(amount * n))] * flat.shape[0]
    else:
        counts = [min(n, int(v)) for v in amount.tolist()]
    mask = torch.zeros_like(flat, dtype=torch.bool)
    for i, k in enumerate(counts):
        if k > 0:
            mask[i, flat[i].abs().topk(k).indices] = True
    return torch.where(mask, flat, torch.zeros_like(flat)).view_as(c)
