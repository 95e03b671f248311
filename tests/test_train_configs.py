"""Every algo × physics combination composes from conf/ and runs Lightning's fast_dev_run."""

import itertools

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from unfolded.training.config import compose
from unfolded.training.pipeline import run

ALGOS = ["gd", "pgd", "hqs", "admm"]
PHYSICS = ["denoise", "blur", "blur_fft", "inpainting"]
QUIET = ["callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


@pytest.mark.parametrize("algo,physics", list(itertools.product(ALGOS, PHYSICS)))
def test_fast_dev_run_every_combination(algo, physics, tmp_path):
    cfg = compose([f"algo={algo}", f"physics={physics}", "debug=fast", "algo.max_iter=2", *QUIET], tmp_path)
    value, metrics = run(cfg)
    assert metrics["global_step"] == 1
    for key in ("test/psnr", "test/psnr_interior", "test/ssim", "test/adjoint/psnr", "test/tikhonov/psnr"):
        assert key in metrics, key
    assert (tmp_path / "report.png").is_file() and (tmp_path / "results.json").is_file()


# FISTA/DRS/PDCP and the classical priors (issue #21). The default suite runs every new algorithm with every
# classical prior and with the default DnCNN prior, each physics at least once, and the classical priors in the
# older algorithms; the rest of the product is `slow`. TV solves are capped at 100 iterations here (speed).
NEW_ALGOS, CLASSICAL = ["fista", "drs", "pdcp"], ["tv", "wavelet"]
FAST_PRIOR_RUNS = [("fista", "tv", "blur"), ("fista", "wavelet", "inpainting"), ("drs", "tv", "blur_fft"),
                   ("drs", "wavelet", "denoise"), ("pdcp", "tv", "inpainting"), ("pdcp", "wavelet", "blur"),
                   ("pgd", "tv", "denoise"), ("hqs", "wavelet", "blur_fft"), ("admm", "tv", "blur"),
                   ("fista", "dncnn_small", "denoise"), ("drs", "dncnn_small", "blur"),
                   ("pdcp", "dncnn_small", "blur_fft"), ("pdcp", "wavelet", "sr")]
ALL_PRIOR_RUNS = [(a, p, ph) for a in ["pgd", "hqs", "admm", *NEW_ALGOS] for p in CLASSICAL for ph in [*PHYSICS, "sr"]]
ALL_PRIOR_RUNS += [(a, "dncnn_small", ph) for a in NEW_ALGOS for ph in [*PHYSICS, "sr"]]


@pytest.mark.parametrize("algo,prior,physics", [pytest.param(*run_, marks=() if run_ in FAST_PRIOR_RUNS else
                                                             pytest.mark.slow) for run_ in ALL_PRIOR_RUNS])
def test_fast_dev_run_new_algorithms_and_priors(algo, prior, physics, tmp_path):
    extra = ["algo.prior.n_it_max=100"] if prior == "tv" else []
    cfg = compose([f"algo={algo}", f"prior={prior}", f"physics={physics}", "debug=fast", "algo.max_iter=2", *extra,
                   *QUIET], tmp_path)
    _, metrics = run(cfg)
    assert metrics["global_step"] == 1 and "test/psnr" in metrics


def test_fast_dev_run_learned_thresholds_and_gd_refusal(tmp_path):
    cfg = compose(["algo=pgd", "prior=wavelet", "physics=denoise", "debug=fast", "algo.max_iter=2",
                   "algo.lambda_reg=[0.5,0.2]", "algo.trainable_params=[stepsize,lambda_reg]", *QUIET], tmp_path)
    _, metrics = run(cfg)
    assert "test/psnr" in metrics and "lambda_reg" in (tmp_path / "results.json").read_text()
    from unfolded.training.errors import ConfigError

    with pytest.raises(ConfigError, match="algo=gd wraps the prior's denoiser in RED.*use it with algo=pgd"):
        run(compose(["algo=gd", "prior=tv", "debug=fast", *QUIET], tmp_path / "gd"))


@pytest.mark.parametrize("deq", ["fixed_point", "anderson"])
def test_fast_dev_run_deq(deq, tmp_path):
    cfg = compose(["algo=pgd", "physics=denoise", f"deq={deq}", "debug=fast", "algo.max_iter=3", *QUIET], tmp_path)
    _, metrics = run(cfg)
    assert metrics["global_step"] == 1 and "test/psnr" in metrics


@pytest.mark.parametrize("override", ["prior=dncnn", "logger=csv", "data.channels=3", "module.loss_region=interior",
                                      "experiment=pgd_denoise", "experiment=color_blur"])
def test_fast_dev_run_variants(override, tmp_path):
    extra = ["algo.prior.denoiser.depth=3"] if override == "prior=dncnn" else []
    cfg = compose([override, "debug=fast", "algo.max_iter=2", *extra, *QUIET], tmp_path)
    _, metrics = run(cfg)
    assert "test/psnr" in metrics


@pytest.mark.parametrize("overrides", [
    ["physics=sr", "prior=unet"],
    ["physics=sr", "physics.factor=4", "physics.padding=reflect", "prior=drunet", "algo.sigma_denoiser=0.05",
     "algo.trainable_params=[stepsize,sigma_denoiser]"],
])
def test_fast_dev_run_super_resolution_and_new_denoisers(overrides, tmp_path):
    cfg = compose([*overrides, "debug=fast", "algo.max_iter=2", *QUIET], tmp_path)
    _, metrics = run(cfg)
    assert "test/psnr" in metrics and "test/tikhonov/psnr" in metrics
    assert metrics["test/tikhonov/psnr"] > metrics["test/adjoint/psnr"]


def test_drunet_prior_needs_a_noise_level(tmp_path):
    from unfolded.training.errors import ConfigError

    with pytest.raises(ConfigError, match=r"DRUNet takes the noise level as an input: set algo.sigma_denoiser"):
        run(compose(["prior=drunet", "debug=fast", *QUIET], tmp_path))


def test_default_config_is_the_spec_experiment(tmp_path):
    cfg = compose([], tmp_path)
    assert cfg.algo._target_ == "unfolded.optim.HQS" and cfg.algo.max_iter == 5
    assert cfg.algo.prior.denoiser.depth == 8 and cfg.algo.prior.denoiser.nf == 32
    assert cfg.algo.prior.denoiser.last_layer_init == "zero"
    assert cfg.physics.padding == "valid" and cfg.physics.filter.sigma == 1.6
    assert cfg.physics.noise_model.sigma == 0.02
    assert cfg.module.optimizer.lr == 2e-3 and cfg.data.crop_size == 64 and cfg.data.channels == 1
    assert cfg.module.init == "mean_fill" and cfg.module.loss_region == "interior"
    assert list(cfg.data.test_images) == ["camera", "coffee", "moon"]
    assert cfg.logger.wandb.mode == "offline"


def test_hqs_blur_is_the_default(tmp_path):
    from omegaconf import OmegaConf

    default = OmegaConf.to_container(compose([], tmp_path), resolve=False)
    explicit = OmegaConf.to_container(compose(["algo=hqs", "physics=blur"], tmp_path), resolve=False)
    assert default == explicit


def test_gd_uses_red_whatever_the_prior(tmp_path):
    cfg = compose(["algo=gd", "prior=dncnn"], tmp_path)
    assert cfg.algo.prior._target_ == "unfolded.optim.RED" and cfg.algo.prior.denoiser.depth == 20


def test_wandb_offline_run_logs_images(tmp_path):
    import wandb

    cfg = compose(["debug=fast", "logger=wandb", "trainer.fast_dev_run=false", "trainer.max_steps=2",
                   "trainer.val_check_interval=1", *QUIET], tmp_path)
    run(cfg)
    assert wandb.run is None  # finished
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("files/media/images/**/*.png"))


def test_fast_dev_run_on_a_user_folder(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    cfg = compose(["data=folder", f"data.path={folder}", "data.channels=3", "debug=fast", "algo.max_iter=2",
                   *QUIET], tmp_path / "out")
    _, metrics = run(cfg)
    assert "test/psnr" in metrics


from unfolded.training.data import ImageDataModule  # noqa: E402

ImageDataModuleInit = ImageDataModule.__init__


def test_code_defaults_equal_the_yaml_defaults(tmp_path):
    """One default per setting: what the constructors assume is what conf/ says."""
    import inspect

    from unfolded.training import BundledDataModule, UnfoldedModule

    cfg = compose([], tmp_path)
    for cls, node, skip in ((UnfoldedModule, cfg.module, {"seed"}), (BundledDataModule, cfg.data, set())):
        params = {**inspect.signature(cls.__init__).parameters, **inspect.signature(ImageDataModuleInit).parameters} \
            if cls is BundledDataModule else inspect.signature(cls.__init__).parameters
        for key, value in node.items():
            if key.startswith("_") or key not in params or key in skip or OmegaConf.is_missing(node, key):
                continue
            default = params[key].default
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value)
                default = list(default) if isinstance(default, tuple) else default
                if isinstance(value, dict):
                    continue  # loss/optimizer/scheduler objects: built from their own configs
            assert default == value, f"{cls.__name__}.{key}: code default {default!r} != conf {value!r}"
