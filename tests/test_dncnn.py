import pytest
import torch
from torch import nn

from unfolded.models import DnCNN


def test_layout_matches_the_reference_key_names():
    net = DnCNN(1, 1, depth=4, nf=8)
    keys = list(net.state_dict())
    assert keys == ["in_conv.weight", "in_conv.bias", "conv_list.0.weight", "conv_list.0.bias",
                    "conv_list.1.weight", "conv_list.1.bias", "out_conv.weight", "out_conv.bias"]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.in_channels for c in convs] == [1, 8, 8, 8] and [c.out_channels for c in convs] == [8, 8, 8, 1]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert DnCNN().conv_list.__len__() == 18 and DnCNN().in_conv.in_channels == 3
    assert DnCNN(bias=False).in_conv.bias is None


def test_forward_is_residual_and_ignores_sigma():
    net = DnCNN(1, 1, depth=3, nf=4)
    x = torch.rand(2, 1, 8, 8)
    h = torch.relu(net.conv_list[0](torch.relu(net.in_conv(x))))
    assert torch.allclose(net(x), x + net.out_conv(h))
    assert torch.equal(net(x, 0.1), net(x, 0.5))
    assert torch.equal(DnCNN(1, 1, depth=3, nf=4, last_layer_init="zero")(x), x)


def test_kaiming_init_statistics():
    torch.manual_seed(0)
    w = DnCNN(nf=64).conv_list[0].weight
    assert abs(float(w.std()) - (2 / (64 * 9)) ** 0.5) < 0.003


def test_local_checkpoint_loads_strictly(tmp_path):
    src = DnCNN(1, 1, depth=3, nf=4)
    path = tmp_path / "dncnn.pth"
    torch.save(src.state_dict(), path)
    net = DnCNN(1, 1, depth=3, nf=4, pretrained=str(path))
    assert not net.training
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), net.state_dict().values()))
    with pytest.raises(RuntimeError, match="size mismatch"):
        DnCNN(1, 1, depth=3, nf=8, pretrained=str(path))
    with pytest.raises(ValueError, match="pretrained must be a path to a local checkpoint file"):
        DnCNN(pretrained="download")


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_channels .* must equal out_channels"):
        DnCNN(3, 1)
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        DnCNN(depth=1)
    with pytest.raises(ValueError, match="last_layer_init must be"):
        DnCNN(last_layer_init="ones")
