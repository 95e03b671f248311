"""Training with per-sample operators (module.physics_generator) and the test grid (module.test_grid):
draws by sample number (any batch, after a resume, in any number of processes), one operator call per batch,
fixed evaluation draws, the grid's cells and per-cell Tikhonov, the bicubic baseline, start-up errors."""

import json

import pytest
import torch

from unfolded.physics import Blur, Downsampling, GaussianNoise
from unfolded.physics.blur import gaussian_blur
from unfolded.physics.generators import GaussianBlurGenerator, GeneratorMixture, MotionBlurGenerator, SigmaGenerator
from unfolded.training.baselines import bicubic_upsampling
from unfolded.training.config import compose
from unfolded.training.errors import ConfigError
from unfolded.training.grid import OperatorGrid
from unfolded.training.pipeline import run
from unfolded.training.simulation import Simulator

GENERATOR = ("module.physics_generator={_target_:unfolded.training.operators.combined,generators:["
             "{_target_:unfolded.physics.generators.GaussianBlurGenerator,psf_size:5,sigma_min:0.5,sigma_max:1.5,"
             "isotropic:false},{_target_:unfolded.physics.generators.SigmaGenerator,sigma_min:0.01,sigma_max:0.05}]}")
TINY = ["physics=blur", GENERATOR, "algo=hqs", "algo.max_iter=2", "algo.prior.denoiser.depth=3",
        "algo.prior.denoiser.nf=8", "data.crop_size=32", "data.image_size=64", "data.eval_size=48",
        "data.test_images=[camera,moon,coffee]", "data.samples_per_epoch=16", "trainer.val_check_interval=2",
        "trainer.deterministic=true", "module.tikhonov_lambdas=[0.01,0.1]", "module.tikhonov_refine=0", "seed=3",
        "callbacks.rich_progress_bar=null", "trainer.enable_model_summary=false"]


def _simulator(seed=0):
    gen = GeneratorMixture([GaussianBlurGenerator(7, 0.5, 2.0, isotropic=False), MotionBlurGenerator(7, n_steps=200)],
                           [0.5, 0.5]) + SigmaGenerator(0.01, 0.05)
    physics = Blur(gaussian_blur(1.0), padding="valid", use_fft=True, noise_model=GaussianNoise(0.02))
    return Simulator(physics, seed, eval_seed=5, generator=gen), physics


def test_a_sample_gets_the_same_operator_and_measurement_in_any_batch():
    sim, physics = _simulator()
    x = torch.rand(3, 1, 32, 32)
    p, y = sim.training(x, torch.tensor([3, 17, 42]))
    assert p.filter.shape == (3, 1, 7, 7) and p.noise_model.sigma.shape == (3,)
    assert physics.filter.shape == (1, 1, 9, 9) and float(physics.noise_model.sigma) == 0.02  # not changed
    p1, y1 = sim.training(x[1:2], torch.tensor([17]))
    torch.testing.assert_close(p1.filter, p.filter[1:2], rtol=0, atol=0)
    torch.testing.assert_close(y1, y[1:2], rtol=0, atol=1e-6)
    _, again = sim.training(x, torch.tensor([3, 17, 42]))
    assert torch.equal(again, y)
    _, other = _simulator(seed=1)[0].training(x, torch.tensor([3, 17, 42]))
    assert not torch.allclose(other, y, atol=1e-3)
    # the noise is the drawn level: y - A x has each sample's σ
    residual = (y - p.A(x)).flatten(1).std(dim=1)
    torch.testing.assert_close(residual, p.noise_model.sigma, rtol=0.1, atol=0)


def test_one_operator_call_per_batch(monkeypatch):
    calls = []
    original = Blur.A

    def counting(self, x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Blur, "A", counting)
    sim, _ = _simulator()
    sim.training(torch.rand(4, 1, 32, 32), torch.arange(4))
    assert calls == [4]


def test_evaluation_draws_are_fixed_per_split_and_image_and_a_cell_fixes_them():
    sim, _ = _simulator()
    x = torch.rand(2, 1, 32, 32)
    p, y = sim.evaluation(x, torch.tensor([0, 1]), "val")
    p2, y2 = sim.evaluation(x, torch.tensor([0, 1]), "val")
    assert torch.equal(p.filter, p2.filter) and torch.equal(y, y2)
    pt, _ = sim.evaluation(x, torch.tensor([0, 1]), "test")
    assert not torch.equal(pt.filter, p.filter)
    cell = OperatorGrid({"box": torch.ones(3, 3) / 9}, [0.04]).cells()[0]
    pc, yc = sim.evaluation(x, torch.tensor([0, 1]), "val", cell.params)
    assert pc.filter.shape == (1, 1, 3, 3) and float(pc.noise_model.sigma) == pytest.approx(0.04)
    assert yc.shape == (2, 1, 30, 30)
    unseeded = Simulator(Blur(gaussian_blur(1.0), noise_model=GaussianNoise(0.02)), None, 5,
                         generator=SigmaGenerator(0.01, 0.05))
    a, b = unseeded.training(x, torch.arange(2))[0], unseeded.training(x, torch.arange(2))[0]
    assert not torch.equal(a.noise_model.sigma, b.noise_model.sigma)  # no seed: fresh draws


def test_grid_cells_and_bad_grids():
    grid = OperatorGrid({"a": torch.ones(3, 3), "b": gaussian_blur(1.0)}, [0.01, 0.05])
    assert [c.name for c in grid.cells()] == ["a/0.01", "a/0.05", "b/0.01", "b/0.05"]
    assert float(grid.cells()[0].params["filter"].sum()) == 9  # as given (as_filter does not normalise tensors)
    assert [c.name for c in OperatorGrid(noise_levels=[0.1]).cells()] == ["operator/0.1"]
    with pytest.raises(ValueError, match=r"give kernels \(name: filter\), noise_levels"):
        OperatorGrid()
    with pytest.raises(ValueError, match=r"noise levels must be >= 0"):
        OperatorGrid(noise_levels=[-0.1])


def test_bicubic_baseline_is_aligned_with_the_operator():
    """Samples are placed where the operator centres them. Plain decimation and an odd (Gaussian) filter keep
    every 2nd pixel, so the image pixels fall on samples or midway, where bicubic interpolation reproduces a
    linear ramp exactly (a misplaced sample would shift it). An even (bicubic) filter centres a sample between
    two pixels: then it is torch's half-pixel (align_corners=False) interpolation."""
    rows = torch.arange(64.0)[:, None] / 64
    ramp = (0.2 + 0.5 * rows + 0.3 * torch.arange(64.0)[None] / 64)[None, None].double()
    inside = (..., slice(12, -12), slice(12, -12))
    for filt in (None, "gaussian"):
        physics = Downsampling(img_size=(1, 64, 64), filter=filt, factor=2, padding="replicate")
        up = bicubic_upsampling(physics, physics.A(ramp))
        torch.testing.assert_close(up[inside], ramp[inside], rtol=0, atol=1e-6)
    physics = Downsampling(img_size=(1, 64, 64), filter="bicubic", factor=2, padding="replicate")
    y = physics.A(torch.rand(2, 1, 64, 64, dtype=torch.float64))
    half_pixel = torch.nn.functional.interpolate(y, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(bicubic_upsampling(physics, y)[inside], half_pixel[inside], rtol=0, atol=1e-9)


def test_training_run_with_a_generator_and_the_grid_reports_every_cell(tmp_path):
    grid = ("module.test_grid={_target_:unfolded.training.grid.OperatorGrid,noise_levels:[0.01,0.05],"
            "kernels:{box:{_target_:torch.ones,_args_:[1,1,3,3]},gauss:{_target_:"
            "unfolded.physics.blur.gaussian_blur,sigma:0.8}}}")
    _, metrics = run(compose([*TINY, grid, "logger=none", "trainer.max_steps=2"], tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    cells = results["grid"]["cells"]
    assert [c["cell"] for c in cells] == ["box/0.01", "box/0.05", "gauss/0.01", "gauss/0.05"]
    for c in cells:
        assert c["images"] == 3 and c["tikhonov/lambda"] in (0.01, 0.1)
        assert c["gain/psnr_interior"] == pytest.approx(c["model/psnr_interior"] - c["tikhonov/psnr_interior"])
    assert len(results["grid"]["images"]) == 12
    assert cells[0]["tikhonov/psnr_interior"] > cells[1]["tikhonov/psnr_interior"]  # more noise, lower PSNR
    assert metrics["test_grid/gauss/0.05/gain_interior"] == pytest.approx(cells[3]["gain/psnr_interior"], abs=1e-4)
    assert "test/psnr" in metrics and "images" in results  # the plain test report is still there


def test_resume_with_a_generator_equals_an_uninterrupted_run(tmp_path):
    # 4 batches per epoch, so the resume is mid-epoch; the cosine schedule's length pinned to the full run's
    common = [*TINY, "logger=none", "data.batch_size=4", "module.scheduler.T_max=6", "test=false"]
    run(compose([*common, "trainer.max_steps=6"], tmp_path / "straight"))
    run(compose([*common, "trainer.max_steps=2"], tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    run(compose([*common, "trainer.max_steps=6", f"ckpt_path={last}"], tmp_path / "first"))
    assert torch.load(last, weights_only=False)["global_step"] == 6
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    resumed = torch.load(last, weights_only=False)["state_dict"]
    for k, v in straight.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=1e-6, msg=k)
    assert float(straight["model.prior.denoiser.out_conv.weight"].abs().max()) > 0


def test_two_processes_equal_one_with_a_generator(tmp_path):
    _, single = run(compose([*TINY, "logger=none", "trainer.max_steps=4", "data.batch_size=4"], tmp_path / "one"))
    _, ddp = run(compose([*TINY, "logger=none", "trainer.max_steps=4", "data.batch_size=2", "trainer=ddp_sim"],
                         tmp_path / "two"))
    for key in ("val/psnr", "val/psnr_interior", "test/psnr", "test/psnr_interior", "test/tikhonov/psnr"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    w2 = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for k, v in w1.items():
        torch.testing.assert_close(w2[k], v, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("overrides,pattern", [
    (["physics=denoise", GENERATOR], r"module.physics_generator does not fit physics=unfolded.physics.Denoising: "
                                     r"Denoising.update: unknown keyword\(s\) filter"),
    (["physics=denoise", "test_grid=blur"], r"module.test_grid cell gauss_iso/0.01 does not fit "
                                            r"physics=unfolded.physics.Denoising"),
    (["physics=blur_random", "data.crop_size=28"], r"module.physics_generator leaves no interior in the 28x28"),
    (["module.test_grid={_target_:unfolded.training.grid.OperatorGrid}"],
     r"cannot build module: ValueError: OperatorGrid: give kernels"),
])
def test_mismatched_generators_and_grids_are_one_line_start_up_errors(overrides, pattern, tmp_path):
    with pytest.raises(ConfigError, match=pattern) as info:
        run(compose([*overrides, "debug=fast"], tmp_path))
    assert "\n" not in str(info.value)


def test_pretrained_denoiser_file_loads_into_the_prior(tmp_path):
    from unfolded.models import DRUNet
    from unfolded.training.pretrain_denoiser import main, pretrain

    small = ["data.crop_size=32", "data.image_size=64", "data.eval_size=48", "data.batch_size=2"]
    out = tmp_path / "drunet.pt"
    assert main([str(out), *small, "--steps", "2"]) == 0
    net = DRUNet(1, 1, nc=(16, 32, 64, 128), nb=1, pretrained=str(out))  # conf/prior/drunet.yaml's sizes
    state = torch.load(out, weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    again = pretrain(small, steps=2, sigma_min=0.005, sigma_max=0.1, lr=1e-3, seed=0)
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict().items())  # seeded: the same network
    with pytest.raises(ValueError, match=r"DnCNN does not take the noise level as an input"):
        pretrain(["prior=dncnn_small", *small], steps=1, sigma_min=0.01, sigma_max=0.1, lr=1e-3, seed=0)
