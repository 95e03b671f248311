"""Measurements of real k-space slices (the `physics` of `data=fastmri`): y = M ⊙ k of the file, with
estimated coil maps, normalised per slice. See `training.fastmri` for the whole data flow.

`physics.kspace.KspacePhysics` holds the settings (the `physics` config node); `simulation.measurements`
turns it into `KspaceMeasurements` with the run's seeds, which measures batches as `Simulator` does for
simulated data: `batch(batch, split) -> (x, physics, y)`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..mri.coil_maps import MapsCache, acs_images, estimate_maps
from ..physics.kspace import ESPIRIT, KspacePhysics
from ..physics.mri import MRI, MultiCoilMRI
from ..physics.mri_masks import fastmri_mask, fully_sampled_block
from . import seeding

__all__ = ["ESPIRIT", "KspacePhysics", "KspaceMeasurements"]  # KspacePhysics lives in unfolded.physics.kspace


class KspaceMeasurements:
    def __init__(self, settings: KspacePhysics, train_seed: int | None, eval_seed: int):
        self.settings, self.train_seed, self.eval_seed = settings, train_seed, int(eval_seed)
        self.cache = MapsCache(settings.maps_cache_dir)
        self._example = None  # physics of the first validation slice (reports re-run the model on it)

    def _seed(self, n: int, split: str) -> int | None:
        if split == "train":
            return None if self.train_seed is None else seeding.training_seed(self.train_seed, n)
        return seeding.evaluation_seed(self.eval_seed, split, n)

    def mask(self, size: tuple[int, int], n: int, split: str, acquired: Tensor) -> Tensor:
        """(H, W) mask of sample n, zero outside the acquired columns [padding_left, padding_right)."""
        m = fastmri_mask(size, **self.settings.mask, seed=self._seed(n, split))
        m[:, :int(acquired[0])] = 0
        m[:, int(acquired[1]):] = 0
        return m

    def block(self, size: tuple[int, int]):
        return fully_sampled_block(size, **self.settings.mask)

    def scale_and_maps(self, kspace: np.ndarray, file: str, slice_index: int, multicoil: bool,
                       block=None) -> tuple[float, np.ndarray | None]:
        """(s, maps) of one slice from its ACS block (by default the one the mask settings sample fully);
        kspace (coils, H, W) complex, unnormalised; no maps for single-coil data."""
        block = self.block(kspace.shape[-2:]) if block is None else block
        low = acs_images(kspace, block)
        scale = float(np.sqrt((np.abs(low) ** 2).sum(0)).max())
        if scale <= 0:
            raise ValueError(f"{file} slice {slice_index}: the ACS block of the k-space is all zero")
        if not multicoil:
            return scale, None
        settings = {"method": self.settings.coil_maps, "block": block, **self.settings.espirit}
        key = self.cache.key(file, slice_index, settings)
        maps = self.cache.get(key, lambda: estimate_maps(kspace, self.settings.coil_maps, block,
                                                         **self.settings.espirit))
        return scale, maps

    def batch(self, batch: dict, split: str) -> tuple[Tensor, object, Tensor]:
        """(x, physics, y) of a batch of slices: x the reference image / s, y = M ⊙ k / s."""
        if "kspace" not in batch:
            raise ValueError("physics=fastmri measures k-space files: use data=fastmri (physics=fastmri selects it)")
        k, multicoil = batch["kspace"], batch["kspace"].dim() == 5
        kc = self._complex(k)
        size = tuple(k.shape[-2:])
        scales, maps, masks = [], [], []
        for i, n in enumerate(batch["index"].tolist()):
            s, m = self.scale_and_maps(kc[i], batch["file"][i], int(batch["slice"][i]), multicoil)
            scales.append(s)
            maps.append(m)
            masks.append(self.mask(size, n, split, batch["acquired"][i]))
        physics, y, scale = self.measure(k, torch.stack(masks), scales, maps)
        x = batch["image"] / scale
        if split == "val" and int(batch["index"][0]) == 0:
            self._example = physics
        return x, physics, y

    def measure(self, k: Tensor, masks: Tensor, scales: list[float], maps: list) -> tuple[object, Tensor, Tensor]:
        """(physics, y = M ⊙ k / s, s as (B, 1, 1, 1)) of k-space k (B, 2, coils, H, W) or (B, 2, H, W), masks
        (B, H, W), one s and one maps array (None single-coil) per slice."""
        scale = torch.tensor(scales, dtype=k.dtype, device=k.device).reshape(-1, 1, 1, 1)
        mask = masks[:, None].to(device=k.device, dtype=k.dtype)  # (B, 1, H, W)
        if k.dim() == 5:
            physics = MultiCoilMRI(mask=mask, coil_maps=torch.from_numpy(np.stack(maps)).to(k.device),
                                   device=k.device, **self.settings.solver)
            return physics, mask[:, :, None] * k / scale[..., None], scale
        return MRI(mask=mask, device=k.device), mask * k / scale, scale

    @staticmethod
    def _complex(k: Tensor) -> np.ndarray:
        """(B, 2, coils, H, W) or single-coil (B, 2, H, W) real → (B, coils, H, W) complex numpy."""
        kc = torch.complex(k[:, 0], k[:, 1]).detach().cpu().numpy()
        return kc if k.dim() == 5 else kc[:, None]

    def scales(self, batch: dict) -> Tensor:
        """s of each slice of a batch (to bring reconstructions back to the file's scale)."""
        k = batch["kspace"]
        kc = self._complex(k)
        return torch.tensor([self.scale_and_maps(kc[i], batch["file"][i], int(batch["slice"][i]), k.dim() == 5)[0]
                             for i in range(k.shape[0])])

    def physics_for(self, x: Tensor):
        if self._example is None:
            raise RuntimeError("KspaceMeasurements: no validation slice was measured yet")
        return self._example
