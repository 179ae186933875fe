"""The `srgan` command: thin typer commands that fill a config and call one library function."""

from __future__ import annotations

import functools
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from srgan_noise.base.errors import UserError

# rich_markup_mode=None: help texts say "[default: 0.1]", which rich would eat as markup.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Image super-resolution with a GAN that trains stably.")
console = Console(stderr=True)

Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
Seed = Annotated[int, typer.Option(help="Seed for weights, data order and noise.")]
Model = Annotated[str, typer.Option(help="Shipped weights to use when --weights is not given: real (trained on realistic degradations, for photos) | gan (sharper) | psnr (MSE-trained) | fast (the fast preset, about 40x quicker on a CPU); gan and psnr are trained on the bicubic benchmark protocol.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"srgan {version('srgan_noise')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Image super-resolution with a GAN that trains stably."""


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def command(function: Callable) -> Callable:
    """Turn UserError (bad input, diverged training), and any OSError that reached
    here (a full disk, a permission) into one stderr line and exit 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _one_line_warnings
        try:
            return function(*args, **kwargs)
        except UserError as error:
            console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as error:  # writes made atomically: the previous files are intact
            where = f"{error.filename}: " if error.filename else ""
            console.print(f"[red]error:[/] {where}{error.strerror or error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[red]interrupted[/]: the last checkpoint written is kept", highlight=False)
            raise typer.Exit(130) from None

    return wrapper


def _reject_unused(reason: str, **given: object) -> None:
    """An option set explicitly that the chosen mode ignores is a mistake worth naming."""
    used = [name for name, value in given.items() if value is not None]
    if used:
        names = ", ".join("--" + name.replace("_", "-") for name in used)
        raise UserError(f"{names} has no effect {reason}")


@app.command(short_help="MSE pre-training, then the stabilised GAN phase.")
@command
def train(
    data: Annotated[Optional[list[Path]], typer.Option(help="Folder of HR training images; repeat for several (default: scikit-image samples).")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Folder of HR validation images (full images).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<time>-<preset>-x<scale>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder (its saved config is used).")] = None,
    scale: Annotated[int, typer.Option(help="2, 4 or 8.")] = 4,
    preset: Annotated[str, typer.Option(help="tiny | small | srresnet (16 blocks x 64) | fast (a sub-pixel network on the LR grid, for CPU speed).")] = "small",
    no_batch_norm: Annotated[bool, typer.Option("--no-batch-norm", help="Generator without BN.")] = False,
    image_skip: Annotated[bool, typer.Option(help="Add the bicubic-upsampled input to G's output (off: Ledig's original).")] = True,
    upsample: Annotated[Optional[str], typer.Option(help="G's x2 stages: pixel-shuffle (Ledig's: conv to 4x channels, PixelShuffle) | nearest (ESRGAN's: nearest x2, then conv; no per-sub-pixel weights, which the GAN grew into a pattern repeating every 2-4 px) [default: nearest for tiny, small and srresnet].")] = None,
    projection: Annotated[str, typer.Option(help="none | affine: project G's output onto the images whose bicubic downscaling is exactly the input (Sonderby et al. 2016); saved with the weights, so upscale and eval apply it.")] = "none",
    degradation: Annotated[str, typer.Option(help="How LR training patches are made: bicubic (antialiased, the SR benchmark protocol) | bicubic-mixed (per patch at random: one in ten antialiased, nine in ten OpenCV's INTER_CUBIC without antialiasing, as ESPCN and FSRCNN were trained) | realistic (a random chain per patch: blur, one of six downscalers, Gaussian/Poisson noise, JPEG 30-95; docs/real-photos.md). Validation stays bicubic.")] = "bicubic",
    noise: Annotated[str, typer.Option(help="Instance noise: none | constant | linear (sigma0 -> 0).")] = "constant",
    sigma0: Annotated[Optional[float], typer.Option(help="Noise std in [0,1] intensity units [default: 0.1].")] = None,
    noise_steps: Annotated[Optional[int], typer.Option(help="Step where linear noise reaches 0 [default: --steps].")] = None,
    reg: Annotated[str, typer.Option(help="none | roth (analytic instance noise) | r1 (reals) | r2 (fakes): +gamma/2 * penalty on the D loss, R1/R2 = E||grad_x D-logit||^2 (Mescheder's 1/2 convention).")] = "none",
    gamma0: Annotated[Optional[float], typer.Option(help="Roth gamma at step 0, a noise variance [default: 2.0].")] = None,
    gamma_schedule: Annotated[Optional[str], typer.Option(help="annealed (gamma0*0.01^(t/T)) | constant [default: annealed].")] = None,
    reg_every: Annotated[Optional[int], typer.Option(help="Apply the regulariser every k-th D step, scaled by k [default: 1].")] = None,
    reg_share: Annotated[Optional[float], typer.Option(help="Compute the regulariser on this share of each batch (its first round(share x batch) real and fake patches), in a forward of its own: about that share of its cost; with D's batch norm each term sees the share as its batch (docs/training.md, 'Cost') [default: 1, the whole batch].")] = None,
    label_smoothing: Annotated[bool, typer.Option("--label-smoothing", help="One-sided: real target 0.9.")] = False,
    loss: Annotated[str, typer.Option(help="non-saturating | saturating (log(1-D)) | lsgan | hinge | wgan (clipping, RMSProp) | wgan-gp | ebgan (D an auto-encoder whose energy is its reconstruction error; monitored as sigmoid(4 (1 - 2 energy/margin))) | relativistic (relativistic average, ESRGAN's: real more realistic than the average fake).")] = "non-saturating",
    clip: Annotated[Optional[float], typer.Option(help="wgan: clip D weights to [-c, c] [default: 0.01].")] = None,
    gp_weight: Annotated[Optional[float], typer.Option(help="wgan-gp: lambda of (||grad D(x_hat)|| - 1)^2 [default: 10].")] = None,
    ebgan_margin: Annotated[Optional[float], typer.Option(help="ebgan: margin m of max(0, m - energy(fake)), in the energy's units (mean squared error, images in [0, 1]) [default: 0.1].")] = None,
    pt_weight: Annotated[Optional[float], typer.Option(help="ebgan: weight of the pulling-away term on D's codes of the fakes in G's loss (EBGAN-PT: 0.1) [default: 0].")] = None,
    spectral_norm: Annotated[bool, typer.Option("--spectral-norm", help="Spectral normalisation on every conv/linear of the VGG-style D (the U-Net always has it).")] = False,
    minibatch_discrimination: Annotated[int, typer.Option(help="Minibatch discrimination kernels in D (0: off).")] = 0,
    d_norm: Annotated[Optional[str], typer.Option(help="D's normalisation: batch | virtual (each example normalised with a fixed reference batch of real patches and itself; Salimans et al. 2016) | none (with batch norm, real and fake batches are normalised apart, which hides from D what differs between them) [default: none].")] = None,
    vbn_reference: Annotated[Optional[int], typer.Option(help="--d-norm virtual: patches in the reference batch [default: 8].")] = None,
    d_arch: Annotated[Optional[str], typer.Option(help="The discriminator: unet (Real-ESRGAN's U-Net with spectral norm, a realism logit per pixel; the monitor shows means over pixels) | vgg (Ledig et al.'s, a logit per image) [default: the preset's].")] = None,
    feature_matching: Annotated[str, typer.Option(help="none | replace | add: ||mean f(real) - mean f(fake)||^2 on D's last conv features as G's adversarial term.")] = "none",
    historical_averaging: Annotated[float, typer.Option(help="Weight of ||theta - mean of past theta||^2 for both players (0: off).")] = 0.0,
    content: Annotated[str, typer.Option(help="G's content term in the GAN phase: mse | l1 | vgg (Ledig's VGG54, needs --vgg-weights) | none (adversarial alone; use with --projection affine). Pre-training is MSE.")] = "mse",
    vgg_weights: Annotated[Optional[Path], typer.Option(help="--content vgg: torchvision VGG19 ImageNet weights, a state dict (.pth) or .safetensors (nothing is downloaded).")] = None,
    adv_weight: Annotated[float, typer.Option(help="Weight of the adversarial term.")] = 1e-2,
    d_feature_weight: Annotated[float, typer.Option(help="Weight of pix2pixHD's feature loss, added to the content term: the L1 between D's feature maps of each SR output and of its HR image, a perceptual loss with no downloaded weights (0: off).")] = 0.0,
    init: Annotated[Optional[Path], typer.Option(help="Start G from these generator weights (e.g. the shipped PSNR model) instead of a random initialisation; with --pretrain-steps 0 the GAN phase starts from them.")] = None,
    ema: Annotated[float, typer.Option(help="Decay of an exponential moving average of G's weights over the GAN phase (e.g. 0.999, as Real-ESRGAN); validation and the weights files use it. 0: off (the last iterate).")] = 0.0,
    d_steps: Annotated[int, typer.Option(help="D updates per G update.")] = 1,
    steps: Annotated[Optional[int], typer.Option(help="GAN steps [default: 200]; with --resume, a new total.")] = None,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="MSE pre-training steps [default: 300]; with --resume, extends a run still pre-training.")] = None,
    batch_size: Annotated[int, typer.Option(help="Patches per step over all processes; under torchrun each of the N processes takes batch-size/N.")] = 8,
    patch_size: Annotated[int, typer.Option(help="HR patch side (multiple of the scale).")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate, GAN phase.")] = 1e-4,
    d_lr: Annotated[Optional[float], typer.Option(help="D's learning rate, GAN phase (higher than G's: the two time-scale rule) [default: 2e-3 for the U-Net D, else --lr].")] = None,
    pretrain_lr: Annotated[float, typer.Option(help="Adam learning rate, MSE phase.")] = 2e-4,
    pretrain_lr_schedule: Annotated[str, typer.Option(help="constant | cosine (from --pretrain-lr down to 0 at the end of pre-training).")] = "constant",
    log_every: Annotated[int, typer.Option(help="Steps per monitoring window (validation at each).")] = 25,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (multiple of --log-every).")] = 100,
    device: Device = "auto",
    amp: Annotated[bool, typer.Option("--amp", help="bfloat16 autocast.")] = False,
    sync_batch_norm: Annotated[bool, typer.Option("--sync-batch-norm", help="Under torchrun on CUDA: batch-norm statistics over the global batch (SyncBatchNorm).")] = False,
    seed: Seed = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a generator: MSE pre-training, then the stabilised GAN phase.

    Several GPUs: torchrun --nproc-per-node N -m srgan_noise train ... (DistributedDataParallel; rank 0 writes)."""
    from srgan_noise.base.config import preset as make_preset
    from srgan_noise.evaluation.plot import plot_run
    from srgan_noise.training.checkpoint import load_checkpoint
    from srgan_noise.training.distributed import world_from_environment
    from srgan_noise.training.train import train as run_training
    from srgan_noise.training.train_config import TrainConfig

    if resume is not None:
        if init is not None:
            raise UserError("--init starts a new run; a resumed run continues from its checkpoint")
        if resume.is_file() and resume.name != "checkpoint.pt":
            raise UserError(f"--resume {resume}: is a file; give the run folder (it holds checkpoint.pt)")
        if resume.is_file():  # RUN/checkpoint.pt: the run is its folder
            resume = resume.parent
        checkpoint = load_checkpoint(resume)
        try:
            saved = TrainConfig.from_dict(checkpoint["config"])
        except UserError as error:
            raise UserError(f"{resume}/checkpoint.pt: {error}") from None
        except (TypeError, ValueError) as error:
            raise UserError(f"{resume}/checkpoint.pt: unreadable config ({error})") from None
        if pretrain_steps is not None and pretrain_steps != saved.pretrain_steps:
            if checkpoint["step"] >= saved.pretrain_steps or pretrain_steps < checkpoint["step"]:
                raise UserError(f"{resume}: at step {checkpoint['step']} with pre-training ending at "
                                f"{saved.pretrain_steps}; --pretrain-steps can only move an unfinished end later")
        if steps is not None:
            saved = saved.extended(steps)
        overrides = {"pretrain_steps": pretrain_steps}
        config = TrainConfig.from_dict({**saved.to_dict(), "out": str(resume), "progress": progress,
                                        **{name: value for name, value in overrides.items() if value is not None}})
    else:
        if noise == "none":
            _reject_unused("with --noise none", sigma0=sigma0, noise_steps=noise_steps)
        if reg == "none":
            _reject_unused("with --reg none", gamma0=gamma0, gamma_schedule=gamma_schedule, reg_every=reg_every,
                           reg_share=reg_share)
        if loss != "wgan":
            _reject_unused("without --loss wgan", clip=clip)
        if loss != "wgan-gp":
            _reject_unused("without --loss wgan-gp", gp_weight=gp_weight)
        if loss != "ebgan":
            _reject_unused("without --loss ebgan", ebgan_margin=ebgan_margin, pt_weight=pt_weight)
        d_norm = d_norm or "none"  # batch norm hides what differs between a real and a fake batch (docs/stabilisation-evidence.md)
        if d_norm != "virtual":
            _reject_unused(f"with --d-norm {d_norm}", vbn_reference=vbn_reference)
        if minibatch_discrimination < 0:
            raise UserError(f"--minibatch-discrimination must be >= 0 (0: off), got {minibatch_discrimination}")
        model = make_preset(
            preset, scale=scale, **({"batch_norm": False} if no_batch_norm else {}), image_skip=image_skip,
            **({"upsample": upsample} if upsample else {}), projection=projection,
            d_norm=d_norm, d_spectral_norm=spectral_norm, d_minibatch_kernels=minibatch_discrimination,
            d_autoencoder=loss == "ebgan", **({"d_reference_size": vbn_reference} if vbn_reference is not None else {}),
            **({"d_arch": d_arch} if d_arch else {}))
        # Options left unset (None) take TrainConfig's defaults, the one place they live.
        unset_or_given = dict(sigma0=sigma0, gamma0=gamma0, gamma_schedule=gamma_schedule, reg_every=reg_every,
                              reg_share=reg_share,
                              clip=clip, gp_weight=gp_weight, ebgan_margin=ebgan_margin, pt_weight=pt_weight,
                              steps=steps, pretrain_steps=pretrain_steps)
        config = TrainConfig(
            out=str(out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-x{scale}"),
            data=tuple(str(folder) for folder in data) if data else None,
            val=str(val) if val else None, degradation=degradation, model=model, noise=noise, noise_steps=noise_steps, reg=reg,
            label_smoothing=label_smoothing, loss=loss, content=content,
            vgg_weights=str(vgg_weights) if vgg_weights else None, adv_weight=adv_weight,
            d_feature_weight=d_feature_weight, init=str(init) if init else None, ema=ema, feature_matching=feature_matching,
            historical_averaging=historical_averaging, d_steps=d_steps,
            batch_size=batch_size, patch_size=patch_size, lr=lr, d_lr=d_lr, pretrain_lr=pretrain_lr,
            pretrain_lr_schedule=pretrain_lr_schedule, log_every=log_every,
            checkpoint_every=checkpoint_every, device=device, amp=amp, sync_batch_norm=sync_batch_norm, seed=seed,
            progress=progress, **{name: value for name, value in unset_or_given.items() if value is not None},
        )
    if resume is not None and sync_batch_norm:  # a resumed run may take it up, e.g. on moving to torchrun
        config = TrainConfig.from_dict({**config.to_dict(), "sync_batch_norm": True})
    world = world_from_environment()
    if world.distributed and world.is_main:
        console.print(f"torchrun: {world.size} processes, global batch {config.batch_size} = {world.size} x "
                      f"{config.batch_size // world.size} patches per process", highlight=False)
    run = run_training(config, resume=resume is not None, world=world)
    if not world.is_main:
        return
    figure = plot_run(run)
    console.print(f"done: run in {run}/ (metrics.jsonl, tb/, checkpoint.pt), "
                  f"generator weights {run}/generator.safetensors, plot {figure}", highlight=False, soft_wrap=True)


@app.command(short_help="Plot the D curves and validation figures of a run.")
@command
def plot(
    run: Annotated[Path, typer.Argument(help="A run folder written by srgan train.")],
    out: Annotated[Optional[Path], typer.Option(help="PNG to write [default: RUN/monitor.png].")] = None,
) -> None:
    """Plot D(real) blue, D(fake) red, D_t(G_{t+1}) orange, then validation SSIM, MSE, PSNR and high-band ratio."""
    from srgan_noise.evaluation.plot import plot_run

    console.print(f"wrote {plot_run(run, out)}", highlight=False)


@app.command(short_help="Upscale images, tile by tile (exactly the untiled output).")
@command
def upscale(
    inputs: Annotated[list[Path], typer.Argument(help="Image files, and folders of images (their non-image files are skipped with a note).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="A file for one input file, else a folder [default: NAME_x<scale>.EXT beside each input].")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Generator weights written by srgan train (RUN/generator.safetensors) [default: the shipped --model at --scale].")] = None,
    model: Annotated[Optional[str], typer.Option(help="Shipped weights when --weights is not given: real (trained on realistic degradations: blur, resizers, noise, JPEG; for photos) | gan (sharper) | psnr (MSE-trained) | fast (the fast preset, about 40x quicker on a CPU); gan and psnr are trained on the bicubic benchmark protocol [default: real where shipped at the scale, else gan].")] = None,
    scale: Annotated[Optional[int], typer.Option(help="The model's scale, 2 | 4 (| 8), choosing among the shipped weights [default: 4; with --outscale the smallest shipped scale >= it; with --weights the file's].")] = None,
    outscale: Annotated[Optional[float], typer.Option(help="Resize the model's output to round(OUTSCALE x the input size), Pillow bicubic (antialiased when shrinking); from 1 to twice the model's scale. Outputs are named NAME_x<OUTSCALE>.EXT.")] = None,
    tile: Annotated[int, typer.Option(help="LR pixels per tile side, context excluded.")] = 256,
    overlap: Annotated[str, typer.Option(help="LR pixels of context around each tile; auto: the generator's receptive radius, which makes the output equal the untiled one.")] = "auto",
    batch_tiles: Annotated[Optional[int], typer.Option(help="Tiles per forward pass [default: 4 on CUDA; 1 on CPU, where batches gain nothing and cost memory].")] = None,
    device: Device = "auto",
    precision: Annotated[str, typer.Option(help="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16; non-finite fp16/bf16 tiles are redone in fp32.")] = "auto",
    ext: Annotated[str, typer.Option(help="auto (the input's format; bmp -> png) | png | jpg | webp")] = "auto",
    alpha: Annotated[str, typer.Option(help="Alpha channel: bicubic | model (through the generator).")] = "bicubic",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse larger inputs [default: Pillow's decompression-bomb limit, 89,478,485].")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Upscale images with a trained generator, tile by tile; the tiles stitch to exactly the untiled output.

    Grey, RGBA (alpha upscaled separately), palette and 16-bit PNG/TIFF inputs are written back in their mode and depth.

    Animated or multi-page images are upscaled from their first frame, with a one-line warning.

    Memory is the output's own 8-bit (or 16-bit) size plus about 1 GB; an output that does not fit in the available memory or disk is refused up front.

    Bad inputs are reported one line each and skipped; the others are still upscaled, and the exit status is 2 if any failed."""
    from srgan_noise.inference.upscale_files import UpscaleConfig, upscale_files

    if overlap != "auto" and not overlap.isdigit():
        raise UserError(f"--overlap must be auto or a number of LR pixels, got {overlap!r}")
    config = UpscaleConfig(
        inputs=tuple(str(path) for path in inputs), out=str(out) if out else None,
        weights=str(weights) if weights else None, model=model, scale=scale, outscale=outscale, tile=tile,
        overlap=None if overlap == "auto" else int(overlap),
        batch_tiles=batch_tiles, device=device, precision=precision, ext=ext, alpha=alpha, force=force,
        progress=progress, **({"max_pixels": max_pixels} if max_pixels is not None else {}),
    )
    try:
        report = upscale_files(config, console)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: the images written so far are complete", highlight=False)
        raise typer.Exit(130) from None
    if report.failed:
        if report.total > 1:
            console.print(f"[red]error:[/] {len(report.failed)} of {report.total} inputs failed", highlight=False)
        raise typer.Exit(2)


@app.command(short_help="Compare stabilisation schedules side by side.")
@command
def compare(
    schedules: Annotated[str, typer.Option(help="Comma-separated, from: none, noise-linear, noise-constant, "
                                                "roth-annealed, roth-constant, label-smoothing, saturating, lsgan, hinge, "
                                                "relativistic, "
                                                "wgan, wgan-gp, r1, r2 (gamma/2 E||grad||^2, gamma 2.0 SR), spectral-norm, "
                                                "minibatch-discrimination, feature-matching, historical-averaging, "
                                                "virtual-batch-norm, ebgan, ebgan-pt "
                                                "(see docs/stabilisation.md). NAME@S sets its strength (sigma0 of "
                                                "noise-*, gamma0 of roth-*/r1/r2, ...), NAME@S/K a regulariser every "
                                                "K-th D step: noise-linear@0.03,roth-constant@0.1/4.")] = "none,noise-linear,noise-constant,roth-annealed,roth-constant,label-smoothing",
    seeds: Annotated[int, typer.Option(help="Runs per schedule, seeds 0..N-1.")] = 3,
    steps: Annotated[Optional[int], typer.Option(help="GAN steps [default: 200 SR, 3000 toy].")] = None,
    toy: Annotated[Optional[str], typer.Option(help="ring (8 modes, std 0.01) | grid (25 modes, std 0.05): the 2-D "
                                                    "toy instead of SR; noise sigma0 = mode spacing/4, Roth gamma0 = "
                                                    "sigma0^2 (ring 0.19/0.037, grid 0.5/0.25).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for runs, tables and PNGs; finished runs there are reused.")] = Path("runs/compare"),
    pretrain_steps: Annotated[Optional[int], typer.Option(help="SR: MSE steps per seed, shared by all schedules [default: 300; 0 with --init].")] = None,
    init: Annotated[Optional[Path], typer.Option(help="SR: generator weights every run starts from (e.g. srgan_noise/inference/pretrained/srresnet_x4.safetensors), which fix the generator's architecture (--preset then sets D's); with --pretrain-steps 0 (its default then) each schedule's GAN phase starts from them.")] = None,
    data: Annotated[Optional[list[Path]], typer.Option(help="SR: folder of HR training images; repeat for several [default: scikit-image samples].")] = None,
    val: Annotated[Optional[Path], typer.Option(help="SR: folder of HR validation images (needed with --data).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="SR: tiny | small | srresnet [default: tiny].")] = None,
    scale: Annotated[Optional[int], typer.Option(help="SR: 2, 4 or 8 [default: 4].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="SR: patches per step [default: 8].")] = None,
    patch_size: Annotated[Optional[int], typer.Option(help="SR: HR patch side [default: 64].")] = None,
    log_every: Annotated[Optional[int], typer.Option(help="SR: steps per window (validation at each) [default: 25].")] = None,
    projection: Annotated[Optional[str], typer.Option(help="SR: none | affine: every run's generator ends with the affine projection [default: none].")] = None,
    upsample: Annotated[Optional[str], typer.Option(help="SR: the generator's x2 stages, nearest | pixel-shuffle [default: the preset's, nearest].")] = None,
    d_norm: Annotated[Optional[str], typer.Option(help="SR: the discriminator's normalisation in every run whose schedule does not set it: batch | virtual | none [default: none].")] = None,
    d_arch: Annotated[Optional[str], typer.Option(help="SR: the discriminator of every run: unet (a logit per pixel) | vgg (a logit per image) [default: the preset's].")] = None,
    d_feature_weight: Annotated[Optional[float], typer.Option(help="SR: weight of the paired D-feature L1 (pix2pixHD) added to G's content term [default: 0].")] = None,
    content: Annotated[Optional[str], typer.Option(help="SR: G's content term in the GAN phase: mse | l1 | none (the adversarial term alone) [default: mse].")] = None,
    adv_weight: Annotated[Optional[float], typer.Option(help="SR: weight of the adversarial term [default: 1e-2].")] = None,
    ema: Annotated[Optional[float], typer.Option(help="SR: decay of G's moving average over the GAN phase, which validation and the critic score (0: off) [default: 0].")] = None,
    d_lr: Annotated[Optional[float], typer.Option(help="SR: D's learning rate [default: 2e-3 for the U-Net D, else G's, 1e-4].")] = None,
    critic_steps: Annotated[Optional[int], typer.Option(help="SR: train steps of the critic two-sample test of each run's final generator on the validation images (0: skip it) [default: 400; --critic-seeds tests of about 8 s each].")] = None,
    critic_seeds: Annotated[Optional[int], typer.Option(help="SR: critic tests averaged per run (seeds 0..N-1) [default: 5].")] = None,
    train: Annotated[bool, typer.Option(help="SR: --no-train tabulates and plots the runs in --out as far as they got, training nothing and running no critic test: critic accuracies come from the runs' cached critic.json, blank where there is none (a long sweep's progress).")] = True,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train under each stabilisation schedule and tabulate D behaviour and quality (SR task or 2-D toy)."""
    from srgan_noise.comparison.compare import compare as run_compare
    from srgan_noise.comparison.compare_config import CompareConfig

    if toy is not None:
        _reject_unused("with --toy", pretrain_steps=pretrain_steps, init=init, data=data, val=val, preset=preset,
                       scale=scale, batch_size=batch_size, patch_size=patch_size, log_every=log_every,
                       critic_steps=critic_steps, critic_seeds=critic_seeds, projection=projection, upsample=upsample,
                       d_norm=d_norm, d_arch=d_arch, d_feature_weight=d_feature_weight, content=content,
                       adv_weight=adv_weight, ema=ema, d_lr=d_lr)
    if init is not None and pretrain_steps is None:
        pretrain_steps = 0
    given = {"pretrain_steps": pretrain_steps, "preset": preset, "scale": scale, "batch_size": batch_size,
             "patch_size": patch_size, "log_every": log_every, "critic_steps": critic_steps,
             "critic_seeds": critic_seeds, "projection": projection, "upsample": upsample, "d_norm": d_norm,
             "d_arch": d_arch, "d_feature_weight": d_feature_weight, "content": content, "adv_weight": adv_weight,
             "ema": ema, "d_lr": d_lr}
    config = CompareConfig(
        schedules=tuple(name.strip() for name in schedules.split(",") if name.strip()), seeds=seeds, out=str(out),
        toy=toy, steps=steps, data=tuple(str(folder) for folder in data) if data else None,
        val=str(val) if val else None, init=str(init) if init else None, train=train, device=device, progress=progress,
        **{name: value for name, value in given.items() if value is not None},
    )
    paths = run_compare(config)
    console.print("wrote " + ", ".join(str(path) for path in paths), highlight=False)


@app.command("eval", short_help="Benchmark PSNR, SSIM, high-band ratio on HR images.")
@command
def eval_(
    data: Annotated[Path, typer.Option(help="Folder of HR (ground-truth) images, e.g. ../shared/data/Set5.", show_default=False)],
    weights: Annotated[Optional[Path], typer.Option(help="Generator weights written by srgan train (RUN/generator.safetensors) [default: the shipped --model; none with --bicubic when that is absent].")] = None,
    model: Model = "gan",
    scale: Annotated[int, typer.Option(help="Must match the generator's scale.")] = 4,
    bicubic: Annotated[bool, typer.Option("--bicubic", help="Also score the bicubic baseline (PIL bicubic up from the same LR input).")] = False,
    degradation: Annotated[str, typer.Option(help="How the LR inputs are made from the HR images: pil-bicubic (the standard protocol) | pil-lanczos | pil-box | cv-area | cv-cubic | cv-linear (OpenCV's, no antialiasing) | jpeg75 | noise5 (pil-bicubic, then JPEG quality 75 / Gaussian noise sigma 5 of 255) | realistic (one draw of the training chain per image, seeded by its pixels).")] = "pil-bicubic",
    critic: Annotated[bool, typer.Option("--critic", help="Also run the critic two-sample test per method: a fresh small discriminator learns to tell HR from SR patches; its held-out accuracy (0.5: indistinguishable), the mean of --critic-seeds tests. About 8 s a test on a CPU.")] = False,
    critic_seeds: Annotated[Optional[int], typer.Option(help="With --critic: critic tests averaged per method, each its own split and initialisation (one test's accuracy moves by about 0.06 between seeds); ± is the standard error of their mean [default: 5].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder to write results.csv and results.json [default: print only].")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Folder to write index.html: a self-contained page with a before/after slider and zoom per image between any two methods and HR, and the table.")] = None,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Benchmark on a folder of HR images: crop to a multiple of the scale, LR by --degradation, super-resolve, then
    PSNR, SSIM (11x11 Gaussian, sigma 1.5) and the high-band power ratio (SR's power above the LR Nyquist over HR's;
    1.0: as much fine detail as the real image) on the BT.601 Y channel with a `scale` px border cropped."""
    from rich.measure import Measurement
    from rich.progress import Progress

    from srgan_noise.evaluation.evaluate import EvalConfig, evaluate, results_table
    from srgan_noise.evaluation.realism import CRITIC_STEPS

    if not critic:
        _reject_unused("without --critic", critic_seeds=critic_seeds)
    config = EvalConfig(data=str(data), weights=str(weights) if weights else None, model=model, scale=scale,
                        bicubic=bicubic, degradation=degradation,
                        critic_steps=CRITIC_STEPS if critic else 0,
                        **({"critic_seeds": critic_seeds} if critic_seeds is not None else {}),
                        out=str(out) if out else None, html=html,
                        device=device)
    with Progress(console=console, transient=True, disable=not (progress and console.is_terminal)) as bar:
        task = bar.add_task("images", total=None)
        result = evaluate(config, on_image=lambda name: bar.advance(task))
    if result.weights is None:
        console.print("note: no --weights and no shipped weights: bicubic baseline only", highlight=False)
    table, stdout = results_table(result), Console()
    # Never cut a figure to fit the terminal (or a pipe's 80 columns): widen instead.
    needed = Measurement.get(stdout, stdout.options.update(width=1000), table).maximum
    Console(width=max(stdout.width, needed)).print(table)
    if out is not None:
        console.print(f"wrote {out / 'results.csv'}, {out / 'results.json'}", highlight=False, soft_wrap=True)
    if html is not None:
        console.print(f"wrote {html / 'index.html'}", highlight=False, soft_wrap=True)


@app.command(short_help="Export a generator to ONNX (dynamic size).")
@command
def export(
    weights: Annotated[Path, typer.Argument(help="Generator weights (a .safetensors written by srgan train, or srgan_noise/inference/pretrained/*.safetensors).", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="The .onnx file to write.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    check: Annotated[bool, typer.Option(help="Compare ONNX Runtime's output with torch's on odd-sized random inputs (needs onnxruntime).")] = True,
) -> None:
    """Export a generator to ONNX: input "lr" (N, 3, h, w) in [0, 1], output "sr" (N, 3, h*scale, w*scale),
    N, h and w dynamic. The affine projection is not in the graph (see docs/inference.md)."""
    from srgan_noise.inference.export import ExportConfig, export as run_export

    difference = run_export(ExportConfig(weights=str(weights), out=str(out), force=force, check=check))
    checked = "" if difference is None else f" (max |onnxruntime - torch| = {difference:.1e} on odd sizes)"
    console.print(f"wrote {out}{checked}", highlight=False, soft_wrap=True)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's stop, `kill`) unwinds like an error, so every write in progress removes its
    hidden temporary file and run locks are released; SIGKILL cannot be caught (the next run cleans up)."""
    console.print("[red]error:[/] stopped by SIGTERM; files being written were removed, finished ones are kept",
                  highlight=False, soft_wrap=True)
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    app(prog_name="srgan")


if __name__ == "__main__":
    sys.exit(main())
