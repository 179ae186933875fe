import pytest
import torch
from typer.testing import CliRunner

from srgan_noise.cli import app
from srgan_noise.config import preset
from srgan_noise.errors import UserError
from srgan_noise.generator import Generator
from srgan_noise.weights import load_generator, save_generator


def test_round_trip_ready_for_inference(tmp_path):
    generator = Generator(preset("tiny", scale=2))
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
