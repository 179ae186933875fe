"""An image file as float planes (colour, alpha) that remember the file's mode and
bit depth, so an upscaled image is written back as grey, RGBA or 16-bit like its input.

Pillow cuts 16-bit RGB(A) to 8 bits, so those files take their own paths: PNGs are
decoded twice by Pillow (high bytes, then low bytes) and written by a small PNG
writer; TIFFs go through tifffile (a scikit-image dependency)."""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile
import torch
from PIL import Image

from srgan_noise.atomic import atomic_path
from srgan_noise.errors import UserError
from srgan_noise.images import open_image

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow's convert("L")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                  6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class ImagePlanes:
    """colour (3, H, W) float32 in [0, 1] (grey repeated over the 3 channels; upscaled
    planes may leave [0, 1], writing clamps), alpha (1, H, W) or None, and how to write it."""

    colour: torch.Tensor
    alpha: torch.Tensor | None
    grey: bool
    bits: int  # 8 or 16 per channel
    icc_profile: bytes | None = None

    @property
    def mode(self) -> str:
        """The Pillow-style mode of the file, "I;16" and "RGB;16" for 16-bit grey and colour."""
        base = ("L" if self.grey else "RGB") + ("A" if self.alpha is not None else "")
        return base if self.bits == 8 else ("I;16" if base == "L" else base + ";16")


def read_planes(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImagePlanes:
    """Decode any image Pillow reads (EXIF orientation applied): grey, grey+alpha,
    RGB, RGBA, palette (as RGB or RGBA), 16-bit grey/RGB/RGBA; other modes as 8-bit RGB."""
    with _pixel_guard_off():
        _check_pixels(path, max_pixels)
        deep = _read_deep_colour(path)
        if deep is not None:
            return deep
        image = open_image(path)
    # A profile describes the file's colour space: kept unless the pixels are converted out of it.
    same_space = image.mode in ("1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "P", "PA") or image.mode.startswith("I")
    icc_profile = (image.info.get("icc_profile") or None) if same_space else None
    if image.mode.startswith("I"):  # 16-bit grey ("I;16*"; "I" from some decoders)
        grey = np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535.0
        return ImagePlanes(_repeat(torch.from_numpy(grey)), None, grey=True, bits=16, icc_profile=icc_profile)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode == "La":
        image = image.convert("LA")
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if image.mode in ("PA", "RGBa") else "RGB")  # CMYK, YCbCr, LAB, HSV, F
    array = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)
    array = array[..., None] if array.ndim == 2 else array
    planes = array.permute(2, 0, 1)
    grey = image.mode in ("L", "LA")
    colour = _repeat(planes[0]) if grey else planes[:3].contiguous()
    alpha = planes[-1:].contiguous() if image.mode.endswith("A") else None
    return ImagePlanes(colour, alpha, grey=grey, bits=8, icc_profile=icc_profile)


def write_planes(planes: ImagePlanes, path: Path, quality: int = 95) -> None:
    """Atomically write the planes in their mode; the file format follows the suffix.
    JPEG and WebP hold 8 bits, so 16-bit planes are written at 8 bits there."""
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(f"{path}: unknown image extension (use {', '.join(sorted(FORMATS))})")
    if file_format == "JPEG" and planes.alpha is not None:
        raise UserError(f"{path}: JPEG cannot store the alpha channel; write .png or .webp")
    bits = planes.bits if file_format in ("PNG", "TIFF") else 8
    array = _interleave(planes, bits)  # (H, W, C) uint8 or uint16
    icc = {"icc_profile": planes.icc_profile} if planes.icc_profile and not (planes.grey and file_format == "WEBP") else {}
    if bits == 16 and file_format == "TIFF":
        with atomic_path(path, suffix=path.suffix) as tmp:
            tifffile.imwrite(tmp, array[..., 0] if array.shape[2] == 1 else array,
                             photometric="minisblack" if planes.grey else "rgb",
                             extrasamples=(2,) if planes.alpha is not None else None,  # unassociated alpha
                             iccprofile=planes.icc_profile)
    elif bits == 16 and array.shape[2] > 1:
        with atomic_path(path, suffix=path.suffix) as tmp:
            Path(tmp).write_bytes(_png16(array, planes.icc_profile))
    else:
        image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        params = {"quality": quality} if file_format in ("JPEG", "WEBP") else {}
        with atomic_path(path, suffix=path.suffix) as tmp:
            image.save(tmp, format=file_format, **params, **icc)


def _repeat(grey: torch.Tensor) -> torch.Tensor:
    return grey[None].expand(3, -1, -1).contiguous()


def _interleave(planes: ImagePlanes, bits: int) -> np.ndarray:
    colour = planes.colour
    if planes.grey:
        colour = sum(weight * channel for weight, channel in zip(LUMA, colour))[None]
    channels = [colour] + ([planes.alpha] if planes.alpha is not None else [])
    peak = 2**bits - 1
    stacked = torch.cat(channels).clamp(0, 1).mul(peak).round()
    return stacked.permute(1, 2, 0).numpy().astype(np.uint16 if bits == 16 else np.uint8)


@contextlib.contextmanager
def _pixel_guard_off() -> Iterator[None]:
    """Pillow's own bomb check warns at its limit and fails at twice it; `_check_pixels`
    applies one limit with a message naming --max-pixels instead."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(path: Path, max_pixels: int) -> None:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError):
        return  # open_image reports unreadable files with its own messages
    if width * height > max_pixels:
        raise UserError(f"{path}: {width}x{height} is {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (Pillow's decompression-bomb guard); raise it with --max-pixels")


def _read_deep_colour(path: Path) -> ImagePlanes | None:
    """The planes of a 16-bit RGB(A) PNG or TIFF, orientation applied; None for other images."""
    try:
        with Image.open(path) as image:
            file_format, mode, tiles = image.format, image.mode, image.tile
            bits = image.tag_v2.get(258, (8,)) if file_format == "TIFF" else ()
            orientation = image.getexif().get(0x0112, 1)
            icc_profile = image.info.get("icc_profile") or None
    except (OSError, SyntaxError, ValueError):
        return None  # open_image reports it
    if mode not in ("RGB", "RGBA"):
        return None
    try:
        if file_format == "PNG" and len(tiles) == 1 and tiles[0].args in ("RGB;16B", "RGBA;16B"):
            high = _decode_png_as(path, tiles[0].args)  # the unpacker keeps each sample's first byte
            low = _decode_png_as(path, tiles[0].args.replace(";16B", ";16L"))  # ... or its second
            array = high.astype(np.uint16) << 8 | low
        elif file_format == "TIFF" and max(bits, default=8) == 16:
            array = tifffile.imread(path)
            if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4):
                return None  # planar or multi-page layouts: Pillow's 8-bit reading instead
        else:
            return None
    except (OSError, SyntaxError, ValueError, tifffile.TiffFileError) as error:
        raise UserError(f"{path}: cannot decode image ({error})") from None
    if orientation in EXIF_TRANSPOSE:
        channels = [Image.fromarray(np.ascontiguousarray(array[..., c])).transpose(EXIF_TRANSPOSE[orientation])
                    for c in range(array.shape[2])]
        array = np.stack([np.asarray(channel) for channel in channels], axis=-1)
    planes = torch.from_numpy(array.astype(np.float32) / 65535.0).permute(2, 0, 1)
    alpha = planes[3:].contiguous() if planes.shape[0] == 4 else None
    return ImagePlanes(planes[:3].contiguous(), alpha, grey=False, bits=16, icc_profile=icc_profile)


def _decode_png_as(path: Path, rawmode: str) -> np.ndarray:
    with Image.open(path) as image:
        image.tile = [image.tile[0]._replace(args=rawmode)]
        image.load()
        return np.asarray(image)


def _png16(array: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 16-bit PNG (colour type grey+alpha, RGB or RGBA) of (H, W, C) uint16, rows unfiltered."""
    height, width, channels = array.shape
    colour_type = {2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = np.zeros((height, 1 + width * channels * 2), dtype=np.uint8)  # filter byte 0 (none) per row
    rows[:, 1:] = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    icc = chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc_profile)) if icc_profile else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + icc
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
