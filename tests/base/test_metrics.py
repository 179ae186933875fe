import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from srgan_noise.base.metrics import rgb_to_y, y_metrics


def test_y_of_white_and_black():
    y = rgb_to_y(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    torch.testing.assert_close(y.flatten(), torch.tensor([235.0, 16.0]))


def test_psnr_and_mse_by_hand():
    hr = torch.full((1, 3, 32, 32), 0.5)
    sr = hr.clone()
    sr[..., 10:14, 10:14] = 0.5 + 10 / 255  # Y differs by 10 * 219/255 in that square
    metrics = y_metrics(sr, hr, border=2)
    diff = (round(0.5 * 255 + 10) - round(0.5 * 255)) * 219 / 255
    mse = diff**2 * 16 / 28**2
    assert metrics["mse"].item() == pytest.approx(mse, rel=1e-4)
    assert metrics["psnr"].item() == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-4)


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(1)
    hr = torch.from_numpy(rng.random((1, 3, 40, 50))).float()
    sr = (hr + 0.1 * torch.from_numpy(rng.standard_normal((1, 3, 40, 50))).float()).clamp(0, 1)
    ours = y_metrics(sr, hr, border=4)["ssim"].item()
    y_sr = rgb_to_y(sr.mul(255).round().div(255))[0, 0, 4:-4, 4:-4].double().numpy()
    y_hr = rgb_to_y(hr.mul(255).round().div(255))[0, 0, 4:-4, 4:-4].double().numpy()
    reference = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=255)
    assert ours == pytest.approx(reference, abs=1e-3)
    assert y_metrics(hr, hr, border=4)["ssim"].item() == pytest.approx(1.0, abs=1e-6)
