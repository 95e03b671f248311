"""`python train.py algo=modl|varnet|e2e_varnet|pdnet physics=mri`: the predefined models and MRI in training."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from unfolded.physics import MRI, GaussianNoise, MultiCoilMRI, random_mask
from unfolded.training import baselines
from unfolded.training.config import compose
from unfolded.training.data import BundledDataModule
from unfolded.training.errors import ConfigError
from unfolded.training.images import mri_slice, to_tensor
from unfolded.training.metrics import display_image, image_metrics, magnitude
from unfolded.training.pipeline import run

QUIET = ["callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]
FAST = ["debug=fast", *QUIET]


@pytest.mark.parametrize("model", ["modl", "varnet", "e2e_varnet", "pdnet"])
def test_fast_dev_run_every_model_on_mri(model, tmp_path):
    cfg = compose([f"algo={model}", "physics=mri", *FAST], tmp_path)
    assert "prior" not in cfg.algo and "DEQ" not in cfg.algo and cfg.data.channels == 2
    _, metrics = run(cfg)
    assert metrics["global_step"] == 1
    for key in ("test/psnr", "test/ssim", "test/adjoint/psnr", "test/tikhonov/psnr", "test/gain/psnr_vs_adjoint"):
        assert np.isfinite(metrics[key]), key
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["images"][0]["name"] == "mri_slice"
    assert len(results["images"][0]["psnr_iter"]) == cfg.algo.get("num_iter", cfg.algo.get("num_cascades"))
    assert (tmp_path / "report.png").is_file()


@pytest.mark.parametrize("overrides", [
    ["algo=modl", "physics=mri_multicoil", "algo.num_iter=2"],                       # CG data consistency
    ["algo=e2e_varnet", "physics=mri_multicoil", "algo.num_cascades=2",
     "algo.sensitivity_model={_target_: unfolded.models.SensitivityModel}"],          # estimated coil maps
    ["algo=hqs", "physics=mri", "algo.max_iter=2"],                                    # an algorithm on MRI
    ["algo=modl", "physics=mri", "physics.mask.pattern=equispaced", "physics.mask.acceleration=8"],
    ["algo=pdnet", "physics=blur", "algo.num_iter=2"],                                # a model off MRI
], ids=["modl-multicoil", "e2e-sensitivity", "hqs-mri", "equispaced-8x", "pdnet-blur"])
def test_fast_dev_run_variants(overrides, tmp_path):
    _, metrics = run(compose([*overrides, *FAST], tmp_path))
    assert metrics["global_step"] == 1 and np.isfinite(metrics["test/psnr"])


def test_model_config_mirrors_the_constructor(tmp_path):
    from hydra.utils import instantiate

    from unfolded.models import MoDL, VarNet

    cfg = compose(["algo=e2e_varnet", "physics=mri"], tmp_path)
    model = instantiate(cfg.algo)
    assert isinstance(model, VarNet) and model.mode == "e2e-varnet" and len(model.denoisers) == 4
    assert model.denoisers[0].in_conv.weight.data_ptr() != model.denoisers[1].in_conv.weight.data_ptr()
    assert isinstance(instantiate(compose(["algo=modl", "physics=mri"], tmp_path).algo), MoDL)
    assert cfg.module.init == "adjoint"  # MRI: x0 = zero-filled, not the blur's mean fill
    assert compose(["physics=mri", "algo=modl"], tmp_path).physics.mask.acceleration == 4


class PhaseRotated(nn.Module):
    """i·Aᵀy: under full sampling the complex image rotated by 90°, so only its magnitude is right."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, y, physics, **kwargs):
        x = physics.A_adjoint(y)
        return torch.stack((-x[:, 1], x[:, 0]), dim=1)


def test_logged_psnr_is_the_magnitude_psnr(tmp_path):
    """With full sampling, i·Aᵀy has the magnitude of Aᵀy: the logged PSNR must equal the zero-filled one
    (and be high), whereas a PSNR of the (real, imaginary) channels would be poor."""
    cfg = compose(["algo=modl", "physics=mri", "physics.mask.acceleration=1", "algo._target_=" + __name__ +
                   ".PhaseRotated", "~algo.denoiser", "~algo.num_iter", "~algo.lambda_init", "train=false",
                   "data.test_images=[mri_slice,moon]", *FAST, "trainer.fast_dev_run=false"], tmp_path)
    _, metrics = run(cfg)
    assert metrics["test/psnr"] > 35
    assert metrics["test/psnr"] == pytest.approx(metrics["test/adjoint/psnr"], abs=1e-3)
    images = json.loads((tmp_path / "results.json").read_text())["images"]
    assert [r["name"] for r in images] == ["mri_slice", "moon"]

    x = torch.stack((torch.rand(2, 16, 16), torch.zeros(2, 16, 16)), dim=1)
    rotated = torch.stack((torch.zeros_like(x[:, 0]), x[:, 0]), dim=1)
    assert bool((image_metrics(rotated, x, (0, 0))["psnr"] > 100).all())  # |i x| = |x|


def test_magnitude_and_display():
    x = torch.tensor([3.0, 0.0])[None, :, None, None] * torch.ones(1, 2, 2, 2)
    x[:, 1] = 4.0
    assert torch.allclose(magnitude(x), torch.full((1, 1, 2, 2), 5.0))
    assert magnitude(torch.ones(1, 3, 2, 2)).shape == (1, 3, 2, 2)
    k = torch.zeros(2, 8, 8)
    k[0, 4, 4], k[0, 0, 0] = 100.0, 1e-3
    shown = display_image(k, kspace=True)
    assert shown.shape == (1, 8, 8) and float(shown.max()) == pytest.approx(1.0)
    assert 0 < float(shown[0, 0, 0]) < 0.1 and float(shown[0, 1, 1]) == 0  # log scale keeps small values
    assert display_image(torch.randn(2, 3, 8, 8), kspace=True).shape == (1, 8, 8)  # coils combined


def test_mri_data():
    img = mri_slice()
    assert img.shape == (256, 256) and img.dtype == np.float32 and img.max() == 1.0
    assert 0.1 < float(img.mean()) < 0.3 and float(np.abs(img[:20, :20]).max()) == 0  # a head on black
    t = to_tensor(np.full((4, 5, 3), 255, np.uint8), 2)
    assert t.shape == (2, 4, 5) and torch.allclose(t[0], torch.ones(4, 5)) and torch.all(t[1] == 0)
    dm = BundledDataModule(train_images=["camera"], val_images=["coins"], test_images=["mri_slice"], channels=2,
                           crop_size=32, image_size=64, eval_size=64, batch_size=2, samples_per_epoch=4)
    batch = next(iter(dm.train_dataloader()))["image"]
    assert batch.shape == (2, 2, 32, 32) and torch.all(batch[:, 1] == 0)
    assert dm.images["test"][0].shape == (2, 64, 64)


def test_tikhonov_baseline_centres_on_the_image_mean_for_mri():
    """A very strong Tikhonov prior returns the constant m: for k-space, the image's (complex) mean."""
    x = torch.stack((torch.rand(2, 16, 16), 0.3 * torch.rand(2, 16, 16)), dim=1)
    physics = MRI(random_mask((16, 16), 4), noise_model=GaussianNoise(0.0))
    x_t = baselines.tikhonov(physics, physics(x), x.shape, lam=1e6)
    assert torch.allclose(x_t, x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-4)
    multi = MultiCoilMRI(random_mask((16, 16), 4), 3, noise_model=GaussianNoise(0.0))
    m = baselines.prior_mean(multi, multi(x))
    assert m.shape == (2, 2, 1, 1)


@pytest.mark.parametrize("overrides, match", [
    (["algo=varnet", "deq=anderson"], r"predefined architecture with its own network: remove deq=\.\.\."),
    (["algo=modl", "prior=dncnn"], r"predefined architecture with its own network: remove prior=\.\.\."),
    (["algo=modl", "physics=mri", "algo.denoiser.in_channels=1"], r"algo\.denoiser\.in_channels=1"),
    (["algo=pdnet", "physics=mri", "algo.channels=1"], r"algo\.channels=1"),
    (["algo=modl", "+algo.num_iters=3"], r"unknown key 'algo\.num_iters'"),
    (["algo=modl", "physics=mri", "physics.mask.pattern=radial"], r"cannot build physics.*radial"),
    (["physics=mri", "data=bundled"], r"MRI physics needs complex images: data.channels=2"),
    (["algo=e2e_varnet", "physics=blur"],
     r"^algo=unfolded.models.VarNet cannot work with physics=unfolded.physics.Blur: "
     r"VarNet: mode='e2e-varnet' needs MRI or MultiCoilMRI physics, got Blur$"),
    (["algo=pdnet", "physics=mri_multicoil"], r"^algo=unfolded.models.PDNet cannot work with physics=\S+MultiCoilMRI: "
                                              r"PDNet: y must have shape \(B, 2, H', W'\)"),
])
def test_config_errors(overrides, match, tmp_path):
    with pytest.raises(ConfigError, match=match) as info:
        run(compose([*overrides, *FAST], tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_modl_mri_experiment_beats_zero_filled(tmp_path):
    """`python train.py experiment=modl_mri`: test PSNR (magnitudes, mean over the MRI slice and the moon)
    above the zero-filled reconstruction's, and on the MRI slice alone."""
    _, metrics = run(compose(["experiment=modl_mri", "logger=none", *QUIET], tmp_path))
    images = json.loads((tmp_path / "results.json").read_text())["images"]
    print({k: round(v, 3) for k, v in metrics.items() if k.startswith("test/")},
          [(r["name"], round(r["model/psnr"], 2), round(r["adjoint/psnr"], 2)) for r in images])
    assert metrics["test/gain/psnr_vs_adjoint"] > 0.5
    assert images[0]["name"] == "mri_slice" and images[0]["model/psnr"] > images[0]["adjoint/psnr"] + 0.5


def test_checkpoint_of_a_model_is_evaluated_and_checked(tmp_path):
    small = ["algo=modl", "physics=mri", "algo.num_iter=2", "algo.denoiser.depth=3", "debug=fast",
             "trainer.fast_dev_run=false", "trainer.max_steps=2", "trainer.val_check_interval=2", *QUIET]
    run(compose([*small, "test=false"], tmp_path / "train"))
    last = tmp_path / "train" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["unfolded_config"]["algo"]["num_iter"] == 2
    _, metrics = run(compose([*small, "train=false", f"ckpt_path={last}"], tmp_path / "eval"))
    assert metrics["global_step"] == 2 and np.isfinite(metrics["test/psnr"])
    with pytest.raises(ConfigError, match="saved with algo=unfolded.models.MoDL"):
        run(compose(["algo=varnet", "physics=mri", "train=false", f"ckpt_path={last}", *FAST], tmp_path / "x"))
