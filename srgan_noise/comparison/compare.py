"""`srgan compare`: the same GAN training under each stabilisation schedule,
on the SR task (shared MSE pre-training per seed) or on the 2-D toy, with a
Markdown/CSV table and a PNG of the discriminator curves and quality metrics."""

from __future__ import annotations

from pathlib import Path

from srgan_noise.comparison.compare_config import CompareConfig
from srgan_noise.comparison.sr_runs import compare_sr
from srgan_noise.comparison.toy_runs import compare_toy


def compare(config: CompareConfig) -> list[Path]:
    """Run (or reuse) every schedule and seed; returns the table (.md, .csv) and PNG paths."""
    return compare_toy(config) if config.toy is not None else compare_sr(config)
