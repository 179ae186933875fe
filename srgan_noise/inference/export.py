"""`srgan export`: the generator as an ONNX graph with dynamic batch, height and
width, the way SR models reach ONNX Runtime, TensorRT, OpenVINO, ncnn and browsers.

The affine projection is not in the graph: its matrices depend on the image size
(they are built for each size, and are dense for a dense export), so a projected
generator exports its local part and the caller projects (projection.py), as tiled
inference does."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from srgan_noise.base.atomic import atomic_path
from srgan_noise.base.errors import UserError
from srgan_noise.inference.weights import load_generator
from srgan_noise.models.generator import Generator

CHECK_SHAPES = ((1, 3, 37, 23), (2, 3, 20, 31))  # odd sizes, and a batch, for the check against torch


@dataclass(frozen=True)
class ExportConfig:
    weights: str
    out: str
    force: bool = False
    check: bool = True  # compare ONNX Runtime's output with torch's on CHECK_SHAPES


class Unprojected(torch.nn.Module):
    """The generator's forward without the affine projection."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr, project=False)


def export_onnx(generator: Generator, path: Path) -> None:
    """Write `generator` (float32, eval mode) to `path` as ONNX: input "lr" (N, 3, h, w)
    in [0, 1], output "sr" (N, 3, h*scale, w*scale), N, h and w dynamic."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise UserError("srgan export needs onnx and onnxscript: pip install 'srgan_noise[onnx]'") from None
    model = Unprojected(copy.deepcopy(generator).float().to("cpu", memory_format=torch.contiguous_format).eval())
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    example = torch.rand(1, 3, 24, 24)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer chatter
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["lr"], output_names=["sr"],
                                    dynamic_shapes=({0: batch, 2: height, 3: width},), verbose=False)
        program.save(tmp)


def max_difference(generator: Generator, path: Path) -> float:
    """Largest |ONNX Runtime - torch| over CHECK_SHAPES of random input (unprojected)."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("checking the export needs onnxruntime: pip install onnxruntime, or use --no-check") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in CHECK_SHAPES:
        lr = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = generator.float().cpu()(lr, project=False).numpy()
        actual = session.run(None, {"lr": lr.numpy()})[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


def export(config: ExportConfig) -> float | None:
    """Export config.weights to config.out; returns the check's max difference (None without it)."""
    out = Path(config.out)
    if out.suffix.lower() != ".onnx":  # first: --force cannot mend a wrong name
        raise UserError(f"-o {out}: the output must end in .onnx")
    if out.is_dir():
        raise UserError(f"-o {out}: is a folder; name the .onnx file to write")
    if out.exists() and not config.force:
        raise UserError(f"{out}: already exists; use --force to overwrite")
    generator = load_generator(Path(config.weights))
    if generator.config.projection == "affine":
        warnings.warn(f"{config.weights}: the affine projection is not exported (its matrices depend on the image "
                      "size); apply it to the ONNX output, or use srgan upscale")
    try:
        export_onnx(generator, out)
    except OSError as error:
        raise UserError(f"{out}: cannot write ({error.strerror or error})") from None
    return max_difference(generator, out) if config.check else None
