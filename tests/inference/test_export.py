import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.cli import app
from srgan_noise.inference.export import ExportConfig, export
from srgan_noise.inference.weights import save_generator
from srgan_noise.models.generator import Generator

pytestmark = pytest.mark.usefixtures("one_thread")
onnxruntime = pytest.importorskip("onnxruntime")


def _weights(tmp_path, **overrides):
    generator = Generator(preset("tiny", **overrides))
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    path = tmp_path / "g.safetensors"
    save_generator(generator, path)
    return path


@pytest.mark.parametrize("upsample", ["pixel-shuffle", "nearest"])
def test_onnx_matches_torch_on_odd_sizes_and_batches(tmp_path, upsample):
    weights = _weights(tmp_path, upsample=upsample)
    difference = export(ExportConfig(weights=str(weights), out=str(tmp_path / "g.onnx")))
    assert difference <= 1e-4
    # a size the check did not use: the graph's height and width are dynamic
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    lr = torch.rand(3, 3, 11, 40)
    from srgan_noise.inference.weights import load_generator

    with torch.no_grad():
        expected = load_generator(weights).float()(lr).numpy()
    actual = session.run(None, {"lr": lr.numpy()})[0]
    assert actual.shape == (3, 3, 44, 160) and np.abs(actual - expected).max() <= 1e-4


def test_projected_generator_exports_its_local_part_with_a_warning(tmp_path):
    weights = _weights(tmp_path, projection="affine")
    with pytest.warns(UserWarning, match="affine projection is not exported"):
        assert export(ExportConfig(weights=str(weights), out=str(tmp_path / "g.onnx"))) <= 1e-4


def test_command_and_its_errors(tmp_path):
    weights = _weights(tmp_path)
    result = CliRunner().invoke(app, ["export", str(weights), "-o", str(tmp_path / "g.onnx")])
    assert result.exit_code == 0 and "max |onnxruntime - torch|" in result.stderr, result.output
    again = CliRunner().invoke(app, ["export", str(weights), "-o", str(tmp_path / "g.onnx")])
    assert again.exit_code == 2 and "already exists; use --force" in again.stderr
    with pytest.raises(UserError, match="must end in .onnx"):
        export(ExportConfig(weights=str(weights), out=str(tmp_path / "g.pt")))
    with pytest.raises(UserError, match="no such weights file"):
        export(ExportConfig(weights=str(tmp_path / "missing.safetensors"), out=str(tmp_path / "h.onnx")))
