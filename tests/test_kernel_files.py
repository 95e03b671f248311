"""A blur kernel given as a file (.npy, .pt read with weights_only=True, PNG) or a numpy array, for Blur, BlurFFT
and Downsampling, in code and as a plain config value (`physics.filter=path`)."""

import numpy as np
import pytest
import torch
from PIL import Image

from unfolded.physics import Blur, BlurFFT, Downsampling
from unfolded.physics.filters import as_filter, load_kernel

K = np.array([[0.0, 1.0, 0.0], [2.0, 4.0, 2.0], [0.0, 1.0, 2.0]])


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "k.npy", K)
    torch.save(torch.tensor(K, dtype=torch.float32)[None, None], tmp_path / "k.pt")
    Image.fromarray((K * 50).astype(np.uint8)).save(tmp_path / "k.png")
    Image.fromarray((K * 5000).astype(np.uint16)).save(tmp_path / "k16.png")
    return tmp_path


@pytest.mark.parametrize("name", ["k.npy", "k.pt", "k.png", "k16.png"])
def test_kernel_files_load_normalised(files, name):
    k = load_kernel(files / name)
    assert k.shape == (1, 1, 3, 3) and k.dtype == torch.get_default_dtype()
    assert torch.allclose(k[0, 0].double(), torch.tensor(K / K.sum()), atol=1e-7)


def test_every_blur_accepts_files_arrays_and_paths_as_strings(files):
    x = torch.rand(2, 1, 12, 12)
    expected = Blur(torch.tensor(K / K.sum(), dtype=torch.float32), padding="circular").A(x)
    for filt in (str(files / "k.npy"), files / "k.pt", str(files / "k.png")):
        assert torch.allclose(Blur(filt, padding="circular").A(x), expected, atol=1e-6)
        assert torch.allclose(BlurFFT((1, 12, 12), filt).A(x), expected, atol=1e-6)
        assert torch.allclose(Downsampling(filter=filt, factor=1).A(x), expected, atol=1e-6)
    assert torch.allclose(Blur(K / K.sum(), padding="circular").A(x.double()), expected.double(), atol=1e-6)
    b = Blur(torch.ones(1, 1, 3, 3) / 9)
    b.update(filter=str(files / "k.npy"))  # a stored keyword may be a file too
    assert torch.allclose(b.filter[0, 0].double(), torch.tensor(K / K.sum()), atol=1e-7)


def test_a_numpy_array_is_taken_as_given():
    k = as_filter(np.ones((2, 2)))  # not normalised: as a tensor would be
    assert k.shape == (1, 1, 2, 2) and k.dtype == torch.float64 and float(k.sum()) == 4


def _write(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return tmp_path / name


@pytest.mark.parametrize("make,pattern", [
    (lambda d: _write(d, "nan.npy", np.array([[1.0, np.nan]])), r"contains NaN or infinite values"),
    (lambda d: _write(d, "zero.npy", np.array([[1.0, -1.0]])), r"sum to 0; a blur kernel needs a positive sum"),
    (lambda d: _write(d, "cube.npy", np.ones((2, 3, 3))), r"holds an array of shape \(2, 3, 3\); a kernel is 2-D"),
    (lambda d: _write(d, "text.npy", np.array([["a"]])), r"holds <U1 values; a kernel must be real numbers"),
    (lambda d: d / "missing.npy", r"missing.npy: no such file"),
    (lambda d: d / "kernel.txt", r"is not a kernel file; give a tensor, a numpy array or a path ending in .npy"),
    (lambda d: (d / "broken.png").write_bytes(b"not a png") and d / "broken.png", r"broken.png: cannot be read"),
])
def test_bad_kernel_files_are_one_line_errors(tmp_path, make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        Blur(str(make(tmp_path)))
    assert "\n" not in str(info.value)


def test_a_pt_file_holding_code_or_no_tensor_is_refused(tmp_path):
    torch.save({"filter": torch.ones(3, 3)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match=r"dict.pt: holds a dict, not a tensor"):
        load_kernel(tmp_path / "dict.pt")
    torch.save(np.ones((3, 3)), tmp_path / "pickled.pt")  # a pickled non-tensor object: weights_only refuses it
    with pytest.raises(ValueError, match=r"pickled.pt: cannot be read") as info:
        load_kernel(tmp_path / "pickled.pt")
    assert "\n" not in str(info.value)


def test_filter_path_as_a_config_value(files):
    from unfolded.training.config import compose
    from unfolded.training.pipeline import build_physics

    cfg = compose([f"physics.filter={files / 'k.npy'}"])
    physics = build_physics(cfg).example((1, 16, 16))
    assert isinstance(physics, Blur) and torch.allclose(physics.filter[0, 0].double(), torch.tensor(K / K.sum()))
    cfg = compose(["physics=sr", f"physics.filter={files / 'k.png'}"])
    assert build_physics(cfg).example((1, 16, 16)).filter.shape == (1, 1, 3, 3)
