"""Training checkpoints: a plain dict written atomically, read back without
unpickling arbitrary objects (torch.load weights_only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srgan_noise.base.atomic import atomic_path, reporting_write_errors, write_failure
from srgan_noise.base.config import ModelConfig
from srgan_noise.base.errors import UserError

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
        ModelConfig.from_dict(state["config"]["model"])
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable architecture in its config ({type(error).__name__}: {error})") from None
    return state


def _reason(error: Exception) -> str:
    """The line of torch's message that says what is wrong: for a refused
    unpickle, the WeightsUnpickler line, not the advice to drop weights_only."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").split(". Please use")[0].strip()
    lines = [line for line in lines if "weights_only" not in line]
    return lines[0] if lines else type(error).__name__
