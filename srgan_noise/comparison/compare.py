"""`srgan compare`: the same GAN training under each stabilisation schedule,
on the SR task (shared MSE pre-training per seed) or on the 2-D toy, with a
Markdown/CSV table and a PNG of the discriminator curves and quality metrics."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from srgan_noise.base.atomic import atomic_path, write_text_atomic
from srgan_noise.base.config import D_NORMS, ModelConfig, preset
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.metrics import quantize
from srgan_noise.evaluation.evaluate import super_resolve
from srgan_noise.evaluation.realism import CRITIC_SEEDS, CRITIC_STEPS, repeated_critic_accuracy
from srgan_noise.inference.weights import load_generator
from srgan_noise.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from srgan_noise.training.data import SAMPLE_VAL, load_folder, load_samples, validation_pairs
from srgan_noise.training.monitor import METRICS_NAME, read_metrics
from srgan_noise.training.steps import GENERATOR_FIELDS
from srgan_noise.training.toy import (MIXTURE_STD, MIXTURES, MODE_SPACING, TOY_GAMMA0, TOY_SIGMA0, ToyConfig, ToyRun,
                                      mixture_centres, plot_snapshots, toy_metrics, train_toy)
from srgan_noise.training.train import GENERATOR_WEIGHTS, train
from srgan_noise.training.train_config import TrainConfig

# Schedule name -> the fields it sets, on a plain GAN (no noise, no regulariser,
# no smoothing), in both TrainConfig and ToyConfig. Strengths (sigma0, gamma0)
# are each mode's defaults: 0.1 and 2.0 for images, TOY_SIGMA0/TOY_GAMMA0 for the toy.
# "model" holds discriminator architecture fields (ModelConfig's; the toy's MLP
# takes the same names where they apply). The SR R1/R2 gamma is Roth's 2.0.
PLAIN = dict(noise="none", reg="none", label_smoothing=False)
SCHEDULES: dict[str, dict[str, Any]] = {
    "none": {},
    "noise-linear": dict(noise="linear"),
    "noise-constant": dict(noise="constant"),
    "roth-annealed": dict(reg="roth", gamma_schedule="annealed"),
    "roth-constant": dict(reg="roth", gamma_schedule="constant"),
    "label-smoothing": dict(label_smoothing=True),
    "saturating": dict(loss="saturating"),
    "lsgan": dict(loss="lsgan"),
    "hinge": dict(loss="hinge"),
    "relativistic": dict(loss="relativistic"),
    "wgan": dict(loss="wgan"),
    "wgan-gp": dict(loss="wgan-gp", model=dict(d_norm="none")),
    "r1": dict(reg="r1", gamma_schedule="constant"),
    "r2": dict(reg="r2", gamma_schedule="constant"),
    "spectral-norm": dict(model=dict(d_spectral_norm=True)),
    "minibatch-discrimination": dict(model=dict(d_minibatch_kernels=32)),
    "feature-matching": dict(feature_matching="replace"),
    "historical-averaging": dict(historical_averaging=1e-3),
    "virtual-batch-norm": dict(model=dict(d_norm="virtual")),
    "ebgan": dict(loss="ebgan", model=dict(d_autoencoder=True)),
    "ebgan-pt": dict(loss="ebgan", pt_weight=0.1, model=dict(d_autoencoder=True)),
}
# The field a schedule's strength sets: `srgan compare --schedules noise-linear@0.03,roth-constant@0.1/4`
# (NAME@STRENGTH, and /K for a regulariser computed on every K-th D step, scaled by K).
STRENGTHS = {"noise-linear": "sigma0", "noise-constant": "sigma0", "roth-annealed": "gamma0", "roth-constant": "gamma0",
             "r1": "gamma0", "r2": "gamma0", "wgan": "clip", "wgan-gp": "gp_weight",
             "historical-averaging": "historical_averaging", "ebgan": "ebgan_margin", "ebgan-pt": "pt_weight"}
REGULARISED = ("roth-annealed", "roth-constant", "r1", "r2")
DEFAULT_SCHEDULES = ("none", "noise-linear", "noise-constant", "roth-annealed", "roth-constant", "label-smoothing")
DEFAULT_STEPS = {"sr": 200, "toy": 3000}
PUBLISHED_MODES = {"ring": 6.3, "grid": 17.3}  # plain GAN in the PacGAN harness (Lin et al. 2018)
# Settings that may differ between a finished run and a request to reuse it.
UNCOMPARED = ("out", "progress", "device")
CRITIC_NAME = "critic.json"  # a run's critic two-sample test, cached


@dataclass(frozen=True)
class CompareConfig:
    schedules: tuple[str, ...] = DEFAULT_SCHEDULES
    seeds: int = 3  # seeds 0 .. seeds-1
    out: str = "runs/compare"
    toy: str | None = None  # ring | grid: the 2-D toy instead of the SR task
    steps: int | None = None  # GAN steps; None: DEFAULT_STEPS
    pretrain_steps: int = 300  # SR: MSE steps, once per seed, shared by all schedules
    # SR: generator weights every run starts from (the shipped PSNR model, say); with pretrain_steps 0
    # each schedule's GAN phase starts from them directly, with no shared pre-training run.
    init: str | None = None
    data: tuple[str, ...] | None = None  # SR: HR training folders; None: scikit-image samples
    val: str | None = None  # SR: HR validation folder (needed with data)
    preset: str = "tiny"
    scale: int = 4
    # SR: the regime every schedule's GAN phase runs in (TrainConfig's fields of the same names)
    projection: str = "none"  # none | affine
    upsample: str | None = None  # the generator's x2 stages (ModelConfig.upsample; None: the preset's)
    d_norm: str = "none"  # the discriminator's normalisation (ModelConfig.d_norm) where a schedule does not set it
    content: str = "mse"  # mse | l1 | none (vgg needs weights compare does not take)
    adv_weight: float = 1e-2
    ema: float = 0.0  # decay of G's moving average over the GAN phase (0: off)
    d_lr: float | None = None  # D's learning rate (None: G's, 1e-4)
    batch_size: int = 8
    patch_size: int = 64
    log_every: int = 25
    critic_steps: int = CRITIC_STEPS  # SR: the critic test of each run's final generator (0: not run)
    critic_seeds: int = CRITIC_SEEDS  # SR: critic tests averaged per run
    # SR: False tabulates and plots the runs in `out` as far as they got and trains nothing,
    # to look at a sweep that takes several sessions while it is under way.
    train: bool = True
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for spec in self.schedules:
            schedule_fields(spec)  # a clear error for an unknown name or a bad strength
        if not self.schedules or len(set(self.schedules)) != len(self.schedules):
            raise UserError("--schedules must name at least one schedule, each once")
        if self.critic_steps < 0 or self.critic_seeds < 1:
            raise UserError("--critic-steps must be >= 0 and --critic-seeds >= 1")
        if self.seeds < 1:
            raise UserError("--seeds must be at least 1")
        if self.toy is not None and self.toy not in MIXTURES:
            raise UserError(f"--toy must be one of {', '.join(MIXTURES)}")
        if self.steps is not None and self.steps < 1:
            raise UserError("--steps must be at least 1")
        if self.pretrain_steps < (0 if self.init is not None else 1):
            raise UserError("--pretrain-steps must be at least 1 (every schedule starts from the same pre-trained G), "
                            "or 0 with --init")
        if self.init is not None and self.toy is not None:
            raise UserError("--init is for the SR task")
        if self.init is not None and self.upsample is not None:
            raise UserError("--upsample has no effect with --init (the generator's architecture is the file's)")
        if self.d_norm not in D_NORMS:
            raise UserError(f"--d-norm must be one of {', '.join(D_NORMS)}, got {self.d_norm!r}")
        if self.content not in ("mse", "l1", "none"):
            raise UserError(f"--content must be one of mse, l1, none, got {self.content!r}")
        if self.toy is not None and not self.train:
            raise UserError("--no-train is for the SR task (a toy compare takes minutes)")
        if self.toy is None and self.data is not None and self.val is None:
            raise UserError("--data needs --val: the table compares validation SSIM, MSE and PSNR")

    @property
    def gan_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_STEPS["sr" if self.toy is None else "toy"]


def compare(config: CompareConfig) -> list[Path]:
    """Run (or reuse) every schedule and seed; returns the table (.md, .csv) and PNG paths."""
    return compare_toy(config) if config.toy is not None else compare_sr(config)


# 1. The SR task.


def schedule_fields(spec: str) -> dict[str, Any]:
    """The fields schedule `spec` sets on the plain GAN: NAME, NAME@STRENGTH (the
    field of STRENGTHS[NAME]) or, for a regulariser, NAME@STRENGTH/K (every K-th D step)."""
    name, _, strength = spec.partition("@")
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name}; choose from {', '.join(SCHEDULES)}")
    fields = {**PLAIN, **SCHEDULES[name]}
    if not strength:
        return fields
    if name not in STRENGTHS:
        raise UserError(f"schedule {spec}: {name} takes no strength (those that do: {', '.join(STRENGTHS)})")
    value, _, every = strength.partition("/")
    if every and name not in REGULARISED:
        raise UserError(f"schedule {spec}: /K (lazy, every K-th D step) is for {', '.join(REGULARISED)}")
    try:
        fields[STRENGTHS[name]] = float(value)
        if every:
            fields["reg_every"] = int(every)
    except ValueError:
        raise UserError(f"schedule {spec}: expected {name}@NUMBER{'[/K]' if name in REGULARISED else ''}") from None
    if fields[STRENGTHS[name]] < 0 or fields.get("reg_every", 1) < 1:
        raise UserError(f"schedule {spec}: the strength must be >= 0 and K >= 1")
    return fields


def run_name(spec: str) -> str:
    """A schedule's folder name: '/' would make a sub-folder."""
    return spec.replace("/", "-every")


def schedule_config(base: TrainConfig, spec: str) -> TrainConfig:
    fields = schedule_fields(spec)
    model = dataclasses.replace(base.model, **fields.pop("model", {}))
    return dataclasses.replace(base, **fields, model=model)


def regime_model(config: CompareConfig) -> ModelConfig:
    """Every run's architecture before its schedule: the preset's, with the regime's projection and D
    normalisation; with --init the generator's fields are the weights file's (the preset sets D)."""
    model = preset(config.preset, scale=config.scale, projection=config.projection, d_norm=config.d_norm,
                   **({"upsample": config.upsample} if config.upsample is not None else {}))
    if config.init is None:
        return model
    weights = load_generator(Path(config.init)).config
    return dataclasses.replace(model, **{name: getattr(weights, name) for name in GENERATOR_FIELDS})


def compare_sr(config: CompareConfig) -> list[Path]:
    out = Path(config.out)
    base = TrainConfig(
        data=config.data, val=config.val, model=regime_model(config),
        **PLAIN, content=config.content, adv_weight=config.adv_weight, ema=config.ema, d_lr=config.d_lr,
        init=config.init,
        steps=config.gan_steps, pretrain_steps=config.pretrain_steps, batch_size=config.batch_size,
        patch_size=config.patch_size, log_every=config.log_every,
        checkpoint_every=config.log_every * math.ceil(100 / config.log_every), device=config.device,
        progress=config.progress,
    )
    pretrained: list[Path | None] = []
    for seed in range(config.seeds if config.pretrain_steps else 0):
        pretrain_config = dataclasses.replace(base, out=str(out / f"pretrain-seed{seed}"), seed=seed, steps=0)
        pretrained.append(run_or_reuse(pretrain_config) if config.train else existing_run(pretrain_config))
    if config.pretrain_steps and not any(pretrained):
        raise UserError(f"{out}: no runs with these settings yet; run the command without --no-train first")
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    for name in config.schedules:
        runs[name] = []
        for seed in range(config.seeds):
            folder = out / f"{run_name(name)}-seed{seed}"
            run_config = dataclasses.replace(schedule_config(base, name), out=str(folder), seed=seed)
            if not config.train:
                run = existing_run(run_config)
                if run is not None and any(r.get("phase") == "gan" for r in read_metrics(run)):
                    runs[name].append(with_critic(run, run_config, config.critic_steps, config.critic_seeds))
                continue
            if pretrained and not (Path(run_config.out) / CHECKPOINT_NAME).exists():
                start_from(pretrained[seed], run_config)
            run = run_or_reuse(run_config)
            runs[name].append(with_critic(run, run_config, config.critic_steps, config.critic_seeds))
    runs = {name: records for name, records in runs.items() if records}
    if pretrained:
        done = [run for run in pretrained if run is not None]
        rows = [{"schedule": "mse-pretrain", "seeds": len(done),
                 **summarise([with_critic(run, base, config.critic_steps, config.critic_seeds) for run in done],
                             pretrain_figures)}]
    elif runs:  # --init: the weights' own figures, as the runs recorded them at step 0
        start = next(record for records in runs.values() for record in records[0] if record["phase"] == "init")
        critic = start_critic(base, out, config.critic_steps, config.critic_seeds)
        rows = [{"schedule": "init", "seeds": 1, **summarise([[start, *critic]], pretrain_figures)}]
    else:
        raise UserError(f"{out}: no runs with these settings yet; run the command without --no-train first")
    rows += [{"schedule": name + unfinished(records, config), "seeds": len(records), **summarise(records, sr_figures)}
             for name, records in runs.items()]
    tables = write_tables(rows, SR_COLUMNS, out / "compare", sr_notes(config))
    return [*tables, plot_sr(runs, out / "compare.png")]


def unfinished(runs: list[list[dict[str, Any]]], config: CompareConfig) -> str:
    """' (N of M GAN steps)' for a schedule whose shortest run has not reached the end, else ''."""
    reached = min(gan_records(records)[-1]["step"] for records in runs) - config.pretrain_steps
    return "" if reached >= config.gan_steps else f" ({reached} of {config.gan_steps} GAN steps)"


def run_or_reuse(config: TrainConfig) -> Path:
    """Train config.out to its last step: reuse it when its metrics already
    reach that step, continue it from its checkpoint otherwise."""
    run = existing_run(config)
    if run is None:
        (Path(config.out) / METRICS_NAME).unlink(missing_ok=True)  # records of a run killed before its first checkpoint
        return train(config)
    records = read_metrics(run)
    if records and records[-1]["step"] >= config.total_steps:
        return run
    return train(config, resume=True)


def existing_run(config: TrainConfig) -> Path | None:
    """config.out if it holds a checkpoint of a run with config's settings; None if no checkpoint."""
    run = Path(config.out)
    if not (run / CHECKPOINT_NAME).exists():
        return None
    saved = saved_settings(load_checkpoint(run)["config"])
    wanted = config.to_dict()
    differing = sorted(key for key in wanted if key not in UNCOMPARED and saved.get(key) != wanted[key])
    if differing:
        raise UserError(f"{run}: holds a run with other settings ({', '.join(differing)}); use another --out")
    return run


def with_critic(run: Path, config: TrainConfig, steps: int, seeds: int = CRITIC_SEEDS) -> list[dict[str, Any]]:
    """The run's metrics records, then (unless steps is 0) a {"phase": "critic",
    "critic": accuracy, ...} record: the critic two-sample test of the run's final
    generator on the validation images (realism.repeated_critic_accuracy: the mean of
    `seeds` tests, each critic trained `steps` steps), cached in <run>/critic.json."""
    records = read_metrics(run)
    if steps == 0:
        return records
    wanted = {"step": records[-1]["step"], "critic_steps": steps, "critic_seeds": seeds}
    return [*records, cached_critic(run / CRITIC_NAME, wanted, run / GENERATOR_WEIGHTS, config)]


def start_critic(config: TrainConfig, out: Path, steps: int, seeds: int = CRITIC_SEEDS) -> list[dict[str, Any]]:
    """[the critic record of config.init's generator] (as with_critic's, cached in
    <out>/init-critic.json with the weights' SHA-256), or [] when steps is 0."""
    if steps == 0:
        return []
    weights = Path(config.init)
    wanted = {"step": 0, "critic_steps": steps, "critic_seeds": seeds, "val": config.val,
              "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    return [cached_critic(out / "init-critic.json", wanted, weights, config)]


def cached_critic(cache: Path, wanted: dict[str, Any], weights: Path, config: TrainConfig) -> dict[str, Any]:
    """The critic record in `cache` if it was made with every setting in `wanted` (files from
    before critic_seeds existed hold one test); else made afresh for `weights` and written there."""
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if {"critic_seeds": 1, **saved}.items() >= wanted.items():
            return saved
    generator = load_generator(weights, resolve_device(config.device))
    record = {"phase": "critic", **wanted,
              **critic_test(generator, config, wanted["critic_steps"], wanted["critic_seeds"])}
    write_text_atomic(cache, json.dumps(record) + "\n")
    return record


def critic_test(generator: torch.nn.Module, config: TrainConfig, steps: int, seeds: int) -> dict[str, float]:
    """{"critic": accuracy, "critic_se": its standard error}: the mean of `seeds` critic two-sample
    tests (critics trained `steps` steps) of generator's outputs on config's validation images."""
    scale = config.model.scale
    images = load_samples(SAMPLE_VAL) if config.val is None else load_folder(Path(config.val))
    pairs = validation_pairs(images, scale)
    sr = [quantize(super_resolve(generator, lr[0])) for lr, _ in pairs]
    accuracy, error = repeated_critic_accuracy(sr, [hr[0] for _, hr in pairs], seeds, steps=steps, border=scale)
    return {"critic": accuracy, "critic_se": error}


def saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the fields added to TrainConfig since it was
    written at their defaults (as is, if it no longer loads)."""
    try:
        return TrainConfig.from_dict(saved).to_dict()
    except (TypeError, UserError):
        return saved


def start_from(pretrained: Path, config: TrainConfig) -> None:
    """Seed config.out with the pre-trained run: its metrics (so the curves
    include the pre-training) and its checkpoint (weights, optimisers and the
    data RNG, so every schedule sees the same batches) under config's settings."""
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pretrained / METRICS_NAME, run / METRICS_NAME)
    state = load_checkpoint(pretrained)
    # Only what pre-training trained: the GAN phase's D, optimisers and
    # averages are built fresh by train() for this schedule's architecture and loss.
    kept = {name: state[name] for name in ("step", "rng", "generator", "opt_pretrain")}
    save_checkpoint({**kept, "config": config.to_dict()}, run / CHECKPOINT_NAME)


# 2. Summaries: per-run figures, then mean and std over seeds.


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


# 3. Tables: (key, Markdown header, format) per column.

Column = tuple[str, str, str]
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


def sr_notes(config: CompareConfig) -> str:
    regime = (f"content {config.content} + {config.adv_weight:g} x adversarial"
              + (", affine projection" if config.projection == "affine" else "")
              + f", D norm {config.d_norm}"
              + (f", G's moving average (decay {config.ema:g})" if config.ema else "")
              + (f", D learning rate {config.d_lr:g}" if config.d_lr is not None else ""))
    start = f"{config.pretrain_steps} MSE steps per seed shared by every schedule"
    if config.init is not None:
        start = f"from {config.init}" + (f", {start}" if config.pretrain_steps else " (the init row)")
    return (f"SR x{config.scale}, preset {config.preset}, {regime}, data {' + '.join(config.data or ('scikit-image samples',))}, "
            f"val {config.val or 'chelsea'}; {start}, "
            f"then {config.gan_steps} GAN steps, batch {config.batch_size}, windows of {config.log_every} steps. "
            "Cells: mean ± std over seeds. final: at the last step; tail: mean over the last quarter of the GAN "
            "windows. MSE on Y in [0, 255]. high-band: SR's spectral power above the LR Nyquist over HR's (1.0: as "
            "much fine detail as the real images). critic acc.: held-out accuracy of a fresh small discriminator "
            "trained to tell the final generator's validation outputs from the HR images (0.5: indistinguishable). "
            "D columns: means over GAN windows; D wins: fraction of windows with "
            "D(real) > 0.95 and D(fake) < 0.05; G step helped: fraction with D_t(G_t+1) > D(fake).")


def plot_sr(runs: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """Seed 0's D-curves panel per schedule, then validation SSIM, MSE and
    high-band ratio over steps (mean over seeds) for every schedule on three shared panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srgan_noise.evaluation.plot import draw_d_curves

    columns = min(3, len(runs))
    d_rows = math.ceil(len(runs) / columns)
    figure = plt.figure(figsize=(4.5 * columns, 2.8 * (d_rows + 1.3)))
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


# 4. The 2-D toy.


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
