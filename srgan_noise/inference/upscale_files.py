"""`srgan upscale`: image files in, image files out, in bounded memory.

Each tile's output is quantised as it is made into the 8- or 16-bit array that is
written (upscale_into), so CPU memory is the output's own size plus a constant;
inputs, outputs, memory and disk room are checked before any work, and an output
is written whole or not at all."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from srgan_noise.base.atomic import existing_ancestor
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.memory import available_memory, format_bytes
from srgan_noise.base.images import is_image_path
from srgan_noise.inference.image_planes import (DEFAULT_MAX_PIXELS, FORMATS, ImagePlanes, PixelLayout, quantise,
                                                read_planes, remove_stale_temporaries, resize_array, write_array)
from srgan_noise.inference.weights import SCALES, choose_shipped, load_generator
from srgan_noise.models.generator import Generator, receptive_radius

from srgan_noise.inference.upscale import (MIN_TILE, PRECISIONS, TileProgress, fitting_memory, resolve_precision,
                                           upscale_fitting_memory, upscale_tiles)

MAX_OUTSCALE_RATIO = 2  # --outscale at most this times the model's scale: beyond, it is mostly interpolation blur


@dataclass(frozen=True)
class UpscaleConfig:
    inputs: tuple[str, ...]  # image files and folders of images
    out: str | None = None  # a file for one input file, else a folder; None: beside each input
    weights: str | None = None  # None: shipped weights, chosen by `model`, `scale` and `outscale` (weights.choose_shipped)
    model: str | None = None  # real | gan | psnr | fast; None: real where it is shipped at the scale, else gan
    scale: int | None = None  # the model's: 2 | 4 | 8; None: the weights' own (4, or fitted to outscale, if shipped)
    outscale: float | None = None  # the output is resized to round(outscale x the input size); None: the model's scale
    tile: int = 256  # LR pixels per tile side, context excluded
    overlap: int | None = None  # LR pixels of context; None: the receptive radius (exact)
    batch_tiles: int | None = None  # windows per forward; None: 4 on CUDA, 1 on CPU (no gain there, more memory)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    ext: str = "auto"  # auto (the input's format; bmp -> png) | png | jpg | webp
    alpha: str = "bicubic"  # bicubic | model: how the alpha channel is upscaled
    force: bool = False  # overwrite existing outputs
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger inputs are refused (decompression bombs)
    progress: bool = True

    def __post_init__(self) -> None:
        choices = {"device": ("auto", "cpu", "cuda"), "precision": PRECISIONS,
                   "ext": ("auto", "png", "jpg", "webp"), "alpha": ("bicubic", "model")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("tile", "batch_tiles", "max_pixels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.overlap is not None and self.overlap < 0:
            raise UserError("--overlap must be auto or at least 0")
        if self.scale is not None and self.scale not in SCALES:
            raise UserError(f"--scale must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.outscale is not None and not (math.isfinite(self.outscale) and self.outscale > 0):
            raise UserError(f"--outscale must be a positive number, got {self.outscale}")
        if self.outscale is not None and self.outscale < 1:
            raise UserError(f"--outscale {self.outscale:g} is below 1: the output would be smaller than the input")
        if self.weights is not None and self.model is not None:
            raise UserError(f"--model {self.model} has no effect with --weights (it picks among the shipped weights)")
        if not self.inputs:
            raise UserError("no inputs given")



def upscale_into(generator: Generator, planes: ImagePlanes, array: np.ndarray, layout: PixelLayout,
                 config: UpscaleConfig, tile: int, batch_tiles: int, precision: str,
                 progress: TileProgress | None = None) -> tuple[int, int]:
    """Upscale the planes straight into `array` (H*scale, W*scale, channels) in `layout`,
    each tile quantised as it is made: no float copy of the output, except under an affine
    projection, which needs one plane group's whole float output at a time (see output_memory).
    Colour through the generator; alpha bicubic (in row strips) or through the generator too.
    Returns the tile and batch_tiles that fitted in memory."""
    affine = generator.config.projection == "affine"

    def through_generator(image: torch.Tensor, channels: slice, grey: bool, mean: bool, tile: int,
                          batch_tiles: int) -> tuple[int, int]:
        def quantised(pixels: torch.Tensor) -> np.ndarray:
            return quantise(pixels.mean(0, keepdim=True) if mean else pixels, grey, layout.bits)

        if affine:  # the projection is global along each axis: on the whole float output, then quantised
            output, tile, batch_tiles = upscale_fitting_memory(generator, image, tile, config.overlap, batch_tiles,
                                                               precision, progress)
            for start in range(0, output.shape[1], QUANTISE_ROWS):
                array[start:start + QUANTISE_ROWS, :, channels] = quantised(output[:, start:start + QUANTISE_ROWS])
            return tile, batch_tiles

        def store(rows: slice, columns: slice, pixels: torch.Tensor) -> None:
            array[rows, columns, channels] = quantised(pixels)

        _, tile, batch_tiles = fitting_memory(
            lambda tile, batch_tiles: upscale_tiles(generator, image, store, tile, config.overlap, batch_tiles,
                                                    precision, progress), tile, batch_tiles)
        return tile, batch_tiles

    tile, batch_tiles = through_generator(planes.colour, slice(0, layout.colour_channels), layout.grey, False,
                                          tile, batch_tiles)
    alpha_channel = slice(layout.colour_channels, layout.colour_channels + 1)
    if planes.alpha is not None and config.alpha == "model":
        tile, batch_tiles = through_generator(planes.alpha.expand(3, -1, -1), alpha_channel, False, True,
                                              tile, batch_tiles)
    elif planes.alpha is not None:
        for rows, pixels in bicubic_strips(planes.alpha, generator.config.scale):
            array[rows, :, alpha_channel] = quantise(pixels, False, layout.bits)
    if layout.padded:
        array[..., -1] = 255
    return tile, batch_tiles


QUANTISE_ROWS = 256  # output rows quantised at a time
BICUBIC_CONTEXT = 3  # LR rows beyond a strip that its bicubic output rows can reach (2), plus one


def bicubic_strips(plane: torch.Tensor, scale: int, rows: int = 64) -> Iterator[tuple[slice, torch.Tensor]]:
    """F.interpolate(plane[None], scale, bicubic)[0] of (C, H, W) float, as
    (output rows, (C, rows*scale, W*scale)) strips of `rows` LR rows each: each strip is
    interpolated with BICUBIC_CONTEXT rows of context on both sides (clamped at the
    image border, as F.interpolate clamps), so the strips equal the whole."""
    height = plane.shape[1]
    for start in range(0, height, rows):
        end = min(start + rows, height)
        context_start, context_end = max(start - BICUBIC_CONTEXT, 0), min(end + BICUBIC_CONTEXT, height)
        strip = F.interpolate(plane[None, :, context_start:context_end], scale_factor=scale, mode="bicubic",
                              align_corners=False)[0]
        offset = (start - context_start) * scale
        yield slice(start * scale, end * scale), strip[:, offset:offset + (end - start) * scale]


def output_memory(height: int, width: int, layout: PixelLayout, affine: bool,
                  resized_to: tuple[int, int] | None = None) -> int:
    """Bytes `srgan upscale` holds for a model output of height x width beyond the input
    planes: the pixel array, the float colour output of an affine projection, and
    OVERHEAD for the tile windows, the model and the writer's strips; with `resized_to`
    (--outscale), the resized array too and one plane of each (Pillow's copies)."""
    needed = layout.nbytes(height, width) + (3 * 4 * height * width if affine else 0) + OVERHEAD
    if resized_to is not None:
        needed += layout.nbytes(*resized_to) + (layout.nbytes(height, width) + layout.nbytes(*resized_to)) // layout.channels
    return needed


OVERHEAD = 1 << 30  # bytes; measured at most 0.8 GB beyond the output with tile 256 (scripts/bench_upscale_memory.py)
ENCODED_FRACTION = {"PNG": 1.0, "TIFF": 1.0, "JPEG": 0.25, "WEBP": 0.25}  # of the raw bytes, upper bounds


def room_problem(source: Path, target: Path, height: int, width: int, layout: PixelLayout,
                 affine: bool, model_size: tuple[int, int] | None = None) -> str | None:
    """Why an output of height x width cannot be made: too large for its format, for the
    available memory, or for the free disk space at `target`; None if it fits.
    `model_size`: the model's output size, when --outscale resizes it to height x width."""
    file_format = FORMATS[target.suffix.lower()]
    limit = {"JPEG": 65_535, "WEBP": 16_383}.get(file_format)
    if limit is not None and max(height, width) > limit:
        return f"{source}: the {width}x{height} output is over {file_format}'s {limit:,}-pixel side limit; use --ext png"
    needed = (output_memory(height, width, layout, affine) if model_size is None
              else output_memory(*model_size, layout, affine, resized_to=(height, width)))
    available = available_memory()
    if file_format == "WEBP" and layout.grey:  # Pillow's WebP encoder converts grey to RGB(A), 4 bytes a pixel
        needed += 4 * height * width
    if available is not None and needed > available:
        return (f"{source}: the {width}x{height} output needs {format_bytes(needed)} of memory, "
                f"{format_bytes(available)} is available")
    encoded = int(layout.nbytes(height, width) * (layout.channels - layout.padded) / layout.channels
                  * ENCODED_FRACTION[file_format])
    folder = existing_ancestor(target.parent)
    free = shutil.disk_usage(folder).free
    if encoded > free:
        return (f"{target}: the output may need up to {format_bytes(encoded)} on disk, "
                f"{format_bytes(free)} is free in {folder}")
    return None


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path | None = None
    problem: str | None = None  # why it cannot run, found before any upscaling


@dataclass
class UpscaleReport:
    written: list[Path] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)  # one line per bad input

    @property
    def total(self) -> int:
        return len(self.written) + len(self.failed)


def upscale_files(config: UpscaleConfig, console: Console | None = None) -> UpscaleReport:
    """Upscale every image in `config.inputs`. Problems with the setup (options,
    weights, device, an unusable -o) raise UserError; a bad input is reported on
    `console` as one line and skipped, and the others still run."""
    console = console or Console(stderr=True)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    weights = Path(config.weights) if config.weights else choose_shipped(config.model, config.scale, config.outscale)
    generator = load_generator(weights, device)  # eval, channels_last, finite weights checked
    scale = generator.config.scale
    if config.scale is not None and config.scale != scale:
        raise UserError(f"--scale {config.scale} does not match {weights}, a x{scale} generator; "
                        f"leave --scale out or use --scale {scale}")
    if config.outscale is not None and config.outscale > MAX_OUTSCALE_RATIO * scale:
        raise UserError(f"--outscale {config.outscale:g} is over {MAX_OUTSCALE_RATIO}x the x{scale} model's scale "
                        f"(the rest would be interpolation blur); use --outscale {MAX_OUTSCALE_RATIO * scale} "
                        f"at most, or a model of a larger scale")
    # Mode flag, set once: cuDNN tunes the few window shapes.
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    radius = receptive_radius(generator.config)
    if config.overlap is not None and config.overlap < radius:
        warnings.warn(f"--overlap {config.overlap} is below this generator's receptive radius {radius}: "
                      "the output will differ from the untiled one and seams may show")
    jobs = plan_jobs(config, output_label(scale, config.outscale), console)
    report = UpscaleReport()
    tile, batch_tiles = config.tile, config.batch_tiles or (4 if device.type == "cuda" else 1)
    with _progress(console, config.progress) as progress:
        images = progress.add_task("images", total=len(jobs), info="")
        tiles = progress.add_task("tiles", total=None, info="")
        for job in jobs:
            progress.update(images, info=job.source.name)
            if job.problem is not None:  # already reported by plan_jobs
                report.failed.append(job.problem)
                progress.advance(images)
                continue
            failure = None
            try:
                tile, batch_tiles = _upscale_file(generator, job, config, tile, batch_tiles, precision,
                                                  lambda done, total: progress.update(tiles, completed=done, total=total))
                report.written.append(job.target)
                progress.console.print(f"wrote {job.target}", highlight=False, soft_wrap=True)
            except UserError as error:
                failure = str(error)
            except torch.cuda.OutOfMemoryError:
                failure = f"{job.source}: CUDA out of memory even with --tile {min(tile, MIN_TILE)} --batch-tiles 1"
            except MemoryError:
                failure = f"{job.source}: out of memory while upscaling (taken by other processes meanwhile?)"
            except RuntimeError as error:  # torch's CPU allocator does not raise MemoryError
                if "can't allocate memory" not in str(error):
                    raise
                failure = f"{job.source}: out of memory while upscaling (taken by other processes meanwhile?)"
            except FloatingPointError as error:
                failure = f"{job.source}: {error}"
            if failure is not None:
                report.failed.append(failure)
                progress.console.print(f"[red]error:[/] {failure}", highlight=False, soft_wrap=True)
            progress.advance(images)
    return report


def output_label(scale: int, outscale: float | None) -> str:
    """The output's scale as output names carry it (NAME_x<label>.EXT): 4, or 3.5 with --outscale 3.5."""
    return str(scale) if outscale is None else f"{outscale:g}"


def output_size(height: int, width: int, scale: int, outscale: float | None) -> tuple[int, int]:
    """The written image's height and width for an input of height x width."""
    if outscale is None:
        return height * scale, width * scale
    return max(1, round(height * outscale)), max(1, round(width * outscale))


def plan_jobs(config: UpscaleConfig, label: str, console: Console) -> list[Job]:
    """Input images and their output paths (NAME_x<label>.EXT), in input order. Files named as inputs are
    tried whatever their extension; in folders only image extensions count (notes about
    the rest go to `console`). A bad input becomes a Job with a problem, printed at once;
    an unusable -o raises UserError."""
    out = Path(config.out) if config.out else None
    one_file = len(config.inputs) == 1 and not Path(config.inputs[0]).is_dir()
    out_is_file = out is not None and one_file and out.suffix != "" and not out.is_dir()
    if out is not None:
        if out_is_file and out.suffix.lower() not in FORMATS:
            raise UserError(f"-o {out}: unknown image extension; use .png, .jpg, .webp or .tiff, or a folder")
        if out_is_file and config.ext != "auto" and FORMATS[out.suffix.lower()] != FORMATS["." + config.ext]:
            raise UserError(f"--ext {config.ext} contradicts -o {out}")
        if not out_is_file and out.exists() and not out.is_dir():
            why = ("there are several inputs" if len(config.inputs) > 1 else "the input is a folder" if not one_file
                   else "a name without an image extension is a folder")
            raise UserError(f"-o {out}: is a file, not a folder ({why}); name a folder, or a new file for one input")
        _check_writable(out.parent if out_is_file else out)
    sources: list[Path | Job] = []
    for text in config.inputs:
        path = Path(text)
        if path.is_dir():
            sources += _folder_images(path, label, console)
        elif not path.exists():
            sources.append(Job(path, problem=f"{path}: no such file or folder"))
        elif not path.is_file():  # a FIFO would block the read forever, a device read without end
            sources.append(Job(path, problem=f"{path}: not a regular file or folder; give image files or folders"))
        else:
            sources.append(path)  # whatever its name: Pillow tells whether it is an image
    jobs, seen, targets = [], set(), {}
    for source in sources:
        if isinstance(source, Job):
            jobs.append(source)
            continue
        if source.resolve() in seen:
            continue
        seen.add(source.resolve())
        suffix = ("." + config.ext) if config.ext != "auto" else source.suffix.lower()
        suffix = suffix if suffix in FORMATS else ".png"
        name = f"{source.stem}_x{label}{suffix}"
        target = out if out_is_file else (out or source.parent) / name
        problem = None
        if target.exists() and os.path.samefile(target, source):  # the same file, by any path or link
            problem = f"{source}: the output {target} is the input itself; name another output"
        elif target.resolve() in targets:
            problem = f"{source}: its output {target} is also the output of {targets[target.resolve()]}"
        elif target.exists() and not config.force:
            problem = f"{target}: already exists (use --force to overwrite)"
        elif out is None:
            problem = _writable_problem(target.parent)
        targets.setdefault(target.resolve(), source)
        jobs.append(Job(source, target, problem))
    for job in jobs:  # setup problems show at once, not after hours of upscaling
        if job.problem is not None:
            console.print(f"[red]error:[/] {job.problem}", highlight=False, soft_wrap=True)
    return jobs


def _folder_images(folder: Path, label: str, console: Console) -> list[Path | Job]:
    """Image files directly in `folder`, sorted, without hidden files and without
    earlier outputs (NAME_x4.png next to NAME.*), wherever this run's outputs go:
    with -o they would otherwise be upscaled again (x16 images)."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as error:
        return [Job(folder, problem=f"{folder}: cannot list this folder ({error.strerror or error})")]
    images = [p for p in files if is_image_path(p)]
    stems = {p.stem for p in images}
    earlier = re.compile(rf"(.+)_x{re.escape(label)}")
    outputs = [p for p in images if (match := earlier.fullmatch(p.stem)) and match[1] in stems]
    if not images:
        return [Job(folder, problem=f"{folder}: no images (png/jpg/bmp/webp/tiff) in this folder")]
    skipped = len(files) - len(images)
    if skipped:
        console.print(f"[yellow]note:[/] skipped {skipped} non-image file{'s' * (skipped > 1)} in {folder}",
                      highlight=False, soft_wrap=True)
    if outputs:
        console.print(f"[yellow]note:[/] skipped {len(outputs)} earlier output{'s' * (len(outputs) > 1)} "
                      f"(*_x{label}.*) in {folder}", highlight=False, soft_wrap=True)
    return [p for p in images if p not in outputs]


def _writable_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (made on the first write if missing), or None."""
    existing = existing_ancestor(folder)
    if not existing.is_dir():
        return f"{folder}: cannot create this output folder ({existing} is a file)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder}: output folder is not writable"
    return None


def _check_writable(folder: Path) -> None:
    problem = _writable_problem(folder)
    if problem is not None:
        raise UserError(problem)


def _upscale_file(generator: Generator, job: Job, config: UpscaleConfig, tile: int, batch_tiles: int,
                  precision: str, progress: TileProgress) -> tuple[int, int]:
    """Read, check the room for, upscale (and with --outscale, resize) and write one input.
    Peak memory: the input planes, the output's integer array (see output_memory) and the
    tile windows. Returns the tile and batch_tiles that fitted."""
    planes = read_planes(job.source, config.max_pixels)
    file_format = FORMATS[job.target.suffix.lower()]
    if planes.alpha is not None and file_format == "JPEG":
        raise UserError(f"{job.source}: has an alpha channel, which JPEG cannot store; use --ext png or webp")
    layout = PixelLayout.of(planes.grey, planes.alpha is not None, planes.bits, file_format)
    scale, (input_height, input_width) = generator.config.scale, planes.colour.shape[1:]
    model_size = (input_height * scale, input_width * scale)
    height, width = output_size(input_height, input_width, scale, config.outscale)
    resized = (height, width) != model_size
    problem = room_problem(job.source, job.target, height, width, layout, generator.config.projection == "affine",
                           model_size if resized else None)
    if problem is not None:
        raise UserError(problem)
    array = np.empty(layout.shape(*model_size), layout.dtype)  # pages are taken as tiles fill them
    tile, batch_tiles = upscale_into(generator, planes, array, layout, config, tile, batch_tiles, precision, progress)
    if resized:
        array = resize_array(array, height, width)
    icc_profile = planes.icc_profile
    del planes  # the writer needs the array alone
    remove_stale_temporaries(job.target)
    try:
        write_array(array, layout, job.target, icc_profile, overwrite=config.force)
    except OSError as error:
        raise UserError(f"{job.target}: cannot write ({error.strerror or error})") from None
    return tile, batch_tiles


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))
