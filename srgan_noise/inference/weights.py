"""Generator weights as safetensors, the architecture in the metadata, so a
file alone rebuilds the model and loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from srgan_noise.base.atomic import atomic_path, reporting_write_errors, write_failure
from srgan_noise.base.config import ModelConfig
from srgan_noise.base.errors import UserError
from srgan_noise.models.generator import Generator, SubPixelGenerator, build_generator
from srgan_noise.models.shapes import expected_shapes, shape_problem


# The shipped generators are package data (srgan_noise/inference/pretrained/, its README.md the model
# card), so an installed wheel finds them as the checkout does. --model names, files per scale:
# real: trained on the realistic degradations (degradations.py), for photos: upscale's default;
# gan and psnr: the bicubic protocol's GAN and MSE generators, for benchmarks;
# fast: the `fast` preset (a sub-pixel network on the LR grid), MSE-trained, for speed on a CPU.
WEIGHTS_FOLDER = Path(__file__).resolve().parent / "pretrained"
SHIPPED = {"real": "srresnet_real_x{scale}.safetensors", "gan": "srgan_x{scale}.safetensors",
           "psnr": "srresnet_x{scale}.safetensors", "fast": "fast_x{scale}.safetensors"}
UPSCALE_DEFAULTS = ("real", "gan")  # srgan upscale without --model: the first of these shipped at the scale
SCALES = (2, 4, 8)


def shipped_weights(model: str = "gan", scale: int = 4) -> Path:
    """The shipped generator `model` at `scale` (real: for photos; gan: sharper,
    psnr: MSE-trained, both on the bicubic protocol); a clear error if it is missing."""
    if model not in SHIPPED:
        raise UserError(f"--model must be one of {', '.join(SHIPPED)}, got {model!r}")
    path = WEIGHTS_FOLDER / SHIPPED[model].format(scale=scale)
    if not path.is_file():
        raise missing_weights(f"{model} x{scale}", path, scale, shipped_scales(model))
    return path


def shipped_scales(model: str) -> list[int]:
    """The scales at which `model` is shipped."""
    return [scale for scale in SCALES if (WEIGHTS_FOLDER / SHIPPED[model].format(scale=scale)).is_file()]


def choose_shipped(model: str | None, scale: int | None, outscale: float | None = None) -> Path:
    """The shipped weights `srgan upscale` runs without --weights. `model` None: the
    first of UPSCALE_DEFAULTS shipped at the scale. `scale` None: 4, or with `outscale`
    the smallest shipped scale at least `outscale` (else the largest shipped)."""
    models = UPSCALE_DEFAULTS if model is None else (model,)
    if model is not None and model not in SHIPPED:
        raise UserError(f"--model must be one of {', '.join(SHIPPED)}, got {model!r}")
    shipped = sorted({s for name in models for s in shipped_scales(name)})
    if scale is None:
        fitting = [s for s in shipped if outscale is not None and s >= outscale]
        scale = fitting[0] if fitting else shipped[-1] if outscale is not None and shipped else 4
    for name in models:
        if scale in shipped_scales(name):
            return WEIGHTS_FOLDER / SHIPPED[name].format(scale=scale)
    what = f"{model} x{scale}" if model is not None else f"x{scale}"
    raise missing_weights(what, WEIGHTS_FOLDER, scale, shipped)


def missing_weights(what: str, where: Path, scale: int, shipped: list[int]) -> UserError:
    elsewhere = f" (shipped: {', '.join(f'x{s}' for s in shipped)})" if shipped else ""
    return UserError(f"no --weights given and no shipped {what} weights at {where}{elsewhere}: train a generator "
                     f"with `srgan train --scale {scale}` (it writes RUN/generator.safetensors; "
                     f"scripts/train_release.sh makes the shipped ones) and pass --weights RUN/generator.safetensors")


def save_generator(generator: Generator | SubPixelGenerator, path: Path, extra: dict[str, str] | None = None) -> None:
    """Atomically write the generator's weights with its config in the metadata;
    a full disk is a one-line error and leaves the previous file."""
    metadata = {"format": "srgan_noise.generator", "config": json.dumps(generator.config.to_dict())}
    metadata.update(extra or {})
    tensors = {name: value.detach().cpu().contiguous() for name, value in generator.state_dict().items()}
    with reporting_write_errors(path, "the previous weights are kept"), atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as error:
            raise write_failure(error, path.parent) from None


def read_metadata(path: Path) -> dict[str, str]:
    if path.is_dir():
        run_weights = path / "generator.safetensors"
        raise UserError(f"{path}: is a folder; give a weights file (.safetensors"
                        + (f"), e.g. {run_weights}" if run_weights.is_file() else ")"))
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    with open(path, "rb") as file:
        if file.read(4) == b"PK\x03\x04":  # torch.save's zip: a training checkpoint
            raise UserError(f"{path}: is a torch.save file (a training checkpoint?), not a safetensors weights "
                            f"file; give a run's generator.safetensors")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path}: not a safetensors file ({error})") from None


def load_generator(path: Path, device: torch.device | str = "cpu") -> Generator | SubPixelGenerator:
    """Rebuild the generator from a weights file, ready for inference: eval mode,
    on `device`, channels_last (NHWC convolutions: the 9x9 tail runs several
    times faster on CPU), its weights checked finite."""
    metadata = read_metadata(path)
    if "config" not in metadata:
        raise UserError(f"{path}: no architecture in its metadata (not exported by srgan train)")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (json.JSONDecodeError, TypeError) as error:
        raise UserError(f"{path}: unreadable architecture metadata ({error})") from None
    # Compare shapes on the meta device (no memory) first: the file, not its
    # metadata, then bounds what building the model allocates.
    with safe_open(str(path), framework="pt") as handle:
        stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    problem = shape_problem(expected_shapes(lambda: build_generator(config)), stored)
    if problem is not None:
        raise UserError(f"{path}: weights do not match the architecture in its metadata ({problem})")
    generator = build_generator(config)
    try:
        generator.load_state_dict(load_file(str(path)))
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise UserError(f"{path}: weights do not match the architecture in its metadata ({detail})") from None
    if not all(bool(torch.isfinite(value).all()) for value in generator.state_dict().values()):
        raise UserError(f"{path}: the weights contain inf or NaN values")
    return generator.to(device, memory_format=torch.channels_last).eval()
