"""What `srgan compare` is asked to do: one frozen config the CLI fills."""

from __future__ import annotations

from dataclasses import dataclass

from srgan_noise.base.config import D_ARCHS, D_NORMS
from srgan_noise.base.errors import UserError
from srgan_noise.comparison.schedule_table import DEFAULT_SCHEDULES, schedule_fields
from srgan_noise.evaluation.realism import CRITIC_SEEDS, CRITIC_STEPS
from srgan_noise.training.toy import MIXTURES


DEFAULT_STEPS = {"sr": 200, "toy": 3000}


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
    d_arch: str | None = None  # the discriminator (ModelConfig.d_arch: vgg | unet; None: the preset's)
    d_feature_weight: float = 0.0  # the paired D-feature loss's weight on G's content term (TrainConfig's)
    content: str = "mse"  # mse | l1 | none (vgg needs weights compare does not take)
    adv_weight: float = 1e-2
    ema: float = 0.0  # decay of G's moving average over the GAN phase (0: off)
    d_lr: float | None = None  # D's learning rate (None: TrainConfig.d_learning_rate's default)
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
        if self.d_arch is not None and self.d_arch not in D_ARCHS:
            raise UserError(f"--d-arch must be one of {', '.join(D_ARCHS)}, got {self.d_arch!r}")
        if self.content not in ("mse", "l1", "none"):
            raise UserError(f"--content must be one of mse, l1, none, got {self.content!r}")
        if self.toy is not None and not self.train:
            raise UserError("--no-train is for the SR task (a toy compare takes minutes)")
        if self.toy is None and self.data is not None and self.val is None:
            raise UserError("--data needs --val: the table compares validation SSIM, MSE and PSNR")

    @property
    def gan_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_STEPS["sr" if self.toy is None else "toy"]
