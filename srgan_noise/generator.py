"""SRResNet generator (Ledig et al. 2017): 9x9 head, residual body with a global
skip, PixelShuffle x2 stages, 9x9 tail."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srgan_noise.config import ModelConfig
from srgan_noise.projection import affine_projection


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
            stages += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(c)]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(c, 3, 9, padding=4)
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming scaled by 0.1 (BasicSR's MSRResNet init): residual branches
        # start near identity and, with the image skip, the output near bicubic.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
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


def receptive_radius(config: ModelConfig) -> int:
    """Input pixels on each side that influence one output pixel.

    Tiles overlapping by at least this much (in LR pixels) stitch to exactly the
    untiled output: head 9x9 (4), two 3x3 per block (2), body conv (1), each
    upsampling conv at its LR-equivalent resolution (1, 1/2, 1/4 -> ceil), tail
    9x9 at HR resolution (4/scale, ceil). The image skip's bicubic reaches
    2 LR pixels, well inside that. The affine projection is not local and not
    counted: tiled inference applies it to the assembled output."""
    radius = 4 + 2 * config.blocks + 1
    stages = int(math.log2(config.scale))
    radius += sum(math.ceil(1 / 2**i) for i in range(stages))
    radius += math.ceil(4 / config.scale)
    return radius
