import os

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from srgan_noise.base.errors import UserError
from srgan_noise.inference.image_planes import (ImagePlanes, PixelLayout, quantise, read_planes,
                                                remove_stale_temporaries, write_planes)


def _pixels(rng, shape, dtype=np.uint8):
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def _planes(channels: int, bits: int, grey: bool = False) -> ImagePlanes:
    rng = np.random.default_rng(0)
    peak = 2**bits - 1
    values = torch.from_numpy(rng.integers(0, peak + 1, (channels, 6, 9)).astype(np.float32) / peak)
    colour = values[:1].expand(3, -1, -1) if grey else values[:3]
    alpha = values[-1:] if channels in (2, 4) else None
    return ImagePlanes(colour.contiguous(), alpha, grey=grey, bits=bits)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels, bits, grey, mode", [
    (1, 8, True, "L"), (2, 8, True, "LA"), (3, 8, False, "RGB"), (4, 8, False, "RGBA"),
    (1, 16, True, "I;16"), (3, 16, False, "RGB;16"), (4, 16, False, "RGBA;16"),
])
def test_lossless_round_trip(tmp_path, suffix, channels, bits, grey, mode):
    planes = _planes(channels, bits, grey)
    write_planes(planes, tmp_path / f"image{suffix}")
    back = read_planes(tmp_path / f"image{suffix}")
    assert back.mode == planes.mode == mode
    torch.testing.assert_close(back.colour, planes.colour, atol=0.5 / 65535, rtol=0)
    if planes.alpha is not None:
        torch.testing.assert_close(back.alpha, planes.alpha, atol=0.5 / 65535, rtol=0)


def test_16_bit_png_high_bytes_match_pillow(tmp_path):
    planes = _planes(3, 16)
    write_planes(planes, tmp_path / "deep.png")
    high = np.asarray(Image.open(tmp_path / "deep.png"))  # Pillow keeps the high byte of each sample
    ours = (read_planes(tmp_path / "deep.png").colour * 65535).round().to(torch.int32).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours >> 8, high)


def test_16_bit_tiff_orientation(tmp_path):
    array = _pixels(np.random.default_rng(1), (5, 8, 3), np.uint16)
    tifffile.imwrite(tmp_path / "oriented.tif", array, photometric="rgb", extratags=[(274, "H", 1, 6, False)])
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "oriented.tif")))  # 8-bit, rotated
    planes = read_planes(tmp_path / "oriented.tif")
    assert planes.mode == "RGB;16" and planes.colour.shape == (3, 8, 5)
    ours = (planes.colour * 65535).round().to(torch.int32).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours >> 8, expected)


def test_palette_and_exif_orientation(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(_pixels(rng, (4, 7, 3))).convert("P").save(tmp_path / "palette.png")
    assert read_planes(tmp_path / "palette.png").mode == "RGB"
    Image.fromarray(_pixels(rng, (4, 7, 3))).convert("P").save(tmp_path / "clear.png", transparency=0)
    assert read_planes(tmp_path / "clear.png").mode == "RGBA"
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(_pixels(rng, (4, 7, 3))).save(tmp_path / "turned.jpg", exif=exif)
    assert read_planes(tmp_path / "turned.jpg").colour.shape == (3, 7, 4)


def test_icc_profile_is_kept(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 3)).save(tmp_path / "tagged.png", icc_profile=profile)
    write_planes(read_planes(tmp_path / "tagged.png"), tmp_path / "copy.png")
    assert Image.open(tmp_path / "copy.png").info.get("icc_profile") == profile


def test_exception(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match=r"big.png: 40x30 is 1,200 pixels, over the limit of 1,000 .*--max-pixels"):
        read_planes(tmp_path / "big.png", max_pixels=1000)
    with pytest.raises(UserError, match="JPEG cannot store the alpha channel"):
        write_planes(_planes(4, 8), tmp_path / "out.jpg")
    with pytest.raises(UserError, match="unknown image extension"):
        write_planes(_planes(3, 8), tmp_path / "out.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_png_writer_streams_strips_and_pillow_reads_it(tmp_path):  # 150 rows: three strips
    rng = np.random.default_rng(3)
    for mode, shape in (("L", (150, 7)), ("LA", (150, 7, 2)), ("RGB", (150, 7, 3)), ("RGBA", (150, 7, 4))):
        array = _pixels(rng, shape)
        Image.fromarray(array).save(tmp_path / f"source_{mode}.png")
        write_planes(read_planes(tmp_path / f"source_{mode}.png"), tmp_path / f"copy_{mode}.png")
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"copy_{mode}.png")), array)
    deep = torch.from_numpy(_pixels(rng, (4, 150, 7), np.uint16).astype(np.float32) / 65535)
    write_planes(ImagePlanes(deep[:3], deep[3:], grey=False, bits=16), tmp_path / "deep.png")
    back = read_planes(tmp_path / "deep.png")
    assert back.mode == "RGBA;16" and torch.equal(back.colour, deep[:3]) and torch.equal(back.alpha, deep[3:])


def test_quantise_and_layout():
    colour = torch.tensor([[[-0.1, 0.5]], [[1.2, 0.5]], [[0.0, 0.5]]])  # (3, 1, 2), out of range at first
    assert quantise(colour, grey=False, bits=8).tolist() == [[[0, 255, 0], [128, 128, 128]]]
    luma = 0.299 * -0.1 + 0.587 * 1.2  # of the unclamped colour, then clamped
    assert quantise(colour, grey=True, bits=16).tolist() == [[[round(luma * 65535)], [32768]]]
    layout = PixelLayout.of(grey=False, alpha=False, bits=16, file_format="JPEG")
    assert (layout.bits, layout.channels, layout.padded, layout.nbytes(10, 20)) == (8, 4, True, 800)
    assert PixelLayout.of(grey=True, alpha=True, bits=16, file_format="PNG").nbytes(10, 20) == 800


def test_exclusive_write_never_replaces_a_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"the other process's output")
    with pytest.raises(UserError, match=r"out.png: already exists \(written by another process\?\); use --force"):
        write_planes(_planes(3, 8), target, overwrite=False)
    assert target.read_bytes() == b"the other process's output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left
    write_planes(_planes(3, 8), target)  # overwrite=True replaces it
    assert read_planes(target).mode == "RGB"


def test_stale_temporaries_are_removed(tmp_path):
    target = tmp_path / "a_x4.png"
    stale, fresh = tmp_path / ".a_x4.png.k3j_9xq2.png", tmp_path / ".a_x4.png.abcdefgh.png"
    other, unlike = tmp_path / ".b_x4.png.k3j_9xq2.png", tmp_path / ".a_x4.png.notmine.png"
    for path in (stale, fresh, other, unlike):
        path.write_bytes(b"half")
    for path in (stale, other, unlike):
        os.utime(path, (1, 1))
    assert remove_stale_temporaries(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (fresh, other, unlike))


def test_animated_image_warns(tmp_path):
    frames = [Image.new("RGB", (4, 3), colour) for colour in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"anim.gif: animated image with 3 frames; only the first is upscaled"):
        planes = read_planes(tmp_path / "anim.gif")
    assert planes.colour.shape == (3, 3, 4)
