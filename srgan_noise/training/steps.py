"""The training steps, each readable top to bottom: an MSE step of the generator, and a
GAN step (G against the frozen D, then D on real and fresh fake images); and the
networks and optimisers they update."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from srgan_noise.base.config import ModelConfig
from srgan_noise.base.errors import UserError
from srgan_noise.inference.weights import load_generator
from srgan_noise.models.discriminator import (AutoEncoderDiscriminator, Discriminator, UNetDiscriminator,
                                              build_discriminator)
from srgan_noise.models.generator import Generator, SubPixelGenerator, build_generator
from srgan_noise.models.perceptual import load_vgg_loss
from srgan_noise.training.losses import (as_logits, content_loss, d_feature_loss, d_loss, feature_matching, g_loss,
                                        pulling_away)
from srgan_noise.training.regularisers import (HistoricalAverage, add_instance_noise, after_d_update, d_extra_loss,
                                               d_penalty, d_penalty_on_share)
from srgan_noise.training.train_config import TrainConfig


@dataclass
class Nets:
    generator: Generator | SubPixelGenerator
    discriminator: Discriminator | AutoEncoderDiscriminator | UNetDiscriminator
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

    With the U-Net D every figure of D is a mean over pixels too. The three monitored
    means all use the same D_t (the discriminator before
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
        x_fake = add_instance_noise(fake, sigma)
        maps_fake, features_fake, outputs_fake = discriminator.forward_maps(x_fake)
    loss_content = content_loss(config.content, fake.float(), hr, nets.vgg)
    if config.d_feature_weight > 0:  # D's maps of each fake against those of its HR image, under the same noise
        with torch.no_grad(), autocast():
            maps_real, _, _ = discriminator.forward_maps(hr + (x_fake - fake).detach())
        loss_content = loss_content + config.d_feature_weight * d_feature_loss(maps_fake, maps_real)
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
        opt_d=gan_optimizer(discriminator.parameters(), lr=config.d_learning_rate),
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


# Peak bytes of a training step over the outputs of G's and D's layers for its patches: measured
# 1.1 (MSE) to 3.3 (GAN with the Roth regulariser, tiny preset) on a CPU (autograd keeps the inputs
# of most layers, and the regulariser's double backward more).
STEP_MEMORY_FACTOR = 3


@torch.no_grad()
def step_memory(model: ModelConfig, batch_size: int, patch_size: int) -> int:
    """About the bytes one training step of `batch_size` patches of `patch_size` px needs: the
    float32 outputs of every layer of G and D for that batch (counted on one and two patches: what
    grows with the batch, and what does not, as VBN's reference batch), times STEP_MEMORY_FACTOR."""
    def outputs(network: torch.nn.Module, x: torch.Tensor) -> int:
        total = 0

        def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            nonlocal total
            total += output.numel() if isinstance(output, torch.Tensor) else 0

        leaves = [module for module in network.modules() if not list(module.children())]
        hooks = [module.register_forward_hook(count) for module in leaves]
        network.eval()(x)
        for hook in hooks:
            hook.remove()
        return total

    generator, discriminator = build_generator(model), build_discriminator(model)
    if model.d_norm == "virtual":  # its reference batch runs with every call
        discriminator.reference.set(torch.zeros(model.d_reference_size, 3, patch_size, patch_size))

    def both(patches: int) -> int:
        lr_size = patch_size // model.scale
        return (outputs(generator, torch.zeros(patches, 3, lr_size, lr_size))
                + outputs(discriminator, torch.zeros(patches, 3, patch_size, patch_size)))

    one, two = both(1), both(2)
    per_patch, fixed = two - one, 2 * one - two
    return STEP_MEMORY_FACTOR * 4 * (fixed + per_patch * batch_size)
