import pytest
import torch

from unfolded.solvers.cg import reset_warnings


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    reset_warnings()  # each test sees the first unconverged solve of every call site


@pytest.fixture(autouse=True)
def _baseline_cache(tmp_path_factory, monkeypatch):
    """The baselines' disk cache (module.baseline_cache=default) in a temporary folder, never ~/.cache."""
    monkeypatch.setenv("UNFOLDED_CACHE", str(tmp_path_factory.getbasetemp() / "unfolded_cache"))


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
