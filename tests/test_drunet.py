"""DRUNet and UNet (SPEC §10): the reference's state-dict names (so its checkpoints load strictly), local weights
only, σ as a live input whose gradient reaches a trainable sigma_denoiser, and the reference's outputs."""

import warnings

import pytest
import torch

from unfolded.models import DnCNN, DRUNet, UNet
from unfolded.optim import HQS, PGD, PnP
from unfolded.physics import Blur, Denoising, GaussianNoise

D = torch.float64


def reference_keys(in_channels=3, out_channels=3, nc=(64, 128, 256, 512), nb=4):
    """(name, shape) of the reference's DRUNet with strided-conv down- and transposed-conv upsampling, written
    from its source (deepinv/models/drunet.py): `sequential(*modules)` returns a single module bare and
    flattens nested Sequentials; ResBlock(mode='CRC').res = Sequential(conv, ReLU, conv); no biases."""
    keys = [("m_head.weight", (nc[0], in_channels + 1, 3, 3))]

    def res(prefix, c):
        return [(f"{prefix}.res.0.weight", (c, c, 3, 3)), (f"{prefix}.res.2.weight", (c, c, 3, 3))]

    for i in range(3):
        c = nc[i]
        for j in range(nb):
            keys += res(f"m_down{i + 1}.{j}", c)
        keys.append((f"m_down{i + 1}.{nb}.weight", (nc[i + 1], c, 2, 2)))
    for j in range(nb):
        keys += res("m_body" if nb == 1 else f"m_body.{j}", nc[3])
    for level in (3, 2, 1):
        c_in, c = nc[level], nc[level - 1]
        keys.append((f"m_up{level}.0.weight", (c_in, c, 2, 2)))  # ConvTranspose2d: (in, out, k, k)
        for j in range(nb):
            keys += res(f"m_up{level}.{j + 1}", c)
    return keys + [("m_tail.weight", (out_channels, nc[0], 3, 3))]


@pytest.mark.parametrize("kwargs", [{}, {"in_channels": 1, "out_channels": 1, "nc": (8, 16, 32, 64), "nb": 1},
                                    {"nc": (4, 8, 8, 16), "nb": 2}])
def test_state_dict_has_the_reference_names_and_shapes(kwargs):
    model = DRUNet(**kwargs)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == reference_keys(**kwargs)


def test_a_reference_named_checkpoint_loads_strictly(tmp_path):
    kwargs = {"in_channels": 1, "out_channels": 1, "nc": (4, 8, 8, 16), "nb": 2}
    state = {name: torch.randn(shape) for name, shape in reference_keys(**kwargs)}
    torch.save(state, tmp_path / "drunet.pth")
    model = DRUNet(**kwargs, pretrained=str(tmp_path / "drunet.pth"))
    assert not model.training and all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    assert torch.equal(DRUNet(**kwargs, pretrained=tmp_path / "wrapped.pth").m_tail.weight, state["m_tail.weight"])
    del state["m_tail.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial.pth does not fit this architecture.*m_tail.weight") as info:
        DRUNet(**kwargs, pretrained=str(tmp_path / "partial.pth"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("pretrained,pattern", [
    ("download", r"weights must be a local file \(there are no downloads\)"),
    ("https://huggingface.co/deepinv/drunet/drunet.pth", r"weights must be a local file"),
    ("/no/such/drunet.pth", r"no such file"),
])
def test_pretrained_must_be_a_local_file(pretrained, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        DRUNet(pretrained=pretrained)
    assert "\n" not in str(info.value)


def test_checkpoints_are_read_without_running_code(tmp_path):
    torch.save({"m_head.weight": torch.ones(1), "extra": GaussianNoise(0.1)}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match=r"code.pth is not a checkpoint, or it holds objects that could run code"):
        DRUNet(nc=(2, 2, 2, 2), nb=0, pretrained=str(tmp_path / "code.pth"))


def test_outputs_equal_the_reference():
    """Fixed weights and inputs; the numbers were printed by deepinv 0.5.0's DRUNet (eval mode) on the same
    ones: a 16×16 image takes the direct path, a 12×10 one the replicate-padded path."""
    model = DRUNet(in_channels=1, out_channels=1, nc=(2, 3, 4, 5), nb=1).double().eval()
    with torch.no_grad():
        for i, p in enumerate(model.state_dict().values()):
            p.copy_(0.3 * torch.sin(torch.arange(p.numel(), dtype=D) + i).reshape(p.shape))
    expected = {(16, 16): ([-0.972664153433886, -4.540332816886093],
                           [0.7066695965393159, -0.46720095091812186, -1.6261710751594765, -1.5389383793976323]),
                (12, 10): ([-1.414080736874524, -3.2906794365085785],
                           [-0.5792165166691455, 0.30814115842220324, 1.3075122082303203, 1.2847388139251132])}
    for size, (sums, row) in expected.items():
        n = size[0] * size[1]
        x = torch.cos(torch.arange(2 * n, dtype=D)).reshape(2, 1, *size)
        with torch.no_grad():
            out = model(x, torch.tensor([0.1, 0.3], dtype=D))
        assert out.shape == x.shape
        assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.tensor(sums, dtype=D), atol=1e-10)
        assert torch.allclose(out[1, 0, 3, :4], torch.tensor(row, dtype=D), atol=1e-10)


def test_sigma_forms_agree_and_sigma_matters():
    torch.manual_seed(0)
    model = DRUNet(in_channels=1, out_channels=1, nc=(4, 4, 8, 8), nb=1).double().eval()
    x = torch.rand(2, 1, 24, 20, dtype=D)
    with torch.no_grad():
        ref = torch.cat([model(x[:1], 0.1), model(x[1:], 0.3)])
        for sigma in (torch.tensor([0.1, 0.3], dtype=D), torch.tensor([0.1, 0.3]).view(2, 1, 1, 1),
                      torch.tensor([0.1, 0.3], dtype=D).view(2, 1, 1, 1).expand(2, 1, 24, 20)):
            assert torch.allclose(model(x, sigma), ref, atol=1e-12)
        assert torch.allclose(model(x, 0.2), model(x, torch.tensor(0.2)), atol=1e-12)
        assert float((model(x, 0.1) - model(x, 0.3)).abs().max()) > 1e-4


@pytest.mark.parametrize("call,error,pattern", [
    (lambda m: m(torch.rand(1, 1, 8, 8)), ValueError, r"DRUNet needs the noise level.*algo.sigma_denoiser"),
    (lambda m: m(torch.rand(2, 1, 8, 8), torch.rand(3)), ValueError, r"sigma must be a number, or of shape \(2,\)"),
    (lambda m: m(torch.rand(1, 3, 8, 8), 0.1), ValueError, r"expects images of shape \(B, 1, H, W\)"),
    (lambda m: DRUNet(dim=3), NotImplementedError, r"only 2-D networks are implemented"),
    (lambda m: DRUNet(pretrained_2d_isotropic=True), NotImplementedError, r"use pretrained_2d_isotropic=False"),
    (lambda m: DRUNet(act_mode="X"), ValueError, r"act_mode must be letters among"),
    (lambda m: DRUNet(downsample_mode="pool"), ValueError, r"downsample_mode must be one of strideconv"),
    (lambda m: DRUNet(nc=(8, 16, 32)), ValueError, r"nc must be 4 positive channel counts"),
    (lambda m: UNet(batch_norm="biasfree"), NotImplementedError, r"use batch_norm=True or False"),
    (lambda m: UNet(scales=3, channels_per_scale=[4, 8]), ValueError, r"scales=3 but channels_per_scale has 2"),
])
def test_bad_inputs_are_one_line_errors(call, error, pattern):
    model = DRUNet(in_channels=1, out_channels=1, nc=(2, 2, 2, 2), nb=0)
    with pytest.raises(error, match=pattern) as info:
        call(model)
    assert "\n" not in str(info.value)


def _loss(model, sigma, x, w):
    return (model(x, sigma) * w).sum()


def test_sigma_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = DRUNet(in_channels=1, out_channels=1, nc=(4, 4, 8, 8), nb=1).double()
    x, w = torch.rand(2, 1, 16, 16, dtype=D), torch.randn(2, 1, 16, 16, dtype=D)
    sigma = torch.tensor([0.05, 0.2], dtype=D, requires_grad=True)
    (grad,) = torch.autograd.grad(_loss(model, sigma, x, w), sigma)
    h = 1e-6
    for i in range(2):
        e = torch.zeros(2, dtype=D)
        e[i] = h
        with torch.no_grad():
            fd = (_loss(model, sigma + e, x, w) - _loss(model, sigma - e, x, w)) / (2 * h)
        assert abs(float(grad[i] - fd)) <= 1e-6 * max(1.0, abs(float(fd)))


def test_trainable_sigma_denoiser_is_live_with_drunet_and_dead_with_dncnn():
    torch.manual_seed(0)
    drunet = DRUNet(in_channels=1, out_channels=1, nc=(4, 4, 8, 8), nb=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "gets no gradient" warning
        model = HQS(unfold=True, prior=PnP(drunet), sigma_denoiser=[0.05, 0.1, 0.2], max_iter=3,
                    trainable_params=["stepsize", "sigma_denoiser"]).double()
    with pytest.warns(UserWarning, match="sigma_denoiser is trainable but DnCNN ignores sigma"):
        PGD(unfold=True, prior=PnP(DnCNN(1, 1, depth=3)), sigma_denoiser=0.1, max_iter=2,
            trainable_params=["sigma_denoiser"])
    with pytest.warns(UserWarning, match="sigma_denoiser is trainable but UNet ignores sigma"):
        PGD(unfold=True, prior=PnP(UNet(scales=2, channels_per_scale=[2, 4])), sigma_denoiser=0.1, max_iter=2,
            trainable_params=["sigma_denoiser"])
    physics = Blur(torch.ones(1, 1, 3, 3, dtype=D) / 9, padding="circular")
    x = torch.rand(1, 1, 16, 16, dtype=D)
    y, w = physics(x), torch.randn_like(x)
    (grad,) = torch.autograd.grad((model(y, physics) * w).sum(), model.sigma_denoiser)
    assert grad.shape == (3,) and bool((grad != 0).all())
    h = 1e-6
    for k in range(3):
        with torch.no_grad():
            values = []
            for sign in (1, -1):
                model.sigma_denoiser[k] += sign * h
                values.append(float((model(y, physics) * w).sum()))
                model.sigma_denoiser[k] -= sign * h
        fd = (values[0] - values[1]) / (2 * h)
        assert abs(float(grad[k]) - fd) <= 1e-5 * max(1.0, abs(fd))


def test_unet_shapes_residual_and_reference_names():
    model = UNet(in_channels=2, out_channels=2, scales=3, channels_per_scale=[4, 8, 16], batch_norm=False)
    names = [k for k in model.state_dict() if k.endswith("weight")]
    assert names == ["Conv1.0.weight", "Conv1.2.weight", "Conv2.0.weight", "Conv2.2.weight", "Conv3.0.weight",
                     "Conv3.2.weight", "Up3.1.weight", "Up_conv3.0.weight", "Up_conv3.2.weight", "Up2.1.weight",
                     "Up_conv2.0.weight", "Up_conv2.2.weight", "Conv_1x1.weight"]
    assert "Conv1.1.running_mean" in UNet(scales=2).state_dict()  # batch norm by default, as the reference
    x = torch.rand(2, 2, 19, 22)
    out = model(x, 0.3)
    assert out.shape == x.shape and torch.equal(out, model(x))  # any size; σ ignored
    with torch.no_grad():
        model.Conv_1x1.weight.zero_()
        model.Conv_1x1.bias.zero_()
    assert torch.equal(model(x), x)  # residual: a zero last layer is the identity
    with pytest.warns(UserWarning, match="non-residual"):
        assert UNet(in_channels=2, out_channels=1, scales=2)(torch.rand(1, 2, 8, 8)).shape == (1, 1, 8, 8)


def test_drunet_denoises_in_a_pnp_algorithm():
    torch.manual_seed(0)
    model = PGD(unfold=True, prior=PnP(DRUNet(1, 1, nc=(4, 4, 8, 8), nb=1)), sigma_denoiser=0.1, max_iter=2,
                trainable_params=["sigma_denoiser"])
    y = Denoising(GaussianNoise(0.1))(torch.rand(2, 1, 20, 20))
    assert model(y, Denoising()).shape == y.shape
