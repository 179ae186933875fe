"""`srgan train`: MSE pre-training of the generator, then the GAN phase with
instance noise and/or the Roth et al. regulariser, monitored every window."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from srgan_noise.base.atomic import existing_ancestor, remove_leftovers
from srgan_noise.base.config import ModelConfig, preset
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.lock import locked_run
from srgan_noise.base.metrics import high_band_ratio, y_metrics
from srgan_noise.inference.weights import load_generator, save_generator
from srgan_noise.models.discriminator import (AutoEncoderDiscriminator, Discriminator, build_discriminator,
                                              reference_stream)
from srgan_noise.models.generator import Generator, SubPixelGenerator, build_generator
from srgan_noise.models.perceptual import MISSING_WEIGHTS, load_vgg_loss
from srgan_noise.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from srgan_noise.training.data import (DEGRADATIONS, SAMPLE_TRAIN, SAMPLE_VAL, PatchSampler, load_folder, load_samples,
                                       validation_pairs)
from srgan_noise.training.distributed import (World, device_for, from_main, mean_over_ranks, process_group, rank_seed,
                                              rank_slice, replicate)
from srgan_noise.training.losses import (CONTENT_LOSSES, LOSSES, as_logits, content_loss, d_loss, feature_matching,
                                         g_loss, pulling_away)
from srgan_noise.training.monitor import MetricsLog, WindowMeans, first_non_finite
from srgan_noise.training.regularisers import (HistoricalAverage, add_instance_noise, after_d_update, d_extra_loss,
                                               d_penalty, d_penalty_on_share)
from srgan_noise.training.schedules import noise_sigma, pretrain_lr, reg_gamma

GENERATOR_WEIGHTS = "generator.safetensors"
PRETRAIN_WEIGHTS = "generator_pretrain.safetensors"  # the MSE (PSNR-oriented) generator


@dataclass(frozen=True)
class TrainConfig:
    out: str = "runs/demo"
    data: tuple[str, ...] | str | None = None  # HR image folder(s); None: scikit-image's bundled samples
    val: str | None = None  # HR image folder; None: a held-out sample (or none with --data)
    # How training LR patches are made (data.DEGRADATIONS): bicubic (antialiased, the SR protocol) |
    # bicubic-mixed (per patch, antialiased or OpenCV's non-antialiased cubic) | realistic
    # (degradations.py's random blur, downscaler, noise and JPEG chain). Validation stays bicubic.
    degradation: str = "bicubic"
    model: ModelConfig = dataclasses.field(default_factory=lambda: preset("small"))
    # Instance noise: N(0, sigma^2) on real and fake before every D call, images in [0, 1].
    noise: str = "constant"  # none | constant | linear
    sigma0: float = 0.1
    noise_steps: int | None = None  # linear schedule reaches 0 here; None: the GAN steps
    # D regulariser, + gamma/2 * penalty on the D loss: roth (Roth et al. 2017,
    # analytic instance noise), r1 (on reals) or r2 (on fakes) (Mescheder et al. 2018).
    reg: str = "none"  # none | roth | r1 | r2
    gamma0: float = 2.0
    gamma_schedule: str = "annealed"  # annealed | constant
    gamma_steps: int | None = None  # annealing horizon; None: the GAN steps
    reg_every: int = 1  # lazy regularisation: every k-th D step, scaled by k
    # The share of each batch the penalty is computed on, from a forward of its own
    # (regularisers.d_penalty_on_share); 1: the whole batch, on the D loss's own forward.
    reg_share: float = 1.0
    label_smoothing: bool = False  # one-sided: real target 0.9
    loss: str = "non-saturating"  # one of losses.LOSSES
    clip: float = 0.01  # wgan: D weights clipped to [-clip, clip] after each update
    gp_weight: float = 10.0  # wgan-gp: lambda of the gradient penalty
    feature_matching: str = "none"  # none | replace | add: G's adversarial term
    historical_averaging: float = 0.0  # weight of ||theta - mean past theta||^2, both players
    # EBGAN (Zhao et al. 2017), loss "ebgan" with model.d_autoencoder: D loss E(x) + max(0, m - E(G(z)))
    # for energies E (mean squared reconstruction errors of images in [0, 1]) and this margin m;
    # pt_weight: the pulling-away term on D's codes of the fakes, added to G's adversarial term.
    ebgan_margin: float = 0.1
    pt_weight: float = 0.0
    # G's content term in the GAN phase: mse | l1 | vgg (Ledig et al.'s VGG54, weights
    # from vgg_weights) | none (the adversarial term alone: Sønderby et al.'s setting,
    # with model.projection "affine" keeping G consistent with its input).
    content: str = "mse"
    vgg_weights: str | None = None  # a torchvision VGG19 state dict (.pth) or .safetensors
    # G's starting weights: a generator weights file (the shipped PSNR model, say) instead of a
    # random initialisation, so a GAN phase (--pretrain-steps 0) need not redo the MSE phase.
    init: str | None = None
    adv_weight: float = 1e-2
    # Decay of an exponential moving average of G's weights over the GAN phase (Real-ESRGAN's 0.999),
    # which validation and the weights files then use; 0: off, the last iterate.
    ema: float = 0.0
    d_steps: int = 1
    steps: int = 200  # GAN steps (with the rest of the defaults: a ~2 minute CPU demo)
    pretrain_steps: int = 300  # MSE steps before the GAN phase
    batch_size: int = 8  # the global batch: patches per step over all processes, split evenly among them
    patch_size: int = 64  # HR patch side
    lr: float = 1e-4
    # D's learning rate, GAN phase (None: lr); higher than G's is Heusel et al. (2017)'s two time-scale rule.
    d_lr: float | None = None
    pretrain_lr: float = 2e-4
    pretrain_lr_schedule: str = "constant"  # constant | cosine (to 0 at the end of pre-training)
    log_every: int = 25  # steps per monitoring window (validation runs at each)
    checkpoint_every: int = 100  # a multiple of log_every
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # bfloat16 autocast
    sync_batch_norm: bool = False  # under torchrun on CUDA: BN statistics over the global batch
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, list)):  # one folder, or a list back from JSON
            object.__setattr__(self, "data", (self.data,) if isinstance(self.data, str) else tuple(self.data))
        choices = {"noise": ("none", "constant", "linear"), "reg": ("none", "roth", "r1", "r2"),
                   "gamma_schedule": ("annealed", "constant"), "loss": LOSSES,
                   "feature_matching": ("none", "replace", "add"), "device": ("auto", "cpu", "cuda"),
                   "content": CONTENT_LOSSES, "degradation": DEGRADATIONS,
                   "pretrain_lr_schedule": ("constant", "cosine")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}")
        positive = ("batch_size", "patch_size", "d_steps", "reg_every", "log_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.steps < 0 or self.pretrain_steps < 0 or self.steps + self.pretrain_steps == 0:
            raise UserError("--steps and --pretrain-steps must be >= 0 and not both 0")
        for name in ("sigma0", "gamma0", "clip", "gp_weight", "historical_averaging", "lr", "pretrain_lr",
                     "ebgan_margin", "pt_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
        if self.d_lr is not None and (not isinstance(self.d_lr, (int, float)) or not math.isfinite(self.d_lr)
                                      or self.d_lr <= 0):
            raise UserError(f"--d-lr must be a number > 0, got {self.d_lr}")
        if not isinstance(self.ema, (int, float)) or not 0 <= self.ema < 1:
            raise UserError(f"--ema must be a number in [0, 1) (0: off), got {self.ema}")
        if not isinstance(self.reg_share, (int, float)) or not 0 < self.reg_share <= 1:
            raise UserError(f"--reg-share must be a number in (0, 1], got {self.reg_share}")
        if self.label_smoothing and self.loss not in ("non-saturating", "saturating", "lsgan", "relativistic"):
            raise UserError(f"--label-smoothing needs a loss with a real target, not --loss {self.loss}")
        if (self.content == "vgg") != (self.vgg_weights is not None):
            raise UserError(MISSING_WEIGHTS if self.content == "vgg" else
                            f"--vgg-weights has no effect with --content {self.content}")
        if self.adv_weight < 0 or (self.content == "none" and self.adv_weight == 0 and self.steps > 0):
            raise UserError("--adv-weight must be >= 0, and > 0 with --content none (nothing would train G)")
        if self.checkpoint_every % self.log_every:
            raise UserError("--checkpoint-every must be a multiple of --log-every")
        if self.degradation != "bicubic" and self.model.projection == "affine":
            raise UserError(f"--projection affine makes the output downscale exactly to the input by bicubic, "
                            f"which --degradation {self.degradation} does not use for every patch; use one of them")
        if self.patch_size % self.model.scale:
            raise UserError(f"--patch-size {self.patch_size} is not a multiple of the scale {self.model.scale}")
        if self.patch_size < 16:
            raise UserError("--patch-size must be at least 16 (the discriminator halves it four times)")
        if (self.loss == "ebgan") != self.model.d_autoencoder:
            raise UserError("--loss ebgan and the auto-encoder discriminator (d_autoencoder) go together")
        if self.model.d_autoencoder and self.patch_size % 8:
            raise UserError(f"--loss ebgan needs a --patch-size that is a multiple of 8 (the auto-encoder halves "
                            f"it three times), got {self.patch_size}")
        if self.loss == "ebgan" and self.ebgan_margin == 0:
            raise UserError("--ebgan-margin must be > 0")
        if self.pt_weight and self.loss != "ebgan":
            raise UserError(f"--pt-weight (EBGAN's pulling-away term) has no effect with --loss {self.loss}")
        if self.sync_batch_norm and self.model.d_norm == "batch" and (self.reg != "none" or self.loss == "wgan-gp"):
            raise UserError(f"--sync-batch-norm with {'--reg ' + self.reg if self.reg != 'none' else '--loss wgan-gp'} "
                            "needs --d-norm none or virtual: the penalty back-propagates twice through D, and "
                            "SyncBatchNorm has no double backward")

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.steps

    def sigma(self, t: int) -> float:
        return noise_sigma(t, self.noise, self.sigma0, self.noise_steps if self.noise_steps is not None else self.steps)

    def pretrain_learning_rate(self, t: int) -> float:
        return pretrain_lr(t, self.pretrain_lr_schedule, self.pretrain_lr, self.pretrain_steps)

    def gamma(self, t: int) -> float:
        if self.reg == "none":
            return 0.0
        horizon = self.gamma_steps if self.gamma_steps is not None else self.steps
        return reg_gamma(t, self.gamma_schedule, self.gamma0, horizon)

    def extended(self, steps: int) -> "TrainConfig":
        """The same run with `steps` GAN steps in all, as `--resume --steps` makes it: the
        annealing horizons stay where they were (a horizon left to default to the GAN
        steps is pinned to the old total), so sigma and gamma do not jump back up."""
        return dataclasses.replace(
            self, steps=steps, noise_steps=self.noise_steps if self.noise_steps is not None else self.steps,
            gamma_steps=self.gamma_steps if self.gamma_steps is not None else self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown or "model" not in values:
            raise UserError(f"checkpoint config from another version of srgan_noise (unknown fields "
                            f"{', '.join(sorted(unknown)) or 'none'}; model {'present' if 'model' in values else 'missing'})")
        return cls(**{**values, "model": ModelConfig.from_dict(values["model"])})


@dataclass
class Nets:
    generator: Generator | SubPixelGenerator
    discriminator: Discriminator | AutoEncoderDiscriminator
    opt_pretrain: torch.optim.Optimizer  # G, MSE phase
    opt_g: torch.optim.Optimizer  # G, GAN phase
    opt_d: torch.optim.Optimizer
    history_g: HistoricalAverage | None = None
    history_d: HistoricalAverage | None = None
    vgg: torch.nn.Module | None = None  # the frozen VGG54 feature extractor of --content vgg
    ema: AveragedModel | None = None  # G's moving average over the GAN phase (--ema)


Batch = tuple[torch.Tensor, torch.Tensor]


def pretrain_step(nets: Nets, batch: Batch, autocast: Callable[[], ContextManager]) -> dict[str, float]:
    lr, hr = batch
    with autocast():
        sr = nets.generator(lr)
    loss = F.mse_loss(sr.float(), hr)
    nets.opt_pretrain.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_pretrain.step()
    return {"loss_content": loss.item(), "loss_pixel": loss.item()}


def d_logits(discriminator: torch.nn.Module, x: torch.Tensor, config: TrainConfig,
             autocast: Callable[[], ContextManager]) -> torch.Tensor:
    """D's logits phi(x) (B,), float32, which the regularisers act on: EBGAN's energies mapped to logits."""
    with autocast():
        outputs = discriminator(x).float()
    return as_logits(config.loss, outputs, config.ebgan_margin)


def gan_step(
    nets: Nets, batches: list[Batch], t: int, config: TrainConfig, autocast: Callable[[], ContextManager]
) -> dict[str, float]:
    """One generator update, then config.d_steps discriminator updates (one batch each).

    The three monitored means all use the same D_t (the discriminator before
    this step's update): D(fake) on G_t's fakes, seen by the generator update;
    D(real) and D_t(G_{t+1}) on the first D update's inputs, fresh fakes from
    the updated generator (the seed's orange curve, free of an extra forward).
    For losses on raw scores (lsgan, hinge, wgan) the means are of sigmoid(score),
    for EBGAN's energies E of sigmoid(4 (1 - 2E/m)) (losses.as_logits).
    """
    generator, discriminator = nets.generator, nets.discriminator
    sigma, gamma = config.sigma(t), config.gamma(t)
    real_target = 0.9 if config.label_smoothing else 1.0

    # 1. Generator G_t -> G_{t+1} against the frozen D_t, noise on its input too.
    lr, hr = batches[0]
    discriminator.requires_grad_(False)
    with autocast():
        fake = generator(lr)
        features_fake, outputs_fake = discriminator.forward_features(add_instance_noise(fake, sigma))
    loss_content = content_loss(config.content, fake.float(), hr, nets.vgg)
    outputs_real = None
    if config.loss == "relativistic":  # G's term compares its fakes with D_t's view of real images
        with torch.no_grad(), autocast():
            outputs_real = discriminator(add_instance_noise(hr, sigma)).float()
    loss_adv = g_loss(config.loss, outputs_fake.float(), outputs_real)
    if config.feature_matching != "none":
        with torch.no_grad(), autocast():
            features_real, _ = discriminator.forward_features(add_instance_noise(hr, sigma))
        loss_features = feature_matching(features_real.float(), features_fake.float())
        loss_adv = loss_features if config.feature_matching == "replace" else loss_adv + loss_features
    if config.pt_weight > 0:  # EBGAN-PT: the pulling-away term on D's codes of the fakes
        loss_adv = loss_adv + config.pt_weight * pulling_away(features_fake.float())
    loss_g = loss_content + config.adv_weight * loss_adv
    if nets.history_g is not None:
        loss_g = loss_g + config.historical_averaging * nets.history_g.penalty(generator)
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    if nets.history_g is not None:
        nets.history_g.update(generator)
    if nets.ema is not None:  # the first update copies G: the average covers the GAN phase only
        nets.ema.update_parameters(generator)
    discriminator.requires_grad_(True)
    d_fake = torch.sigmoid(as_logits(config.loss, outputs_fake.detach().float(), config.ebgan_margin)).mean()

    # 2. Discriminator D_t -> D_{t+1} on real images and fresh fakes of G_{t+1}.
    for k, (lr, hr) in enumerate(batches):
        with torch.no_grad(), autocast():
            fake = generator(lr)
        x_real = add_instance_noise(hr, sigma)
        x_fake = add_instance_noise(fake.float(), sigma)
        # Lazy regularisation: every reg_every-th D step, scaled up to keep its mean.
        regularise = gamma > 0 and (t * config.d_steps + k) % config.reg_every == 0
        # On the whole batch the penalty reuses the loss's forward; on a share of it, a forward of its own.
        whole_batch = regularise and config.reg_share == 1
        if whole_batch:
            x_real, x_fake = x_real.detach().requires_grad_(True), x_fake.detach().requires_grad_(True)
        with autocast():
            outputs_real = discriminator(x_real).float()
            outputs_fake = discriminator(x_fake).float()
        loss_d = d_loss(config.loss, outputs_real, outputs_fake, real_target, config.ebgan_margin)
        # The regularisers act on, and the monitor shows sigmoid of, logits: EBGAN's energies mapped to them.
        logits_real = as_logits(config.loss, outputs_real, config.ebgan_margin)
        logits_fake = as_logits(config.loss, outputs_fake, config.ebgan_margin)
        if whole_batch:
            penalty = d_penalty(config.reg, logits_real, x_real, logits_fake, x_fake)
        elif regularise:  # unbiased when D's logits are per example; see d_penalty_on_share on batch norm
            penalty = d_penalty_on_share(config.reg, lambda x: d_logits(discriminator, x, config, autocast),
                                         x_real, x_fake, config.reg_share)
        else:
            penalty = loss_d.new_zeros(())
        with autocast():  # WGAN-GP's penalty and historical averaging, when on
            extra = d_extra_loss(config, discriminator, x_real, x_fake, nets.history_d)
        loss_d_total = loss_d + config.reg_every * gamma / 2 * penalty + extra
        nets.opt_d.zero_grad(set_to_none=True)
        loss_d_total.backward()
        nets.opt_d.step()
        after_d_update(config, discriminator, nets.history_d)  # WGAN clipping, historical average
        if k == 0:
            first = (loss_d.detach(), penalty.detach(), torch.sigmoid(logits_real.detach()).mean(),
                     torch.sigmoid(logits_fake.detach()).mean(), regularise)

    loss_d, omega, d_real, d_fake_next, regularised = first
    loss_pixel = F.mse_loss(fake.detach().float(), hr)  # G_{t+1}'s pixel MSE, logged whatever the content term
    # One device-to-host copy for every figure: this is the step's only sync point.
    values = torch.stack([loss_g.detach(), loss_content.detach(), loss_adv.detach(), loss_d, omega,
                          d_real, d_fake, d_fake_next, loss_pixel]).tolist()
    names = ("loss_g", "loss_content", "loss_adv", "loss_d", "omega", "d_real", "d_fake", "d_fake_next", "loss_pixel")
    return {**dict(zip(names, values)), "sigma": sigma, "gamma": gamma, "omega_computed": float(regularised)}


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


def build_nets(model: ModelConfig, config: TrainConfig, device: torch.device) -> Nets:
    # channels_last once, here: the 9x9 convs run several times faster on CPU.
    generator = build_generator(model).to(device, memory_format=torch.channels_last)
    discriminator = build_discriminator(model).to(device, memory_format=torch.channels_last)
    if config.loss == "wgan":  # Arjovsky et al.: RMSProp, momentum-free, for both players
        gan_optimizer = functools.partial(torch.optim.RMSprop, lr=config.lr)
    else:  # SRGAN's Adam; WGAN-GP's beta1 = 0, beta2 = 0.9 (Gulrajani et al.)
        betas = (0.0, 0.9) if config.loss == "wgan-gp" else (0.9, 0.999)
        gan_optimizer = functools.partial(torch.optim.Adam, lr=config.lr, betas=betas)
    history = config.historical_averaging > 0
    return Nets(
        generator,
        discriminator,
        opt_pretrain=torch.optim.Adam(generator.parameters(), lr=config.pretrain_lr),
        opt_g=gan_optimizer(generator.parameters()),
        opt_d=gan_optimizer(discriminator.parameters(), lr=config.d_lr if config.d_lr is not None else config.lr),
        history_g=HistoricalAverage(generator) if history else None,
        history_d=HistoricalAverage(discriminator) if history else None,
        vgg=load_vgg_loss(Path(config.vgg_weights)).to(device) if config.content == "vgg" else None,
        ema=AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        if config.ema > 0 else None,
    )


# The fields a weights file fixes (the projection has no weights).
GENERATOR_FIELDS = ("generator", "scale", "channels", "blocks", "batch_norm", "image_skip", "upsample")


def initial_generator(path: Path, model: ModelConfig) -> Generator | SubPixelGenerator:
    """--init's generator, refused in one line if its weights do not fit the run's architecture."""
    generator = load_generator(path)
    differing = [name for name in GENERATOR_FIELDS if getattr(generator.config, name) != getattr(model, name)]
    if differing:
        described = ", ".join(f"{name} {getattr(generator.config, name)} (the run: {getattr(model, name)})"
                              for name in differing)
        raise UserError(f"{path}: --init weights do not fit the run's generator: {described}; "
                        "choose the matching --preset and --scale")
    return generator


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


def _progress(config: TrainConfig):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
