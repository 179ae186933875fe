"""Generators: SRResNet (Ledig et al. 2017: 9x9 head, residual body with a global
skip, PixelShuffle x2 stages, 9x9 tail) and a sub-pixel network for speed on a
CPU (ESPCN-class, Shi et al. 2016: a few convs on the LR grid)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srgan_noise.base.config import ModelConfig
from srgan_noise.models.projection import affine_projection


Sides = tuple[int, int, int, int]  # LR pixels on the top, bottom, left and right of a tile window


def crop(image: torch.Tensor, sides: Sides | list[int]) -> torch.Tensor:
    """(..., H, W) without `sides` (top, bottom, left, right) pixels on each side."""
    top, bottom, left, right = sides
    return image[..., top:image.shape[-2] - bottom, left:image.shape[-1] - right]


def trim(image: torch.Tensor, context: Sides, pixels: int) -> tuple[torch.Tensor, Sides]:
    """Crop `pixels` from each side with context left (all of it if less): the ring a conv
    reaching `pixels` far computes from its zero padding there. Returns the cropped image
    and the context left on each side."""
    cut = [min(pixels, side) for side in context]
    return crop(image, cut), tuple(side - k for side, k in zip(context, cut))


def beyond_radius_cropped(x: torch.Tensor, context: Sides, radius: int) -> tuple[torch.Tensor, Sides]:
    """The window without the context beyond `radius` on each side (no output pixel of
    the tile depends on it), and the context left."""
    cut = [max(side - radius, 0) for side in context]
    return crop(x, cut), tuple(side - k for side, k in zip(context, cut))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Maps an LR image (B, 3, h, w) in [0, 1] to (B, 3, h*scale, w*scale), unclamped.

    With config.image_skip the output is bicubic(x) + residual; with config.projection
    "affine" it is then projected so that its downscaling is exactly x."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.conv_first = nn.Sequential(nn.Conv2d(3, c, 9, padding=4), nn.PReLU(c))
        self.body = nn.Sequential(*[ResidualBlock(c, config.batch_norm) for _ in range(config.blocks)])
        self.conv_body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c) if config.batch_norm else nn.Identity()
        )
        stages = []
        for _ in range(int(math.log2(config.scale))):
            if config.upsample == "nearest":
                stages += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1), nn.PReLU(c)]
            else:
                stages += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(c)]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(c, 3, 9, padding=4)
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming scaled by 0.1 (BasicSR's MSRResNet init): residual branches
        # start near identity and, with the image skip, the output near bicubic.
        # Not on the meta device, where only shapes are wanted (weights.load_generator's check):
        # normal_ there goes through torch's Python decompositions, 2 s of imports.
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight)
                module.weight.data.mul_(0.1)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, project: bool = True) -> torch.Tensor:
        """project=False skips the projection: tiled inference runs the local part
        on windows and projects the assembled image (the projection is global)."""
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        out = self.conv_last(self.upsample(features))
        if self.config.image_skip:
            out = out + F.interpolate(x, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        if project and self.config.projection == "affine":
            out = affine_projection(out, x, self.config.scale)
        return out

    def forward_window(self, x: torch.Tensor, context: Sides) -> torch.Tensor:
        """The output for the tile inside window x (B, 3, h, w), which carries `context`
        (top, bottom, left, right) LR pixels beyond the tile on each side (0 at the image
        border): (B, 3, (h - top - bottom) scale, (w - left - right) scale), unprojected.
        With context of at least receptive_radius it equals the untiled forward there.

        A conv's zero padding makes only its outer ring wrong on a side with context, so
        each layer's ring is cropped as soon as it is made (trim): the residual body runs
        on windows that shrink towards the tile instead of on the whole window. A side with
        less context than the radius (the window reaches the image border there, or a
        smaller overlap was asked for) is not trimmed: it is cropped from the output."""
        scale = self.config.scale
        radius = receptive_radius(self.config)
        x, context = beyond_radius_cropped(x, context, radius)
        trimmed = tuple(side if side == radius else 0 for side in context)  # what the layers may crop
        head, left = trim(self.conv_first(x), trimmed, 4)  # a 9x9 conv
        body = head
        for block in self.body:
            body, left = trim(block(body), left, 2)  # two 3x3 convs
        body, left = trim(self.conv_body(body), left, 1)
        features = crop(head, [radius - 4 - after if side else 0 for side, after in zip(trimmed, left)]) + body
        # The upsampling stages and the tail run on what is left: the context they still need.
        out = self.conv_last(self.upsample(features))
        out = crop(out, [(side - (before - after)) * scale for side, before, after in zip(context, trimmed, left)])
        if self.config.image_skip:
            bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
            out = out + crop(bicubic, [side * scale for side in context])
        return out


class SubPixelGenerator(nn.Module):
    """Maps an LR image (B, 3, h, w) in [0, 1] to (B, 3, h*scale, w*scale), unclamped:
    bicubic(x) plus a learned luma residual, every conv on the LR grid.

    conv_first (3x3, 3 -> c), `blocks` 3x3 convs c -> c (body), each followed by a
    ReLU, and conv_last (3x3, c -> scale^2): one residual value per sub-pixel position,
    added equally to R, G and B. Such a change moves Y alone (BT.601's Cb and Cr rows
    sum to zero), as ESPCN and FSRCNN upscale Y alone; chroma is bicubic's. The
    bicubic image is F.interpolate's, computed as a fixed grouped conv on the LR grid
    (bicubic_subpixel_weight) and added before the sub-pixel rearrangement."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, scale = config.channels, config.scale
        self.conv_first = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*[layer for _ in range(config.blocks)
                                    for layer in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))])
        self.conv_last = nn.Conv2d(c, scale * scale, 3, padding=1)
        # Fixed, not learned: kept out of the state dict, so weights files hold the learned layers only.
        self.register_buffer("bicubic", bicubic_subpixel_weight(scale), persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:  # as Generator's
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.conv_last.weight.data.mul_(0.1)  # the output starts near bicubic, as Generator's init does

    def forward(self, x: torch.Tensor, project: bool = True) -> torch.Tensor:
        """project=False skips the affine projection (see Generator.forward)."""
        scale = self.config.scale
        batch, _, height, width = x.shape
        residual = self.conv_last(self.body(self.conv_first(x)))  # (B, scale^2, h, w)
        padded = F.pad(x, (2, 2, 2, 2), mode="replicate")  # F.interpolate clamps at the border
        bicubic = F.conv2d(padded, self.bicubic.to(x.dtype), groups=3)  # (B, 3 scale^2, h, w)
        # Channel (colour, i, j) at (m, n) is output pixel (m scale + i, n scale + j) of that colour.
        bicubic = bicubic.view(batch, 3, scale, scale, height, width)
        residual = residual.view(batch, 1, scale, scale, height, width).to(bicubic.dtype)
        if torch.is_grad_enabled():  # autograd cannot write into `out=`
            out = (bicubic + residual).permute(0, 1, 4, 2, 5, 3).reshape(batch, 3, height * scale, width * scale)
        else:  # inference: the sum written once, straight into the output's layout (twice as fast on a CPU)
            out = x.new_empty(batch, 3, height * scale, width * scale, dtype=bicubic.dtype)
            torch.add(bicubic, residual, out=out.view(batch, 3, height, scale, width, scale).permute(0, 1, 3, 5, 2, 4))
        if project and self.config.projection == "affine":
            out = affine_projection(out, x, scale)
        return out

    def forward_window(self, x: torch.Tensor, context: Sides) -> torch.Tensor:
        """The output for the tile inside window x (see Generator.forward_window): the whole
        window runs (its radius is a few pixels), then the context is cropped."""
        x, context = beyond_radius_cropped(x, context, receptive_radius(self.config))
        return crop(self.forward(x, project=False), [side * self.config.scale for side in context])


def bicubic_subpixel_weight(scale: int) -> torch.Tensor:
    """(3 scale^2, 1, 5, 5) float64: F.interpolate(x, scale, "bicubic") as a grouped conv on the
    LR grid. Channel (colour c, i, j) at LR pixel (m, n), on x padded by 2 with its border
    values, is output pixel (m scale + i, n scale + j) of colour c. Bicubic (a = -0.75) is
    separable and reaches LR pixels m - 2 to m + 2; the taps are read off F.interpolate
    itself by upsampling unit impulses, in float64."""
    # On the CPU whatever the default device: under load_generator's meta-device shape check,
    # a meta interpolate would go through torch's Python decompositions (2.5 s of imports).
    length, centre = 9, 4
    taps = torch.empty(scale, 5, dtype=torch.float64, device="cpu")  # LR pixel m + k - 2 in output m scale + i
    for k in range(5):
        impulse = torch.zeros(1, 1, 1, length, dtype=torch.float64, device="cpu")
        impulse[..., centre + k - 2] = 1
        upsampled = F.interpolate(impulse, scale_factor=(1, scale), mode="bicubic", align_corners=False)[0, 0, 0]
        taps[:, k] = upsampled[centre * scale:(centre + 1) * scale]
    kernels = taps[:, None, :, None] * taps[None, :, None, :]  # (i, j, 5, 5)
    return kernels.reshape(1, scale * scale, 5, 5).expand(3, -1, -1, -1).reshape(3 * scale * scale, 1, 5, 5)


def build_generator(config: ModelConfig) -> Generator | SubPixelGenerator:
    """The generator config describes: SRResNet or the sub-pixel network."""
    return SubPixelGenerator(config) if config.generator == "subpixel" else Generator(config)


def receptive_radius(config: ModelConfig) -> int:
    """Input pixels on each side that influence one output pixel.

    Tiles overlapping by at least this much (in LR pixels) stitch to exactly the
    untiled output: head 9x9 (4), two 3x3 per block (2), body conv (1), each
    upsampling conv at its LR-equivalent resolution (1, 1/2, 1/4 -> ceil), tail
    9x9 at HR resolution (4/scale, ceil); a nearest stage's conv runs after its x2, at half
    the reach, which the same ceil covers. The image skip's bicubic reaches
    2 LR pixels, well inside that. The affine projection is not local and not
    counted: tiled inference applies it to the assembled output. The sub-pixel
    generator: one LR pixel per 3x3 conv, and its bicubic's 2 within that."""
    if config.generator == "subpixel":
        return max(config.blocks + 2, 2)
    radius = 4 + 2 * config.blocks + 1
    stages = int(math.log2(config.scale))
    radius += sum(math.ceil(1 / 2**i) for i in range(stages))
    radius += math.ceil(4 / config.scale)
    return radius
