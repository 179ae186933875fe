"""The device a command runs on, from its --device option."""

from __future__ import annotations

import torch

from srgan_noise.base.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda -> a torch.device; cuda without one is a one-line error, not torch's traceback."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
