"""`srgan compare`'s tables: figures per run, their mean and spread over seeds,
written as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Callable

from srgan_noise.base.atomic import write_text_atomic
from srgan_noise.base.errors import UserError


def gan_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gan = [r for r in records if r.get("phase") == "gan"]
    if not gan:
        raise UserError("a run has no GAN-phase records to summarise")
    return gan


def d_figures(gan: list[dict[str, Any]]) -> dict[str, float]:
    """Mean D outputs over the GAN windows; the fraction of windows that D wins
    outright (D(real) > 0.95 and D(fake) < 0.05) and in which the generator
    step helped (D_t(G_{t+1}) > D(fake)); seconds per step."""
    return {
        "d_real": statistics.fmean(r["d_real"] for r in gan),
        "d_fake": statistics.fmean(r["d_fake"] for r in gan),
        "d_fake_next": statistics.fmean(r["d_fake_next"] for r in gan),
        "d_wins": statistics.fmean(float(r["d_real"] > 0.95 and r["d_fake"] < 0.05) for r in gan),
        "g_helped": statistics.fmean(float(r["d_fake_next"] > r["d_fake"]) for r in gan),
        "seconds_per_step": statistics.fmean(r["seconds_per_step"] for r in gan),
    }


VAL_FIGURES = ("ssim", "mse", "psnr", "hf_ratio")


def sr_figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """Validation SSIM, MSE, PSNR and high-band ratio at the last step (final) and
    averaged over the last quarter of the GAN windows (tail), the final generator's
    critic accuracy (a "critic" record, if any), plus the D figures."""
    gan = gan_records(records)
    tail = gan[-max(1, len(gan) // 4):]
    figures = {}
    for name in VAL_FIGURES:
        figures[f"{name}_final"] = gan[-1].get(f"val_{name}", math.nan)
        figures[f"{name}_tail"] = statistics.fmean(r.get(f"val_{name}", math.nan) for r in tail)
    return {**figures, "critic": critic_of(records), **d_figures(gan)}


def pretrain_figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """The pre-trained (or --init) generator's validation figures (the GAN phase's start)."""
    last = [r for r in records if r.get("phase") in ("pretrain", "init")][-1]
    return {**{f"{name}_{when}": last.get(f"val_{name}", math.nan)
               for name in VAL_FIGURES for when in ("final", "tail")}, "critic": critic_of(records)}


def critic_of(records: list[dict[str, Any]]) -> float:
    return next((r["critic"] for r in records if r.get("phase") == "critic"), math.nan)


def summarise(runs: list[Any], figures: Callable[[Any], dict[str, float]]) -> dict[str, tuple[float, float]]:
    """figures of each seed's run -> {name: (mean, std over seeds)}; std is nan for one seed."""
    per_seed = [figures(run) for run in runs]
    summary = {}
    for name in per_seed[0]:
        values = [seed[name] for seed in per_seed]
        std = statistics.stdev(values) if len(values) > 1 and all(map(math.isfinite, values)) else math.nan
        summary[name] = (statistics.fmean(values), std)
    return summary


Column = tuple[str, str, str]  # (key, Markdown header, format) of a table column


D_COLUMNS: list[Column] = [
    ("d_real", "D(real)", ".3f"), ("d_fake", "D(fake)", ".3f"), ("d_fake_next", "D_t(G_t+1)", ".3f"),
    ("d_wins", "D wins", ".2f"), ("g_helped", "G step helped", ".2f"), ("seconds_per_step", "s/step", ".3f"),
]
SR_COLUMNS: list[Column] = [
    ("ssim_final", "SSIM final", ".4f"), ("ssim_tail", "SSIM tail", ".4f"),
    ("mse_final", "MSE final", ".2f"), ("mse_tail", "MSE tail", ".2f"),
    ("psnr_final", "PSNR final", ".2f"), ("psnr_tail", "PSNR tail", ".2f"),
    ("hf_ratio_final", "high-band final", ".3f"), ("hf_ratio_tail", "high-band tail", ".3f"),
    ("critic", "critic acc.", ".3f"), *D_COLUMNS,
]


TOY_COLUMNS: list[Column] = [
    ("modes", "modes", ".1f"), ("high_quality", "high-quality %", ".1f"), ("reverse_kl", "reverse KL", ".3f"),
    *D_COLUMNS,
]


def format_cell(value: tuple[float, float] | None, spec: str) -> str:
    if value is None:
        return ""
    mean, std = value
    if math.isnan(mean):  # not measured (a critic test not run, a figure the run lacks)
        return ""
    return f"{mean:{spec}}" if math.isnan(std) else f"{mean:{spec}} ± {std:{spec}}"


def write_tables(rows: list[dict[str, Any]], columns: list[Column], stem: Path, notes: str) -> list[Path]:
    """stem.md (mean ± std cells, then the notes) and stem.csv (<key>_mean,
    <key>_std columns; empty where a row has no such figure)."""
    lines = ["| schedule | seeds | " + " | ".join(header for _, header, _ in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        cells = [format_cell(row.get(key), spec) for key, _, spec in columns]
        lines.append(f"| {row['schedule']} | {row['seeds']} | " + " | ".join(cells) + " |")
    markdown = stem.with_suffix(".md")
    write_text_atomic(markdown, "\n".join(lines) + "\n\n" + notes + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["schedule", "seeds"] + [f"{key}_{part}" for key, _, _ in columns for part in ("mean", "std")])
    for row in rows:
        cells = []
        for key, _, _ in columns:
            cells += ["", ""] if key not in row else ["" if math.isnan(v) else f"{v:.6g}" for v in row[key]]
        writer.writerow([row["schedule"], row["seeds"], *cells])
    table = stem.with_suffix(".csv")
    write_text_atomic(table, buffer.getvalue())
    return [markdown, table]
