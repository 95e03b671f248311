"""Units of unfolded.training: data, metrics, baselines, atomic checkpoints, argument checks."""

import numpy as np
import pytest
import torch
from PIL import Image

import unfolded as dinv
from unfolded.training import baselines
from unfolded.training.callbacks import AtomicCheckpointIO
from unfolded.training.checks import accepted_arguments
from unfolded.training.config import one_line
from unfolded.training.data import BundledDataModule, FolderDataModule
from unfolded.training.errors import ConfigError
from unfolded.training.images import to_tensor
from unfolded.training.metrics import crop, interior_margin, psnr


def small_bundled(**kw):
    args = dict(train_images=["astronaut", "brick"], val_images=["chelsea"], test_images=["camera"],
                crop_size=32, image_size=64, eval_size=48, batch_size=4, samples_per_epoch=8)
    args.update(kw)
    return BundledDataModule(**args)


def test_bundled_splits_shapes_and_range():
    dm = small_bundled()
    batch = next(iter(dm.train_dataloader()))
    x = batch["image"]
    assert x.shape == (4, 1, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert batch["index"].tolist() == [0, 1, 2, 3]  # samples carry their numbers
    assert next(iter(dm.test_dataloader()))["image"].shape == (1, 1, 48, 48)
    assert dm.names["test"] == ["camera"]
    dm3 = small_bundled(channels=3)
    assert next(iter(dm3.val_dataloader()))["image"].shape == (1, 3, 48, 48)


def test_bundled_rejects_overlap_and_unknown_names():
    with pytest.raises(ConfigError, match="disjoint"):
        small_bundled(test_images=["astronaut"])
    with pytest.raises(ConfigError, match="unknown bundled image"):
        small_bundled(test_images=["lena"])


def test_folder_split_and_read(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (70, 80, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    dm = FolderDataModule(path=str(tmp_path), crop_size=32, image_size=None, eval_size=48, batch_size=2,
                          samples_per_epoch=4)
    assert [len(dm.names[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert dm.names["test"] == ["test/im3.png"]
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 1, 32, 32)
    with pytest.raises(ConfigError, match="need at least"):
        FolderDataModule(path=str(tmp_path), val_count=2, test_count=2, crop_size=32)


def test_to_tensor_conversions():
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 1] = 255
    assert to_tensor(rgb, 1).shape == (1, 5, 6)
    assert torch.allclose(to_tensor(rgb, 1), torch.full((1, 5, 6), 0.7154))
    assert to_tensor(np.ones((5, 6), bool), 3).shape == (3, 5, 6)


def test_interior_margin_and_crop():
    blur = dinv.physics.Blur(dinv.physics.blur.gaussian_blur(1.0), padding="valid")
    n = blur.filter.shape[-1]
    assert interior_margin(blur, torch.Size((1, 1, 40, 40))) == (n - 1, n - 1)
    assert interior_margin(dinv.physics.Denoising(), torch.Size((1, 1, 40, 40))) == (0, 0)
    assert crop(torch.zeros(1, 1, 40, 40), (n - 1, n - 1)).shape[-1] == 40 - 2 * (n - 1)


def test_psnr_is_per_image_and_clamped():
    x = torch.full((2, 1, 8, 8), 0.5)
    x_hat = x.clone()
    x_hat[0] += 0.1
    x_hat[1] = 2.0  # clamped to 1 → error 0.5
    p = psnr(x_hat, x)
    assert p.shape == (2,)
    assert torch.allclose(p, torch.tensor([20.0, float(10 * np.log10(1 / 0.25))]), atol=1e-3)


def test_tikhonov_solves_the_regularised_problem_and_tuning_picks_the_best():
    torch.manual_seed(0)
    physics = dinv.physics.Blur(dinv.physics.blur.gaussian_blur(1.0), padding="valid",
                                noise_model=dinv.physics.GaussianNoise(0.02))
    x = torch.rand(1, 1, 24, 24)
    y = physics(x)
    lam = 0.05
    x_t = baselines.tikhonov(physics, y, x.shape, lam)
    m = y.mean()
    grad = physics.A_adjoint(physics.A(x_t) - y) + lam * (x_t - m)
    assert float(grad.abs().max()) < 1e-5
    best, score, scores = baselines.tune_tikhonov([(x, y, physics)], [1e-3, 1e-2, 1e-1, 1.0], refine=2)
    assert score == max(scores.values()) and scores[best] == score and len(scores) == 8


def test_atomic_checkpoint_io(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "a" / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(2)}, path)
    assert torch.equal(torch.load(path)["w"], torch.ones(2))

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"w": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["w"], torch.ones(2))  # the old checkpoint is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_accepted_arguments_follow_kwargs_in_this_package():
    names = accepted_arguments(dinv.physics.Denoising)
    assert {"noise_model", "max_iter", "tol"} <= names
    assert accepted_arguments(dict) is None  # a constructor that takes any keyword: nothing to check
    assert accepted_arguments(dinv.optim.L2) == {"sigma"}


def test_one_line_messages():
    """An unknown key names the keys the user may have meant; `+key` only where adding one would work."""
    def msg(key):
        return one_line(f"Could not override '{key}'.\nTo append to your config use +{key}=1\nKey is not in struct")

    assert msg("trainer.max_step") == "unknown key 'trainer.max_step'; did you mean trainer.max_steps or " \
                                      "trainer.max_epochs?"
    assert msg("max_steps") == "unknown key 'max_steps'; did you mean trainer.max_steps?"
    assert msg("data.path") == "unknown key 'data.path'; data.path exists with data=fastmri or data=folder"
    assert msg("module.loss.foo") == "unknown key 'module.loss.foo'"  # MSELoss takes no other keyword
    assert msg("logger.wandb.foo").endswith("to add a new key on purpose, use +logger.wandb.foo")  # **kwargs


def _module(physics, **kw):
    from unfolded.training.module import UnfoldedModule

    model = dinv.optim.HQS(prior=dinv.optim.PnP(dinv.models.DnCNN(1, 1, depth=3, nf=8, last_layer_init="zero")),
                           max_iter=2, unfold=True, trainable_params=["stepsize"])
    return UnfoldedModule(model, physics, **{"init": "adjoint", **kw})


def test_measurements_are_functions_of_the_sample_numbers():
    from unfolded.training.simulation import Simulator

    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    sim = Simulator(physics, train_noise_seed=0, eval_seed=1234)
    x = torch.rand(1, 1, 16, 16)
    torch.manual_seed(0)
    _, a = sim.evaluation(x, torch.tensor([0]), "val")
    after = torch.rand(1)
    torch.manual_seed(0)
    _, b = sim.evaluation(x, torch.tensor([0]), "val")
    assert torch.equal(a, b) and torch.equal(torch.rand(1), after)  # global RNG untouched
    assert not torch.equal(sim.evaluation(x, torch.tensor([1]), "val")[1], a)
    assert not torch.equal(sim.evaluation(x, torch.tensor([0]), "test")[1], a)
    # a training sample's noise depends on its number only, not on its place in the batch
    x2 = torch.rand(2, 1, 16, 16)
    _, pair = sim.training(x2, torch.tensor([7, 3]))
    _, alone = sim.training(x2[1:], torch.tensor([3]))
    assert torch.equal(pair[1:], alone) and not torch.equal(pair[:1] - x2[:1], pair[1:] - x2[1:])
    assert not torch.equal(physics(x), physics(x))


def test_mean_fill_init_fills_the_ring_with_the_mean():
    from unfolded.training.simulation import initial_estimate

    physics = dinv.physics.Blur(dinv.physics.blur.gaussian_blur(1.0), padding="valid")
    x = torch.full((1, 1, 24, 24), 0.6)
    y = physics.A(x)
    x0 = initial_estimate("mean_fill", y, physics)
    assert torch.allclose(x0, x, atol=1e-5)  # a constant image is recovered exactly, ring included
    assert initial_estimate("adjoint", y, physics) is None
    with pytest.raises(ValueError, match="module.init"):
        _module(physics, init="zeros")


def test_interior_loss_and_full_loss_weight():
    import warnings

    physics = dinv.physics.Blur(dinv.physics.blur.gaussian_blur(1.0), padding="valid",
                                noise_model=dinv.physics.GaussianNoise(0.0))
    x = torch.rand(2, 1, 24, 24)
    losses = {}
    for region, w in (("full", 0.0), ("interior", 0.0), ("interior", 0.5)):
        module = _module(physics, loss_region=region, full_loss_weight=w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            losses[(region, w)] = float(module.training_step({"image": x, "index": torch.arange(2)}, 0))
    n = physics.filter.shape[-1] - 1
    module = _module(physics, init="adjoint")
    x_hat = module(physics(x), physics).detach()
    full = float(torch.nn.functional.mse_loss(x_hat, x))
    interior = float(torch.nn.functional.mse_loss(x_hat[..., n:-n, n:-n], x[..., n:-n, n:-n]))
    assert losses[("full", 0.0)] == pytest.approx(full, rel=1e-5)
    assert losses[("interior", 0.0)] == pytest.approx(interior, rel=1e-5)
    assert losses[("interior", 0.5)] == pytest.approx(interior + 0.5 * full, rel=1e-5)
