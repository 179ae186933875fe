"""`srgan compare`'s figure for the SR task: D's curves per schedule, then the
validation figures of every schedule on shared panels."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from srgan_noise.base.atomic import atomic_path


def plot_sr(runs: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """Seed 0's D-curves panel per schedule, then validation SSIM, MSE and
    high-band ratio over steps (mean over seeds) for every schedule on three shared panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    from srgan_noise.evaluation.plot import draw_d_curves

    columns = min(3, len(runs))
    d_rows = math.ceil(len(runs) / columns)
    # At least three panels wide: the bottom row always holds three, whose labels overlap in less.
    figure = plt.figure(figsize=(4.5 * max(columns, 3), 2.8 * (d_rows + 1.3)))
    grid = figure.add_gridspec(d_rows + 1, 2 * columns, height_ratios=[1] * d_rows + [1.3])
    for index, (name, records) in enumerate(runs.items()):
        row, column = divmod(index, columns)
        axis = figure.add_subplot(grid[row, 2 * column:2 * column + 2])
        draw_d_curves(axis, records[0])
        axis.set_title(f"{name} (seed 0)", fontsize="medium")
    panels = (("val_ssim", "val SSIM"), ("val_mse", "val MSE (Y, 0-255)"), ("val_hf_ratio", "val high-band ratio"))
    bottom = grid[d_rows, :].subgridspec(1, len(panels))
    for position, (key, label) in enumerate(panels):
        axis = figure.add_subplot(bottom[0, position])
        for name, records in runs.items():
            steps, values = mean_curve(records, key)
            axis.plot(steps, values, label=name)
        axis.set_xlabel("step (GAN phase)")
        axis.set_ylabel(label)
        if key == "val_ssim":
            axis.ticklabel_format(axis="y", useOffset=False)  # values, not "1e-5 + 0.81" offsets
        else:  # log: a drifting run's MSE and high-band ratio reach 30x and 1000x the stable ones'
            axis.set_yscale("log")
            for ticks in (axis.yaxis.set_major_formatter, axis.yaxis.set_minor_formatter):
                ticks(FormatStrFormatter("%g"))  # "120", not "1.2 x 10^2", which ran into the next panel
        if key == "val_hf_ratio":
            axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")  # the real images' fine detail
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path, suffix=path.suffix) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path


def mean_curve(runs: list[list[dict[str, Any]]], key: str) -> tuple[list[int], list[float]]:
    """GAN-phase steps and the mean over seeds of records[key] (the last pre-training or --init
    record included as the start)."""
    per_seed = []
    for records in runs:
        records = [r for r in records if r.get("phase") in ("pretrain", "init", "gan")]  # not the critic's
        gan_start = next((i for i, r in enumerate(records) if r.get("phase") == "gan"), len(records))
        per_seed.append({r["step"]: r.get(key, math.nan) for r in records[max(0, gan_start - 1):]})
    steps = sorted(set.intersection(*(set(seed) for seed in per_seed)))
    return steps, [statistics.fmean(seed[step] for seed in per_seed) for step in steps]
