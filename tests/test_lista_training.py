"""A classical prior with trainable per-iteration thresholds actually trains (LISTA, issue #21): an unfolded
PGD with a wavelet soft-threshold whose thresholds ths·λ_k·γ_k are learned, one per iteration (only λ_k is
trained, so the gain is the thresholds')."""

import torch

from unfolded.optim import L2, PGD, WaveletPrior
from unfolded.physics import GaussianNoise, Inpainting


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random pictures in [0, 1]: a few low-frequency cosines (sparse in a wavelet basis)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, 16)
    out = torch.zeros(n, 1, 16, 16)
    for _ in range(3):
        fx, fy, ph = torch.rand(3, n, 1, 1, 1, generator=g) * torch.tensor([4.0, 4.0, 6.28]).view(3, 1, 1, 1, 1)
        out += torch.cos(fx * t.view(1, 1, 1, 16) + fy * t.view(1, 1, 16, 1) + ph)
    return (out - out.amin((2, 3), keepdim=True)) / (out.amax((2, 3), keepdim=True) - out.amin((2, 3), keepdim=True))


def test_lista_thresholds_train():
    torch.manual_seed(0)
    physics = Inpainting((1, 16, 16), mask=0.7, rng=torch.Generator().manual_seed(1), noise_model=GaussianNoise(0.2))
    K = 6
    model = PGD(data_fidelity=L2(), prior=WaveletPrior(level=2, wv="haar"), unfold=True, max_iter=K,
                stepsize=1.0, lambda_reg=[0.05] * K,  # threshold 0.1·0.05·1: far too small for this noise
                trainable_params=["lambda_reg"])
    val_x = _images(8, seed=100)
    val_y = physics(val_x)

    def val_loss() -> float:
        with torch.no_grad():
            return float((model(val_y, physics) - val_x).pow(2).mean())

    before, start = val_loss(), model.lambda_reg.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for step in range(40):
        x = _images(8, seed=step)
        loss = (model(physics(x), physics) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    assert after < 0.3 * before, (before, after)
    assert model.lambda_reg.shape == (K,) and (model.lambda_reg.detach() > 10 * start).all()  # learned higher
    assert len(set(model.lambda_reg.detach().tolist())) == K  # one threshold per iteration
