"""fastMRI's volume metrics (unfolded.mri.metrics) against the fastmri package's `evaluate.py` when it is
importable (`pip install --no-deps fastmri==0.3.0 pandas runstats`: it would otherwise pull another torch),
and always against a transcription of its formulas (NMSE by numpy, PSNR and SSIM by scikit-image, data
range = the target volume's max)."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from unfolded.mri import metrics


def _volumes(seed=0, shape=(3, 40, 36)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    gt = np.stack([np.exp(-((yy - 20) ** 2 + (xx - 18 - s) ** 2) / 150.0) for s in range(shape[0])]) * 3e-4
    pred = gt + rng.normal(scale=2e-5, size=shape)  # fastMRI's scale: magnitudes ~1e-4, not [0, 1]
    return gt.astype(np.float32), np.abs(pred).astype(np.float32)


def _transcribed(gt, pred):
    """fastmri/evaluate.py (v0.3.0) nmse / psnr / ssim, formulas copied."""
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    maxval = gt.max()
    return {"nmse": np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2,
            "psnr": peak_signal_noise_ratio(gt, pred, data_range=maxval),
            "ssim": np.mean([structural_similarity(gt[s], pred[s], data_range=maxval) for s in range(gt.shape[0])])}


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_the_transcribed_fastmri_formulas(seed):
    gt, pred = _volumes(seed)
    ours, ref = metrics.volume_metrics(gt, pred), _transcribed(gt, pred)
    assert abs(ours["nmse"] - ref["nmse"]) <= 1e-12 * ref["nmse"] + 1e-15
    assert abs(ours["psnr"] - ref["psnr"]) <= 1e-9
    assert abs(ours["ssim"] - ref["ssim"]) <= 1e-9
    assert 0 < ref["ssim"] < 0.999 and ref["nmse"] > 1e-3  # a real difference, not identical volumes


def test_metrics_match_the_fastmri_package():
    evaluate = pytest.importorskip("fastmri.evaluate", reason="fastmri not installed (see module docstring)")
    worst = 0.0
    for seed in range(4):
        gt, pred = _volumes(seed, (4, 64, 48))
        ours = metrics.volume_metrics(torch.from_numpy(gt), torch.from_numpy(pred))
        ref = {k: np.asarray(f(gt, pred)).reshape(-1)[0].item()
               for k, f in (("nmse", evaluate.nmse), ("psnr", evaluate.psnr), ("ssim", evaluate.ssim))}
        for k in ref:
            worst = max(worst, abs(ours[k] - ref[k]) / (abs(ref[k]) if k == "nmse" else 1.0))
    # fastmri computes in the inputs' float32 for NMSE/PSNR's norms; we compute in float64
    print(f"max difference vs fastmri.evaluate: {worst:.3g}")
    assert worst <= 1e-5, worst


def test_ssim_is_not_torchmetrics_gaussian_ssim():
    """fastMRI's SSIM (uniform 7x7, sample covariance) differs from the Gaussian 11x11 one of SPEC §9: the
    test would be vacuous if they agreed."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    gt, pred = _volumes(0)
    r = float(gt.max())
    g = tm_ssim(torch.from_numpy(pred)[:, None].double(), torch.from_numpy(gt)[:, None].double(), data_range=r)
    assert abs(float(g) - metrics.ssim(gt, pred)) > 1e-3


def test_center_crop_matches_fastmri_offsets():
    x = torch.arange(7 * 9).reshape(7, 9)
    assert metrics.center_crop(x, (4, 4)).tolist() == x[1:5, 2:6].tolist()
    with pytest.raises(ValueError, match="does not fit"):
        metrics.center_crop(x, (8, 4))


def test_bad_volumes_are_refused():
    gt, pred = _volumes(0)
    with pytest.raises(ValueError, match=r"volume \(slices, H, W\)"):
        metrics.nmse(gt[0], pred[0])
    with pytest.raises(ValueError, match="differs from gt shape"):
        metrics.psnr(gt, pred[:2])
    with pytest.raises(ValueError, match="magnitudes"):
        metrics.ssim(gt.astype(np.complex64), pred)
