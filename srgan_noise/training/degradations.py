"""How LR images are made from HR images: the named families `srgan eval --degradation`
scores under, and the random `realistic` chain `srgan train --degradation realistic`
trains on.

Families are deterministic functions of a (3, H, W) uint8 HR image, H and W
multiples of the scale, returning the (3, H/scale, W/scale) uint8 LR image:

- pil-bicubic, pil-lanczos, pil-box: Pillow's resize, antialiased (the filter
  widened by the scale). pil-bicubic is the standard SR protocol (MATLAB imresize).
- cv-cubic, cv-linear, cv-area: OpenCV's cv2.resize with INTER_CUBIC, INTER_LINEAR
  (neither antialiases: a fixed 4- or 2-tap filter at the scale's sample points) and
  INTER_AREA, reproduced with torch (F.interpolate without antialias, align_corners
  False; `area` the box average of scale x scale blocks) and OpenCV's own rounding,
  so they equal cv2 at integer scales (tests/test_degradations.py checks it when
  cv2 is installed; srgan_noise does not need it).
- jpeg75: pil-bicubic, then JPEG at quality 75 (Pillow, 4:2:0 chroma).
- noise5: pil-bicubic, then Gaussian noise of sigma 5 (of 255) per pixel and
  channel, seeded (the same noise every call), rounded and clipped.
- realistic: one draw of the training chain below per image, seeded by the image's
  pixels (CRC-32), so each image gets its own draw and the same one every time.

The realistic chain, per HR patch, each choice independent (REALISTIC_* below):

1. blur with probability 0.3: a Gaussian kernel, isotropic or (half the time)
   anisotropic with a uniform angle in [0, pi); each sigma uniform in
   [0.2, scale/2] HR pixels; the kernel 2 ceil(1.5 scale) + 1 taps a side, mirror borders;
2. downscale by `scale` with one of six: bicubic and bilinear without
   antialiasing (OpenCV's) 3/10 each, and 1/10 each bicubic and bilinear
   antialiased (Pillow's filters), area (= box), Lanczos (Pillow, antialiased).
   At x2, OpenCV's bilinear is area's 2x2 mean, so the aliased cubic has 6/10
   and the aliased bilinear none. The aliased ones are drawn most because they
   are the hardest to tell from detail: with all six equally likely and blur
   half the time, 2000 steps left OpenCV's cubic at +0.16 dB over bicubic at
   x4 and -0.51 dB at x2 (docs/real-photos.md);
3. Gaussian noise with probability 0.4, sigma uniform in [1, 10] (of 255), the same
   on the three channels (grey) 40 % of the time;
4. Poisson (shot) noise with probability 0.2: Poisson(x peak) / peak, the peak
   (photons at full intensity) log-uniform in [150, 3000];
5. rounding to 8 bits, then JPEG with probability 1/2 at a quality uniform in 30..95.

Every random number comes from the caller's torch.Generator, so training with
the chain is seeded and resumes bit for bit (the generator's state is in the
checkpoint)."""

from __future__ import annotations

import bisect
import io
import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import filter2d
from PIL import Image

# --- named families (HR uint8 -> LR uint8) ----------------------------------------------------------------------

NOISE5_SEED = 0


def pil_resize(image: torch.Tensor, size: tuple[int, int], resample: Image.Resampling) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, height, width) uint8 through Pillow; size is (width, height)."""
    resized = Image.fromarray(image.permute(1, 2, 0).numpy()).resize(size, resample)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _lr_size(hr: torch.Tensor, scale: int) -> tuple[int, int]:
    return hr.shape[-1] // scale, hr.shape[-2] // scale


def pil_bicubic(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return pil_resize(hr, _lr_size(hr, scale), Image.Resampling.BICUBIC)


def pil_lanczos(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return pil_resize(hr, _lr_size(hr, scale), Image.Resampling.LANCZOS)


def pil_box(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return pil_resize(hr, _lr_size(hr, scale), Image.Resampling.BOX)


def _round_half_up(values: torch.Tensor) -> torch.Tensor:
    """OpenCV's fixed-point rounding ((v + half) >> bits) in its linear and 2x2 area paths."""
    return (values + 0.5).floor().clamp(0, 255).to(torch.uint8)


def _round_half_even(values: torch.Tensor) -> torch.Tensor:
    """OpenCV's cvRound of a float (its cubic and general area paths), as torch.round."""
    return values.round().clamp(0, 255).to(torch.uint8)


def _interpolate64(hr: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, H/scale, W/scale) float64 in 0..255, not rounded. In float64
    the integer-scale weights are exact, so rounding then matches OpenCV's fixed point."""
    options = {} if mode == "area" else {"align_corners": False, "antialias": False}
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    return F.interpolate(hr[None].double(), size=size, mode=mode, **options)[0]


def cv_cubic(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """cv2.resize(INTER_CUBIC): Keys cubic (a = -0.75) at the scale's sample points, no antialiasing."""
    return _round_half_even(_interpolate64(hr, scale, "bicubic"))


def cv_linear(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """cv2.resize(INTER_LINEAR): two taps per axis at the scale's sample points, no antialiasing."""
    return _round_half_up(_interpolate64(hr, scale, "bilinear"))


def cv_area(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """cv2.resize(INTER_AREA) at an integer scale: the mean of each scale x scale block."""
    mean = _interpolate64(hr, scale, "area")
    return _round_half_up(mean) if scale == 2 else _round_half_even(mean)


def jpeg75(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return jpeg(pil_bicubic(hr, scale), 75)


def noise5(hr: torch.Tensor, scale: int) -> torch.Tensor:
    lr = pil_bicubic(hr, scale).double()
    noise = torch.randn(lr.shape, generator=torch.Generator().manual_seed(NOISE5_SEED), dtype=torch.float64)
    return (lr + 5.0 * noise).round().clamp(0, 255).to(torch.uint8)


def realistic(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """One draw of the training chain for the whole image, seeded by its pixels."""
    seed = zlib.crc32(hr.contiguous().numpy().tobytes())
    lr = degrade_realistic(hr[None].float().div(255), scale, torch.Generator().manual_seed(seed))
    return lr[0].mul(255).round().to(torch.uint8)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, H, W) uint8 through Pillow's JPEG encoder and decoder at `quality` (4:2:0 chroma)."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.array(decoded.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


Family = Callable[[torch.Tensor, int], torch.Tensor]  # (3, H, W) uint8, scale -> (3, H/scale, W/scale) uint8

FAMILIES: dict[str, Family] = {
    "pil-bicubic": pil_bicubic, "pil-lanczos": pil_lanczos, "pil-box": pil_box,
    "cv-area": cv_area, "cv-cubic": cv_cubic, "cv-linear": cv_linear,
    "jpeg75": jpeg75, "noise5": noise5, "realistic": realistic,
}
PROTOCOL = "pil-bicubic"  # the standard SR benchmark's LR images, and eval's default
# The families the real-input model (--model real) is held to: at least +0.5 dB over bicubic on each (docs/real-photos.md).
REAL_INPUT_FAMILIES = ("pil-bicubic", "pil-lanczos", "pil-box", "cv-area", "cv-cubic", "cv-linear", "jpeg75", "noise5")

# --- the realistic training chain ------------------------------------------------------------------------------

REALISTIC_BLUR_PROBABILITY = 0.3
REALISTIC_ANISOTROPIC_PROBABILITY = 0.5  # of the blurred patches
REALISTIC_BLUR_SIGMA_MIN = 0.2  # HR pixels; the maximum is scale / 2
DOWNSCALERS = ("bicubic", "bicubic-aliased", "bilinear", "bilinear-aliased", "area", "lanczos")
# Relative odds of DOWNSCALERS, by scale (module docstring). At x2 OpenCV's bilinear is the mean of 2x2
# blocks, area's, so its share goes to the aliased cubic.
DOWNSCALER_WEIGHTS = {2: (1, 6, 1, 0, 1, 1)}
DOWNSCALER_WEIGHTS_OTHERWISE = (1, 3, 1, 3, 1, 1)
REALISTIC_GAUSSIAN_PROBABILITY = 0.4
REALISTIC_GAUSSIAN_SIGMA = (1.0, 10.0)  # of 255
REALISTIC_GREY_NOISE_PROBABILITY = 0.4  # of the Gaussian-noised patches
REALISTIC_POISSON_PROBABILITY = 0.2
REALISTIC_POISSON_PEAK = (150.0, 3000.0)  # photons at full intensity, log-uniform
REALISTIC_JPEG_PROBABILITY = 0.5
REALISTIC_JPEG_QUALITY = (30, 95)  # inclusive


@dataclass(frozen=True)
class Chain:
    """One patch's draw of the realistic chain (module docstring)."""

    blur: tuple[float, float, float] | None  # (sigma along the angle, sigma across it, angle in radians), HR px
    downscaler: str  # one of DOWNSCALERS
    gaussian_sigma: float | None  # of 255
    grey_noise: bool
    poisson_peak: float | None
    jpeg_quality: int | None


def draw_chain(scale: int, generator: torch.Generator) -> Chain:
    """Draw one chain. Always 13 uniform numbers, whichever steps are on."""
    u = torch.rand(13, generator=generator, dtype=torch.float64).tolist()
    sigma_max = scale / 2
    sigma_x = REALISTIC_BLUR_SIGMA_MIN + u[2] * (sigma_max - REALISTIC_BLUR_SIGMA_MIN)
    sigma_y = REALISTIC_BLUR_SIGMA_MIN + u[3] * (sigma_max - REALISTIC_BLUR_SIGMA_MIN)
    anisotropic = u[1] < REALISTIC_ANISOTROPIC_PROBABILITY
    blur = (sigma_x, sigma_y if anisotropic else sigma_x, u[4] * math.pi if anisotropic else 0.0)
    low, high = REALISTIC_GAUSSIAN_SIGMA
    peak_low, peak_high = (math.log(value) for value in REALISTIC_POISSON_PEAK)
    quality_low, quality_high = REALISTIC_JPEG_QUALITY
    return Chain(
        blur=blur if u[0] < REALISTIC_BLUR_PROBABILITY else None,
        downscaler=_pick(DOWNSCALERS, downscaler_weights(scale), u[5]),
        gaussian_sigma=low + u[6] * (high - low) if u[7] < REALISTIC_GAUSSIAN_PROBABILITY else None,
        grey_noise=u[8] < REALISTIC_GREY_NOISE_PROBABILITY,
        poisson_peak=math.exp(peak_low + u[9] * (peak_high - peak_low)) if u[10] < REALISTIC_POISSON_PROBABILITY
        else None,
        jpeg_quality=quality_low + min(int(u[11] * (quality_high - quality_low + 1)), quality_high - quality_low)
        if u[12] < REALISTIC_JPEG_PROBABILITY else None,
    )


def downscaler_weights(scale: int) -> tuple[float, ...]:
    return DOWNSCALER_WEIGHTS.get(scale, DOWNSCALER_WEIGHTS_OTHERWISE)


def _pick(choices: tuple[str, ...], weights: tuple[float, ...], u: float) -> str:
    """The choice whose share of the cumulative weights holds u in [0, 1) (zero weights never)."""
    bounds = list(itertools.accumulate(weights))
    return choices[min(bisect.bisect_right(bounds, u * bounds[-1]), len(choices) - 1)]


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> torch.Tensor:
    """(size, size) float32 summing to 1: a Gaussian with std sigma_x along `angle`
    (radians from the x axis) and sigma_y across it."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    along = x * math.cos(angle) + y * math.sin(angle)
    across = -x * math.sin(angle) + y * math.cos(angle)
    kernel = torch.exp(-0.5 * ((along / sigma_x) ** 2 + (across / sigma_y) ** 2))
    return (kernel / kernel.sum()).float()


def blur_size(scale: int) -> int:
    """Kernel taps a side: 3 sigma either side of the largest sigma (scale / 2)."""
    return 2 * math.ceil(1.5 * scale) + 1


def downscale_with(patches: torch.Tensor, scale: int, downscaler: str) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> (B, 3, H/scale, W/scale) by one of DOWNSCALERS, unclamped."""
    size = (patches.shape[-2] // scale, patches.shape[-1] // scale)
    if downscaler == "area":
        return F.interpolate(patches, size=size, mode="area")
    if downscaler == "lanczos":  # Pillow's, on float planes ("F" mode): not in torch
        planes = [Image.fromarray(plane.contiguous().numpy()).resize(size[::-1], Image.Resampling.LANCZOS)
                  for plane in patches.float().reshape(-1, *patches.shape[-2:])]
        return torch.from_numpy(np.stack([np.asarray(plane) for plane in planes])).view(*patches.shape[:2], *size)
    mode, _, aliased = downscaler.partition("-")
    return F.interpolate(patches, size=size, mode=mode, align_corners=False, antialias=not aliased)


def degrade_realistic(hr: torch.Tensor, scale: int, generator: torch.Generator,
                      chains: list[Chain] | None = None) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1], H and W multiples of `scale` -> LR (B, 3, H/scale,
    W/scale) float in [0, 1] holding 8-bit values, each patch through its own draw of
    the realistic chain (drawn from `generator` unless `chains` is given). Noise is
    drawn from `generator` too."""
    if chains is None:
        chains = [draw_chain(scale, generator) for _ in range(hr.shape[0])]
    # 1. Blur, all patches in one call: unblurred ones get the identity kernel.
    size = blur_size(scale)
    identity = torch.zeros(size, size)
    identity[size // 2, size // 2] = 1
    kernels = torch.stack([identity if chain.blur is None else gaussian_kernel(size, *chain.blur) for chain in chains])
    blurred = filter2d(hr.float(), kernels, border_type="reflect")
    # 2. Downscale, the patches of each downscaler together.
    lr = hr.new_empty(hr.shape[0], 3, hr.shape[-2] // scale, hr.shape[-1] // scale).float()
    for downscaler in DOWNSCALERS:
        picked = [i for i, chain in enumerate(chains) if chain.downscaler == downscaler]
        if picked:
            lr[picked] = downscale_with(blurred[picked], scale, downscaler).float()
    lr = lr.clamp(0, 1)
    # 3.-5. Noise, 8 bits, JPEG, patch by patch (in order: the draws from `generator` are too).
    out = []
    for patch, chain in zip(lr, chains):
        if chain.gaussian_sigma is not None:
            shape = (1, *patch.shape[1:]) if chain.grey_noise else patch.shape
            patch = patch + chain.gaussian_sigma / 255 * torch.randn(shape, generator=generator)
        if chain.poisson_peak is not None:
            patch = torch.poisson(patch.clamp(0, 1) * chain.poisson_peak, generator=generator) / chain.poisson_peak
        pixels = patch.clamp(0, 1).mul(255).round().to(torch.uint8)
        if chain.jpeg_quality is not None:
            pixels = jpeg(pixels, chain.jpeg_quality)
        out.append(pixels)
    return torch.stack(out).float().div(255)
