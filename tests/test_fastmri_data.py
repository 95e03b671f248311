"""fastMRI-layout files: the generator, the lazy reader, slice datasets split by file, measured k-space with
per-sample masks, coil maps estimated from the ACS lines, and `train.py physics=fastmri`."""

import json
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from unfolded.mri import coil_maps as cm
from unfolded.mri.fastmri_files import FastMRIFileError, read_slice, read_volume_info
from unfolded.mri.generate import generate
from unfolded.physics.kspace import KspacePhysics
from unfolded.training.config import compose
from unfolded.training.errors import ConfigError
from unfolded.training.fastmri import FastMRIDataModule, FastMRISlices, collate
from unfolded.training.kspace_measurements import KspaceMeasurements
from unfolded.training.pipeline import run

SMALL = {"slices": 2, "coils": 4, "kspace_shape": (64, 160), "recon_size": (32, 32)}  # 0.08 x 160 = 13 ACS lines


def _ifft2c(k):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("fastmri")
    generate(out, files=4, noise=0.0, **SMALL)
    return out


def test_generated_files_have_fastmri_layout(folder):
    path = folder / "synthetic_multicoil_000.h5"
    info = read_volume_info(path)
    assert info.kspace_shape == (4, 64, 160) and info.target_shape == (32, 32) and info.num_slices == 2
    assert info.encoding_size == (64, 160, 1) and info.recon_size == (32, 32, 1)
    assert (info.padding_left, info.padding_right) == (0, 160)
    with h5py.File(path) as hf:
        k, target, maps, image = (hf[n][()] for n in ("kspace", "reconstruction_rss", "simulated_coil_maps",
                                                      "simulated_image"))
        assert k.dtype == np.complex64 and hf.attrs["max"] == pytest.approx(target.max())
        assert hf.attrs["norm"] == pytest.approx(np.linalg.norm(target), rel=1e-5)
    coil_images = _ifft2c(k)
    assert np.abs(coil_images - maps[None] * image[:, None]).max() < 1e-5 * np.abs(image).max()  # noise 0
    assert np.abs(np.abs(image[:, :16]).max()) == 0  # readout oversampled x2: the object fills the middle half
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(1))[:, 16:48, 64:96]
    assert np.abs(rss - target).max() < 1e-5 * target.max()


def test_fastmri_slicedataset_reads_generated_files(folder):
    mri_data = pytest.importorskip("fastmri.data.mri_data", reason="fastmri not installed")
    ds = mri_data.SliceDataset(folder, "multicoil")
    kspace, _, target, attrs, fname, s = ds[3]
    ours = read_volume_info(folder / fname)
    assert (attrs["padding_left"], attrs["padding_right"]) == (ours.padding_left, ours.padding_right)
    assert attrs["encoding_size"] == ours.encoding_size and attrs["recon_size"] == ours.recon_size
    k, t = read_slice(ours, s)
    assert np.array_equal(k, kspace) and np.array_equal(t, target)


def test_generator_command_line(tmp_path, capsys):
    cmd = [sys.executable, "-m", "unfolded.mri.generate", str(tmp_path), "--files", "1", "--slices", "1",
           "--coils", "2", "--kspace-shape", "32", "40", "--recon-size", "16", "16", "--pe-padding", "2"]
    assert subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.startswith("wrote 1 file")
    info = read_volume_info(tmp_path / "synthetic_multicoil_000.h5")
    assert (info.padding_left, info.padding_right) == (2, 38)
    assert not np.any(read_slice(info, 0)[0][..., :2])  # unacquired columns are zero
    from unfolded.mri.generate import main

    with pytest.raises(SystemExit) as exit_:
        main([*cmd[3:], "--recon-size", "40", "40"])
    assert exit_.value.code == 2 and "recon_size" in capsys.readouterr().err.splitlines()[-1]


def test_missing_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=np.zeros((1, 8, 8), np.complex64))
    with pytest.raises(FastMRIFileError, match=r"bad\.h5: no 'reconstruction_rss' dataset \(has: kspace\)"):
        read_volume_info(path)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(FastMRIFileError, match=r"junk\.h5: not a readable HDF5 file"):
        read_volume_info(tmp_path / "junk.h5")


def test_slices_are_read_lazily_and_crop_the_readout(folder):
    ds = FastMRISlices([read_volume_info(folder / "synthetic_multicoil_001.h5")], readout_crop=True)
    assert len(pickle.dumps(ds)) < 10_000  # shapes and headers only: no k-space held (a file is ~1 MB)
    item = ds[1]
    assert item["kspace"].shape == (2, 4, 32, 160) and item["image"].shape == (2, 32, 160)
    # the reference's centre crop is the file's reconstruction_rss: the readout crop is exact
    assert torch.allclose(item["image"][0, :, 64:96], item["target"], atol=1e-5 * float(item["target"].max()))
    assert not item["image"][1].any()


def test_training_order_is_a_permutation_per_epoch(folder):
    vols = [read_volume_info(folder / f"synthetic_multicoil_00{i}.h5") for i in range(3)]
    ds = FastMRISlices(vols, True, order_seed=5)
    L = len(ds)
    order = [ds._slice_of(n) for n in range(2 * L)]
    assert sorted(order[:L]) == list(range(L)) and sorted(order[L:]) == list(range(L)) and order[:L] != order[L:]
    assert order == [FastMRISlices(vols, True, order_seed=5)._slice_of(n) for n in range(2 * L)]


def test_splits_by_file(folder, tmp_path):
    dm = FastMRIDataModule(str(folder), val_files=1, test_files=1, seed=0)
    files = {s: {v.path.name for v in vols} for s, vols in dm.volumes.items()}
    assert [len(files[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert not (files["train"] & files["val"]) and not (files["val"] & files["test"])
    assert dm.names["test"] == ["synthetic_multicoil_003/0", "synthetic_multicoil_003/1"]
    with pytest.raises(ConfigError, match="4 .h5 file\\(s\\), need at least 5"):
        FastMRIDataModule(str(folder), val_files=2, test_files=2)
    with pytest.raises(ConfigError, match="different k-space shapes .* data.batch_size=1"):
        collate([{"kspace": torch.zeros(2, 3, 4)}, {"kspace": torch.zeros(2, 3, 5)}])


def _batch(folder, slices=(0, 1)):
    ds = FastMRISlices([read_volume_info(folder / "synthetic_multicoil_002.h5")], True)
    return collate([ds[s] for s in slices])


def test_measurements_mask_the_files_kspace_per_sample(folder):
    batch = _batch(folder)
    meas = KspaceMeasurements(KspacePhysics(mask={"pattern": "random", "acceleration": 4, "center_fraction": 0.08},
                                              coil_maps="acs"), train_seed=3, eval_seed=7)
    x, physics, y = meas.batch(batch, "train")
    s = meas.scales(batch).reshape(-1, 1, 1, 1)
    assert torch.allclose(y, physics.mask[:, :, None] * batch["kspace"] / s[..., None])  # measured, not simulated
    assert torch.allclose(x, batch["image"] / s) and 0.5 < float(x.amax()) < 1.5
    m0, m1 = physics.mask[0, 0], physics.mask[1, 0]
    assert not torch.equal(m0, m1)  # drawn per sample number
    again = meas.batch(batch, "train")[1].mask
    assert torch.equal(again, physics.mask)  # seeded by (seed, sample number)
    v1, v2 = meas.batch(batch, "val")[1].mask, meas.batch(batch, "val")[1].mask
    assert torch.equal(v1, v2) and not torch.equal(v1, physics.mask)  # fixed for evaluation, its own seed
    assert bool(m0[:, 74:87].all())  # the 13 ACS columns


def test_espirit_maps_match_the_simulated_coils(folder):
    pytest.importorskip("sigpy")
    batch = _batch(folder, (0,))
    k = torch.complex(batch["kspace"][0, 0], batch["kspace"][0, 1]).numpy()
    block = ((0, 32), (74, 13))  # all readout rows x the centre columns
    with h5py.File(folder / "synthetic_multicoil_002.h5") as hf:
        true = hf["simulated_coil_maps"][()][:, 16:48]
    obj = batch["image"][0, 0].numpy() > 0.1 * float(batch["image"].max())
    esp = cm.espirit_maps(k, block, crop=0.0)
    acs = cm.acs_maps(k, block)
    e_esp, e_acs = cm.relative_error(esp, true, obj), cm.relative_error(acs, true, obj)
    assert e_esp < 0.05 < e_acs, (e_esp, e_acs)
    with pytest.raises(ValueError, match="ESPIRiT needs at least 2\\*kernel_width=12 ACS lines, got 7"):
        cm.espirit_maps(k, ((0, 32), (77, 7)))


def test_maps_cache_on_disk(tmp_path):
    cache = cm.MapsCache(tmp_path)
    key = cache.key("a/vol.h5", 3, {"method": "acs"})
    first = cache.get(key, lambda: np.ones((2, 3, 3), np.complex64))
    again = cm.MapsCache(tmp_path).get(key, lambda: pytest.fail("recomputed instead of read"))
    assert np.array_equal(first, again) and (tmp_path / f"{key}.npy").is_file()
    assert key != cache.key("b/vol.h5", 3, {"method": "acs"}) != cache.key("a/vol.h5", 3, {"method": "espirit"})
    small = cm.MapsCache(memory_items=2)
    for i in range(3):
        small.get(str(i), lambda: np.zeros(1))
    assert list(small._memory) == ["1", "2"]  # bounded: the least recently used is dropped


@pytest.mark.parametrize("kwargs, match", [
    ({"mask": {"accel": 4}}, r"physics.mask: unknown key\(s\) \['accel'\]"),
    ({"mask": {"pattern": "equispaced", "acceleration": 2.5}}, "acceleration must be an integer"),
    ({"mask": {"acceleration": 4, "center_fraction": 0.3}}, r"center_fraction must be in \(0, 1/acceleration\)"),
    ({"coil_maps": "sense"}, "physics.coil_maps must be one of espirit, acs"),
    ({"espirit": {"kernel": 5}}, r"physics.espirit: unknown key\(s\) \['kernel'\]"),
])
def test_bad_physics_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KspacePhysics(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"path": None}, "data=fastmri needs data.path="),
    ({"path": "/no/such/folder"}, "no such folder"),
    ({"target_key": "reconstruction"}, "data.target_key must be null .* or one of reconstruction_rss"),
    ({"batch_size": 0}, "data.batch_size=0: must be an integer >= 1"),
    ({"channels": 1}, "data.channels must be 2"),
])
def test_bad_data_settings(folder, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FastMRIDataModule(**{"path": str(folder), **kwargs})


def test_train_fast_dev_run_on_generated_files(tmp_path):
    data = tmp_path / "data"
    cfg = compose(["experiment=varnet_fastmri_demo", "debug=fast", f"data.path={data}", "data.val_files=1",
                   "data.test_files=1", "data.generate.files=3", "data.generate.slices=2", "data.generate.coils=3",
                   "data.generate.kspace_shape=[48,160]", "data.generate.recon_size=[24,24]",
                   "physics.coil_maps=acs", "algo.num_cascades=2", "callbacks.rich_progress_bar=null",
                   "trainer.enable_model_summary=false"], tmp_path / "run")
    _, metrics = run(cfg)
    assert metrics["global_step"] == 1 and len(list(data.glob("*.h5"))) == 3
    for key in ("test/psnr", "test/zero_filled_rss/psnr", "test/fastmri/model/ssim", "test/fastmri/cg_sense/nmse",
                "test/fastmri/zero_filled_rss/psnr"):
        assert np.isfinite(metrics[key]), key
    saved = json.loads((tmp_path / "run" / "fastmri_metrics.json").read_text())
    assert set(saved["methods"]) == {"model", "adjoint", "zero_filled_rss", "cg_sense"}


def test_simulated_physics_refuses_measured_kspace(folder, tmp_path):
    cfg = compose(["data=fastmri", f"data.path={folder}", "algo=modl", "debug=fast",
                   "callbacks.rich_progress_bar=null"], tmp_path)
    with pytest.raises(ConfigError, match="use physics=fastmri"):
        run(cfg)


def test_single_coil_files(tmp_path):
    generate(tmp_path, files=3, single_coil=True, noise=0.0, **{**SMALL, "coils": 1})
    dm = FastMRIDataModule(str(tmp_path), seed=0)
    assert not dm.multicoil and dm.volumes["test"][0].target_key == "reconstruction_esc"
    batch = collate([FastMRISlices(dm.volumes["test"], True)[0]])
    assert batch["kspace"].shape == (1, 2, 32, 160)
    meas = KspaceMeasurements(KspacePhysics(mask={"acceleration": 8, "center_fraction": 0.04}), 0, 1)
    x, physics, y = meas.batch(batch, "test")
    assert type(physics).__name__ == "MRI" and y.shape == (1, 2, 32, 160)
    assert torch.allclose(y, physics.mask * batch["kspace"] / meas.scales(batch).reshape(-1, 1, 1, 1))


def test_code_defaults_equal_the_yaml_defaults(tmp_path):
    import inspect

    from omegaconf import OmegaConf

    from unfolded.physics.kspace import ESPIRIT

    cfg = OmegaConf.to_container(compose(["physics=fastmri"], tmp_path), resolve=False)
    for cls, node in ((FastMRIDataModule, cfg["data"]), (KspacePhysics, cfg["physics"])):
        params = inspect.signature(cls.__init__).parameters
        for key, value in node.items():
            if key.startswith("_"):
                continue
            default = params[key].default
            if key == "espirit":
                default = ESPIRIT
            if key == "mask":
                default = KspacePhysics().mask
            assert default == value, f"{cls.__name__}.{key}: code default {default!r} != conf {value!r}"


class _Trainer:
    def __init__(self, rank, world):
        self.global_rank, self.world_size, self.current_epoch = rank, world, 0


def test_processes_share_the_samples_of_one_process(folder):
    """2 processes x batch 1 see the slices 1 process x batch 2 sees; evaluation slices keep their numbers."""
    def seen(rank, world, batch):
        dm = FastMRIDataModule(str(folder), batch_size=batch, seed=4)
        dm.trainer = _Trainer(rank, world)
        train = [(f, int(s)) for b in dm.train_dataloader() for f, s in zip(b["file"], b["slice"])]
        return train, [int(b["index"]) for b in dm.eval_dataloader("val")]

    one, val_one = seen(0, 1, 2)
    (a, val_a), (b, val_b) = seen(0, 2, 1), seen(1, 2, 1)
    assert sorted(one) == sorted(a + b) and len(set(one)) == len(one) == 4  # one epoch: each slice once
    assert val_one == [0, 1] and (val_a, val_b) == ([0], [1])
    dm = FastMRIDataModule(str(folder), batch_size=3, seed=4)
    loader = dm.train_dataloader()
    assert len(loader) == 1 and loader.dataset.epoch_length == 3  # 4 slices rounded down to whole batches
    epoch0 = [loader.dataset._slice_of(n) for n in range(3)]
    assert len(set(epoch0)) == 3  # no slice twice in an epoch
