"""Ledig et al. (2017) VGG-style discriminator returning logits."""

from __future__ import annotations

import torch
from torch import nn

from srgan_noise.config import ModelConfig


class Discriminator(nn.Module):
    """(B, 3, H, W) in [0, 1] (any H, W >= 16) -> logits (B,).

    Eight 3x3 convs, widths c, c, 2c, 2c, 4c, 4c, 8c, 8c with stride 2 on every
    second one, LeakyReLU 0.2 and BN (not after the first), then adaptive
    pooling to 6x6 (what a 96x96 patch gives, so Ledig's head is unchanged)
    and a dense head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.d_channels
        widths = [c, c, 2 * c, 2 * c, 4 * c, 4 * c, 8 * c, 8 * c]
        layers: list[nn.Module] = []
        in_channels = 3
        for i, width in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(nn.Conv2d(in_channels, width, 3, stride=stride, padding=1))
            if i > 0 and config.d_batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * c * 36, config.d_dense),
            nn.LeakyReLU(0.2),
            nn.Linear(config.d_dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x))).squeeze(1)
