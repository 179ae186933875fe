"""What `srgan eval` measured: per-image scores and their means, shared by the
tables, the files and the HTML report (report.py) that present them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from srgan_noise.training.degradations import PROTOCOL

MODEL, BICUBIC = "model", "bicubic"  # the two method names in rows, tables and files


@dataclass(frozen=True)
class ImageScore:
    method: str  # MODEL or BICUBIC
    image: str  # file name
    height: int  # of the HR image after cropping to a multiple of the scale
    width: int
    psnr: float  # dB, Y channel
    ssim: float
    hf_ratio: float  # high-band power ratio, Y channel: 1.0 as much fine detail as the HR image


@dataclass(frozen=True)
class EvalResult:
    rows: tuple[ImageScore, ...]  # per image, model rows first
    # method -> {"psnr": dB, "ssim", "hf_ratio"}: means over images; with the critic
    # test also "critic" (held-out accuracy over all images' patches) and "critic_se"
    mean: dict[str, dict[str, float]]
    scale: int
    weights: str | None  # the weights file scored as MODEL, None for bicubic only
    degradation: str = PROTOCOL  # how the LR inputs were made (degradations.FAMILIES)
    # image name -> {method or HR: (3, H, W) uint8 as scored}; None unless asked for (they cost memory)
    images: dict[str, dict[str, torch.Tensor]] | None = None
    skipped: tuple[str, ...] = ()  # unreadable image files left out of the means

    @property
    def methods(self) -> list[str]:
        return list(self.mean)

    def label(self, method: str) -> str:
        """What tables call a method: the weights file's stem for the model."""
        return method if method == BICUBIC else Path(self.weights or MODEL).stem
