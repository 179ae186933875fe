"""`srgan upscale`: seamless tiled inference with bounded device memory.

The LR image is cut into tiles; each runs on a window with `overlap` pixels of context
on every side that is not the image border. With the overlap at the generator's
receptive radius every output pixel sees exactly the inputs it sees in one untiled
forward, so the stitched output equals it. Windows of one shape run in batches on
the device and the output is assembled on the CPU, so device memory is bounded by one
batch of windows whatever the image size."""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from srgan_noise.errors import UserError
from srgan_noise.generator import Generator, receptive_radius
from srgan_noise.image_planes import DEFAULT_MAX_PIXELS, FORMATS, ImagePlanes, read_planes, write_planes
from srgan_noise.images import is_image_path
from srgan_noise.projection import project_in_place
from srgan_noise.tiles import plan_tiles, tile_batches
from srgan_noise.train import resolve_device
from srgan_noise.weights import load_generator, shipped_weights

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 32  # the out-of-memory fallback halves the tile down to this

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in the image)


@dataclass(frozen=True)
class UpscaleConfig:
    inputs: tuple[str, ...]  # image files and folders of images
    out: str | None = None  # a file for one input file, else a folder; None: beside each input
    weights: str | None = None  # None: the shipped weights of `model`
    model: str = "gan"  # gan | psnr: which shipped weights, when `weights` is None
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
        if not self.inputs:
            raise UserError("no inputs given")


def upscale(generator: Generator, image: torch.Tensor, tile: int = 256, overlap: int | None = None,
            batch_tiles: int = 4, precision: str = "fp32", progress: TileProgress | None = None) -> torch.Tensor:
    """Super-resolve (3, H, W) float in [0, 1] tile by tile -> (3, H*scale, W*scale)
    float32 on the CPU, unclamped like the generator's output.

    The generator (eval mode, on its device) sees windows of at most
    (tile + 2*overlap)^2 LR pixels, `batch_tiles` at a time, in channels_last.
    With `overlap` None (the receptive radius) the output equals generator(image[None])[0];
    an affine projection runs once, on the assembled output (it is global along each axis).
    `precision` fp16/bf16 autocasts; a batch whose output is not finite is redone in fp32.
    Errors propagate (torch.cuda.OutOfMemoryError included; see upscale_fitting_memory)."""
    if image.ndim != 3 or image.shape[0] != 3 or 0 in image.shape:
        raise ValueError(f"image must be (3, H, W) with H, W >= 1, got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be float in [0, 1], got {image.dtype}")
    if tile < 1 or batch_tiles < 1 or (overlap is not None and overlap < 0):
        raise ValueError(f"need tile >= 1, batch_tiles >= 1, overlap >= 0; got {tile}, {batch_tiles}, {overlap}")
    if precision not in ("fp32", *AUTOCAST_DTYPES):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    scale = generator.config.scale
    overlap = receptive_radius(generator.config) if overlap is None else overlap
    device = next(generator.parameters()).device
    _, height, width = image.shape
    tiles = plan_tiles(height, width, tile, overlap)
    output = torch.empty(3, height * scale, width * scale)  # on the CPU, outside inference mode
    done = redone = 0
    batches = tile_batches(tiles, batch_tiles)
    with torch.inference_mode():
        for batch in batches:
            windows = torch.stack([image[:, t.input_start_y_pad:t.input_end_y_pad, t.input_start_x_pad:t.input_end_x_pad]
                                   for t in batch])
            windows = windows.to(device, torch.float32).contiguous(memory_format=torch.channels_last)
            result, was_redone = forward_finite(generator, windows, precision)
            redone += was_redone
            result = result.float().cpu()  # a CPU-GPU sync point, once per batch
            for t, window_output in zip(batch, result):
                output_start_y, output_end_y = t.input_start_y * scale, t.input_end_y * scale
                output_start_x, output_end_x = t.input_start_x * scale, t.input_end_x * scale
                output_start_y_tile = (t.input_start_y - t.input_start_y_pad) * scale
                output_end_y_tile = output_start_y_tile + (output_end_y - output_start_y)
                output_start_x_tile = (t.input_start_x - t.input_start_x_pad) * scale
                output_end_x_tile = output_start_x_tile + (output_end_x - output_start_x)
                output[:, output_start_y:output_end_y, output_start_x:output_end_x] = \
                    window_output[:, output_start_y_tile:output_end_y_tile, output_start_x_tile:output_end_x_tile]
            done += len(batch)
            if progress is not None:
                progress(done, len(tiles))
    if generator.config.projection == "affine":  # global along each axis: on the assembled output, exactly
        project_in_place(output, image.float().cpu(), scale)
    if redone:
        warnings.warn(f"{precision} output was not finite in {redone} of {len(batches)} tile batches; "
                      "those were recomputed in fp32")
    return output


def forward_finite(generator: Generator, windows: torch.Tensor, precision: str) -> tuple[torch.Tensor, bool]:
    """generator(windows) autocast to `precision`; an output with inf or NaN (fp16
    overflow, which would be written as black) is recomputed in fp32.
    Returns the output and whether it was recomputed."""
    if precision != "fp32":
        with torch.autocast(windows.device.type, dtype=AUTOCAST_DTYPES[precision]):
            output = generator(windows, project=False)
        if bool(torch.isfinite(output).all()):  # a sync point; the price of never writing black tiles
            return output, False
    output = generator(windows, project=False)
    if not bool(torch.isfinite(output).all()):
        raise FloatingPointError("the generator's output is not finite even in fp32 (non-finite input or weights)")
    return output, precision != "fp32"


def upscale_fitting_memory(generator: Generator, image: torch.Tensor, tile: int, overlap: int | None,
                           batch_tiles: int, precision: str = "fp32",
                           progress: TileProgress | None = None) -> tuple[torch.Tensor, int, int]:
    """upscale(), retried after a CUDA out-of-memory error with half the tiles per
    batch, then (at one a batch) half the tile, down to MIN_TILE; the error propagates
    after that. Returns the output and the tile and batch_tiles that fitted."""
    while True:
        try:
            return upscale(generator, image, tile, overlap, batch_tiles, precision, progress), tile, batch_tiles
        except torch.cuda.OutOfMemoryError:
            if batch_tiles == 1 and tile <= MIN_TILE:
                raise
        # Out of the except block, so the failed batch's tensors are already freed.
        torch.cuda.empty_cache()
        if batch_tiles > 1:
            batch_tiles //= 2
        else:
            tile = max(tile // 2, MIN_TILE)
        warnings.warn(f"CUDA out of memory; retrying with --batch-tiles {batch_tiles} --tile {tile}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto is fp16 on CUDA (non-finite batches fall back to fp32) and fp32 on the CPU."""
    if device.type != "cuda":
        if precision == "fp16":
            raise UserError("--precision fp16 does not run on the CPU; use fp32 (the default there) or bf16")
        return "fp32" if precision == "auto" else precision
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32")
    return "fp16" if precision == "auto" else precision


def upscale_planes(generator: Generator, planes: ImagePlanes, config: UpscaleConfig, tile: int, batch_tiles: int,
                   precision: str, progress: TileProgress | None = None) -> tuple[ImagePlanes, int, int]:
    """Colour through the generator, alpha bicubic or through the generator too.
    Returns the upscaled planes and the tile and batch_tiles that fitted in memory."""
    colour, tile, batch_tiles = upscale_fitting_memory(generator, planes.colour, tile, config.overlap,
                                                       batch_tiles, precision, progress)
    alpha = planes.alpha
    if alpha is not None and config.alpha == "model":
        alpha, tile, batch_tiles = upscale_fitting_memory(generator, alpha.expand(3, -1, -1), tile, config.overlap,
                                                          batch_tiles, precision, progress)
        alpha = alpha.mean(0, keepdim=True)
    elif alpha is not None:
        alpha = F.interpolate(alpha[None], scale_factor=generator.config.scale, mode="bicubic", align_corners=False)[0]
    return dataclasses.replace(planes, colour=colour, alpha=alpha), tile, batch_tiles


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
    weights = Path(config.weights) if config.weights else shipped_weights(config.model)
    generator = load_generator(weights, device)  # eval, channels_last, finite weights checked
    # Mode flag, set once: cuDNN tunes the few window shapes.
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    radius = receptive_radius(generator.config)
    if config.overlap is not None and config.overlap < radius:
        warnings.warn(f"--overlap {config.overlap} is below this generator's receptive radius {radius}: "
                      "the output will differ from the untiled one and seams may show")
    jobs = plan_jobs(config, generator.config.scale, console)
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
            try:
                planes = read_planes(job.source, config.max_pixels)
                if planes.alpha is not None and FORMATS[job.target.suffix.lower()] == "JPEG":
                    raise UserError(f"{job.source}: has an alpha channel, which JPEG cannot store; use --ext png or webp")
                upscaled, tile, batch_tiles = upscale_planes(
                    generator, planes, config, tile, batch_tiles, precision,
                    lambda done, total: progress.update(tiles, completed=done, total=total))
                _write(upscaled, job.target)
                report.written.append(job.target)
                progress.console.print(f"wrote {job.target}", highlight=False, soft_wrap=True)
            except UserError as error:
                report.failed.append(str(error))
                progress.console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            except torch.cuda.OutOfMemoryError:
                report.failed.append(f"{job.source}: CUDA out of memory even with --tile {min(tile, MIN_TILE)} "
                                     "--batch-tiles 1")
                progress.console.print(f"[red]error:[/] {report.failed[-1]}", highlight=False, soft_wrap=True)
            progress.advance(images)
    return report


def plan_jobs(config: UpscaleConfig, scale: int, console: Console) -> list[Job]:
    """Input images and their output paths, in input order. Files named as inputs are
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
            raise UserError(f"-o {out}: not a folder, and there are several inputs")
        _check_writable(out.parent if out_is_file else out)
    sources: list[Path | Job] = []
    for text in config.inputs:
        path = Path(text)
        if path.is_dir():
            sources += _folder_images(path, scale, beside=out is None, console=console)
        elif not path.exists():
            sources.append(Job(path, problem=f"{path}: no such file or folder"))
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
        name = f"{source.stem}_x{scale}{suffix}"
        target = out if out_is_file else (out or source.parent) / name
        problem = None
        if target.resolve() in targets:
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


def _folder_images(folder: Path, scale: int, beside: bool, console: Console) -> list[Path | Job]:
    """Image files directly in `folder`, sorted, without hidden files, and, when outputs
    go beside their inputs, without earlier outputs (NAME_x4.png next to NAME.*)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if is_image_path(p)]
    stems = {p.stem for p in images}
    earlier = re.compile(rf"(.+)_x{scale}")
    outputs = [p for p in images if beside and (match := earlier.fullmatch(p.stem)) and match[1] in stems]
    if not images:
        return [Job(folder, problem=f"{folder}: no images (png/jpg/bmp/webp/tiff) in this folder")]
    skipped = len(files) - len(images)
    if skipped:
        console.print(f"[yellow]note:[/] skipped {skipped} non-image file{'s' * (skipped > 1)} in {folder}",
                      highlight=False, soft_wrap=True)
    if outputs:
        console.print(f"[yellow]note:[/] skipped {len(outputs)} earlier output{'s' * (len(outputs) > 1)} "
                      f"(*_x{scale}.*) in {folder}", highlight=False, soft_wrap=True)
    return [p for p in images if p not in outputs]


def _writable_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (made on the first write if missing), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{folder}: cannot create this output folder ({existing} is a file)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder}: output folder is not writable"
    return None


def _check_writable(folder: Path) -> None:
    problem = _writable_problem(folder)
    if problem is not None:
        raise UserError(problem)


def _write(planes: ImagePlanes, target: Path) -> None:
    try:
        write_planes(planes, target)
    except OSError as error:
        raise UserError(f"{target}: cannot write ({error.strerror or error})") from None


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))
