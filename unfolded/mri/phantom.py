"""Synthetic multi-coil MRI volumes: ellipsoid phantoms with smooth phase, seen by smooth simulated coils.

- `phantom_volume`: slices through a random 3-D ellipsoid phantom (Shepp–Logan's ellipsoids, each moved,
  resized and re-weighted by the seed, so every volume differs), plus a smooth random phase per slice;
- `coil_maps`: smooth, *unnormalised* sensitivities of coils on a ring (Biot–Savart-like 1/r fall-off and
  a phase that turns around the ring, as sigpy's `birdcage_maps`), with a random rotation of the ring.
Real coils are not normalised, so the root-sum-of-squares target carries their shading, as in fastMRI.
"""

from __future__ import annotations

import numpy as np

# Shepp–Logan ellipsoids (sigpy's table): intensity, semi-axes (a, b, c), centre (x, y, z), rotation (deg)
_ELLIPSOIDS = np.array([
    [1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0],
    [-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0],
    [0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0],
    [0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0],
    [0.1, 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0],
])


def phantom_volume(num_slices: int, shape: tuple[int, int], rng: np.random.Generator,
                   phase_amplitude: float = 1.0) -> np.ndarray:
    """(num_slices, H, W) complex128 images: magnitudes in [0, ~1], smooth phase (|φ| ≲ phase_amplitude)."""
    H, W = shape
    table = _ELLIPSOIDS.copy()
    table[:, 1:4] *= rng.uniform(0.8, 1.1, size=(len(table), 3))  # sizes
    table[:, 4:7] += rng.normal(scale=0.03, size=(len(table), 3))  # centres
    table[:, 7] += rng.normal(scale=10.0, size=len(table))  # rotations
    table[2:, 0] *= rng.uniform(0.5, 2.0, size=len(table) - 2)  # contrasts of the inner structures
    y, x = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    zs = np.linspace(-0.25, 0.25, num_slices) if num_slices > 1 else np.zeros(1)
    out = np.zeros((num_slices, H, W), dtype=np.complex128)
    for s, z in enumerate(zs):
        img = np.zeros((H, W))
        for rho, a, b, c, x0, y0, z0, deg in table:
            t = np.deg2rad(deg)
            u = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
            v = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
            img[(u / a) ** 2 + (v / b) ** 2 + ((z - z0) / c) ** 2 <= 1] += rho
        coef = rng.normal(scale=phase_amplitude / 2, size=6)  # a random quadratic phase: smooth
        phase = coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * y + coef[4] * x**2 + coef[5] * y**2
        out[s] = np.clip(img, 0, None) * np.exp(1j * phase)
    return out


def coil_maps(num_coils: int, shape: tuple[int, int], rng: np.random.Generator, radius: float = 1.2,
              extent: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """(num_coils, H, W) complex128 sensitivities of coils on a ring of `radius` around the centre, ring
    turned by a random angle; magnitude ~1/distance, normalised to a mean RSS of 1. Coordinates run over
    ±extent (rows, columns): the object's half-size is 1 (a readout FOV twice the object's: extent 2)."""
    H, W = shape
    y, x = np.meshgrid(np.linspace(-extent[0], extent[0], H), np.linspace(-extent[1], extent[1], W), indexing="ij")
    turn = rng.uniform(0, 2 * np.pi)
    maps = []
    for c in range(num_coils):
        a = turn + 2 * np.pi * c / num_coils
        dx, dy = x - radius * np.cos(a), y - radius * np.sin(a)
        maps.append(np.exp(1j * (np.arctan2(dx, -dy) - a)) / np.sqrt(dx**2 + dy**2))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0)).mean()
