"""Real k-space in fastMRI's layout: `data=fastmri data.path=<folder of .h5>` (see `mri.fastmri_files`).

Data (`FastMRIDataModule`): slice-level datasets, split **by file** (sub-folders train/ val/ test/, or the
sorted files: the last `test_files` for test, the `val_files` before them for validation). Only shapes
and headers are read at start-up; a slice is read when asked for (the file opened for that read only).
A slice item holds the k-space on the model's grid — with `readout_crop`, the readout's ×2 oversampling
removed (image rows cropped to the target's height, exact since the readout is fully sampled) — the
reference image (the RSS of the fully sampled coil images, a complex image with zero imaginary part, whose
centre crop is the file's `reconstruction_rss`), the file's target, and its identity (file, slice).
Training sample n is slice perm_e[n mod E] of the L training slices, perm_e a permutation drawn by (seed,
epoch e = n div E), E ≤ L the samples per epoch (L rounded down to whole batches in every process):
batches carry sample numbers as every data module's do (`samples.py`).

Measurements (`KspacePhysics` → `KspaceMeasurements`, what `Simulator` is for simulated data): y is the
slice's own k-space, masked — nothing is simulated. The mask is drawn per sample by `physics.mask`
(`fastmri_mask` settings), seeded like the simulated noise (training: (seed, n); evaluation: fixed per
split and slice), and zero outside the acquired columns (padding_left/right). Coil maps are estimated
from the ACS block (`mri.coil_maps`: ESPIRiT or the low-resolution estimate), cached per slice. Each
slice is normalised by s = the max of the RSS of its low-resolution ACS image (known from y alone, so a
trained model can be used as it was trained); x and y are divided by s.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from ..mri.fastmri_files import TARGET_KEYS, FastMRIFileError, VolumeInfo, read_slice, read_volume_info
from . import seeding
from .errors import ConfigError
from .samples import ResumableLoader, SampleNumbers

log = logging.getLogger(__name__)


def _fft1c(x: np.ndarray, axis: int, inverse: bool) -> np.ndarray:
    f = np.fft.ifft if inverse else np.fft.fft
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


def crop_readout(kspace: np.ndarray, rows: int) -> np.ndarray:
    """k-space (…, H, W) → (…, rows, W) whose image is the centre `rows` rows of the original image."""
    H = kspace.shape[-2]
    image = _fft1c(kspace, -2, inverse=True)[..., (H - rows) // 2:(H - rows) // 2 + rows, :]
    return _fft1c(image, -2, inverse=False)


def _as_real(z: np.ndarray) -> Tensor:
    z = torch.from_numpy(np.ascontiguousarray(z))
    return torch.stack((z.real, z.imag)).float()


class FastMRISlices(Dataset):
    """Slices of some volumes; with `order_seed`, item n is slice perm_e[n mod E] (training; E the samples
    per epoch, all the slices by default)."""

    def __init__(self, volumes: list[VolumeInfo], readout_crop: bool, order_seed: int | None = None,
                 epoch_length: int | None = None):
        self.volumes, self.readout_crop, self.order_seed = volumes, readout_crop, order_seed
        self.slices = [(v, s) for v, info in enumerate(volumes) for s in range(info.num_slices)]
        self.epoch_length = len(self.slices) if epoch_length is None else int(epoch_length)
        if not 0 < self.epoch_length <= len(self.slices):
            raise ValueError(f"epoch_length must be in [1, {len(self.slices)}], got {epoch_length}")
        self._perm: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.slices)

    def _slice_of(self, n: int) -> int:
        if self.order_seed is None:
            return n
        epoch, j = divmod(n, self.epoch_length)
        if self._perm is None or self._perm[0] != epoch:
            g = seeding.generator(seeding.training_seed(self.order_seed, epoch))
            self._perm = (epoch, torch.randperm(len(self.slices), generator=g))
        return int(self._perm[1][j])

    def __getitem__(self, n: int) -> dict:
        v, s = self.slices[self._slice_of(int(n))]
        info = self.volumes[v]
        kspace, target = read_slice(info, s)
        if self.readout_crop:
            kspace = crop_readout(kspace, info.target_shape[0])
        coil_images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"),
                                      axes=(-2, -1))
        rss = np.sqrt((np.abs(coil_images) ** 2).sum(0))
        k = _as_real(kspace)  # (2, coils, H, W)
        return {"image": torch.stack((torch.from_numpy(rss).float(), torch.zeros(rss.shape))),
                "kspace": k if info.multicoil else k[:, 0], "target": torch.from_numpy(target).float(),
                "acquired": torch.tensor([info.padding_left, info.padding_right]),
                "file": str(info.path), "slice": s, "index": int(n)}


def collate(items: list[dict]) -> dict:
    shapes = {tuple(it["kspace"].shape) for it in items}
    if len(shapes) > 1:
        raise ConfigError(f"slices of different k-space shapes {sorted(shapes)} in one batch: fastMRI volumes "
                          "differ in size, use data.batch_size=1")
    return default_collate(items)


class FastMRIDataModule(pl.LightningDataModule):
    def __init__(self, path: str | None = None, val_files: int = 1, test_files: int = 1, target_key: str | None = None,
                 readout_crop: bool = True, batch_size: int = 1, num_workers: int = 0, channels: int = 2,
                 max_files: int | None = None, seed: int | None = None, generate: dict | None = None,
                 crop_size: int | None = None, image_size: int | None = None, eval_size: int | None = None):
        """`generate`: settings of `mri.generate.generate` to write synthetic files into `path` when it has
        none. crop_size / image_size / eval_size are image-data settings (debug=fast sets them): k-space
        slices keep their size, so they are reported as unused."""
        super().__init__()
        if path is None or str(path) in ("", "???"):
            raise ConfigError("data=fastmri needs data.path=<folder of fastMRI .h5 files> (python -m "
                              "unfolded.mri.generate <folder> writes small synthetic ones)")
        unused = {k: v for k, v in (("crop_size", crop_size), ("image_size", image_size), ("eval_size", eval_size))
                  if v is not None}
        if unused:
            log.warning("data=fastmri: %s unused (k-space slices are neither cropped nor resized)",
                        ", ".join(f"data.{k}={v}" for k, v in unused.items()))
        if channels != 2:
            raise ConfigError(f"data.channels must be 2 (complex images) for k-space data, got {channels}")
        if target_key is not None and target_key not in TARGET_KEYS:
            raise ConfigError(f"data.target_key must be null (by the files) or one of {', '.join(TARGET_KEYS)}, "
                              f"got {target_key!r}")
        for key, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                ("val_files", val_files, 1), ("test_files", test_files, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"data.{key}={value!r}: must be an integer >= {low}")
        if generate is not None and not (Path(path).expanduser().is_dir()
                                         and any(Path(path).expanduser().rglob("*.h5"))):
            from ..mri.generate import generate as write_files

            try:
                write_files(Path(path).expanduser(), **dict(generate))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"data.generate: {e}") from None
            log.info("wrote synthetic fastMRI-layout files to %s", path)
        self.path, self.readout_crop = Path(path).expanduser(), readout_crop
        if not self.path.is_dir():
            raise ConfigError(f"data.path={path}: no such folder")
        self.batch_size, self.num_workers, self.channels = batch_size, num_workers, channels
        self.seed = int(torch.initial_seed() if seed is None else seed) % 2**31
        files = self._split_files(val_files, test_files, max_files)
        self.volumes = {split: [self._info(f, target_key) for f in fs] for split, fs in files.items()}
        self.names = {split: [f"{Path(v.path).stem}/{s}" for v in vols for s in range(v.num_slices)]
                      for split, vols in self.volumes.items()}
        kinds = {v.multicoil for vols in self.volumes.values() for v in vols}
        if len(kinds) > 1:
            raise ConfigError(f"data.path={self.path}: mixes single-coil and multi-coil files")
        self.multicoil = kinds.pop()

    @staticmethod
    def _info(f: Path, target_key: str | None) -> VolumeInfo:
        try:  # target_key None: the file's target by fastMRI's rule (RSS; ESC for single-coil files)
            return read_volume_info(f, target_key)
        except (FastMRIFileError, OSError) as e:
            raise ConfigError(str(e)) from None

    def _split_files(self, val_files: int, test_files: int, max_files: int | None) -> dict[str, list[Path]]:
        def h5(folder: Path) -> list[Path]:
            return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".h5")[:max_files]

        subdirs = {s: self.path / s for s in ("train", "val", "test")}
        if all(d.is_dir() for d in subdirs.values()):
            files = {s: h5(d) for s, d in subdirs.items()}
            empty = [s for s, fs in files.items() if not fs]
            if empty:
                raise ConfigError(f"data.path={self.path}: no .h5 files in sub-folder(s) {', '.join(empty)}")
            return files
        files = h5(self.path)
        if len(files) < val_files + test_files + 1:
            raise ConfigError(f"data.path={self.path}: {len(files)} .h5 file(s), need at least "
                              f"{val_files + test_files + 1} (train + data.val_files={val_files} + "
                              f"data.test_files={test_files}), or sub-folders train/ val/ test/")
        n = len(files) - val_files - test_files
        return {"train": files[:n], "val": files[n:n + val_files], "test": files[n + val_files:]}

    def setup(self, stage: str) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None and not callable(getattr(getattr(module, "simulator", None), "scales", None)):
            raise ConfigError("data=fastmri holds measured k-space: use physics=fastmri (which selects this data "
                              "and measures it) instead of a simulated physics")

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        slices = sum(v.num_slices for v in self.volumes["train"])
        length = slices - slices % (self.batch_size * world)  # equal batches in all processes
        if length == 0:
            raise ConfigError(f"{slices} training slice(s) for data.batch_size={self.batch_size} x {world} "
                              "process(es)")
        ds = FastMRISlices(self.volumes["train"], self.readout_crop, order_seed=self.seed, epoch_length=length)
        epoch = (lambda: self.trainer.current_epoch) if self.trainer is not None else (lambda: 0)
        sampler = SampleNumbers(length, rank, world, epoch)
        return ResumableLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                               drop_last=True, persistent_workers=self.num_workers > 0, collate_fn=collate,
                               progress=self._progress)

    def _progress(self) -> tuple[int, int]:
        return self.trainer.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def check_world_size(self, world: int) -> None:
        for split in ("val", "test"):
            if len(self.names[split]) < world:
                raise ConfigError(f"{len(self.names[split])} {split} slice(s) for {world} processes")

    def eval_dataloader(self, split: str, shard: bool = True) -> DataLoader:
        """Slice i of the split keeps number i in every process (process r of w gets r, r + w, …)."""
        ds = FastMRISlices(self.volumes[split], self.readout_crop)
        numbers = list(range(len(ds)))
        if shard:
            rank, world = self._rank_world()
            numbers = numbers[rank::world]
        return DataLoader(torch.utils.data.Subset(ds, numbers), batch_size=1, shuffle=False,
                          num_workers=self.num_workers, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
