"""Standard SR metrics: PSNR, MSE and SSIM on the BT.601 luma of 8-bit images,
`border` pixels cropped from each side (MATLAB rgb2ycbcr convention)."""

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
