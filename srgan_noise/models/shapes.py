"""A network's state shapes, found on the meta device (no memory): a weights file or
checkpoint is checked against the architecture its metadata names before that
architecture is built, so crafted metadata cannot make us allocate gigabytes."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def expected_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in the state dict of the module `build` makes."""
    with torch.device("meta"):
        return {name: tuple(value.shape) for name, value in build().state_dict().items()}


def shape_problem(expected: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]]) -> str | None:
    """What differs between the state an architecture expects and the one stored, in a few words; None if nothing.
    An empty tensor in the architecture (VBN's reference batch before data fill it) takes any stored shape."""
    missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    mismatched = sorted(name for name in expected.keys() & stored.keys()
                        if expected[name] != stored[name] and 0 not in expected[name])
    if missing:
        return f"missing {', '.join(missing[:3])}"
    if unexpected:
        return f"unexpected {', '.join(unexpected[:3])}"
    if mismatched:
        name = mismatched[0]
        return f"{name}: shape {list(stored[name])} in the file, {list(expected[name])} in the architecture"
    return None
