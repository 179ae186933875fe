"""The 2-D toy of the PacGAN/VEEGAN harness: a mixture of Gaussians on a ring
or a grid, small MLP generator and discriminator (or EBGAN's MLP auto-encoder)
trained with the same losses, instance noise and Roth regulariser as the SR
task, and the harness's mode metrics (modes covered, high-quality samples,
reverse KL to uniform)."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srgan_noise.base.atomic import atomic_path
from srgan_noise.base.config import D_NORMS
from srgan_noise.base.errors import UserError
from srgan_noise.models.discriminator import (MinibatchDiscrimination, ReferenceBatch, norm_layers, reference_stream,
                                              spectral_normalise)
from srgan_noise.training.losses import LOSSES, as_logits, d_loss, feature_matching, g_loss, pulling_away
from srgan_noise.training.monitor import WindowMeans
from srgan_noise.training.regularisers import (HistoricalAverage, add_instance_noise, after_d_update, d_extra_loss,
                                               d_penalty)
from srgan_noise.training.schedules import noise_sigma, reg_gamma

MIXTURES = ("ring", "grid")
# Per mixture: component std and the distance between neighbouring modes.
MIXTURE_STD = {"ring": 0.01, "grid": 0.05}
MODE_SPACING = {"ring": 2 * math.sin(math.pi / 8), "grid": 2.0}
# Stabiliser strengths in data units (the SR task's 0.1 and 2.0 are for images
# in [0, 1]): noise std a quarter of the mode spacing, so noisy modes touch
# but stay distinct; Roth's gamma, a noise variance, the square of that std.
TOY_SIGMA0 = {name: spacing / 4 for name, spacing in MODE_SPACING.items()}
TOY_GAMMA0 = {name: (spacing / 4) ** 2 for name, spacing in MODE_SPACING.items()}
# EBGAN's margin, in the energy's units (a mean squared error of points): the same
# square of a quarter of the mode spacing.
TOY_MARGIN = dict(TOY_GAMMA0)


@dataclass(frozen=True)
class ToyConfig:
    mixture: str = "ring"  # ring: 8 modes, radius 1, std 0.01 | grid: 25 modes on {-4..4}^2, std 0.05
    noise: str = "none"  # none | constant | linear, as in TrainConfig
    sigma0: float | None = None  # None: TOY_SIGMA0[mixture]
    reg: str = "none"  # none | roth | r1 | r2
    gamma0: float | None = None  # None: TOY_GAMMA0[mixture]
    gamma_schedule: str = "annealed"  # annealed | constant
    label_smoothing: bool = False
    loss: str = "non-saturating"  # one of losses.LOSSES
    clip: float = 0.01  # wgan: D weights clipped to [-clip, clip]
    gp_weight: float = 10.0  # wgan-gp: lambda
    d_spectral_norm: bool = False  # on every linear layer of D
    d_minibatch_kernels: int = 0  # minibatch discrimination on D's last hidden layer (0: off)
    # none | batch | virtual, after each hidden layer of D; the virtual batch norm's
    # reference batch is batch_size real points drawn once, at the start.
    d_norm: str = "none"
    d_autoencoder: bool = False  # EBGAN's MLP auto-encoder as D (with loss "ebgan")
    ebgan_margin: float | None = None  # None: TOY_MARGIN[mixture]
    pt_weight: float = 0.0  # EBGAN's pulling-away term on the auto-encoder's codes of the fakes
    feature_matching: str = "none"  # none | replace | add, on D's last hidden layer
    historical_averaging: float = 0.0  # weight of ||theta - mean past theta||^2, both players
    steps: int = 3000
    batch_size: int = 256
    latent: int = 2  # a 2-D Gaussian, as in the PacGAN harness
    width: int = 128
    lr: float = 1e-3
    log_every: int = 100
    snapshots: int = 6  # scatter snapshots, evenly spaced from step 0 to steps
    snapshot_samples: int = 500
    samples: int = 2500  # samples scored at the end (the harness's 2,500)
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {"mixture": MIXTURES, "noise": ("none", "constant", "linear"), "reg": ("none", "roth", "r1", "r2"),
                   "gamma_schedule": ("annealed", "constant"), "loss": LOSSES,
                   "feature_matching": ("none", "replace", "add"), "d_norm": D_NORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"toy {name.replace('_', '-')} must be one of {', '.join(allowed)}")
        for name in ("steps", "batch_size", "latent", "width", "log_every", "snapshot_samples", "samples"):
            if getattr(self, name) < 1:
                raise UserError(f"toy {name.replace('_', '-')} must be at least 1")
        if self.d_minibatch_kernels < 0 or self.historical_averaging < 0:
            raise UserError("toy minibatch kernels and historical averaging must be >= 0")
        if self.snapshots < 2:
            raise UserError("toy snapshots must be at least 2 (the first and the last step)")
        if self.label_smoothing and self.loss not in ("non-saturating", "saturating", "lsgan", "relativistic"):
            raise UserError(f"toy label smoothing needs a loss with a real target, not {self.loss}")
        if (self.loss == "ebgan") != self.d_autoencoder:
            raise UserError("toy loss ebgan and the auto-encoder discriminator go together")
        if self.d_autoencoder and self.d_minibatch_kernels:
            raise UserError("toy minibatch discrimination needs the MLP discriminator, not the auto-encoder")
        if (self.ebgan_margin is not None and self.ebgan_margin <= 0) or self.pt_weight < 0:
            raise UserError("toy EBGAN margin must be > 0 and the pulling-away weight >= 0")
        if self.pt_weight and self.loss != "ebgan":
            raise UserError(f"toy pulling-away term has no effect with loss {self.loss}")

    def sigma(self, t: int) -> float:
        sigma0 = TOY_SIGMA0[self.mixture] if self.sigma0 is None else self.sigma0
        return noise_sigma(t, self.noise, sigma0, self.steps)

    def gamma(self, t: int) -> float:
        if self.reg == "none":
            return 0.0
        gamma0 = TOY_GAMMA0[self.mixture] if self.gamma0 is None else self.gamma0
        return reg_gamma(t, self.gamma_schedule, gamma0, self.steps)

    @property
    def margin(self) -> float:
        return TOY_MARGIN[self.mixture] if self.ebgan_margin is None else self.ebgan_margin

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def mixture_centres(mixture: str) -> torch.Tensor:
    """(K, 2) mode centres: 8 on the unit circle, or the 25 points of {-4, -2, 0, 2, 4}^2."""
    if mixture == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], 1).float()
    if mixture == "grid":
        values = torch.arange(-4.0, 5.0, 2.0)
        return torch.cartesian_prod(values, values)
    raise UserError(f"--toy must be one of {', '.join(MIXTURES)}, got {mixture!r}")


def sample_mixture(mixture: str, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 2) samples of the equal-weight mixture."""
    centres = mixture_centres(mixture)
    index = torch.randint(len(centres), (count,), generator=generator)
    return centres[index] + MIXTURE_STD[mixture] * torch.randn(count, 2, generator=generator)


def mlp(inputs: int, width: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, outputs))


def hidden_layers(inputs: int, width: int, count: int, norm: str, reference_size: int) -> list[nn.Module]:
    """count x (linear, norm per `norm`, ReLU): mlp()'s hidden layers, normalised."""
    layers: list[nn.Module] = []
    for i in range(count):
        layers += [nn.Linear(inputs if i == 0 else width, width),
                   *norm_layers(norm, width, reference_size, dense=True), nn.ReLU()]
    return layers


class ToyDiscriminator(nn.Module):
    """(B, 2) -> logits (B, 1): the MLP's three hidden layers (normalised per `norm`),
    optionally minibatch discrimination on the last, and optionally spectral norm on
    every linear layer. With norm "virtual", set reference.set() first."""

    def __init__(self, width: int, spectral: bool, minibatch_kernels: int, minibatch_dim: int = 8,
                 norm: str = "none", reference_size: int = 1) -> None:
        super().__init__()
        # mlp()'s layers up to its last hidden ReLU (its output layer is built and dropped, so
        # the initialisation, and with it every earlier toy run, stays as it was), normalised.
        layers: list[nn.Module] = []
        for layer in mlp(2, width, width)[:-1]:
            normalised = isinstance(layer, nn.Linear)
            layers += [layer, *(norm_layers(norm, width, reference_size, dense=True) if normalised else [])]
        self.body = nn.Sequential(*layers)
        self.reference = ReferenceBatch(reference_size) if norm == "virtual" else None
        self.minibatch = (MinibatchDiscrimination(width, minibatch_kernels, minibatch_dim)
                          if minibatch_kernels else None)
        self.head = nn.Linear(width + minibatch_kernels, 1)
        if spectral:
            spectral_normalise(self)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> last hidden features (B, width), the layer feature matching uses, and logits (B, 1)."""
        h = x if self.reference is None else self.reference.prepend(x)
        features = self.body(h)[-x.shape[0]:]
        head_input = features if self.minibatch is None else torch.cat([features, self.minibatch(features)], 1)
        return features, self.head(head_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


class ToyAutoEncoder(nn.Module):
    """EBGAN's discriminator on points: (B, 2) -> energy (B, 1), the mean squared error
    of an MLP auto-encoder's reconstruction: two hidden layers (normalised per `norm`)
    to a linear code of `width`, one hidden layer back to the point."""

    def __init__(self, width: int, spectral: bool, norm: str = "none", reference_size: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*hidden_layers(2, width, 2, norm, reference_size), nn.Linear(width, width))
        self.decoder = nn.Sequential(*hidden_layers(width, width, 1, norm, reference_size), nn.Linear(width, 2))
        self.reference = ReferenceBatch(reference_size) if norm == "virtual" else None
        if spectral:
            spectral_normalise(self)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> codes (B, width), which the pulling-away term and feature matching use, and energies (B, 1)."""
        h = x if self.reference is None else self.reference.prepend(x)
        codes = self.encoder(h)
        reconstruction = self.decoder(codes)[-x.shape[0]:]
        return codes[-x.shape[0]:], (reconstruction - x).pow(2).mean(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


@dataclass
class ToyNets:
    generator: nn.Module  # (B, latent) -> (B, 2)
    discriminator: ToyDiscriminator | ToyAutoEncoder
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    history_g: HistoricalAverage | None = None
    history_d: HistoricalAverage | None = None


def build_toy_nets(config: ToyConfig) -> ToyNets:
    generator = mlp(config.latent, config.width, 2)
    if config.d_autoencoder:
        discriminator = ToyAutoEncoder(config.width, config.d_spectral_norm, config.d_norm, config.batch_size)
    else:
        discriminator = ToyDiscriminator(config.width, config.d_spectral_norm, config.d_minibatch_kernels,
                                         norm=config.d_norm, reference_size=config.batch_size)
    if config.loss == "wgan":  # Arjovsky et al.: RMSProp, as in the SR task
        optimizer = functools.partial(torch.optim.RMSprop, lr=config.lr)
    else:  # the usual toy-GAN Adam; WGAN-GP's beta1 = 0, beta2 = 0.9
        betas = (0.0, 0.9) if config.loss == "wgan-gp" else (0.5, 0.999)
        optimizer = functools.partial(torch.optim.Adam, lr=config.lr, betas=betas)
    history = config.historical_averaging > 0
    return ToyNets(generator, discriminator, optimizer(generator.parameters()), optimizer(discriminator.parameters()),
                   HistoricalAverage(generator) if history else None,
                   HistoricalAverage(discriminator) if history else None)


def toy_step(nets: ToyNets, real: torch.Tensor, latent: torch.Tensor, t: int, config: ToyConfig) -> dict[str, float]:
    """One G update, then one D update: the SR task's gan_step on points
    (real (B, 2), latent (B, latent)), without its content loss, lazy
    regularisation and several D steps. D means are of sigmoid(score), for EBGAN of
    sigmoid(4 (1 - 2E/m)) (losses.as_logits)."""
    generator, discriminator = nets.generator, nets.discriminator
    sigma, gamma = config.sigma(t), config.gamma(t)
    real_target = 0.9 if config.label_smoothing else 1.0

    # 1. Generator G_t -> G_{t+1} against the frozen D_t.
    discriminator.requires_grad_(False)
    features_fake, outputs_fake = discriminator.forward_features(add_instance_noise(generator(latent), sigma))
    outputs_fake = outputs_fake.squeeze(1)
    outputs_real = None
    if config.loss == "relativistic":  # G's term compares its fakes with D_t's view of real points
        with torch.no_grad():
            outputs_real = discriminator(add_instance_noise(real, sigma)).squeeze(1)
    loss_g = g_loss(config.loss, outputs_fake, outputs_real)
    if config.feature_matching != "none":
        with torch.no_grad():
            features_real, _ = discriminator.forward_features(add_instance_noise(real, sigma))
        loss_features = feature_matching(features_real, features_fake)
        loss_g = loss_features if config.feature_matching == "replace" else loss_g + loss_features
    if config.pt_weight > 0:  # EBGAN-PT: the pulling-away term on D's codes of the fakes
        loss_g = loss_g + config.pt_weight * pulling_away(features_fake)
    if nets.history_g is not None:
        loss_g = loss_g + config.historical_averaging * nets.history_g.penalty(generator)
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    if nets.history_g is not None:
        nets.history_g.update(generator)
    discriminator.requires_grad_(True)
    d_fake = torch.sigmoid(as_logits(config.loss, outputs_fake.detach(), config.margin)).mean()

    # 2. Discriminator D_t -> D_{t+1} on real points and fresh fakes of G_{t+1}.
    with torch.no_grad():
        fake = generator(latent)
    x_real = add_instance_noise(real, sigma).requires_grad_(gamma > 0)
    x_fake = add_instance_noise(fake, sigma).requires_grad_(gamma > 0)
    outputs_real = discriminator(x_real).squeeze(1)
    outputs_fake = discriminator(x_fake).squeeze(1)
    loss_d = d_loss(config.loss, outputs_real, outputs_fake, real_target, config.margin)
    logits_real = as_logits(config.loss, outputs_real, config.margin)
    logits_fake = as_logits(config.loss, outputs_fake, config.margin)
    omega = d_penalty(config.reg, logits_real, x_real, logits_fake, x_fake) if gamma > 0 else loss_d.new_zeros(())
    loss_d_total = loss_d + gamma / 2 * omega + d_extra_loss(config, discriminator, x_real, x_fake, nets.history_d)
    nets.opt_d.zero_grad(set_to_none=True)
    loss_d_total.backward()
    nets.opt_d.step()
    after_d_update(config, discriminator, nets.history_d)

    values = torch.stack([loss_g.detach(), loss_d.detach(), omega.detach(), torch.sigmoid(logits_real.detach()).mean(),
                          d_fake, torch.sigmoid(logits_fake.detach()).mean()]).tolist()
    names = ("loss_g", "loss_d", "omega", "d_real", "d_fake", "d_fake_next")
    return {**dict(zip(names, values)), "sigma": sigma, "gamma": gamma}


@dataclass
class ToyRun:
    records: list[dict[str, Any]]  # one per window, the keys of the SR task's metrics.jsonl
    snapshots: dict[int, torch.Tensor]  # step -> (snapshot_samples, 2) generated points
    samples: torch.Tensor  # (samples, 2) generated at the end, for the metrics


def train_toy(config: ToyConfig) -> ToyRun:
    """Train the toy GAN on CPU (a few seconds per thousand steps)."""
    torch.manual_seed(config.seed)  # weights and instance noise
    data_rng = torch.Generator().manual_seed(config.seed)
    nets = build_toy_nets(config)
    if config.d_norm == "virtual":  # VBN's fixed reference batch, from a stream apart from the data's
        reference = sample_mixture(config.mixture, config.batch_size, reference_stream(config.seed))
        nets.discriminator.reference.set(reference)
    snapshot_steps = {round(i * config.steps / (config.snapshots - 1)) for i in range(config.snapshots)}
    records, snapshots, window = [], {}, WindowMeans()
    window_start = time.perf_counter()
    for step in range(config.steps + 1):
        if step in snapshot_steps:
            snapshots[step] = generate(nets.generator, config.snapshot_samples, config.latent, data_rng)
        if step == config.steps:
            break
        real = sample_mixture(config.mixture, config.batch_size, data_rng)
        latent = torch.randn(config.batch_size, config.latent, generator=data_rng)
        window.add(toy_step(nets, real, latent, step, config))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            seconds = (time.perf_counter() - window_start) / window.counts["loss_d"]
            records.append({"step": step + 1, "phase": "gan", **window.means(), "seconds_per_step": seconds})
            window.reset()
            window_start = time.perf_counter()
    samples = generate(nets.generator, config.samples, config.latent, data_rng)
    return ToyRun(records, snapshots, samples)


@torch.no_grad()
def generate(generator: nn.Module, count: int, latent: int, rng: torch.Generator) -> torch.Tensor:
    """(count, 2) points from the generator."""
    return generator(torch.randn(count, latent, generator=rng))


# Metrics of the PacGAN/VEEGAN harness, on generated points (N, 2).


def nearest_modes(samples: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (N,) to and index (N,) of each sample's nearest centre (K, 2)."""
    distance, index = torch.cdist(samples.double(), centres.double()).min(1)
    return distance, index


def high_quality(samples: torch.Tensor, centres: torch.Tensor, std: float) -> torch.Tensor:
    """(N,) bool: the sample lies within 3 std of its nearest mode."""
    return nearest_modes(samples, centres)[0] <= 3 * std


def mode_counts(samples: torch.Tensor, centres: torch.Tensor, std: float) -> torch.Tensor:
    """(K,) number of high-quality samples at each mode."""
    _, index = nearest_modes(samples, centres)
    return torch.bincount(index[high_quality(samples, centres, std)], minlength=len(centres))


def modes_covered(samples: torch.Tensor, centres: torch.Tensor, std: float) -> int:
    """Modes with at least one sample within 3 std."""
    return int((mode_counts(samples, centres, std) > 0).sum())


def high_quality_percent(samples: torch.Tensor, centres: torch.Tensor, std: float) -> float:
    """Percentage (0-100) of samples within 3 std of the nearest mode."""
    return 100.0 * float(high_quality(samples, centres, std).double().mean())


def reverse_kl(samples: torch.Tensor, centres: torch.Tensor, std: float) -> float:
    """KL(q || uniform) in nats, q the histogram of the high-quality samples
    over the K modes: 0 when balanced, log K when all on one mode, inf when
    no sample is of high quality."""
    counts = mode_counts(samples, centres, std).double()
    if counts.sum() == 0:
        return math.inf
    q = counts / counts.sum()
    q = q[q > 0]
    return float((q * (q * len(centres)).log()).sum())


def toy_metrics(samples: torch.Tensor, mixture: str) -> dict[str, float]:
    """The harness's three figures for (N, 2) samples of a mixture."""
    centres, std = mixture_centres(mixture), MIXTURE_STD[mixture]
    return {"modes": float(modes_covered(samples, centres, std)),
            "high_quality": high_quality_percent(samples, centres, std),
            "reverse_kl": reverse_kl(samples, centres, std)}


def plot_snapshots(runs: dict[str, ToyRun], mixture: str, path: Path) -> Path:
    """One row of scatter snapshots over training per schedule (as in Roth et
    al. 2017, Fig. 1), the true modes in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = mixture_centres(mixture)
    limit = 1.6 if mixture == "ring" else 5.5
    columns = max(len(run.snapshots) for run in runs.values())
    figure, axes = plt.subplots(len(runs), columns, figsize=(1.9 * columns, 1.9 * len(runs)), squeeze=False)
    for row, (name, run) in enumerate(runs.items()):
        for column, (step, points) in enumerate(sorted(run.snapshots.items())):
            axis = axes[row][column]
            axis.scatter(centres[:, 0], centres[:, 1], s=30, color="lightgrey", zorder=1)
            axis.scatter(points[:, 0], points[:, 1], s=2, color="tab:green", alpha=0.6, zorder=2)
            axis.set_xlim(-limit, limit)
            axis.set_ylim(-limit, limit)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_aspect("equal")
            if row == 0:
                axis.set_title(f"step {step}", fontsize="small")
            if column == 0:
                axis.set_ylabel(name, fontsize="small")
    figure.tight_layout()
    with atomic_path(path, suffix=path.suffix) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path
