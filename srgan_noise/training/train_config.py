"""What `srgan train` is asked to do: one frozen config the CLI fills, saved in every
checkpoint so that a resume rebuilds the run from it, not from the command line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from srgan_noise.base.config import ModelConfig, preset
from srgan_noise.base.errors import UserError
from srgan_noise.models.perceptual import MISSING_WEIGHTS
from srgan_noise.training.data import DEGRADATIONS
from srgan_noise.training.losses import CONTENT_LOSSES, LOSSES
from srgan_noise.training.schedules import noise_sigma, pretrain_lr, reg_gamma


# The U-Net D's default learning rate: at it a fresh 8-channel U-Net tells the PSNR model's outputs from
# HR patches within 300 steps (D(real) 0.91, D(fake) 0.09 on seed 0; 0.87 / 0.13 on seed 1; docs/realism.md),
# where at G's 1e-4 it barely starts.
UNET_D_LR = 2e-3


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
    # + this weight x pix2pixHD's feature loss on G's content term: the L1 between D's feature maps of
    # each SR output and of its HR image (losses.d_feature_loss), a perceptual term with no downloaded weights.
    d_feature_weight: float = 0.0
    vgg_weights: str | None = None  # a torchvision VGG19 state dict (.pth) or .safetensors
    # G's starting weights: a generator weights file (the shipped PSNR model, say) instead of a
    # random initialisation, so a GAN phase (--pretrain-steps 0) need not redo the MSE phase.
    init: str | None = None
    adv_weight: float = 1e-2
    # Decay of an exponential moving average of G's weights over the GAN phase (Real-ESRGAN's 0.999),
    # which validation and the weights files then use; 0: off, the last iterate.
    ema: float = 0.0
    d_steps: int = 1
    steps: int = 200  # GAN steps (with the rest of the defaults: a 65 s demo on an idle 2-core CPU, measured December 2026 with the U-Net D)
    pretrain_steps: int = 300  # MSE steps before the GAN phase
    batch_size: int = 8  # the global batch: patches per step over all processes, split evenly among them
    patch_size: int = 64  # HR patch side
    lr: float = 1e-4
    # D's learning rate, GAN phase (None: UNET_D_LR for the U-Net D, else lr); higher than G's is
    # Heusel et al. (2017)'s two time-scale rule.
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
        # Every number is checked here, before any work: a NaN passes every comparison, and an
        # unchecked one would surface only after the MSE phase.
        for name in ("sigma0", "gamma0", "clip", "gp_weight", "historical_averaging", "ebgan_margin", "pt_weight",
                     "adv_weight", "d_feature_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
        for name in ("lr", "pretrain_lr", "d_lr"):  # a rate of 0 trains nothing
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
                raise UserError(f"--{name.replace('_', '-')} must be a number > 0, got {value}")
        for name in ("noise_steps", "gamma_steps"):  # the schedules' horizons (0: ended at once)
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise UserError(f"--{name.replace('_', '-')} must be an integer >= 0 (or left out: the GAN "
                                f"steps), got {value}")
        if type(self.seed) is not int or self.seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {self.seed}")
        if not isinstance(self.ema, (int, float)) or not 0 <= self.ema < 1:
            raise UserError(f"--ema must be a number in [0, 1) (0: off), got {self.ema}")
        if not isinstance(self.reg_share, (int, float)) or not 0 < self.reg_share <= 1:
            raise UserError(f"--reg-share must be a number in (0, 1], got {self.reg_share}")
        if self.label_smoothing and self.loss not in ("non-saturating", "saturating", "lsgan", "relativistic"):
            raise UserError(f"--label-smoothing needs a loss with a real target, not --loss {self.loss}")
        if (self.content == "vgg") != (self.vgg_weights is not None):
            raise UserError(MISSING_WEIGHTS if self.content == "vgg" else
                            f"--vgg-weights has no effect with --content {self.content}")
        if self.content == "none" and self.adv_weight == 0 and self.steps > 0:
            raise UserError("--adv-weight must be > 0 with --content none (nothing would train G)")
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
        if self.model.d_arch == "unet" and self.patch_size % 8:
            raise UserError(f"the U-Net discriminator needs a --patch-size that is a multiple of 8 (it halves it "
                            f"three times), got {self.patch_size}")
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

    @property
    def d_learning_rate(self) -> float:
        """D's Adam (or RMSProp) rate in the GAN phase: d_lr, or by default UNET_D_LR for the U-Net, lr otherwise."""
        if self.d_lr is not None:
            return self.d_lr
        return UNET_D_LR if self.model.d_arch == "unet" else self.lr

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
