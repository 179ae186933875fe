"""The SR task of `srgan compare`: one MSE pre-training per seed (or --init's weights),
then each schedule's GAN phase from it, reused when finished, each final generator
judged by the critic test (cached)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from srgan_noise.base.atomic import write_text_atomic
from srgan_noise.base.config import ModelConfig, preset
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.metrics import quantize
from srgan_noise.comparison.compare_config import CompareConfig
from srgan_noise.comparison.figures import plot_sr
from srgan_noise.comparison.schedule_table import PLAIN, run_name, schedule_fields
from srgan_noise.comparison.tables import SR_COLUMNS, gan_records, pretrain_figures, sr_figures, summarise, write_tables
from srgan_noise.evaluation.evaluate import super_resolve
from srgan_noise.evaluation.realism import CRITIC_SEEDS, repeated_critic_accuracy
from srgan_noise.inference.weights import load_generator
from srgan_noise.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from srgan_noise.training.data import SAMPLE_VAL, load_folder, load_samples, validation_pairs
from srgan_noise.training.monitor import METRICS_NAME, read_metrics
from srgan_noise.training.steps import GENERATOR_FIELDS
from srgan_noise.training.train import GENERATOR_WEIGHTS, train
from srgan_noise.training.train_config import TrainConfig


# Settings that may differ between a finished run and a request to reuse it.
UNCOMPARED = ("out", "progress", "device")
CRITIC_NAME = "critic.json"  # a run's critic two-sample test, cached


def schedule_config(base: TrainConfig, spec: str) -> TrainConfig:
    fields = schedule_fields(spec)
    model = dataclasses.replace(base.model, **fields.pop("model", {}))
    return dataclasses.replace(base, **fields, model=model)


def regime_model(config: CompareConfig) -> ModelConfig:
    """Every run's architecture before its schedule: the preset's, with the regime's projection and D
    normalisation; with --init the generator's fields are the weights file's (the preset sets D)."""
    model = preset(config.preset, scale=config.scale, projection=config.projection, d_norm=config.d_norm,
                   **({"upsample": config.upsample} if config.upsample is not None else {}),
                   **({"d_arch": config.d_arch} if config.d_arch is not None else {}))
    if config.init is None:
        return model
    weights = load_generator(Path(config.init)).config
    return dataclasses.replace(model, **{name: getattr(weights, name) for name in GENERATOR_FIELDS})


def compare_sr(config: CompareConfig) -> list[Path]:
    out = Path(config.out)
    base = TrainConfig(
        data=config.data, val=config.val, model=regime_model(config),
        **PLAIN, content=config.content, adv_weight=config.adv_weight, ema=config.ema, d_lr=config.d_lr,
        d_feature_weight=config.d_feature_weight,
        init=config.init,
        steps=config.gan_steps, pretrain_steps=config.pretrain_steps, batch_size=config.batch_size,
        patch_size=config.patch_size, log_every=config.log_every,
        checkpoint_every=config.log_every * math.ceil(100 / config.log_every), device=config.device,
        progress=config.progress,
    )
    # Every schedule's settings, built (and so checked) before any run trains.
    schedule_configs = {name: schedule_config(base, name) for name in config.schedules}
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
            run_config = dataclasses.replace(schedule_configs[name], out=str(folder), seed=seed)
            if not config.train:
                run = existing_run(run_config)
                if run is not None and any(r.get("phase") == "gan" for r in read_metrics(run)):
                    runs[name].append(with_critic(run, run_config, config.critic_steps, config.critic_seeds,
                                                  compute=False))
                continue
            if pretrained and not (Path(run_config.out) / CHECKPOINT_NAME).exists():
                start_from(pretrained[seed], run_config)
            run = run_or_reuse(run_config)
            runs[name].append(with_critic(run, run_config, config.critic_steps, config.critic_seeds))
    runs = {name: records for name, records in runs.items() if records}
    if pretrained:
        done = [run for run in pretrained if run is not None]
        rows = [{"schedule": "mse-pretrain", "seeds": len(done),
                 **summarise([with_critic(run, base, config.critic_steps, config.critic_seeds, compute=config.train)
                              for run in done], pretrain_figures)}]
    elif runs:  # --init: the weights' own figures, as the runs recorded them at step 0
        start = next(record for records in runs.values() for record in records[0] if record["phase"] == "init")
        critic = start_critic(base, out, config.critic_steps, config.critic_seeds, compute=config.train)
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


def with_critic(run: Path, config: TrainConfig, steps: int, seeds: int = CRITIC_SEEDS,
                compute: bool = True) -> list[dict[str, Any]]:
    """The run's metrics records, then (unless steps is 0) a {"phase": "critic",
    "critic": accuracy, ...} record: the critic two-sample test of the run's final
    generator on the validation images (realism.repeated_critic_accuracy: the mean of
    `seeds` tests, each critic trained `steps` steps), cached in <run>/critic.json;
    with compute False (--no-train), only a cached one."""
    records = read_metrics(run)
    if steps == 0:
        return records
    wanted = {"step": records[-1]["step"], "critic_steps": steps, "critic_seeds": seeds}
    critic = cached_critic(run / CRITIC_NAME, wanted, run / GENERATOR_WEIGHTS, config, compute)
    return [*records, critic] if critic is not None else records


def start_critic(config: TrainConfig, out: Path, steps: int, seeds: int = CRITIC_SEEDS,
                 compute: bool = True) -> list[dict[str, Any]]:
    """[the critic record of config.init's generator] (as with_critic's, cached in
    <out>/init-critic.json with the weights' SHA-256), or [] when steps is 0."""
    if steps == 0:
        return []
    weights = Path(config.init)
    wanted = {"step": 0, "critic_steps": steps, "critic_seeds": seeds, "val": config.val,
              "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    critic = cached_critic(out / "init-critic.json", wanted, weights, config, compute)
    return [critic] if critic is not None else []


def cached_critic(cache: Path, wanted: dict[str, Any], weights: Path, config: TrainConfig,
                  compute: bool = True) -> dict[str, Any] | None:
    """The critic record in `cache` if it was made with every setting in `wanted` (files from
    before critic_seeds existed hold one test); else made afresh for `weights` and written
    there, or None when compute is False (a critic test takes seconds to minutes)."""
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if {"critic_seeds": 1, **saved}.items() >= wanted.items():
            return saved
    if not compute:
        return None
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


def sr_notes(config: CompareConfig) -> str:
    regime = (f"content {config.content} + {config.adv_weight:g} x adversarial"
              + (", affine projection" if config.projection == "affine" else "")
              + (f" + {config.d_feature_weight:g} x D-feature L1" if config.d_feature_weight else "")
              + f", D {regime_model(config).d_arch}, D norm {config.d_norm}"
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
