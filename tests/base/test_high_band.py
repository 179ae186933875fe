"""The high-band power ratio (base/metrics.py): closed forms on cosines, and its response to blur and noise."""

import math

import pytest
import torch
import torch.nn.functional as F

from srgan_noise.base.metrics import high_band_mask, high_band_power, high_band_ratio
from srgan_noise.training.data import downscale

pytestmark = pytest.mark.usefixtures("one_thread")


def cosine(height: int, width: int, frequency: float, amplitude: float) -> torch.Tensor:
    """(1, 1, H, W) amplitude * cos(2 pi f x), varying along the width."""
    x = torch.arange(width, dtype=torch.float64)
    return (amplitude * torch.cos(2 * math.pi * frequency * x)).expand(1, 1, height, width).clone()


def test_mask_counts_bins_above_the_lr_nyquist():
    # fftfreq(8) = 0, 1/8, 1/4, 3/8, -1/2, -3/8, -1/4, -1/8: at x2 the cutoff is 1/4, so
    # 5 of 8 frequencies per axis are low and 8*8 - 5*5 bins are high.
    mask = high_band_mask(8, 8, scale=2)
    assert mask.sum().item() == 64 - 25
    assert not mask[0, 2] and mask[0, 3] and mask[4, 0]


def test_cosine_above_the_cutoff_has_its_mean_square():
    # x4: cutoff 1/8 cycle per pixel. 24 cycles in 64 px = 0.375, well above.
    power = high_band_power(cosine(48, 64, 24 / 64, amplitude=30.0), scale=4)
    assert power.shape == (1,)
    assert power.item() == pytest.approx(30.0**2 / 2, rel=1e-3)


def test_cosine_below_the_cutoff_has_almost_none():
    # 4 cycles in 64 px = 0.0625, half the cutoff; only the window's side lobes leak.
    power = high_band_power(cosine(48, 64, 4 / 64, amplitude=30.0), scale=4)
    assert power.item() < 1e-5 * 30.0**2 / 2


def test_odd_size_and_off_bin_frequency():
    # 37x41 px, 0.3 cycles per pixel (no whole number of periods): the window still keeps it in the band.
    power = high_band_power(cosine(37, 41, 0.3, amplitude=10.0), scale=4)
    assert power.item() == pytest.approx(10.0**2 / 2, rel=0.05)


def test_window_stops_a_ramp_leaking_into_the_band():
    # A smooth ramp is one big jump for the periodic FFT: unwindowed, that jump's
    # 1/f spectrum would put about 1% of the ramp's variance above the cutoff.
    ramp = torch.linspace(0, 200, 64, dtype=torch.float64).expand(1, 1, 64, 64).clone()
    assert high_band_power(ramp, scale=4).item() < 1e-4 * ramp.var().item()


def test_offset_does_not_change_power():
    y = torch.rand(2, 1, 20, 24, dtype=torch.float64) * 100
    torch.testing.assert_close(high_band_power(y + 50, 4), high_band_power(y, 4))


def test_power_exception():
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\) luma, got shape \(1, 3, 8, 8\)"):
        high_band_power(torch.rand(1, 3, 8, 8), 4)
    with pytest.raises(ValueError, match="scale must be at least 2, got 1"):
        high_band_power(torch.rand(1, 1, 8, 8), 1)


# ---------------------------------------------------------------------------
# high-band ratio


def test_ratio_of_hr_with_itself_is_one(astronaut):
    hr = astronaut()
    assert high_band_ratio(hr, hr, scale=4, border=4).item() == 1.0


def test_ratio_falls_with_blur(astronaut, blur):
    hr = astronaut()
    ratios = [high_band_ratio(blur(hr, sigma), hr, scale=4, border=4).item() for sigma in (0.5, 1.0, 2.0)]
    assert 1.0 > ratios[0] > ratios[1] > ratios[2]
    assert ratios[2] < 0.05


def test_noise_lifts_ratio_above_one(astronaut):
    hr = astronaut()
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    ratios = [high_band_ratio(hr + sigma / 255 * noise, hr, scale=4, border=4).item() for sigma in (2, 5, 10)]
    assert 1.0 < ratios[0] < ratios[1] < ratios[2]
    assert ratios[2] > 1.1  # a textured crop: sigma 10 adds about a sixth of its own high-band power


def test_bicubic_upscale_has_little_high_band(astronaut):
    hr = astronaut()
    bicubic = F.interpolate(downscale(hr, 4), scale_factor=4, mode="bicubic", align_corners=False)
    assert high_band_ratio(bicubic, hr, scale=4, border=4).item() < 0.15


def test_ratio_is_per_image_and_crops_the_border(astronaut, blur):
    hr = torch.cat([astronaut(), astronaut(380, 200)])
    sr = torch.cat([blur(hr[:1], 1.0), hr[1:]])
    ratios = high_band_ratio(sr, hr, scale=4, border=5)
    assert ratios.shape == (2,)
    assert ratios[0] < 0.5 and ratios[1] == 1.0
    cropped = high_band_ratio(sr[..., 5:-5, 5:-5], hr[..., 5:-5, 5:-5], scale=4, border=0)
    torch.testing.assert_close(ratios, cropped)


def test_ratio_quantises_to_8_bits(astronaut):
    hr = astronaut()
    sr = hr + 0.4 / 255  # rounds back to the same 8-bit levels
    assert high_band_ratio(sr, hr, scale=4, border=0).item() == 1.0


def test_ratio_exception():
    with pytest.raises(ValueError, match=r"same shape, got \(1, 3, 16, 16\) and \(1, 3, 16, 17\)"):
        high_band_ratio(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17), 4, 0)
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\) RGB images, got shape \(1, 1, 16, 16\)"):
        high_band_ratio(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), 4, 0)
    with pytest.raises(ValueError, match="border 8 leaves nothing of a 16x16 image"):
        high_band_ratio(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 4, 8)
