"""Training and validation images: HR folders (or scikit-image's bundled
samples), random HR crops with flips and 90-degree rotations, LR inputs made
by antialiased bicubic downscaling, by a per-patch coin between it and OpenCV's
non-antialiased cubic (`bicubic-mixed`) or, for training with the `realistic`
degradation, by degradations.degrade_realistic's random chain.

Patches come from a seeded torch.Generator rather than a DataLoader: the
images are held in memory as uint8, cropping a batch costs little next to a
GAN step, and the generator's state in the checkpoint makes resume exact."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from srgan_noise.base.errors import UserError
from srgan_noise.base.images import list_images, load_rgb
from srgan_noise.training.degradations import degrade_realistic, downscale_with

# scikit-image samples that ship inside the package (others need a download).
SAMPLE_TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat")
SAMPLE_VAL = ("chelsea",)
# How training LR patches are made. bicubic-mixed: each patch, at random, antialiased bicubic (PIL's,
# the SR protocol) or, with probability ALIASED_SHARE, bicubic without antialiasing (OpenCV's
# INTER_CUBIC, on which ESPCN and FSRCNN's published models were trained), so one model serves both.
DEGRADATIONS = ("bicubic", "bicubic-mixed", "realistic")
# The harder case gets the larger share. The fast preset after 10000 steps (scripts/train_fast.sh's first
# stage), Set5 x4 PSNR on antialiased / OpenCV LR: share 1/2 29.93 / 28.26 dB, 3/4 29.31 / 28.48, 0.9
# 28.69 / 28.52, and 28.74 / 28.56 after the second (ESPCN 28.38 / 28.54, FSRCNN 28.40 / 28.48).
ALIASED_SHARE = 0.9


def load_folder(folder: Path) -> list[torch.Tensor]:
    """All readable images of a folder as (3, H, W) uint8; unreadable ones are
    skipped with a warning while others remain."""
    images, skipped = [], []
    for path in list_images(folder):
        try:
            images.append(load_rgb(path))
        except UserError as error:
            warnings.warn(f"skipping {error}", stacklevel=2)
            skipped.append(path)
    if not images:
        raise UserError(f"{folder}: none of its {len(skipped)} image files could be read")
    return images


def load_samples(names: tuple[str, ...]) -> list[torch.Tensor]:
    """scikit-image's bundled sample images as (3, H, W) uint8 (offline)."""
    import skimage.data

    images = []
    for name in names:
        array = torch.from_numpy(getattr(skimage.data, name)().copy())
        if array.ndim == 2:
            array = array.unsqueeze(-1).expand(-1, -1, 3)
        images.append(array[..., :3].permute(2, 0, 1).contiguous())
    return images


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, H/scale, W/scale), antialiased bicubic
    (torch's antialias mode follows PIL's filter), clamped to [0, 1]."""
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp(0, 1)


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop (..., H, W) to multiples of `scale` (top-left kept), as the SR protocol does."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


class PatchSampler:
    """Random (LR, HR) patch batches from in-memory HR images; LR by antialiased bicubic
    (`degradation` bicubic), by it or non-antialiased bicubic at random per patch
    (bicubic-mixed, ALIASED_SHARE of them non-antialiased), or by the random realistic
    chain (degradations.py)."""

    def __init__(self, images: list[torch.Tensor], patch_size: int, scale: int, source: str,
                 degradation: str = "bicubic") -> None:
        if degradation not in DEGRADATIONS:
            raise UserError(f"--degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}")
        if patch_size % scale != 0:
            raise UserError(f"patch size {patch_size} is not a multiple of the scale {scale}")
        too_small = {i for i, image in enumerate(images) if min(image.shape[-2:]) < patch_size}
        if len(too_small) == len(images):
            smallest = min(min(image.shape[-2:]) for image in images)
            raise UserError(
                f"{source}: patch size {patch_size} is larger than every image (smallest side {smallest})"
            )
        if too_small:
            warnings.warn(f"{source}: {len(too_small)} images smaller than the patch are not used", stacklevel=2)
        self.images = [image for i, image in enumerate(images) if i not in too_small]
        self.patch_size = patch_size
        self.scale = scale
        self.degradation = degradation

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> LR (B, 3, p/s, p/s) and HR (B, 3, p, p), float in [0, 1]. Every random
        choice (crops, then the realistic chain and its noise) comes from `generator`."""
        p = self.patch_size
        patches = []
        picks = torch.randint(len(self.images), (batch_size,), generator=generator).tolist()
        for index in picks:
            image = self.images[index]
            h, w = image.shape[-2:]
            top = int(torch.randint(h - p + 1, (1,), generator=generator))
            left = int(torch.randint(w - p + 1, (1,), generator=generator))
            patch = image[:, top : top + p, left : left + p]
            flip, rotations = torch.randint(2, (1,), generator=generator), torch.randint(4, (1,), generator=generator)
            if flip:
                patch = patch.flip(-1)
            patches.append(torch.rot90(patch, int(rotations), dims=(-2, -1)))
        hr = torch.stack(patches).float().div(255)
        if self.degradation == "realistic":
            return degrade_realistic(hr, self.scale, generator), hr
        if self.degradation != "bicubic-mixed":
            return downscale(hr, self.scale), hr
        aliased = torch.rand(batch_size, generator=generator) < ALIASED_SHARE
        lr = hr.new_empty(batch_size, 3, self.patch_size // self.scale, self.patch_size // self.scale)
        lr[~aliased] = downscale(hr[~aliased], self.scale)  # each patch made once, by its own downscaler
        lr[aliased] = downscale_with(hr[aliased], self.scale, "bicubic-aliased").clamp(0, 1)
        return lr, hr


def validation_pairs(images: list[torch.Tensor], scale: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Full images, mod-cropped, as (LR (1, 3, h, w), HR (1, 3, H, W)) pairs."""
    pairs = []
    for image in images:
        hr = mod_crop(image, scale).float().div(255).unsqueeze(0)
        pairs.append((downscale(hr, scale), hr))
    return pairs
