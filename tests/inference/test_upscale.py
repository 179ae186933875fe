import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.cli import app
from srgan_noise.inference.image_planes import ImagePlanes, PixelLayout, quantise, read_planes, write_planes
from srgan_noise.models.generator import Generator, build_generator, receptive_radius
import srgan_noise.inference.upscale_files as upscale_files_module
from srgan_noise.inference.upscale import MIN_TILE, all_finite, resolve_precision, upscale, upscale_fitting_memory
from srgan_noise.inference.upscale_files import UpscaleConfig, bicubic_strips, room_problem, upscale_files, upscale_into
import srgan_noise.inference.weights as weights_module
from srgan_noise.inference.weights import choose_shipped, save_generator, shipped_weights


pytestmark = pytest.mark.usefixtures("one_thread")


def _generator(scale: int = 4, name: str = "tiny") -> Generator:
    """A tiny (or fast) generator in eval mode whose far context matters (full-scale Kaiming
    weights, not the 0.1-scaled init) and whose batch norms are not the identity."""
    name, _, upsample = name.partition("-")  # "tiny-pixel-shuffle": the tiny preset with PixelShuffle stages
    generator = build_generator(preset(name, scale=scale, **({"upsample": upsample} if upsample else {})))
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return generator.eval()


def _untiled(generator: Generator, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return generator(image[None])[0]


class Flaky(torch.nn.Module):
    """Wraps a generator: CUDA out-of-memory above `budget` input pixels per batch,
    NaN output under autocast if `nan_under_autocast`, NaN always if `nan_always`."""

    def __init__(self, generator, budget=None, nan_under_autocast=False, nan_always=False):
        super().__init__()
        self.generator, self.config = generator, generator.config
        self.budget, self.nan_under_autocast, self.nan_always = budget, nan_under_autocast, nan_always
        self.batch_shapes = []

    def forward_window(self, windows, context):
        self.batch_shapes.append(tuple(windows.shape))
        if self.budget is not None and windows.shape[0] * windows.shape[2] * windows.shape[3] > self.budget:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate (injected)")
        output = self.generator.forward_window(windows, context)
        if self.nan_always or (self.nan_under_autocast and torch.is_autocast_enabled(windows.device.type)):
            output = output * float("nan")
        return output


# --- library -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, height, width, tile, overlap, batch_tiles", [
    (4, 37, 23, 16, None, 4),  # not a multiple of the tile
    (4, 30, 30, 7, None, 3),  # tile below the overlap
    (4, 13, 11, 64, None, 4),  # smaller than one tile
    (4, 1, 29, 8, None, 2),  # one pixel high
    (4, 29, 1, 8, None, 1),  # one pixel wide
    (4, 33, 21, 10, 20, 5),  # overlap above the radius
    (2, 25, 18, 9, None, 4),
    (8, 12, 17, 5, None, 4),
])
@pytest.mark.parametrize("name", ["tiny", "fast", "tiny-pixel-shuffle"])
def test_tiled_equals_untiled(scale, height, width, tile, overlap, batch_tiles, name):
    generator = _generator(scale, name)
    image = torch.rand(3, height, width)
    tiled = upscale(generator, image, tile=tile, overlap=overlap, batch_tiles=batch_tiles)
    assert tiled.shape == (3, height * scale, width * scale)
    assert (tiled - _untiled(generator, image)).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["tiny", "fast", "tiny-pixel-shuffle"])
def test_overlap_below_the_radius_shows_seams(name):
    generator = _generator(name=name)
    image = torch.rand(3, 24, 24)
    tiled = upscale(generator, image, tile=8, overlap=receptive_radius(generator.config) // 2)
    assert (tiled - _untiled(generator, image)).abs().max() > 1e-2


def test_upscale_smoke():
    generator = _generator()
    calls = []
    output = upscale(generator, torch.rand(3, 20, 30), tile=8, batch_tiles=4, progress=lambda *c: calls.append(c))
    assert output.device.type == "cpu" and output.dtype == torch.float32 and not output.is_inference()
    assert calls[-1] == (12, 12) and [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_upscale_exception():
    generator = _generator()
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\) with H, W >= 1, got \(1, 5, 5\)"):
        upscale(generator, torch.rand(1, 5, 5))
    with pytest.raises(ValueError, match="image must be float in"):
        upscale(generator, torch.zeros(3, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="need tile >= 1"):
        upscale(generator, torch.rand(3, 5, 5), tile=0)
    with pytest.raises(ValueError, match="precision must be fp32, fp16 or bf16, got 'auto'"):
        upscale(generator, torch.rand(3, 5, 5), precision="auto")


def test_non_finite_autocast_output_is_redone_in_fp32():
    generator = _generator()
    image = torch.rand(3, 20, 20)
    with pytest.warns(UserWarning) as record:
        output = upscale(Flaky(generator, nan_under_autocast=True), image, tile=10, batch_tiles=2, precision="bf16")
    assert [str(w.message) for w in record] == [
        "bf16 output was not finite in 2 of 2 tile batches; those were recomputed in fp32"]
    assert (output - _untiled(generator, image)).abs().max() <= 1e-4


@pytest.mark.parametrize("values, dtype, finite", [
    ([0.5, -2.0, 1e3], torch.float32, True),
    ([3e38, 3e38, -1.0], torch.float32, True),  # finite, though their sum overflows
    ([6e4] * 4, torch.float16, True),  # finite, though their float16 sum would overflow
    ([1.0, float("inf"), 2.0], torch.float32, False),
    ([float("inf"), float("-inf")], torch.float16, False),
    ([1.0, float("nan")], torch.float32, False),
])
def test_all_finite(values, dtype, finite):
    assert all_finite(torch.tensor(values, dtype=dtype)) is finite


def test_non_finite_fp32_output_raises():
    with pytest.raises(FloatingPointError, match="not finite even in fp32"):
        upscale(Flaky(_generator(), nan_always=True), torch.rand(3, 8, 8))


def test_out_of_memory_halves_the_batch_then_the_tile():
    generator = _generator()
    image = torch.rand(3, 96, 96)
    flaky = Flaky(generator, budget=3300)  # windows: 60^2 at tile 64, at most 56^2 at tile 32
    with pytest.warns(UserWarning) as record:
        output, tile, batch_tiles = upscale_fitting_memory(flaky, image, tile=64, overlap=None, batch_tiles=4)
    assert [str(w.message) for w in record] == [f"CUDA out of memory; retrying with --batch-tiles {b} --tile {t}"
                                                for b, t in [(2, 64), (1, 64), (1, 32)]]
    assert (tile, batch_tiles) == (32, 1)
    assert (output - _untiled(generator, image)).abs().max() <= 1e-4
    assert [shape[0] for shape in flaky.batch_shapes[:3]] == [4, 2, 1]


def test_out_of_memory_gives_up_at_the_smallest_tile():
    flaky = Flaky(_generator(), budget=0)
    with pytest.warns(UserWarning), pytest.raises(torch.cuda.OutOfMemoryError):
        upscale_fitting_memory(flaky, torch.rand(3, 90, 90), tile=MIN_TILE * 2, overlap=None, batch_tiles=2)
    assert [(shape[0], shape[2]) for shape in flaky.batch_shapes] == [(2, 57), (1, 57), (1, 42)]


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(UserError, match="--precision fp16 does not run on the CPU"):
        resolve_precision("fp16", cpu)


def test_config_exception():
    with pytest.raises(UserError, match="--precision must be one of auto, fp32, fp16, bf16, got 'fp64'"):
        UpscaleConfig(inputs=("a.png",), precision="fp64")
    with pytest.raises(UserError, match="--batch-tiles must be at least 1"):
        UpscaleConfig(inputs=("a.png",), batch_tiles=0)
    with pytest.raises(UserError, match="--overlap must be auto or at least 0"):
        UpscaleConfig(inputs=("a.png",), overlap=-1)


def test_shipped_weights_missing_or_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "WEIGHTS_FOLDER", tmp_path)
    with pytest.raises(UserError, match=r"no --weights given .* `srgan train --scale 4` .*--weights RUN/generator.safetensors"):
        shipped_weights("gan")
    with pytest.raises(UserError, match=r"--model must be one of real, gan, psnr, fast, got 'best'"):
        shipped_weights("best")
    for model, name in (("gan", "srgan_x4.safetensors"), ("psnr", "srresnet_x4.safetensors"),
                        ("real", "srresnet_real_x4.safetensors")):
        (tmp_path / name).write_bytes(b"x")
        assert shipped_weights(model) == tmp_path / name
    with pytest.raises(UserError, match=r"no shipped gan x2 weights at .* \(shipped: x4\): .*`srgan train --scale 2`"):
        shipped_weights("gan", 2)


def test_shipped_weights_are_package_data():
    """The checkout's shipped files are where an installed package looks for them."""
    assert weights_module.WEIGHTS_FOLDER == Path(weights_module.__file__).parent / "pretrained"
    for model in ("gan", "psnr"):
        assert shipped_weights(model, 4).is_file()


def test_choose_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "WEIGHTS_FOLDER", tmp_path)
    for name in ("srgan_x4.safetensors", "srresnet_x2.safetensors", "srresnet_x4.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    assert choose_shipped(None, None) == tmp_path / "srgan_x4.safetensors"  # no real weights yet: gan
    assert choose_shipped("psnr", 2) == tmp_path / "srresnet_x2.safetensors"
    assert choose_shipped("psnr", None, outscale=1.5) == tmp_path / "srresnet_x2.safetensors"  # smallest >= 1.5
    assert choose_shipped("psnr", None, outscale=3) == tmp_path / "srresnet_x4.safetensors"
    assert choose_shipped("psnr", None, outscale=6) == tmp_path / "srresnet_x4.safetensors"  # the largest
    assert choose_shipped(None, None, outscale=2) == tmp_path / "srgan_x4.safetensors"  # no x2 of real or gan
    with pytest.raises(UserError, match=r"^no --weights given and no shipped x2 weights at .* \(shipped: x4\): "):
        choose_shipped(None, 2)
    (tmp_path / "srresnet_real_x4.safetensors").write_bytes(b"x")
    assert choose_shipped(None, 4) == tmp_path / "srresnet_real_x4.safetensors"  # real, once shipped
    assert choose_shipped("gan", 4) == tmp_path / "srgan_x4.safetensors"


# --- command -------------------------------------------------------------------------------------------------

SCALE = 2


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "weights" / "g.safetensors"
    save_generator(_generator(SCALE), path)
    return path


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _image(path, mode="RGB", size=(13, 9)):
    rng = np.random.default_rng(0)
    if mode in ("RGB;16", "RGBA;16"):
        channels = 3 if mode == "RGB;16" else 4
        values = torch.from_numpy(rng.random((channels, size[1], size[0]), dtype=np.float32))
        write_planes(ImagePlanes(values[:3], values[3:] if channels == 4 else None, grey=False, bits=16), path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, size[::-1], dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _run(*args):
    result = CliRunner().invoke(app, ["upscale", "--no-progress", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode, suffix", [("RGB", ".png"), ("RGBA", ".png"), ("L", ".png"), ("LA", ".png"),
                                          ("I;16", ".png"), ("RGB;16", ".png"), ("RGBA;16", ".tif"),
                                          ("I;16", ".tif"), ("RGB", ".jpg")])
def test_command_keeps_mode_and_scales_size(work, weights, mode, suffix):
    source = _image(work / f"in{suffix}", mode)
    result = _run(source, "--weights", weights, "--tile", 5)
    assert result.exit_code == 0, result.stderr
    target = work / f"in_x{SCALE}{suffix}"
    assert result.stderr.splitlines() == [f"wrote {target}"]
    planes = read_planes(target)
    assert planes.mode == mode and planes.colour.shape[1:] == (9 * SCALE, 13 * SCALE)


def test_command_palette_exif_alpha_model_and_ext(work, weights):
    Image.open(_image(work / "palette.png", "RGB")).convert("P").save(work / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(_image(work / "turned.png")).save(work / "turned.png", exif=exif)
    _image(work / "clear.png", "RGBA")
    result = _run(work / "palette.png", work / "turned.png", work / "clear.png", "-o", work / "out",
                  "--weights", weights, "--ext", "webp", "--alpha", "model", "--batch-tiles", 1)
    assert result.exit_code == 0, result.stderr
    assert Image.open(work / "out" / "palette_x2.webp").mode == "RGB"
    assert Image.open(work / "out" / "turned_x2.webp").size == (9 * SCALE, 13 * SCALE)  # rotated
    assert Image.open(work / "out" / "clear_x2.webp").mode == "RGBA"


def test_command_output_file_folder_force_and_earlier_outputs(work, weights):
    _image(work / "a.png")
    _image(work / "b.bmp")
    (work / "notes.txt").write_text("not an image")
    result = _run(work / "a.png", "-o", work.parent / "one.jpg", "--weights", weights)
    assert result.exit_code == 0 and Image.open(work.parent / "one.jpg").format == "JPEG"
    result = _run(work / "a.png", "-o", work.parent / "new", "--weights", weights)  # no suffix: a folder
    assert result.exit_code == 0 and (work.parent / "new" / "a_x2.png").is_file()
    result = _run(work, "--weights", weights)
    assert result.exit_code == 0, result.stderr
    assert "note: skipped 1 non-image file in" in result.stderr
    assert {"a_x2.png", "b_x2.png"} <= {p.name for p in work.iterdir()}  # bmp is written as png
    modified = (work / "a_x2.png").stat().st_mtime_ns
    result = _run(work, "--weights", weights)  # a_x2.png and b_x2.png are not inputs now
    assert result.exit_code == 2 and "note: skipped 2 earlier outputs (*_x2.*)" in result.stderr
    assert f"{work / 'a_x2.png'}: already exists (use --force to overwrite)" in result.stderr
    assert (work / "a_x2.png").stat().st_mtime_ns == modified
    assert _run(work, "--weights", weights, "--force").exit_code == 0
    assert not any(p.name.startswith(".") for p in work.iterdir())  # no temporary files left


def test_command_skips_earlier_outputs_with_an_output_folder(work, weights):
    _image(work / "a.png")
    _image(work / "a_x2.png")  # an earlier run's output beside its input
    _image(work / "b_x2.png")  # no b.* beside it: an input like any other
    result = _run(work, "-o", work.parent / "big", "--weights", weights)
    assert result.exit_code == 0, result.stderr
    assert "note: skipped 1 earlier output (*_x2.*) in" in result.stderr
    assert _files(work.parent / "big") == [Path("a_x2.png"), Path("b_x2_x2.png")]  # no a_x2_x2.png (x4)


def test_command_bf16_on_cpu_and_jpg(work, weights):
    result = _run(_image(work / "a.png"), "--weights", weights, "--precision", "bf16", "--ext", "jpg")
    assert result.exit_code == 0, result.stderr
    assert Image.open(work / "a_x2.jpg").size == (13 * SCALE, 9 * SCALE)


def test_progress_bar_on_a_terminal(work, weights):
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    config = UpscaleConfig(inputs=(str(_image(work / "a.png")),), weights=str(weights), tile=4)
    report = upscale_files(config, console)
    assert report.written == [work / "a_x2.png"] and not report.failed
    assert "tiles" in stream.getvalue() and f"wrote {work / 'a_x2.png'}" in stream.getvalue()


def test_command_overlap_below_the_radius_warns(work, weights):
    result = _run(_image(work / "a.png"), "--weights", weights, "--overlap", 1, "--tile", 4)
    assert result.exit_code == 0 and "warning: --overlap 1 is below" in result.stderr


def test_command_continues_after_a_bad_input(work, weights):
    (work / "empty.png").write_bytes(b"")
    result = _run(work / "empty.png", _image(work / "good.png"), "--weights", weights)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {work / 'empty.png'}: empty file",
                                          f"wrote {work / 'good_x2.png'}",
                                          "error: 1 of 2 inputs failed"]


def _truncated(work):
    data = _image(work / "whole.png", size=(64, 64)).read_bytes()
    (work / "whole.png").unlink()
    (work / "bad.png").write_bytes(data[: len(data) // 2])
    return [work / "bad.png"], "cannot decode image"


def _wrong_shape_weights(work, weights):
    tensors = load_file(str(weights))
    config = preset("tiny", scale=SCALE).to_dict() | {"channels": 16}
    save_file(tensors, str(work / "wrong.safetensors"), metadata={"config": json.dumps(config)})
    _image(work / "a.png")
    return [work / "a.png", "--weights", work / "wrong.safetensors"], "weights do not match the architecture"


BAD_INPUTS = {
    "truncated png": lambda work, weights: _truncated(work),
    "empty file": lambda work, weights: ((work / "e.png").write_bytes(b""), [work / "e.png"], "empty file")[1:],
    "text named png": lambda work, weights: ((work / "t.png").write_text("hello"), [work / "t.png"],
                                             "not an image Pillow can read")[1:],
    "missing path": lambda work, weights: ([work / "nope.png"], "no such file or folder"),
    "folder without images": lambda work, weights: ((work / "d").mkdir(), (work / "d" / "x.txt").write_text("x"),
                                                    [work / "d"], "no images")[2:],
    "output under a file": lambda work, weights: ((work / "f").write_text("x"),
                                                  [_image(work / "a.png"), "-o", work / "f" / "out.png"], "is a file")[1:],
    "weights of the wrong shape": _wrong_shape_weights,
    "weights not safetensors": lambda work, weights: ((work / "w.safetensors").write_text("{}"),
                                                      [_image(work / "a.png"), "--weights", work / "w.safetensors"],
                                                      "not a safetensors file")[1:],
    "-o an existing file, several inputs": lambda work, weights: (
        (work / "taken.png").write_bytes(b"x"), [_image(work / "a.png"), _image(work / "b.png"), "-o", work / "taken.png"],
        "taken.png: is a file, not a folder (there are several inputs)")[1:],
    "-o an existing file without extension": lambda work, weights: (
        (work / "taken").write_bytes(b"x"), [_image(work / "a.png"), "-o", work / "taken"],
        "taken: is a file, not a folder (a name without an image extension is a folder)")[1:],
    "-o a folder under a file": lambda work, weights: (
        (work / "f").write_text("x"), [_image(work / "a.png"), _image(work / "b.png"), "-o", work / "f" / "out"],
        "cannot create this output folder")[1:],
    "too many pixels": lambda work, weights: ([_image(work / "a.png"), "--max-pixels", 100], "--max-pixels"),
    "alpha to jpg": lambda work, weights: ([_image(work / "a.png", "RGBA"), "--ext", "jpg"], "JPEG cannot store"),
    "fp16 on cpu": lambda work, weights: ([_image(work / "a.png"), "--precision", "fp16", "--device", "cpu"],
                                          "fp16 does not run on the CPU"),
    "bad overlap": lambda work, weights: ([_image(work / "a.png"), "--overlap", "wide"], "--overlap must be auto"),
    "bad tile": lambda work, weights: ([_image(work / "a.png"), "--tile", 0], "--tile must be at least 1"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_command_bad_input(work, weights, case):
    args, message = BAD_INPUTS[case](work, weights)
    before = _files(work)
    if "--weights" not in args:
        args = [*args, "--weights", weights]
    result = _run(*args)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert _files(work) == before  # no output, no temporary file


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_command_unwritable_output_folder(work, weights):
    locked = work / "locked"
    locked.mkdir(mode=0o555)
    result = _run(_image(work / "a.png"), "-o", locked, "--weights", weights)
    assert result.exit_code == 2 and result.stderr.splitlines() == [f"error: {locked}: output folder is not writable"]
    assert list(locked.iterdir()) == []


def test_command_without_weights(work, monkeypatch):
    monkeypatch.setattr(weights_module, "WEIGHTS_FOLDER", work / "weights")
    result = _run(_image(work / "a.png"))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "no --weights given" in result.stderr and "srgan train" in result.stderr


@pytest.mark.parametrize("outscale", [1.5, 2, 3])
def test_command_outscale_resizes_the_output(work, weights, outscale):
    source = _image(work / "a.png", size=(13, 9))
    plain = _run(source, "--weights", weights, "-o", work / "plain.png")
    assert plain.exit_code == 0, plain.stderr
    result = _run(source, "--weights", weights, "--outscale", outscale)
    assert result.exit_code == 0, result.stderr
    target = work / f"a_x{outscale:g}.png"
    with Image.open(target) as image:
        assert image.size == (round(13 * outscale), round(9 * outscale)) and image.mode == "RGB"
        with Image.open(work / "plain.png") as model_output:
            expected = model_output.resize(image.size, Image.BICUBIC)
            assert np.array_equal(np.asarray(image), np.asarray(expected))  # Pillow bicubic of the model output


@pytest.mark.parametrize("mode", ["RGBA", "I;16", "RGB;16"])
def test_command_outscale_keeps_mode_and_depth(work, weights, mode):
    source = _image(work / "a.png", mode=mode, size=(13, 9))
    result = _run(source, "--weights", weights, "--outscale", "3")
    assert result.exit_code == 0, result.stderr
    planes = read_planes(work / "a_x3.png")
    assert planes.colour.shape[1:] == (27, 39) and planes.bits == (16 if mode.endswith("16") else 8)
    assert (planes.alpha is not None) == (mode == "RGBA")


def test_command_outscale_and_scale_errors(work, weights, monkeypatch):
    source = _image(work / "a.png")
    monkeypatch.setattr(weights_module, "WEIGHTS_FOLDER", work / "shipped")
    (work / "shipped").mkdir()
    save_generator(_generator(4), work / "shipped" / "srgan_x4.safetensors")
    cases = {
        ("--outscale", "0"): "error: --outscale must be a positive number, got 0.0",
        ("--outscale", "-2"): "error: --outscale must be a positive number, got -2.0",
        ("--outscale", "nan"): "error: --outscale must be a positive number, got nan",
        ("--outscale", "0.5"): "error: --outscale 0.5 is below 1: the output would be smaller than the input",
        ("--outscale", "4.5", "--weights", weights): (
            "error: --outscale 4.5 is over 2x the x2 model's scale (the rest would be interpolation blur); "
            "use --outscale 4 at most, or a model of a larger scale"),
        ("--scale", "3"): "error: --scale must be one of 2, 4, 8, got 3",
        ("--scale", "4", "--weights", weights): (
            f"error: --scale 4 does not match {weights}, a x2 generator; leave --scale out or use --scale 2"),
        ("--model", "gan", "--weights", weights): (
            "error: --model gan has no effect with --weights (it picks among the shipped weights)"),
        ("--scale", "2"): (
            f"error: no --weights given and no shipped x2 weights at {work / 'shipped'} (shipped: x4): train a "
            "generator with `srgan train --scale 2` (it writes RUN/generator.safetensors; scripts/train_release.sh "
            "makes the shipped ones) and pass --weights RUN/generator.safetensors"),
        ("--model", "real"): (
            f"error: no --weights given and no shipped real x4 weights at {work / 'shipped'}: train a "
            "generator with `srgan train --scale 4` (it writes RUN/generator.safetensors; scripts/train_release.sh "
            "makes the shipped ones) and pass --weights RUN/generator.safetensors"),
    }
    for args, message in cases.items():
        result = _run(source, *args)
        assert result.exit_code == 2 and result.stderr.splitlines() == [message], args
    assert _files(work) == [Path("a.png"), Path("shipped/srgan_x4.safetensors")]
    # without --scale, --outscale 2 takes the shipped x4 weights and shrinks their output
    result = _run(source, "--outscale", "2", "--no-progress")
    assert result.exit_code == 0, result.stderr
    with Image.open(work / "a_x2.png") as image:
        assert image.size == (26, 18)


def test_outscale_skips_earlier_outputs_of_that_outscale(work, weights):
    folder = work / "in"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "a_x2.5.png")  # an earlier --outscale 2.5 output
    _image(folder / "a_x2x5.png")  # not one: the dot is literal
    result = _run(folder, "--weights", weights, "--outscale", "2.5", "--force")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x2.5.png", "a_x2x5.png", "a_x2x5_x2.5.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_command_cuda_without_a_gpu(work, weights):
    result = _run(_image(work / "a.png"), "--weights", weights, "--device", "cuda")
    assert result.exit_code == 2 and result.stderr.strip() == "error: --device cuda: no CUDA device is available"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_fp32():
    generator = _generator().cuda().to(memory_format=torch.channels_last)
    image = torch.rand(3, 70, 50)
    fp16 = upscale(generator, image, tile=32, precision="fp16")
    fp32 = upscale(generator, image, tile=32, precision="fp32")
    assert (fp16 - fp32).abs().max() < 2e-2 and (fp32 - _untiled(generator, image.cuda()).cpu()).abs().max() <= 1e-4


# --- memory-bounded path, exclusive writes, room checks ------------------------------------------------------


@pytest.mark.parametrize("grey, alpha_mode, projection", [
    (False, None, "none"), (True, "bicubic", "none"), (False, "model", "none"), (False, "bicubic", "affine"),
    (True, "model", "affine"),
])
def test_upscale_into_equals_the_quantised_float_output(grey, alpha_mode, projection):
    generator = _generator(SCALE)
    if projection == "affine":
        generator.config = dataclasses.replace(generator.config, projection="affine")
    colour = torch.rand(1 if grey else 3, 21, 17).expand(3, -1, -1).contiguous()
    alpha = torch.rand(1, 21, 17) if alpha_mode else None
    planes = ImagePlanes(colour, alpha, grey=grey, bits=8)
    config = UpscaleConfig(inputs=("a.png",), alpha=alpha_mode or "bicubic")
    layout = PixelLayout.of(grey, alpha is not None, 8, "PNG")
    array = np.empty(layout.shape(21 * SCALE, 17 * SCALE), layout.dtype)
    upscale_into(generator, planes, array, layout, config, tile=6, batch_tiles=2, precision="fp32")
    expected = [quantise(upscale(generator, colour, tile=6), grey, 8)]
    if alpha_mode == "model":
        expected.append(quantise(upscale(generator, alpha.expand(3, -1, -1), tile=6).mean(0, keepdim=True), False, 8))
    elif alpha_mode == "bicubic":
        whole = torch.nn.functional.interpolate(alpha[None], scale_factor=SCALE, mode="bicubic", align_corners=False)[0]
        expected.append(quantise(whole, False, 8))
    np.testing.assert_array_equal(array, np.concatenate(expected, axis=2))


@pytest.mark.parametrize("height, rows", [(1, 4), (9, 2), (10, 3), (7, 64)])
def test_bicubic_strips_equal_the_whole(height, rows):
    plane = torch.rand(1, height, 5)
    whole = torch.nn.functional.interpolate(plane[None], scale_factor=4, mode="bicubic", align_corners=False)[0]
    stitched = torch.empty_like(whole)
    for output_rows, strip in bicubic_strips(plane, 4, rows):
        stitched[:, output_rows] = strip
    assert (stitched - whole).abs().max() <= 1e-6


def test_room_problem(tmp_path, monkeypatch):
    layout = PixelLayout.of(grey=False, alpha=False, bits=8, file_format="PNG")
    source, target = tmp_path / "a.png", tmp_path / "out" / "a_x4.png"
    monkeypatch.setattr(upscale_files_module, "available_memory", lambda: 2 * 2**30)
    assert room_problem(source, target, 1000, 1000, layout, affine=False) is None
    assert room_problem(source, target, 24000, 16000, layout, affine=False) == (  # 1.07 GiB of pixels + 1 GiB
        f"{source}: the 16000x24000 output needs 2.1 GiB of memory, 2.0 GiB is available")
    assert "needs 6.4 GiB of memory" in room_problem(source, target, 24000, 16000, layout, affine=True)  # + floats
    webp = PixelLayout.of(grey=False, alpha=False, bits=8, file_format="WEBP")
    assert room_problem(source, tmp_path / "a.webp", 20000, 10, webp, affine=False) == (
        f"{source}: the 10x20000 output is over WEBP's 16,383-pixel side limit; use --ext png")
    monkeypatch.setattr(upscale_files_module, "available_memory", lambda: None)  # not Linux: no memory check
    monkeypatch.setattr(upscale_files_module.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(1, 1, 2**29))
    assert room_problem(source, target, 24000, 16000, layout, affine=False) == (
        f"{target}: the output may need up to 1.1 GiB on disk, 512.0 MiB is free in {tmp_path}")


def test_command_refuses_an_output_without_room(work, weights, monkeypatch):
    monkeypatch.setattr(upscale_files_module, "available_memory", lambda: 2**20)
    before = _files(work.parent)
    result = _run(_image(work / "a.png"), "--weights", weights)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {work / 'a.png'}: the 26x18 output needs 1.0 GiB of memory, 1.0 MiB")
    assert _files(work.parent) == before + [(work / "a.png").relative_to(work.parent)]


def test_command_never_replaces_an_output_written_meanwhile(work, weights, monkeypatch):
    target = work / "a_x2.png"
    real = upscale_files_module.upscale_into

    def and_another_process_writes(*args, **kwargs):  # between planning (no target yet) and writing
        target.write_bytes(b"the other process's output")
        return real(*args, **kwargs)

    monkeypatch.setattr(upscale_files_module, "upscale_into", and_another_process_writes)
    result = _run(_image(work / "a.png"), "--weights", weights)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {target}: already exists (written by another process?); use --force to overwrite"]
    assert target.read_bytes() == b"the other process's output"
    assert sorted(p.name for p in work.iterdir()) == ["a.png", "a_x2.png"]  # no temporary file left
    assert _run(work / "a.png", "--weights", weights, "--force").exit_code == 0  # --force replaces it
    assert read_planes(target).mode == "RGB"


def test_command_removes_stale_temporaries_of_its_outputs(work, weights):
    stale, fresh, unrelated = work / ".a_x2.png.k3j_9xq2.png", work / ".a_x2.png.abcdefgh.png", work / ".b.png.k3j_9xq2.png"
    for path in (stale, fresh, unrelated):
        path.write_bytes(b"half an image")
    os.utime(stale, (1, 1))
    os.utime(unrelated, (1, 1))
    result = _run(_image(work / "a.png"), "--weights", weights)
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and fresh.exists() and unrelated.exists()  # fresh: maybe another process's write


def test_command_warns_about_animated_images(work, weights):
    frames = [Image.new("RGB", (6, 5), colour) for colour in ("red", "blue")]
    frames[0].save(work / "anim.gif", save_all=True, append_images=frames[1:])
    result = _run(work / "anim.gif", "--weights", weights)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: {work / 'anim.gif'}: animated image with 2 frames; only the first is upscaled",
        f"wrote {work / 'anim_x2.png'}"]


def test_command_reports_non_finite_output_per_file(work, weights, monkeypatch):
    monkeypatch.setattr(upscale_files_module, "load_generator",
                        lambda path, device: Flaky(_generator(SCALE), nan_always=True))
    result = _run(_image(work / "a.png"), "--weights", weights)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {work / 'a.png'}: the generator's output is not finite even in fp32 (non-finite input or weights)"]


def test_command_unlistable_input_folder(work, weights, monkeypatch):
    (work / "d").mkdir()
    real = Path.iterdir

    def iterdir(self):
        if self.name == "d":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = _run(work / "d", "--weights", weights)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {work / 'd'}: cannot list this folder (Permission denied)"]
