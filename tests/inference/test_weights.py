import functools
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import list_images, load_rgb
from srgan_noise.cli import app
from srgan_noise.evaluation.evaluate import evaluate_images
from srgan_noise.evaluation.results import BICUBIC, MODEL
from srgan_noise.inference.weights import load_generator, save_generator, shipped_weights
from srgan_noise.models.generator import Generator, build_generator
from srgan_noise.training.degradations import REAL_INPUT_FAMILIES


@pytest.mark.parametrize("name", ["tiny", "fast"])
def test_round_trip_ready_for_inference(tmp_path, name):
    generator = build_generator(preset(name, scale=2))
    save_generator(generator, tmp_path / "g.safetensors")
    loaded = load_generator(tmp_path / "g.safetensors")
    assert loaded.config == generator.config and not loaded.training
    assert loaded.conv_last.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 5, 7)
    torch.testing.assert_close(loaded(x), generator.eval()(x))


def test_non_finite_weights_refused_by_every_command(tmp_path, image_folder):
    generator = Generator(preset("tiny", scale=4))
    with torch.no_grad():
        generator.conv_last.weight[0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_generator(generator, path)
    with pytest.raises(UserError, match="nan.safetensors: the weights contain inf or NaN values"):
        load_generator(path)
    result = CliRunner().invoke(app, ["eval", "--data", str(image_folder), "--weights", str(path)])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: {path}: the weights contain inf or NaN values"]


def test_wheel_ships_the_weights_and_finds_them_installed(tmp_path):
    """pip wheel (no build isolation: offline) holds srgan_noise/inference/pretrained/*, and the
    package unpacked from it, as pip installs a pure wheel, finds its shipped weights."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((root / name).read_bytes())
    shutil.copytree(root / "srgan_noise", source / "srgan_noise", ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"pip wheel failed here: {build.stderr.strip().splitlines()[-1:]}")
    (wheel,) = (tmp_path / "dist").glob("srgan_noise-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    shipped = {f"srgan_noise/inference/pretrained/{name}" for name in ("README.md", "srgan_x4.safetensors",
                                                               "srresnet_x4.safetensors")}
    assert shipped <= names
    found = subprocess.run(
        [sys.executable, "-c", "import srgan_noise.inference.weights as w; print(w.choose_shipped(None, None)); "
                               "print(w.load_generator(w.shipped_weights('psnr')).config.scale)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    path, scale = found.stdout.split()
    assert Path(path).is_relative_to(tmp_path / "site") and Path(path).is_file() and scale == "4"


SET5 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "Set5"


@functools.cache
def set5_images() -> list[tuple[str, torch.Tensor]]:
    return [(path.name, load_rgb(path)) for path in list_images(SET5)]


@functools.cache
def set5_x4_means(model: str) -> dict[str, dict[str, float]]:
    """A shipped x4 model's Set5 means, and bicubic's: scored once for the tests that compare them."""
    return evaluate_images(set5_images(), 4, load_generator(shipped_weights(model, 4)), bicubic=True).mean


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 not present")
@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_real_model_gains_half_a_db_on_every_family(scale):
    """`srgan upscale`'s default must beat bicubic upsampling of the same LR image
    whatever made it (docs/real-photos.md; the table there is this, per family)."""
    images = set5_images()
    generator = load_generator(shipped_weights("real", scale))
    gains = {}
    for family in REAL_INPUT_FAMILIES:
        mean = evaluate_images(images, scale, generator, bicubic=True, degradation=family).mean
        gains[family] = mean[MODEL]["psnr"] - mean[BICUBIC]["psnr"]
    assert min(gains.values()) >= 0.5, gains


# The shipped PSNR model's Set5 figure (docs/models.md: `srgan eval --data ../shared/data/Set5 --model psnr`),
# made by scripts/train_psnr.sh: 50000 cosine MSE steps of the small preset.
PSNR_MODEL_SET5_DB = 31.34


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 not present")
def test_shipped_psnr_model_holds_its_measured_set5_figure():
    psnr = set5_x4_means("psnr")[MODEL]["psnr"]
    assert psnr >= PSNR_MODEL_SET5_DB - 0.1
    assert psnr < PSNR_MODEL_SET5_DB + 0.1  # the figure in the docs is this file's


# The shipped GAN model's Set5 figures (docs/models.md: `srgan eval --data ../shared/data/Set5 --model gan
# --bicubic`), made by scripts/train_gan.sh: the U-Net D, MSE + 0.1 x D-feature + 0.1 x adversarial, EMA 0.999.
GAN_MODEL_SET5_DB = 29.88
GAN_MODEL_SET5_HIGH_BAND = 0.777


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 not present")
def test_shipped_gan_model_holds_its_figures_and_adds_detail_within_bounds():
    """The realism issue's targets that do not need the (slow, noisy) critic: PSNR at least
    bicubic + 0.5 dB, and more fine-detail energy than the PSNR model without exceeding the HR
    images' by a fifth (the issue's floor of 0.8 is not reached: 0.777, docs/realism.md)."""
    model, bicubic = set5_x4_means("gan")[MODEL], set5_x4_means("gan")[BICUBIC]
    psnr_model = set5_x4_means("psnr")[MODEL]
    assert model["psnr"] >= bicubic["psnr"] + 0.5
    assert psnr_model["hf_ratio"] + 0.25 <= model["hf_ratio"] <= 1.2
    assert model["psnr"] == pytest.approx(GAN_MODEL_SET5_DB, abs=0.1)  # the figures in the docs are this file's
    assert model["hf_ratio"] == pytest.approx(GAN_MODEL_SET5_HIGH_BAND, abs=0.02)
