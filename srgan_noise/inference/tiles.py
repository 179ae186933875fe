"""How an image is cut into tiles for seamless tiled inference: each tile owns a
region of the LR image and runs on a larger window, the region plus context."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """LR rows and columns [start, end) that a tile owns, and its window: the owned
    region plus context, the part of the image the generator runs on."""

    input_start_y: int
    input_end_y: int
    input_start_x: int
    input_end_x: int
    input_start_y_pad: int
    input_end_y_pad: int
    input_start_x_pad: int
    input_end_x_pad: int

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.input_end_y_pad - self.input_start_y_pad, self.input_end_x_pad - self.input_start_x_pad

    @property
    def context(self) -> tuple[int, int, int, int]:
        """LR pixels of the window beyond the tile: top, bottom, left, right (0 at the image border)."""
        return (self.input_start_y - self.input_start_y_pad, self.input_end_y_pad - self.input_end_y,
                self.input_start_x - self.input_start_x_pad, self.input_end_x_pad - self.input_end_x)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, start_pad, end_pad) of each tile along an axis of `length` pixels.

    The axis is cut into ceil(length / tile) equal parts (the last may be shorter).
    A window reaches `overlap` pixels past its part on both sides; at the image border
    it is shifted inward rather than cut, so windows come in two lengths (edge and
    interior) and batch together, and each still holds all the context its part needs."""
    count = math.ceil(length / tile)
    part = math.ceil(length / count)
    spans = []
    for index in range(count):
        start, end = index * part, min((index + 1) * part, length)
        sides = 1 if index in (0, count - 1) else 2  # context sides that are not the border
        window = min(part + sides * overlap, length)
        start_pad = min(max(start - overlap, 0), length - window)
        spans.append((start, end, start_pad, start_pad + window))
    return spans


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    return [Tile(start_y, end_y, start_x, end_x, start_y_pad, end_y_pad, start_x_pad, end_x_pad)
            for start_y, end_y, start_y_pad, end_y_pad in tile_spans(height, tile, overlap)
            for start_x, end_x, start_x_pad, end_x_pad in tile_spans(width, tile, overlap)]


def tile_batches(tiles: list[Tile], batch_tiles: int) -> list[list[Tile]]:
    """Tiles grouped by window shape (at most four), then cut into batches."""
    groups: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        groups.setdefault(tile.window_shape, []).append(tile)
    return [group[i:i + batch_tiles] for group in groups.values() for i in range(0, len(group), batch_tiles)]
