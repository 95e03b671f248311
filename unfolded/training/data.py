"""Data modules: scikit-image's bundled pictures or a user's folder, never the network.

Training samples are random crops (with random flips) of the training images; validation and test
images are fixed, disjoint from the training ones, and centre-cropped to `eval_size`. Batches are dicts
{"image", "index"} of numbered samples (`samples.py`): training sample n of a run is
epoch·samples_per_epoch + place in the epoch, so a resumed run sees the samples an uninterrupted run
would, and w processes with batch B see the samples of one process with batch w·B. Evaluation image i
of a split keeps its number whichever process evaluates it (process r of w gets r, r + w, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .errors import ConfigError
from .images import CHANNELS, IMAGE_EXTENSIONS, bundled_loaders, center_crop, read_picture, resize_short_side, to_tensor
from .samples import FixedImages, RandomCrops, ResumableLoader, SampleNumbers


class ImageDataModule(pl.LightningDataModule):
    """Common part of the data modules; subclasses provide `load_split(split) -> [(name, array)]`.

    Images are loaded and checked in the constructor, so that a bad configuration fails at start-up.
    """

    def __init__(
        self,
        channels: int = 1,
        crop_size: int = 64,
        image_size: int | None = 256,
        eval_size: int | None = 256,
        batch_size: int = 8,
        samples_per_epoch: int = 800,
        flips: bool = True,
        num_workers: int = 0,
        seed: int | None = None,
    ):
        super().__init__()
        if channels not in (1, 2, 3):
            raise ConfigError(f"data.channels must be {CHANNELS}, got {channels}")
        for key, value, low in (("crop_size", crop_size, 1), ("batch_size", batch_size, 1),
                                ("samples_per_epoch", samples_per_epoch, batch_size), ("num_workers", num_workers, 0),
                                ("image_size", image_size, 1), ("eval_size", eval_size, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"data.{key}={value!r}: must be an integer >= {low}"
                                  + (" (data.batch_size)" if key == "samples_per_epoch" else "")
                                  + (" or null" if key in ("image_size", "eval_size") else ""))
        self.channels, self.crop_size, self.image_size, self.eval_size = channels, crop_size, image_size, eval_size
        self.batch_size, self.samples_per_epoch = batch_size, samples_per_epoch
        self.flips, self.num_workers = flips, num_workers
        # None: the run's seed (train.py seeds torch before building the data)
        self.seed = int(torch.initial_seed() if seed is None else seed) % 2**31
        self.names: dict[str, list[str]] = {}
        self.images: dict[str, list[Tensor]] = {}
        for split in ("train", "val", "test"):
            pairs = self.load_split(split)
            self.names[split] = [n for n, _ in pairs]
            self.images[split] = [resize_short_side(to_tensor(a, channels), image_size) for _, a in pairs]
        self._check()
        for split in ("val", "test"):
            self.images[split] = [center_crop(t, eval_size) for t in self.images[split]]

    def load_split(self, split: str) -> list[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def _check(self) -> None:
        overlap = (set(self.names["train"]) & set(self.names["val"] + self.names["test"])) | (
            set(self.names["val"]) & set(self.names["test"]))
        if overlap:
            raise ConfigError(f"train/val/test images must be disjoint; shared: {sorted(overlap)}")
        for split in ("train", "val", "test"):
            if not self.images[split]:
                raise ConfigError(f"no {split} images")
            for name, img in zip(self.names[split], self.images[split]):
                if not bool(torch.isfinite(img).all()):
                    raise ConfigError(f"{split} image '{name}' has NaN or infinite pixels; images must be finite")
        for name, img in zip(self.names["train"], self.images["train"]):
            if min(img.shape[-2:]) < self.crop_size:
                raise ConfigError(
                    f"data.crop_size={self.crop_size} is larger than training image '{name}' of size "
                    f"{tuple(img.shape[-2:])} (after data.image_size={self.image_size})")
        if self.eval_size is not None:
            for split in ("val", "test"):
                for name, img in zip(self.names[split], self.images[split]):
                    if min(img.shape[-2:]) < self.eval_size:
                        raise ConfigError(
                            f"data.eval_size={self.eval_size} is larger than {split} image '{name}' of size "
                            f"{tuple(img.shape[-2:])} (after data.image_size={self.image_size})")

    # --- loaders --------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _progress(self) -> tuple[int, int]:
        loop = self.trainer.fit_loop
        return self.trainer.current_epoch, loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        if world > 1 and self.samples_per_epoch % (self.batch_size * world):  # equal batches in all processes
            raise ConfigError(f"data.samples_per_epoch={self.samples_per_epoch} must be a multiple of "
                              f"data.batch_size={self.batch_size} x {world} process(es)")
        ds = RandomCrops(self.images["train"], self.crop_size, self.samples_per_epoch, self.flips, self.seed)
        epoch = (lambda: self.trainer.current_epoch) if self.trainer is not None else (lambda: 0)
        sampler = SampleNumbers(self.samples_per_epoch, rank, world, epoch)
        return ResumableLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                               drop_last=True, persistent_workers=self.num_workers > 0, progress=self._progress)

    def check_world_size(self, world: int) -> None:
        """Every process needs an evaluation image: one without would wait forever for the others' metrics."""
        for split in ("val", "test"):
            if len(self.images[split]) < world:
                raise ConfigError(f"{len(self.images[split])} {split} image(s) for {world} processes: give at "
                                  f"least one per process (data.{split}_images, or a larger folder)")

    def eval_dataloader(self, split: str, shard: bool = True) -> DataLoader:
        """One image per batch (full-size evaluation images need not share a shape); with `shard`, process
        r of w gets the images r, r + w, ... (no padding: the module sums metrics over processes)."""
        numbers = list(range(len(self.images[split])))
        if shard:
            rank, world = self._rank_world()  # (every process has one: checked at start-up)
            numbers = numbers[rank::world]
        images = [self.images[split][i] for i in numbers]
        return DataLoader(FixedImages(images, numbers), batch_size=1, shuffle=False, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")


class BundledDataModule(ImageDataModule):
    """scikit-image's bundled natural images (shipped with the package: no download).

    The default split keeps the SPEC §9 test pictures (camera, coffee, moon) out of training.
    """

    def __init__(
        self,
        train_images: Sequence[str] = ("astronaut", "brick", "cell", "hubble_deep_field", "immunohistochemistry",
                                       "motorcycle", "rocket"),
        val_images: Sequence[str] = ("chelsea", "coins"),
        test_images: Sequence[str] = ("camera", "coffee", "moon"),
        **kwargs,
    ):
        self.split_names = {"train": list(train_images), "val": list(val_images), "test": list(test_images)}
        super().__init__(**kwargs)

    def load_split(self, split):
        loaders = bundled_loaders()
        unknown = [n for n in self.split_names[split] if n not in loaders]
        if unknown:
            raise ConfigError(f"unknown bundled image(s) {unknown} in data.{split}_images; "
                              f"available: {', '.join(sorted(loaders))}")
        return [(n, loaders[n]()) for n in self.split_names[split]]


class FolderDataModule(ImageDataModule):
    """Images of a local folder, read with Pillow.

    If `path` has sub-folders `train/`, `val/` and `test/`, they are the splits; otherwise the sorted
    files are split deterministically: the last `test_count` for test, the `val_count` before them for
    validation, the rest for training.
    """

    def __init__(self, path: str | None = None, val_count: int = 1, test_count: int = 1, **kwargs):
        if path is None or str(path) in ("", "???"):
            raise ConfigError("data=folder needs data.path=/path/to/images")
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ConfigError(f"data.path={path}: no such folder")
        self.val_count, self.test_count = val_count, test_count
        self.files = self._split_files()
        super().__init__(**kwargs)

    @staticmethod
    def _images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    def _split_files(self) -> dict[str, list[Path]]:
        subdirs = {s: self.path / s for s in ("train", "val", "test")}
        if all(d.is_dir() for d in subdirs.values()):
            files = {s: self._images_in(d) for s, d in subdirs.items()}
            empty = [s for s, f in files.items() if not f]
            if empty:
                raise ConfigError(f"data.path={self.path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in "
                                  f"sub-folder(s) {', '.join(empty)}")
            return files
        files = self._images_in(self.path)
        if not files:
            raise ConfigError(f"data.path={self.path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        if self.val_count < 1 or self.test_count < 1:
            raise ConfigError("data.val_count and data.test_count must be >= 1")
        need = self.val_count + self.test_count + 1
        if len(files) < need:
            raise ConfigError(f"data.path={self.path}: {len(files)} image(s), need at least {need} "
                              f"(train + data.val_count={self.val_count} + data.test_count={self.test_count})")
        n_test, n_val = self.test_count, self.val_count
        return {"train": files[: len(files) - n_test - n_val],
                "val": files[len(files) - n_test - n_val: len(files) - n_test],
                "test": files[len(files) - n_test:]}

    def load_split(self, split):
        out = []
        for f in self.files[split]:
            try:
                arr = read_picture(f)
            except OSError as e:
                raise ConfigError(f"cannot read image {f}: {e}") from None
            out.append((f"{split}/{f.name}", arr))
        return out
