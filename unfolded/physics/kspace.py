"""Settings of measured k-space (`physics=fastmri`): how a slice's own k-space is undersampled and how its
coil maps are estimated. Nothing here measures anything: `training.kspace_measurements.KspaceMeasurements`
applies these settings to the slices of `data=fastmri` (and `predict.py` to a user's .h5 files).

Library code, so that a stored model (checkpoint or exported file) may rebuild it: `building.check_targets`
lets a stored configuration build classes defined in `unfolded.physics` only.
"""

from __future__ import annotations

from .mri_masks import FASTMRI_PATTERNS, _fastmri_args, fastmri_mask

MASK_KEYS = ("pattern", "acceleration", "center_fraction")
COIL_MAP_METHODS = ("espirit", "acs")  # `mri.coil_maps.estimate_maps`
# crop 0 (sigpy's default is 0.95) keeps maps in the background too, so SENSE-type reconstructions
# (CG-SENSE, MoDL) reproduce the background of the RSS target instead of a constant there
ESPIRIT = {"kernel_width": 6, "thresh": 0.02, "crop": 0.0, "max_iter": 100}


class KspacePhysics:
    """`mask`: {pattern, acceleration, center_fraction} of `physics.mri_masks.fastmri_mask`; `coil_maps`:
    espirit | acs; `espirit`: EspiritCalib settings (ESPIRIT's keys, those given replace its values);
    `maps_cache_dir`: keep estimated maps on disk (null: in memory only); `tol`, `max_iter`,
    `implicit_backward_solver`: the multi-coil operator's CG solves (as MultiCoilMRI's). A bad setting is a
    ValueError naming its key."""

    def __init__(self, mask: dict | None = None, coil_maps: str = "espirit", espirit: dict | None = None,
                 maps_cache_dir: str | None = None, tol: float = 1e-4, max_iter: int = 50,
                 implicit_backward_solver: bool = True):
        mask = dict(mask or {})
        unknown = set(mask) - set(MASK_KEYS)
        if unknown:
            raise ValueError(f"physics.mask: unknown key(s) {sorted(unknown)}; allowed: {', '.join(MASK_KEYS)}")
        mask.setdefault("pattern", "random")
        mask.setdefault("acceleration", 4)
        mask.setdefault("center_fraction", None)
        if mask["pattern"] not in FASTMRI_PATTERNS:
            raise ValueError(f"physics.mask.pattern must be one of {', '.join(FASTMRI_PATTERNS)}, got "
                             f"{mask['pattern']!r}")
        try:  # one draw now, so that a bad setting fails at start-up (Poisson: only its arguments, it is slow)
            if mask["pattern"] == "poisson":
                _fastmri_args((8, 8), mask["acceleration"], mask["center_fraction"], "physics.mask")
            else:
                fastmri_mask((8, 128), **mask, seed=0)
        except ValueError as e:
            raise ValueError(f"physics.mask: {e}") from None
        if coil_maps not in COIL_MAP_METHODS:
            raise ValueError(f"physics.coil_maps must be one of {', '.join(COIL_MAP_METHODS)}, got {coil_maps!r}")
        unknown = set(espirit or {}) - set(ESPIRIT)
        if unknown:
            raise ValueError(f"physics.espirit: unknown key(s) {sorted(unknown)}; allowed: {', '.join(ESPIRIT)}")
        self.mask, self.coil_maps, self.espirit = mask, coil_maps, {**ESPIRIT, **(espirit or {})}
        self.maps_cache_dir = maps_cache_dir
        self.solver = {"tol": tol, "max_iter": max_iter, "implicit_backward_solver": implicit_backward_solver}
