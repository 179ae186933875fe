"""Seamless tiled inference with bounded device memory: `upscale(generator, image)`.

The LR image is cut into tiles; each runs on a window with `overlap` pixels of context
on every side that is not the image border. With the overlap at the generator's
receptive radius every output pixel sees exactly the inputs it sees in one untiled
forward, so the stitched output equals it. Windows of one shape run in batches on
the device, so device memory is bounded by one batch of windows whatever the image size.
The library's `upscale` returns floats; `srgan upscale` (upscale_files.py) quantises
each tile into the array it writes."""

from __future__ import annotations

import warnings
from typing import Callable, TypeVar

import torch

from srgan_noise.base.errors import UserError
from srgan_noise.inference.tiles import plan_tiles, tile_batches
from srgan_noise.models.generator import Generator, Sides, receptive_radius
from srgan_noise.models.projection import project_in_place

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 32  # the out-of-memory fallback halves the tile down to this

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in the image)
T = TypeVar("T")


TileStore = Callable[[slice, slice, torch.Tensor], None]  # (output rows, output columns, (3, h, w) float)


def upscale(generator: Generator, image: torch.Tensor, tile: int = 256, overlap: int | None = None,
            batch_tiles: int = 4, precision: str = "fp32", progress: TileProgress | None = None) -> torch.Tensor:
    """Super-resolve (3, H, W) float in [0, 1] tile by tile -> (3, H*scale, W*scale)
    float32 on the CPU, unclamped like the generator's output.

    The generator (eval mode, on its device) sees windows of at most
    (tile + 2*overlap)^2 LR pixels, `batch_tiles` at a time, in channels_last.
    With `overlap` None (the receptive radius) the output equals generator(image[None])[0];
    an affine projection runs once, on the assembled output (it is global along each axis).
    `precision` fp16/bf16 autocasts; a batch whose output is not finite is redone in fp32.
    Errors propagate (torch.cuda.OutOfMemoryError included; see upscale_fitting_memory).
    `upscale_files` does not hold this float output: see upscale_into."""
    scale = generator.config.scale
    output = torch.empty(3, image.shape[1] * scale, image.shape[2] * scale)  # on the CPU, outside inference mode

    def store(rows: slice, columns: slice, pixels: torch.Tensor) -> None:
        output[:, rows, columns] = pixels

    upscale_tiles(generator, image, store, tile, overlap, batch_tiles, precision, progress)
    if generator.config.projection == "affine":  # global along each axis: on the assembled output, exactly
        project_in_place(output, image.float().cpu(), scale)
    return output


def upscale_tiles(generator: Generator, image: torch.Tensor, store: TileStore, tile: int = 256,
                  overlap: int | None = None, batch_tiles: int = 4, precision: str = "fp32",
                  progress: TileProgress | None = None) -> None:
    """The tiled forward of `upscale` without its projection: hands each tile's part of
    the (3, H*scale, W*scale) output, float32 on the CPU, to `store` as it is made."""
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
    done = redone = 0
    batches = tile_batches(tiles, batch_tiles)
    with torch.inference_mode():
        for batch in batches:
            windows = torch.stack([image[:, t.input_start_y_pad:t.input_end_y_pad, t.input_start_x_pad:t.input_end_x_pad]
                                   for t in batch])
            windows = windows.to(device, torch.float32).contiguous(memory_format=torch.channels_last)
            # The generator crops the context all windows of the batch have, layer by layer
            # (forward_window); the rest of each window's context is cropped here.
            shared = tuple(min(side) for side in zip(*(t.context for t in batch)))
            result, was_redone = forward_finite(generator, windows, shared, precision)
            redone += was_redone
            result = result.float().cpu()  # a CPU-GPU sync point, once per batch
            for t, window_output in zip(batch, result):
                output_start_y, output_end_y = t.input_start_y * scale, t.input_end_y * scale
                output_start_x, output_end_x = t.input_start_x * scale, t.input_end_x * scale
                output_start_y_tile = (t.context[0] - shared[0]) * scale
                output_end_y_tile = output_start_y_tile + (output_end_y - output_start_y)
                output_start_x_tile = (t.context[2] - shared[2]) * scale
                output_end_x_tile = output_start_x_tile + (output_end_x - output_start_x)
                store(slice(output_start_y, output_end_y), slice(output_start_x, output_end_x),
                      window_output[:, output_start_y_tile:output_end_y_tile, output_start_x_tile:output_end_x_tile])
            del windows, result  # before the next batch's, not beside them
            done += len(batch)
            if progress is not None:
                progress(done, len(tiles))
    if redone:
        warnings.warn(f"{precision} output was not finite in {redone} of {len(batches)} tile batches; "
                      "those were recomputed in fp32")


def forward_finite(generator: Generator, windows: torch.Tensor, context: Sides,
                   precision: str) -> tuple[torch.Tensor, bool]:
    """generator.forward_window(windows, context), the tiles' output, autocast to `precision`;
    an output with inf or NaN (fp16 overflow, which would be written as black) is
    recomputed in fp32. Returns the output and whether it was recomputed."""
    if precision != "fp32":
        with torch.autocast(windows.device.type, dtype=AUTOCAST_DTYPES[precision]):
            output = generator.forward_window(windows, context)
        if all_finite(output):  # a sync point; the price of never writing black tiles
            return output, False
    output = generator.forward_window(windows, context)
    if not all_finite(output):
        raise FloatingPointError("the generator's output is not finite even in fp32 (non-finite input or weights)")
    return output, precision != "fp32"


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every element is finite. A sum is finite only if every term is (an inf or NaN
    makes it inf or NaN), so one float32 sum, a single pass, settles the usual case; only a
    sum that is not finite (a bad element, or finite ones overflowing it) takes the exact check."""
    return bool(torch.isfinite(tensor.sum(dtype=torch.float32))) or bool(torch.isfinite(tensor).all())


def upscale_fitting_memory(generator: Generator, image: torch.Tensor, tile: int, overlap: int | None,
                           batch_tiles: int, precision: str = "fp32",
                           progress: TileProgress | None = None) -> tuple[torch.Tensor, int, int]:
    """upscale(), retried after a CUDA out-of-memory error with half the tiles per
    batch, then (at one a batch) half the tile, down to MIN_TILE; the error propagates
    after that. Returns the output and the tile and batch_tiles that fitted."""
    return fitting_memory(lambda tile, batch_tiles: upscale(generator, image, tile, overlap, batch_tiles, precision,
                                                            progress), tile, batch_tiles)


def fitting_memory(run: Callable[[int, int], T], tile: int, batch_tiles: int) -> tuple[T, int, int]:
    """run(tile, batch_tiles), retried as upscale_fitting_memory describes."""
    while True:
        try:
            return run(tile, batch_tiles), tile, batch_tiles
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
