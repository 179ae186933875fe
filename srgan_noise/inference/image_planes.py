"""An image file as float planes (colour, alpha) that remember the file's mode and
bit depth, so an upscaled image is written back as grey, RGBA or 16-bit like its input.

Pillow cuts 16-bit RGB(A) to 8 bits, so those files take their own paths: PNGs are
decoded twice by Pillow (high bytes, then low bytes); TIFFs go through tifffile (a
scikit-image dependency).

Writing starts from an interleaved (H, W, C) uint8 or uint16 array, which `srgan upscale`
fills tile by tile, so a large output is never held as floats: PNG is written by a small
streaming writer and TIFF by tifffile straight from the array; JPEG and WebP go through
Pillow, which shares the array's memory for L, RGBA and RGBX (RGB padded to 4 bytes,
Pillow's own layout of RGB)."""

from __future__ import annotations

import contextlib
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import tifffile
import torch
from PIL import Image

from srgan_noise.base.atomic import atomic_path, remove_leftovers
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import open_image

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow's convert("L")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                  6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class ImagePlanes:
    """colour (3, H, W) float32 in [0, 1] (grey repeated over the 3 channels, as a view; upscaled
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
    array = np.array(image, dtype=np.float32)
    array /= 255.0  # in place: no second float copy of the input
    array = torch.from_numpy(array)
    array = array[..., None] if array.ndim == 2 else array
    planes = array.permute(2, 0, 1)
    grey = image.mode in ("L", "LA")
    colour = _repeat(planes[0]) if grey else planes[:3].contiguous()
    alpha = planes[-1:].contiguous() if image.mode.endswith("A") else None
    return ImagePlanes(colour, alpha, grey=grey, bits=8, icc_profile=icc_profile)


def write_planes(planes: ImagePlanes, path: Path, quality: int = 95, overwrite: bool = True) -> None:
    """Atomically write the planes in their mode; the file format follows the suffix.
    JPEG and WebP hold 8 bits, so 16-bit planes are written at 8 bits there.
    `overwrite` False: an existing file is never replaced (see `write_array`)."""
    file_format = _file_format(path, planes.alpha is not None)
    layout = PixelLayout.of(planes.grey, planes.alpha is not None, planes.bits, file_format)
    array = np.empty(layout.shape(*planes.colour.shape[1:]), layout.dtype)
    array[..., :layout.colour_channels] = quantise(planes.colour, planes.grey, layout.bits)
    if planes.alpha is not None:
        array[..., layout.colour_channels:layout.colour_channels + 1] = quantise(planes.alpha, False, layout.bits)
    if layout.padded:
        array[..., -1] = 255
    write_array(array, layout, path, planes.icc_profile, quality, overwrite)


@dataclass(frozen=True)
class PixelLayout:
    """How an output is held for writing: (H, W, channels) of `dtype`, colour first
    (1 grey channel or 3), then alpha, then, if `padded`, an unused fourth byte
    (RGBX, which Pillow saves as JPEG or WebP without copying)."""

    grey: bool
    alpha: bool
    bits: int
    padded: bool

    @classmethod
    def of(cls, grey: bool, alpha: bool, bits: int, file_format: str) -> PixelLayout:
        deep = bits == 16 and file_format in ("PNG", "TIFF")
        return cls(grey, alpha, 16 if deep else 8, padded=file_format in ("JPEG", "WEBP") and not grey and not alpha)

    @property
    def colour_channels(self) -> int:
        return 1 if self.grey else 3

    @property
    def channels(self) -> int:
        return self.colour_channels + self.alpha + self.padded

    @property
    def dtype(self) -> type:
        return np.uint16 if self.bits == 16 else np.uint8

    def shape(self, height: int, width: int) -> tuple[int, int, int]:
        return height, width, self.channels

    def nbytes(self, height: int, width: int) -> int:
        return height * width * self.channels * self.bits // 8


def quantise(planes: torch.Tensor, grey: bool, bits: int) -> np.ndarray:
    """(3, H, W) colour, or (1, H, W) alpha with grey False, float, any range ->
    (H, W, 1 or 3) integers of `bits`: grey as luma, clamped to [0, 1], rounded."""
    if grey:
        planes = sum(weight * channel for weight, channel in zip(LUMA, planes))[None]
    peak = 2**bits - 1
    values = planes.clamp(0, 1).mul(peak).round()
    return values.permute(1, 2, 0).numpy().astype(np.uint16 if bits == 16 else np.uint8)


def resize_array(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 or uint16 pixels -> (height, width, C) of the same type, by Pillow's
    bicubic filter (antialiased when shrinking, as MATLAB imresize), one channel at a time
    so that only one plane is copied beside the two arrays."""
    resized = np.empty((height, width, array.shape[2]), array.dtype)
    for channel in range(array.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(array[..., channel]))  # L, or I;16 for uint16
        resized[..., channel] = np.asarray(plane.resize((width, height), Image.Resampling.BICUBIC))
    return resized


def write_array(array: np.ndarray, layout: PixelLayout, path: Path, icc_profile: bytes | None = None,
                quality: int = 95, overwrite: bool = True) -> None:
    """Write (H, W, C) pixels in `layout` to `path` (format from the suffix) without a
    float or full-size copy for PNG, TIFF and JPEG/WebP from L, RGBA or RGBX.
    Through a temporary file beside `path`: with `overwrite` False it is linked to
    `path` only if no file is there by then, else UserError (another process wrote it)."""
    file_format = _file_format(path, layout.alpha)
    grey = layout.grey
    try:
        with atomic_path(path, suffix=path.suffix, exclusive=not overwrite) as tmp:
            if file_format == "PNG":
                with open(tmp, "wb") as file:
                    _write_png(file, array, icc_profile)
            elif file_format == "TIFF":
                tifffile.imwrite(tmp, array[..., 0] if array.shape[2] == 1 else array,
                                 photometric="minisblack" if grey else "rgb", planarconfig="contig",
                                 extrasamples=(2,) if layout.alpha else None,  # unassociated alpha
                                 iccprofile=icc_profile)
            else:
                height, width = array.shape[:2]
                modes = {(True, False): "L", (False, True): "RGBA", (False, False): "RGBX"}
                mode = modes.get((grey, layout.alpha))
                if mode is not None and array.shape[2] == len(mode) and array.flags.c_contiguous:
                    image = Image.frombuffer(mode, (width, height), array, "raw", mode, 0, 1)  # shares memory
                else:
                    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
                icc = {"icc_profile": icc_profile} if icc_profile and not (grey and file_format == "WEBP") else {}
                image.save(tmp, format=file_format, quality=quality, **icc)
    except FileExistsError:
        raise UserError(f"{path}: already exists (written by another process?); use --force to overwrite") from None


def _file_format(path: Path, alpha: bool) -> str:
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(f"{path}: unknown image extension (use {', '.join(sorted(FORMATS))})")
    if file_format == "JPEG" and alpha:
        raise UserError(f"{path}: JPEG cannot store the alpha channel; write .png or .webp")
    return file_format


STALE_SECONDS = 60  # a temporary file untouched this long is not being written


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that killed writes of `path` left beside it, if
    untouched for STALE_SECONDS (a younger one may be another process's write in
    progress). Returns those deleted."""
    return remove_leftovers(path.parent, name=path.name, older_than=STALE_SECONDS)


def _repeat(grey: torch.Tensor) -> torch.Tensor:
    """(H, W) -> (3, H, W) as a view: a grey input costs one plane of memory, not three."""
    return grey[None].expand(3, -1, -1)


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
    """The pixel limit, and a warning for animated or multi-page files (the first frame is read)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
    except (OSError, SyntaxError, ValueError):
        return  # open_image reports unreadable files with its own messages
    if frames > 1:
        warnings.warn(f"{path}: animated image with {frames} frames; only the first is upscaled")
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


PNG_ROWS = 64  # rows filtered and compressed at a time


def _write_png(file: BinaryIO, array: np.ndarray, icc_profile: bytes | None) -> None:
    """(H, W, C) uint8 or uint16 as a PNG (grey, grey+alpha, RGB, RGBA by C), streamed
    PNG_ROWS rows at a time, each row filtered as libpng's adaptive filtering does."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = array.dtype.itemsize * 8

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)))
    if icc_profile:
        file.write(chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc_profile)))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 15, 9)  # as Pillow: level 6, memLevel 9
    pixel_bytes = channels * array.dtype.itemsize
    above = np.zeros(width * pixel_bytes, dtype=np.int16)  # the row before the first is zeros
    for start in range(0, height, PNG_ROWS):
        strip = np.ascontiguousarray(array[start:start + PNG_ROWS], dtype=">u2" if depth == 16 else np.uint8)
        rows = strip.view(np.uint8).reshape(len(strip), -1).astype(np.int16)
        up = np.concatenate([above[None], rows[:-1]])
        left = np.zeros_like(rows)
        left[:, pixel_bytes:] = rows[:, :-pixel_bytes]
        up_left = np.zeros_like(rows)
        up_left[:, pixel_bytes:] = up[:, :-pixel_bytes]
        guess = left + up - up_left
        distance_left, distance_up, distance_up_left = (np.abs(guess - left), np.abs(guess - up),
                                                        np.abs(guess - up_left))
        paeth = np.where((distance_left <= distance_up) & (distance_left <= distance_up_left), left,
                         np.where(distance_up <= distance_up_left, up, up_left))
        # Filter types 0-4 (none, sub, up, average, Paeth), each row taking the one with the least sum of
        # absolute signed bytes, the heuristic libpng and Pillow use.
        candidates = np.stack([rows, rows - left, rows - up, rows - (left + up) // 2, rows - paeth]).astype(np.uint8)
        choice = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2).argmin(axis=0)
        filtered = np.empty((len(rows), rows.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = choice
        filtered[:, 1:] = candidates[choice, np.arange(len(rows))]
        above = rows[-1]
        data = compressor.compress(filtered.tobytes())
        if data:
            file.write(chunk(b"IDAT", data))
    file.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))
