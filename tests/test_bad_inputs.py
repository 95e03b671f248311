"""Catalogue of bad inputs, across the library and the command line: each stops with ONE line that names
the problem and, where there is a choice, what is allowed.

One row per case: (id, trigger, exception type, regex the message must match). Command-line cases run
what `train.py <overrides>` runs: `preflight` (the override check before Hydra starts), then
`pipeline.run` on the composed configuration (start-up checks, before any training).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from unfolded.models import DnCNN
from unfolded.optim import HQS, PGD, DEQConfig, PnP
from unfolded.physics import MRI, Blur, Denoising, GaussianNoise, Inpainting
from unfolded.training.config import compose, preflight
from unfolded.training.errors import ConfigError
from unfolded.training.pipeline import run

FAST = ["debug=fast", "algo.max_iter=2", "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
KERNEL = torch.ones(1, 1, 3, 3) / 9
X = torch.rand(1, 1, 8, 8)


def _small_model(channels: int = 1):
    return PGD(prior=PnP(DnCNN(channels, channels, depth=2, nf=4, pretrained=None)), max_iter=1)


# --- how a case is triggered ----------------------------------------------------------------------------
def lib(fn):
    return lambda tmp_path: fn()


def cli(*overrides, setup=None):
    """`train.py *overrides`; `setup(tmp_path)` may prepare files and return extra overrides."""

    def trigger(tmp_path):
        extra = list(setup(tmp_path)) if setup else []
        args = [*overrides, *extra]
        preflight(args)
        run(compose([*args, *FAST], tmp_path / "out"))

    return trigger


# --- files for the data and checkpoint cases ------------------------------------------------------------
def _image_folder(tmp_path, bad_name: str | None = None, bad_bytes: bytes | None = None, nan_tiff=False):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    if bad_bytes is not None:
        (folder / bad_name).write_bytes(bad_bytes)
    if nan_tiff:
        arr = rng.random((64, 64)).astype(np.float32)
        arr[10, 10] = np.nan
        Image.fromarray(arr, mode="F").save(folder / "img1.tif")
        (folder / "img1.png").unlink()
    return ["data=folder", f"data.path={folder}"]


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _checkpoint(content):
    def setup(tmp_path):
        path = tmp_path / "model.ckpt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        return [f"ckpt_path={path}", "train=false"]

    return setup


class _RunsCode:
    """Unpickling this runs `os.system`: what a malicious shared checkpoint would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _crafted_pickle(marker: str = "/tmp/unfolded-pickle-ran") -> bytes:
    import io
    import pickle

    buf = io.BytesIO()
    pickle.dump({"state_dict": {}, "payload": _RunsCode(marker)}, buf)
    return buf.getvalue()


_CRAFTED_PICKLE = _crafted_pickle()

OTHER_MODEL = {"state_dict": {"model.prior.denoiser.in_conv.weight": torch.zeros(64, 1, 3, 3)},
               "unfolded_config": {"algo": {"_target_": "unfolded.optim.PGD"}}}

CASES = [
    # --- library: shapes and dtypes ---
    ("filter-not-2d", lib(lambda: Blur(torch.ones(3, 3, 3))), ValueError, r"filter must be a 2-D"),
    ("image-not-4d", lib(lambda: Blur(KERNEL).A(torch.rand(8, 8))), ValueError, r"images must be 4-D"),
    ("measurement-shape", lib(lambda: Blur(KERNEL).prox_l2(X, torch.rand(1, 1, 8, 8), 1.0)), ValueError,
     r"y has shape \(1, 1, 8, 8\) but Blur maps images of shape \(1, 1, 8, 8\) to \(1, 1, 6, 6\)"),
    ("model-channels", lib(lambda: _small_model(3)(X, Denoising())), ValueError,
     r"DnCNN expects images of shape \(B, 3, H, W\), got \(1, 1, 8, 8\)"),
    ("physics-not-an-operator", lib(lambda: _small_model()(X, lambda x: x)), TypeError,
     r"physics must be a unfolded.physics operator"),
    pytest.param("integer-image", lib(lambda: Blur(KERNEL).A(torch.randint(0, 255, (1, 1, 8, 8)))), TypeError,
                 r"images must be floating-point.*got torch.int64"),
    pytest.param("integer-image-circular-prox", lib(lambda: Blur(KERNEL, padding="circular").prox_l2(
        torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 255, (1, 1, 8, 8)), 1.0)),
        TypeError, r"images must be floating-point.*got torch.uint8"),
    pytest.param("image-not-4d-circular-prox", lib(lambda: Blur(KERNEL, padding="circular").prox_l2(
        torch.rand(1, 8, 8), torch.rand(1, 8, 8), 1.0)), ValueError, r"images must be 4-D"),
    pytest.param("filter-larger-than-image", lib(lambda: Blur(torch.ones(9, 9) / 81).A(X)), ValueError,
                 r"filter of size \(9, 9\) is larger than the image \(8, 8\).*padding='valid'"),
    # --- library: NaN/inf ---
    pytest.param("nan-in-measurement", lib(lambda: _small_model()(torch.full((1, 1, 8, 8), float("nan")),
                                                                  Denoising())),
                 ValueError, r"y contains NaN or infinite values"),
    pytest.param("nan-in-filter", lib(lambda: Blur(torch.full((3, 3), float("nan")))), ValueError,
                 r"filter contains NaN or infinite values"),
    ("nan-noise-level", lib(lambda: GaussianNoise(float("nan"))), ValueError, r"sigma must be >= 0, got nan"),
    # --- library: filters, masks, names ---
    ("unknown-padding", lib(lambda: Blur(KERNEL, padding="mirror")), ValueError,
     r"padding must be one of valid, circular, reflect, replicate, constant .*got 'mirror'"),
    ("empty-mask", lib(lambda: Inpainting((1, 4, 4), mask=torch.zeros(1, 4, 4))), ValueError, r"mask is empty"),
    ("mask-fraction", lib(lambda: Inpainting((1, 4, 4), mask=1.5)), ValueError, r"must be in \(0, 1\], got 1.5"),
    pytest.param("mask-values", lib(lambda: Inpainting((1, 4, 4), mask=torch.full((1, 4, 4), 2.0))), ValueError,
                 r"mask values must be in \[0, 1\]"),
    ("mri-mask-size", lib(lambda: MRI(mask=torch.ones(5, 5), img_size=(2, 8, 8))), ValueError,
     r"img_size \(2, 8, 8\) does not match the mask's \(H, W\) \(5, 5\)"),
    ("unknown-trainable-parameter", lib(lambda: HQS(prior=PnP(DnCNN(1, 1, depth=2, nf=4, pretrained=None)),
                                                    trainable_params=["stepsiz"])), ValueError,
     r"unknown trainable parameter 'stepsiz'; valid names: .*stepsize"),
    # --- library: impossible solver settings ---
    ("cg-max-iter", lib(lambda: Blur(KERNEL, max_iter=0)), ValueError, r"max_iter must be an integer >= 1, got 0"),
    ("cg-tol", lib(lambda: Blur(KERNEL, tol=0)), ValueError, r"tol must be > 0"),
    ("prox-gamma", lib(lambda: Denoising().prox_l2(X, X, -1.0)), ValueError, r"gamma must be > 0"),
    ("deq-backward-iterations", lib(lambda: DEQConfig(max_iter_backward=0)), ValueError,
     r"max_iter_backward must be an integer >= 1, got 0"),
    ("anderson-beta", lib(lambda: DEQConfig(anderson_acceleration_forward=True, beta_anderson_acc_forward=2.0)),
     ValueError, r"Anderson beta must be in \(0, 1\], got 2.0"),
    # --- command line: keys and groups ---
    ("cli-unknown-group-option", cli("algo=ista"), SystemExit,
     r"config error: .*Could not find 'algo/ista'; available options in 'algo': admm drs e2e_varnet fista gd hqs "
     r"modl pdcp pdnet pgd varnet"),
    ("cli-override-of-missing-key", cli("algo.stepsiz=0.5"), SystemExit,
     r"config error: unknown key 'algo.stepsiz'; did you mean algo.stepsize\?$"),
    ("cli-unknown-constructor-key", cli("+algo.stepsiz=0.5"), ConfigError,
     r"unknown key 'algo\.stepsiz': unfolded.optim.HQS accepts .*stepsize"),
    ("cli-unknown-nested-key", cli("+physics.noise_model.sigm=0.1"), ConfigError,
     r"unknown key 'physics\.noise_model\.sigm': .*GaussianNoise accepts .*sigma"),
    ("cli-unknown-data-key", cli("+data.crop=32"), ConfigError, r"unknown key 'data\.crop': .*crop_size"),
    ("cli-unknown-top-level-key", cli("+sed=1"), ConfigError, r"unknown top-level key 'sed'; known: .*seed"),
    ("cli-unknown-trainable-parameter", cli("algo.trainable_params=[stepsiz]"), ConfigError,
     r"cannot build algo: ValueError: .*stepsiz.*stepsize"),
    ("cli-bad-constructor-value", cli("physics.padding=bogus"), ConfigError,
     r"cannot build physics: ValueError: padding must be one of valid, .*got 'bogus'"),
    ("cli-impossible-solver", cli("physics.max_iter=0"), ConfigError,
     r"cannot build physics: ValueError: max_iter must be an integer >= 1, got 0"),
    ("cli-bad-module-option", cli("module.on_nonfinite_loss=ignore"), ConfigError,
     r"on_nonfinite_loss must be 'stop' or 'skip', got 'ignore'"),
    ("cli-bad-loss-region", cli("module.loss_region=ring"), ConfigError,
     r"loss_region must be 'full' or 'interior', got 'ring'"),
    ("cli-nothing-to-do", cli("train=false", "test=false"), ConfigError, r"train=false and test=false: nothing to do"),
    ("cli-ddp-sampler", cli("trainer=ddp_sim", "trainer.use_distributed_sampler=true"),
     ConfigError, r"trainer.use_distributed_sampler must be false with 2 processes"),
    ("cli-fewer-images-than-processes", cli("trainer=ddp_sim", "data.val_images=[chelsea]"), ConfigError,
     r"1 val image\(s\) for 2 processes: give at least one per process"),
    ("cli-skip-under-ddp", cli("trainer=ddp_sim", "module.on_nonfinite_loss=skip"), ConfigError,
     r"module.on_nonfinite_loss=skip works in a single process only; use stop with 2 processes"),
    # --- command line: data ---
    ("cli-channels-mismatch", cli("algo.prior.denoiser.in_channels=3", "algo.prior.denoiser.out_channels=3"),
     ConfigError, r"image channels \(data.channels=1\) != model channels \(algo.prior.denoiser.in_channels=3\)"),
    ("cli-bad-channels",
     cli("data.channels=4", "algo.prior.denoiser.in_channels=4", "algo.prior.denoiser.out_channels=4"), ConfigError,
     r"data.channels must be 1 \(grayscale\), 2 \(complex, for MRI\) or 3 \(colour\), got 4"),
    ("cli-unknown-bundled-image", cli("data.test_images=[cameraman]"), ConfigError,
     r"unknown bundled image\(s\) \['cameraman'\] in data.test_images; available: .*camera"),
    ("cli-folder-not-given", cli("data=folder"), ConfigError, r"data=folder needs data.path=/path/to/images"),
    ("cli-missing-folder", cli(setup=lambda p: ["data=folder", f"data.path={p / 'nope'}"]), ConfigError,
     r"data.path=\S+nope: no such folder"),
    ("cli-folder-without-images", cli(setup=lambda p: (p / "notes.txt").write_text("x") and
                                      ["data=folder", f"data.path={p}"]),
     ConfigError, r"folder has no images \(.png, .jpg"),
    ("cli-corrupt-image", cli(setup=lambda p: _image_folder(p, "img9.png", b"not a png at all")), ConfigError,
     r"cannot read image \S+img9.png: cannot identify image file"),
    ("cli-truncated-image", cli(setup=lambda p: _image_folder(p, "img9.png", _png_bytes()[:200])), ConfigError,
     r"cannot read image \S+img9.png: .*truncated"),
    ("cli-nan-pixels", cli(setup=lambda p: _image_folder(p, nan_tiff=True)), ConfigError,
     r"val image 'val/img1.tif' has NaN or infinite pixels; images must be finite"),
    ("cli-crop-too-large", cli("data.crop_size=100"), ConfigError,
     r"data.crop_size=100 is larger than training image '\w+' of size \(64, \d+\)"),
    # --- command line: checkpoints ---
    ("cli-missing-checkpoint", cli(setup=lambda p: [f"ckpt_path={p / 'none.ckpt'}"]), SystemExit,
     r"config error: ckpt_path=\S+none.ckpt: no such file"),
    ("cli-corrupt-checkpoint", cli(setup=_checkpoint(b"\x00garbage, not a checkpoint")), SystemExit,
     r"config error: ckpt_path=\S+model.ckpt: cannot be read as a checkpoint \(\w+"),
    ("cli-not-a-lightning-checkpoint", cli(setup=_checkpoint({"weights": torch.zeros(3)})), SystemExit,
     r"config error: ckpt_path=\S+model.ckpt: not a Lightning checkpoint \(no state_dict\)"),
    ("cli-code-in-a-checkpoint", cli(setup=_checkpoint(_CRAFTED_PICKLE)), SystemExit,
     r"config error: ckpt_path=\S+model.ckpt: cannot be read as a checkpoint \(UnpicklingError"),
    # --- command line: values of documented keys (type, range) and keys that exist elsewhere ---
    ("cli-batch-size-zero", cli("data.batch_size=0"), ConfigError, r"^data.batch_size=0: must be an integer >= 1$"),
    ("cli-batch-size-negative", cli("data.batch_size=-1"), ConfigError,
     r"^data.batch_size=-1: must be an integer >= 1"),
    ("cli-lr-not-a-number", cli("module.optimizer.lr=abc"), ConfigError,
     r"^module.optimizer.lr='abc': must be a number \(default 0.001\)$"),
    ("cli-lr-negative", cli("module.optimizer.lr=-1"), ConfigError,
     r"^cannot build module.optimizer/scheduler: ValueError: Invalid learning rate: -1"),
    ("cli-flag-not-a-flag", cli("physics.use_fft=maybe"), ConfigError,
     r"^physics.use_fft='maybe': must be true or false$"),
    ("cli-key-of-another-group", cli("max_steps=30"), SystemExit,
     r"^config error: unknown key 'max_steps'; did you mean trainer.max_steps\?$"),
    ("cli-key-of-another-option", cli("data.path=/tmp"), SystemExit,
     r"^config error: unknown key 'data.path'; data.path exists with data=fastmri or data=folder$"),
    ("cli-kernel-larger-than-crops", cli("physics.filter.sigma=3"), ConfigError,
     r"^physics leaves no interior in the 32x32 training crops: its output is 22x22 pixels smaller .*"
     r"data.crop_size > 44"),
    ("cli-checkpoint-of-another-model", cli(setup=_checkpoint(OTHER_MODEL)), ConfigError,
     r"ckpt_path=\S+ is from a different model than the configuration \(saved with algo=unfolded.optim.PGD; "
     r".*shape mismatch at model.prior.denoiser.in_conv.weight"),
]


def _id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def test_the_catalogue_is_large_and_distinct():
    ids = [_id(c) for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 20


@pytest.mark.parametrize(("name", "trigger", "error", "pattern"), CASES, ids=[_id(c) for c in CASES])
def test_bad_input(name, trigger, error, pattern, tmp_path):
    with pytest.raises(error) as info:
        trigger(tmp_path)
    message = str(info.value.code if isinstance(info.value, SystemExit) else info.value)
    assert "\n" not in message, message
    assert re.search(pattern, message), message


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    import pickle

    marker = tmp_path / "ran"
    payload = _crafted_pickle(str(marker))
    with pytest.raises(SystemExit, match="cannot be read as a checkpoint"):
        cli(setup=_checkpoint(payload))(tmp_path)
    assert not marker.exists()
    pickle.loads(payload)  # the file really is a payload: plain unpickling runs it
    assert marker.exists()
