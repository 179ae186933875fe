"""The 2-D toy task of `srgan compare`: each schedule on a mixture of Gaussians,
scored by modes covered and sample quality against the published plain GAN."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from srgan_noise.base.atomic import write_text_atomic
from srgan_noise.base.errors import UserError
from srgan_noise.comparison.compare_config import CompareConfig
from srgan_noise.comparison.schedule_table import run_name, schedule_fields
from srgan_noise.comparison.tables import TOY_COLUMNS, d_figures, summarise, write_tables
from srgan_noise.training.toy import (MIXTURE_STD, MODE_SPACING, TOY_GAMMA0, TOY_SIGMA0, ToyConfig, ToyRun,
                                      mixture_centres, plot_snapshots, toy_metrics, train_toy)


PUBLISHED_MODES = {"ring": 6.3, "grid": 17.3}  # plain GAN in the PacGAN harness (Lin et al. 2018)


def compare_toy(config: CompareConfig) -> list[Path]:
    out, mixture = Path(config.out), config.toy
    base = ToyConfig(mixture=mixture, steps=config.gan_steps)
    runs: dict[str, list[ToyRun]] = {}
    for name in config.schedules:
        toy_config = toy_schedule_config(base, name)
        runs[name] = [toy_run_or_reuse(dataclasses.replace(toy_config, seed=seed),
                                       out / f"toy-{mixture}" / f"{run_name(name)}-seed{seed}.json")
                      for seed in range(config.seeds)]

    def figures(run: ToyRun) -> dict[str, float]:
        return {**toy_metrics(run.samples, mixture), **d_figures(run.records)}

    rows = [{"schedule": "plain GAN, published (PacGAN)", "seeds": "", "modes": (PUBLISHED_MODES[mixture], math.nan)}]
    rows += [{"schedule": name, "seeds": config.seeds, **summarise(seed_runs, figures)}
             for name, seed_runs in runs.items()]
    tables = write_tables(rows, TOY_COLUMNS, out / f"toy-{mixture}", toy_notes(base))
    snapshots = plot_snapshots({name: seed_runs[0] for name, seed_runs in runs.items()}, mixture,
                               out / f"toy-{mixture}.png")
    return [*tables, snapshots]


def toy_schedule_config(base: ToyConfig, name: str) -> ToyConfig:
    fields = schedule_fields(name)
    if "reg_every" in fields:
        raise UserError(f"schedule {name}: the toy has no lazy regularisation (/K)")
    model = fields.pop("model", {})  # the toy's discriminator takes ModelConfig's names for these
    model.pop("d_arch", None)  # the toy has one MLP discriminator, no image architectures to choose from
    return dataclasses.replace(base, **fields, **model)


def toy_run_or_reuse(config: ToyConfig, path: Path) -> ToyRun:
    """Load the toy run saved at path (JSON) when it was made with this config; train and save it otherwise."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["config"] == config.to_dict():
            snapshots = {int(step): torch.tensor(points) for step, points in saved["snapshots"].items()}
            return ToyRun(saved["records"], snapshots, torch.tensor(saved["samples"]))
    run = train_toy(config)
    # Atomic: a half-written file from an interrupted compare would not parse when reused.
    write_text_atomic(path, json.dumps({"config": config.to_dict(), "records": run.records,
                                "snapshots": {step: points.tolist() for step, points in run.snapshots.items()},
                                "samples": run.samples.tolist()}))
    return run


def toy_notes(base: ToyConfig) -> str:
    mixture = base.mixture
    return (f"2-D {mixture} ({len(mixture_centres(mixture))} modes, std {MIXTURE_STD[mixture]}): {base.steps} steps, "
            f"batch {base.batch_size}, generator and discriminator MLPs of 3 hidden ReLU layers x {base.width}, latent "
            f"{base.latent}, Adam lr {base.lr} betas (0.5, 0.999); {base.samples} samples scored. Instance noise "
            f"sigma0 {TOY_SIGMA0[mixture]:.3g} (a quarter of the mode spacing {MODE_SPACING[mixture]:.3g}); "
            f"Roth gamma0 {TOY_GAMMA0[mixture]:.3g} (its square), as is EBGAN's margin. Cells: mean ± std over seeds. modes: modes with "
            "a sample within 3 std; high-quality: samples within 3 std of the nearest mode; reverse KL: KL(mode "
            "histogram of the high-quality samples || uniform), nats. D columns as in the SR table.")
