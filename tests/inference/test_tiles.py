import pytest

from srgan_noise.inference.tiles import plan_tiles, tile_batches, tile_spans


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33, 100])
@pytest.mark.parametrize("tile", [1, 3, 8, 16, 50, 256])
@pytest.mark.parametrize("overlap", [0, 1, 5, 12])
def test_spans_cover_the_axis_with_enough_context(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(end == next_start for (_, end, _, _), (next_start, *_) in zip(spans, spans[1:]))
    for start, end, start_pad, end_pad in spans:
        assert 0 <= start_pad <= start < end <= end_pad <= length
        assert end - start <= tile
        assert start_pad <= max(start - overlap, 0) and end_pad >= min(end + overlap, length)
    assert len({end_pad - start_pad for _, _, start_pad, end_pad in spans}) <= 2  # edge and interior


def test_spans_smoke():
    assert tile_spans(300, 256, 40) == [(0, 150, 0, 190), (150, 300, 110, 300)]
    assert tile_spans(10, 256, 40) == [(0, 10, 0, 10)]


def test_batches_share_a_window_shape():
    tiles = plan_tiles(70, 45, 16, 5)
    batches = tile_batches(tiles, 3)
    flat = [t for batch in batches for t in batch]
    assert len(flat) == len(tiles) and set(flat) == set(tiles)
    assert all(len(batch) <= 3 and len({t.window_shape for t in batch}) == 1 for batch in batches)
    assert len({t.window_shape for t in tiles}) <= 4
