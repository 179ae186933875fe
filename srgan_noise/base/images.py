"""Image file I/O through Pillow, with one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from srgan_noise.base.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; a clear error if there are none."""
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    if not paths:
        raise UserError(f"{folder}: no images (png/jpg/bmp/webp/tiff) in this folder")
    return paths


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():  # a FIFO would block the read forever, a device read without end
        raise UserError(f"{path}: not a regular file; give an image file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise UserError(f"{path}: image too large ({error})") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: cannot decode image ({error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Grey, palette, RGBA and 16-bit images as 8-bit RGB (alpha dropped)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 tensor of an image file."""
    return pil_to_tensor(to_rgb(open_image(path)))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (3, H, W) uint8."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PIL image (rounded, clamped)."""
    array = image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
