"""A disk cache of baseline reconstructions (TV, BM3D: seconds to minutes per image), so that their cost is
paid once per problem, not once per run, validation or test.

An entry is one batch's reconstruction, keyed by a SHA-256 of: the method and its settings (λ, BM3D's σ
factor, solver tolerances), the physics (class, padding, noise level and every tensor of its state: the
filter, the mask), and the measurements y themselves (which carry the images, the operator and the noise
draws of the evaluation seed). A change of any of these misses the cache; nothing else can hit it.

Entries are `.npz` files (the reconstruction and a JSON string of the solver's report) written by the one
atomic writer and read with `allow_pickle=False`: reading a cache file never executes code. The folder is
`module.baseline_cache`: "default" is `~/.cache/unfolded/baselines` (or `$UNFOLDED_CACHE/baselines`); null
turns the cache off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import write_atomically


def default_folder() -> Path:
    root = os.environ.get("UNFOLDED_CACHE") or Path.home() / ".cache" / "unfolded"
    return Path(root) / "baselines"


def _tensor_bytes(t: Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.is_complex():
        t = torch.view_as_real(t)
    return str((t.dtype, tuple(t.shape))).encode() + t.numpy().tobytes()


def physics_fingerprint(physics) -> bytes:
    """What defines the operator and its noise: class, padding, noise level, tensors of its state."""
    parts = [type(physics).__name__, str(getattr(physics, "padding", None)), str(getattr(physics, "factor", None))]
    noise = getattr(physics, "noise_model", None)
    sigma = getattr(noise, "sigma", None)
    parts += [type(noise).__name__, repr(sigma.tolist() if torch.is_tensor(sigma) else sigma)]
    blob = "|".join(parts).encode()
    if hasattr(physics, "state_dict"):
        for name, value in sorted(physics.state_dict().items()):
            if torch.is_tensor(value):
                blob += name.encode() + _tensor_bytes(value)
    params = physics.operator_params() if callable(getattr(physics, "operator_params", None)) else {}
    for name, value in sorted(params.items()):  # the filter, the mask (also when not in the state dict)
        if torch.is_tensor(value):
            blob += name.encode() + _tensor_bytes(value)
    return blob


def key(method: str, settings: dict, physics, y: Tensor) -> str:
    h = hashlib.sha256()
    h.update(method.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(physics_fingerprint(physics))
    h.update(_tensor_bytes(y))
    return h.hexdigest()


class BaselineCache:
    """`get(method, settings, physics, y, compute)`: the cached (x, report) or compute(), stored."""

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)
        self.hits = self.misses = 0

    @classmethod
    def of(cls, setting: str | Path | None) -> BaselineCache:
        """`module.baseline_cache`: "default" (the default folder), a folder, or None (no cache)."""
        return cls(default_folder() if setting in ("default", True) else setting or None)

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.npz"

    def get(self, method: str, settings: dict, physics, y: Tensor,
            compute: Callable[[], tuple[Tensor, dict]]) -> tuple[Tensor, dict]:
        if self.folder is None:
            return compute()
        path = self.path(key(method, settings, physics, y))
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    x = torch.from_numpy(data["x"].copy()).to(device=y.device, dtype=y.dtype)
                    report = json.loads(str(data["report"]))
                self.hits += 1
                return x, report
            except (OSError, ValueError, KeyError):  # a damaged entry is recomputed and replaced
                pass
        self.misses += 1
        x, report = compute()
        buffer = io.BytesIO()
        np.savez(buffer, x=x.detach().cpu().numpy(), report=np.array(json.dumps(report)))
        write_atomically(path, lambda f: f.write(buffer.getvalue()))
        return x, report
