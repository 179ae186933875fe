"""Training checkpoints: a plain dict written atomically, read back without
unpickling arbitrary objects (torch.load weights_only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srgan_noise.atomic import atomic_path
from srgan_noise.errors import UserError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: a crash mid-write
    leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(run: Path) -> dict[str, Any]:
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.is_file():
        raise UserError(f"{run}: no checkpoint to resume from ({CHECKPOINT_NAME} missing)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"{path}: unreadable checkpoint ({type(error).__name__}: {first_line})") from None
