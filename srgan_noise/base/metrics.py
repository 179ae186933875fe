"""Image measures every phase takes: PSNR, MSE and SSIM on the BT.601 luma of
8-bit images, `border` pixels cropped from each side (MATLAB rgb2ycbcr
convention), and the high-band power ratio.

`high_band_ratio` needs no weights (LPIPS and NIQE need pretrained ones this
project cannot ship): the SR image's spectral power in the band the LR image
cannot carry (above its Nyquist frequency), over the HR image's power there.
1.0 is as much fine-detail energy as the real image; blur gives less, noise and
ringing more. It counts energy, not whether the detail is right."""

from __future__ import annotations

import torch
from kornia.metrics import ssim as kornia_ssim


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) ITU-R BT.601 Y in [16, 235]."""
    weights = image.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True) + 16.0


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit levels a saved image would have."""
    return image.clamp(0, 1).mul(255).round().div(255)


def y_metrics(sr: torch.Tensor, hr: torch.Tensor, border: int) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB), MSE (on Y in [0, 255]) and SSIM (11x11 Gaussian,
    sigma 1.5, valid windows only, which matches scikit-image) of (B, 3, H, W)
    images in [0, 1], both quantised to 8 bits first."""
    y_sr = rgb_to_y(quantize(sr.float()))
    y_hr = rgb_to_y(quantize(hr.float()))
    if border > 0:
        y_sr = y_sr[..., border:-border, border:-border]
        y_hr = y_hr[..., border:-border, border:-border]
    mse = (y_sr - y_hr).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))
    ssim_map = kornia_ssim(y_sr / 255.0, y_hr / 255.0, window_size=11, max_val=1.0, padding="valid")
    return {"psnr": psnr, "mse": mse, "ssim": ssim_map.flatten(1).mean(1)}


def hann_window_2d(height: int, width: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W) separable Hann window, positive everywhere (the symmetric window of
    length N + 2 with its two zero end points dropped, so any N >= 1 works)."""
    rows = torch.hann_window(height + 2, periodic=False, dtype=torch.float64)[1:-1]
    columns = torch.hann_window(width + 2, periodic=False, dtype=torch.float64)[1:-1]
    return (rows[:, None] * columns[None, :]).to(dtype=dtype, device=device)


def high_band_mask(height: int, width: int, scale: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W) bool, True at the FFT bins with max(|fx|, |fy|) > 1 / (2 * scale)
    cycles per pixel: the frequencies an LR image `scale` times smaller cannot carry."""
    fy = torch.fft.fftfreq(height, device=device).abs()
    fx = torch.fft.fftfreq(width, device=device).abs()
    return torch.maximum(fy[:, None], fx[None, :]) > 1 / (2 * scale)


def high_band_power(y: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 1, H, W) luma (any range; Y in [16, 235] from `rgb_to_y`) -> (B,) the
    mean-square of its components above the LR Nyquist frequency, in squared input
    units per pixel (Parseval, window-normalised: a cosine of amplitude A above
    the cutoff gives about A**2 / 2).

    Each image's mean is removed and a Hann window applied before the FFT: the
    FFT treats the image as periodic, and the jump between opposite edges would
    otherwise leak broadband power into the high band (an edge step spreads as
    1/f), which a sharp-edged crop of a smooth image would score as detail."""
    if y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"expected (B, 1, H, W) luma, got shape {tuple(y.shape)}")
    if scale < 2:
        raise ValueError(f"scale must be at least 2, got {scale}")
    height, width = y.shape[-2:]
    y = y.double()  # power sums over many bins; float32 loses the small high band of a smooth image
    window = hann_window_2d(height, width, dtype=y.dtype, device=y.device)
    centred = (y - y.mean(dim=(-2, -1), keepdim=True)) * window
    power = torch.fft.fft2(centred).abs().pow(2)  # (B, 1, H, W)
    mask = high_band_mask(height, width, scale, device=y.device)
    pixels = height * width
    # sum |X|^2 / N^2 is the mean square (Parseval); dividing by mean(window^2)
    # undoes the window's loss of energy, so the figure does not depend on it.
    band = power[..., mask].sum(-1).squeeze(1) / pixels**2 / window.pow(2).mean()
    return band.float()


def high_band_ratio(sr: torch.Tensor, hr: torch.Tensor, scale: int, border: int) -> torch.Tensor:
    """Per-image high-band power of SR over HR: (B, 3, H, W) RGB in [0, 1] each
    -> (B,) ratios >= 0; 1.0 is the HR image's fine-detail energy, below 1 blur,
    above 1 noise or artefacts.

    As `y_metrics`: both quantised to 8 bits, BT.601 luma, `border`
    pixels cropped from each side. An HR image with no high-band power (flat)
    gives inf, or nan when the SR image is flat too."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    if sr.ndim != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images, got shape {tuple(sr.shape)}")
    if border < 0 or min(sr.shape[-2:]) <= 2 * border:
        raise ValueError(f"border {border} leaves nothing of a {sr.shape[-1]}x{sr.shape[-2]} image")
    y_sr = rgb_to_y(quantize(sr.float()))
    y_hr = rgb_to_y(quantize(hr.float()))
    if border > 0:
        y_sr = y_sr[..., border:-border, border:-border]
        y_hr = y_hr[..., border:-border, border:-border]
    return high_band_power(y_sr, scale) / high_band_power(y_hr, scale)
