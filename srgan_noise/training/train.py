"""`srgan train`: MSE pre-training of the generator, then the GAN phase with
instance noise and/or the Roth et al. regulariser, monitored every window."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, ContextManager

import torch

from srgan_noise.base.atomic import existing_ancestor, remove_leftovers
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.lock import locked_run
from srgan_noise.base.memory import available_memory, format_bytes
from srgan_noise.base.metrics import high_band_ratio, y_metrics
from srgan_noise.inference.weights import save_generator
from srgan_noise.models.discriminator import reference_stream
from srgan_noise.models.generator import Generator
from srgan_noise.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from srgan_noise.training.data import (SAMPLE_TRAIN, SAMPLE_VAL, PatchSampler, load_folder, load_samples,
                                       validation_pairs)
from srgan_noise.training.distributed import (World, device_for, from_main, mean_over_ranks, process_group, rank_seed,
                                              rank_slice, replicate)
from srgan_noise.training.monitor import MetricsLog, WindowMeans, first_non_finite
from srgan_noise.training.steps import Batch, build_nets, gan_step, initial_generator, pretrain_step, step_memory
from srgan_noise.training.train_config import TrainConfig

GENERATOR_WEIGHTS = "generator.safetensors"
PRETRAIN_WEIGHTS = "generator_pretrain.safetensors"  # the MSE (PSNR-oriented) generator


@torch.inference_mode()
def evaluate(generator: Generator, pairs: list[Batch], scale: int,
             device: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """Mean PSNR, MSE, SSIM and high-band power ratio (base/metrics.py) on the Y
    channel over full validation images, and a crop panel of the first (crop_panel)."""
    was_training = generator.training
    generator.eval()
    totals = {"psnr": 0.0, "mse": 0.0, "ssim": 0.0, "hf_ratio": 0.0}
    panel = None
    for lr, hr in pairs:
        sr = generator(lr.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
        figures = {**y_metrics(sr, hr, border=scale), "hf_ratio": high_band_ratio(sr, hr, scale, border=scale)}
        for name, value in figures.items():
            totals[name] += float(value.mean())
        if panel is None:
            panel = crop_panel(lr[0].float().cpu(), sr[0], hr[0], scale)
    generator.train(was_training)
    return {f"val_{name}": total / len(pairs) for name, total in totals.items()}, panel


def crop_panel(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int, size: int = 128) -> torch.Tensor:
    """(3, s, 3s) in [0, 1]: the centre s x s of the LR input (nearest, to show its
    pixels), the SR output and the HR image side by side (s = size, or less for small images)."""
    height, width = hr.shape[-2:]
    side = min(size, height, width) // scale * scale
    top, left = (height - side) // 2 // scale * scale, (width - side) // 2 // scale * scale
    window = (slice(None), slice(top, top + side), slice(left, left + side))
    small = lr[:, top // scale:(top + side) // scale, left // scale:(left + side) // scale]
    up = small.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    return torch.cat([up, sr[window], hr[window]], -1).clamp(0, 1)


def load_data(config: TrainConfig) -> tuple[PatchSampler, list[Batch]]:
    scale = config.model.scale
    if config.data is None:
        train_images, source = load_samples(SAMPLE_TRAIN), "scikit-image samples"
        val_images = load_samples(SAMPLE_VAL) if config.val is None else load_folder(Path(config.val))
    else:
        train_images = [image for folder in config.data for image in load_folder(Path(folder))]
        source = " + ".join(config.data)
        val_images = load_folder(Path(config.val)) if config.val is not None else []
    sampler = PatchSampler(train_images, config.patch_size, scale, source, config.degradation)
    return sampler, validation_pairs(val_images, scale)


def rng_states(data_rng: torch.Generator, device: torch.device) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "data": data_rng.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def train(config: TrainConfig, resume: bool = False, world: World = World()) -> Path:
    """Run (or continue, with resume) a training run in config.out; returns the run folder.

    Writes checkpoint.pt, metrics.jsonl, tb/ and generator.safetensors there,
    holding <run>/.lock so that a second process on the run is refused.
    Under torchrun every process calls this with its `world` (and rank 0's
    config is used): they train one model with DistributedDataParallel on
    config.batch_size / world.size patches each, and rank 0 alone writes."""
    if config.batch_size % world.size:
        raise UserError(f"--batch-size {config.batch_size} (the global batch) is not a multiple of the "
                        f"{world.size} processes")
    device = device_for(world, resolve_device(config.device))
    with process_group(world, device):
        return _train(from_main(config, world), resume, world, device)


def _train(config: TrainConfig, resume: bool, world: World, device: torch.device) -> Path:
    with contextlib.ExitStack() as held:  # the run folder's lock, released however training ends
        return _train_holding(config, resume, world, device, held)


def _train_holding(config: TrainConfig, resume: bool, world: World, device: torch.device,
                   held: contextlib.ExitStack) -> Path:
    run = Path(config.out)
    # Lock an existing run folder before reading its checkpoint; a new one once
    # made, after the inputs are checked (a bad --data leaves no folder behind).
    locked = world.is_main and _check_out(run)
    if locked:
        held.enter_context(locked_run(run))
    checkpoint = load_checkpoint(run) if resume else None
    if not resume and (run / CHECKPOINT_NAME).exists():
        raise UserError(f"{run}: already holds a run; use --resume to continue it or another --out")
    _check_step_memory(config, world, device)
    torch.manual_seed(config.seed)
    data_rng = torch.Generator().manual_seed(config.seed)  # alike on every rank: each draws the global batch
    sampler, val_pairs = load_data(config)
    nets = build_nets(config.model, config, device)
    if config.model.d_norm == "virtual":  # VBN's fixed reference batch (a checkpoint's replaces it below)
        _, reference = sampler.sample(config.model.d_reference_size, reference_stream(config.seed))
        nets.discriminator.reference.set(reference.contiguous(memory_format=torch.channels_last))
    if not val_pairs and world.is_main and not resume:  # once, at the start, after the inputs are known good
        warnings.warn("--data without --val: no validation figures (PSNR, SSIM, MSE, high-band ratio) "
                      "will be computed or plotted")
    step = 0
    if config.init is not None and checkpoint is None:
        nets.generator.load_state_dict(initial_generator(Path(config.init), config.model).state_dict())
    if checkpoint is not None:
        nets.generator.load_state_dict(checkpoint["generator"])
        # The GAN phase's state may be absent from a checkpoint written in
        # pre-training (srgan compare starts each schedule from one so): it
        # then starts as built, D from the same seeded initialisation.
        for name in ("discriminator", "opt_pretrain", "opt_g", "opt_d", "history_g", "history_d", "ema"):
            if getattr(nets, name) is not None and name in checkpoint:
                getattr(nets, name).load_state_dict(checkpoint[name])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        data_rng.set_state(checkpoint["rng"]["data"])
        if "cuda" in checkpoint["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
        step = checkpoint["step"]
        del checkpoint  # the states are copied in; don't hold a second copy (hundreds of MB) all run
    if world.rank > 0:  # its own noise; rank 0 keeps the one-process stream, the one checkpoints hold
        torch.manual_seed(rank_seed(config.seed, world.rank, step))
    # The steps call nets' modules, DDP-wrapped under torchrun; checkpoints,
    # validation and weights files use the plain modules (no "module." keys).
    generator, discriminator = nets.generator, nets.discriminator
    if world.distributed:
        nets = dataclasses.replace(nets, generator=replicate(generator, device, config.sync_batch_norm),
                                   discriminator=replicate(discriminator, device, config.sync_batch_norm))
    if world.is_main:
        try:
            run.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"{run}: cannot create the run folder ({error.strerror or error})") from None
        if not locked:
            held.enter_context(locked_run(run))
            if not resume and (run / CHECKPOINT_NAME).exists():  # another process began one meanwhile
                raise UserError(f"{run}: already holds a run; use --resume to continue it or another --out")
        remove_leftovers(run)  # temporary files of writes killed mid-way

    def autocast() -> ContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp)

    def to_device(batch: Batch) -> Batch:
        return tuple(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last) for x in batch)

    def draw() -> Batch:
        """This rank's slice of a global batch (the whole of it in one process)."""
        return to_device(rank_slice(sampler.sample(config.batch_size, data_rng), world))

    val_pairs = [(lr.contiguous(memory_format=torch.channels_last), hr) for lr, hr in val_pairs]
    log = MetricsLog(run, resume_step=step if resume else None) if world.is_main else None
    if log is not None and not resume and config.init is not None and val_pairs:
        # Where --init's weights start from, so the curves and `srgan compare` show the GAN phase's start.
        log.write({"step": 0, "phase": "init", **evaluate(generator, val_pairs, config.model.scale, device)[0]})
    window, window_start = WindowMeans(), time.perf_counter()
    progress = _progress(config) if config.progress and world.is_main else contextlib.nullcontext()
    try:
        with progress as bar:
            task = bar.add_task("train", total=config.total_steps, completed=step, info="") if bar else None
            while step < config.total_steps:
                gan = step >= config.pretrain_steps
                if gan:
                    batches = [draw() for _ in range(config.d_steps)]
                    values = gan_step(nets, batches, step - config.pretrain_steps, config, autocast)
                else:
                    for group in nets.opt_pretrain.param_groups:
                        group["lr"] = config.pretrain_learning_rate(step)
                    values = pretrain_step(nets, draw(), autocast)
                window.add(values)
                step += 1
                phase_end = step == config.pretrain_steps
                if step % config.log_every and not phase_end and step != config.total_steps:
                    if bar:
                        bar.update(task, completed=step)
                    continue

                # End of a window: means over steps and ranks, validation, log, maybe checkpoint.
                seconds = (time.perf_counter() - window_start) / window.counts["loss_pixel"]
                record = {"step": step, "phase": "gan" if gan else "pretrain",
                          **mean_over_ranks(window.means(), world, device), "seconds_per_step": seconds,
                          "world_size": world.size}
                panel = None
                # What the run delivers: G's moving average once the GAN phase has one, else G.
                delivered = nets.ema.module if nets.ema is not None and gan else generator
                if val_pairs and world.is_main:
                    figures, panel = evaluate(delivered, val_pairs, config.model.scale, device)
                    record.update(figures)
                record = from_main(record, world)  # so every rank stops alike on a non-finite figure
                bad = first_non_finite(record)
                if bad is not None:
                    raise UserError(
                        f"{run}: {bad} became {record[bad]} by step {step}; training stopped "
                        f"(last good checkpoint kept: {_describe_checkpoint(run)})"
                    )
                window.reset()
                if world.is_main:
                    log.write(record)
                    if panel is not None:  # BasicSR's habit: look at the output, not only its figures
                        log.write_image("val/lr_sr_hr", panel, step)
                if world.is_main and (step % config.checkpoint_every == 0 or step == config.total_steps or phase_end):
                    state = {"config": config.to_dict(), "step": step, "rng": rng_states(data_rng, device),
                             "generator": generator.state_dict(), "discriminator": discriminator.state_dict()}
                    for name in ("opt_pretrain", "opt_g", "opt_d", "history_g", "history_d", "ema"):
                        if getattr(nets, name) is not None:
                            state[name] = getattr(nets, name).state_dict()
                    save_checkpoint(state, run / CHECKPOINT_NAME)
                    averaged = {"ema": str(config.ema)} if delivered is not generator else {}
                    save_generator(delivered, run / GENERATOR_WEIGHTS, {"step": str(step), **averaged})
                    if phase_end:
                        save_generator(generator, run / PRETRAIN_WEIGHTS, {"step": str(step)})
                if bar:
                    bar.update(task, completed=step, info=_summary(record))
                window_start = time.perf_counter()
    finally:
        if log is not None:
            log.close()
    return run


def _check_step_memory(config: TrainConfig, world: World, device: torch.device) -> None:
    """Refuse, before anything is made, a batch whose step would not fit in this machine's memory
    (the kernel would kill the process mid-step). On CUDA torch's own out-of-memory error says it."""
    available = available_memory()
    if device.type != "cpu" or available is None:
        return
    batch = config.batch_size // world.size
    needed = step_memory(config.model, batch, config.patch_size)
    if needed > available:
        raise UserError(f"--batch-size {config.batch_size} of {config.patch_size} px patches needs about "
                        f"{format_bytes(needed)} of memory a step{' per process' if world.size > 1 else ''}, "
                        f"{format_bytes(available)} is available; lower --batch-size or --patch-size")


def _check_out(run: Path) -> bool:
    """Whether the run folder exists; a one-line error if it is a file or cannot be made or written."""
    if run.exists() and not run.is_dir():
        raise UserError(f"{run}: is a file, not a run folder")
    existing = existing_ancestor(run)
    if not existing.is_dir():
        raise UserError(f"{run}: cannot create the run folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{run}: cannot write there ({existing} is not writable)")
    return existing == run


def _describe_checkpoint(run: Path) -> str:
    path = run / CHECKPOINT_NAME
    if not path.exists():
        return "none written yet"
    return f"step {load_checkpoint(run)['step']} in {path}"


def _summary(record: dict[str, Any]) -> str:
    parts = [record["phase"], f"mse {record['loss_pixel']:.4f}"]
    if record["phase"] == "gan":
        parts += [f"D(real) {record['d_real']:.2f}", f"D(fake) {record['d_fake']:.2f}", f"loss_d {record['loss_d']:.3f}"]
    if "val_psnr" in record:
        parts.append(f"val {record['val_psnr']:.2f} dB, high-band {record['val_hf_ratio']:.2f}")
    return "  ".join(parts)


class _WindowLines:
    """Progress where stderr is no terminal (a log file, CI): one whole line per window, where
    a redrawn bar would leave only its last frame, cut at 80 columns."""

    def __enter__(self) -> "_WindowLines":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int, completed: int, info: str) -> int:
        self.total = total
        return 0

    def update(self, task: int, completed: int, info: str | None = None) -> None:
        if info:
            print(f"step {completed}/{self.total}  {info}", file=sys.stderr, flush=True)


def _progress(config: TrainConfig):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not sys.stderr.isatty():
        return _WindowLines()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
