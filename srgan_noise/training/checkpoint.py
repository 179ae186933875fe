"""Training checkpoints: a plain dict written atomically, read back without
unpickling arbitrary objects (torch.load weights_only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srgan_noise.base.atomic import atomic_path, reporting_write_errors, write_failure
from srgan_noise.base.config import ModelConfig
from srgan_noise.base.errors import UserError
from srgan_noise.models.discriminator import build_discriminator
from srgan_noise.models.generator import build_generator
from srgan_noise.models.shapes import expected_shapes, shape_problem

CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED = ("config", "step", "rng", "generator")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: a crash or a full
    disk mid-write leaves the previous checkpoint intact (and a one-line error)."""
    with reporting_write_errors(path, "the previous checkpoint is kept"), atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as error:  # torch's writer reports a full disk as "unexpected pos ..."
            raise write_failure(error, path.parent) from None


def load_checkpoint(run: Path) -> dict[str, Any]:
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.is_file():
        raise UserError(f"{run}: no checkpoint to resume from ({CHECKPOINT_NAME} missing)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise UserError(f"{path}: unreadable checkpoint ({type(error).__name__}: {_reason(error)})") from None
    missing = [name for name in REQUIRED if not isinstance(state, dict) or name not in state]
    if missing:
        raise UserError(f"{path}: not a checkpoint of srgan train (no {', '.join(missing)})")
    try:
        model = ModelConfig.from_dict(state["config"]["model"])
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable architecture in its config ({type(error).__name__}: {error})") from None
    check_shapes(state, model, path)
    return state


def check_shapes(state: dict[str, Any], model: ModelConfig, path: Path) -> None:
    """The networks' weights in the checkpoint against the architecture its config names, on the
    meta device: a config that asks for more than the file holds is refused before anything is built."""
    generator = expected_shapes(lambda: build_generator(model))
    expected = {"generator": generator, "discriminator": expected_shapes(lambda: build_discriminator(model)),
                "ema": {f"module.{name}": shape for name, shape in generator.items()}}  # G's moving average
    for name, shapes in expected.items():
        if name not in state:  # a pre-training checkpoint holds no discriminator, a run without --ema no average
            continue
        stored = {key: value for key, value in state[name].items() if key != "n_averaged"} \
            if isinstance(state[name], dict) else None
        if stored is None or not all(isinstance(value, torch.Tensor) for value in stored.values()):
            raise UserError(f"{path}: its {name} is not a state dict of tensors")
        problem = shape_problem(shapes, {key: tuple(value.shape) for key, value in stored.items()})
        if problem is not None:
            raise UserError(f"{path}: its {name} weights do not match the architecture in its config ({problem})")


def _reason(error: Exception) -> str:
    """The line of torch's message that says what is wrong: for a refused
    unpickle, the WeightsUnpickler line, not the advice to drop weights_only."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").split(". Please use")[0].strip()
    lines = [line for line in lines if "weights_only" not in line]
    return lines[0] if lines else type(error).__name__
