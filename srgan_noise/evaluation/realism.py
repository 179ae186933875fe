"""A weights-free measure of realism for SR outputs (beside base/metrics.py's high-band ratio).

PSNR and SSIM reward the blurry mean of the plausible HR images, and LPIPS or
NIQE need pretrained weights this project cannot ship.

* `critic_accuracy`: a classifier two-sample test (Lopez-Paz & Oquab 2017,
  "Revisiting classifier two-sample tests"): a freshly initialised small
  discriminator learns to tell HR patches from SR patches, and its accuracy on
  held-out patches is reported. 0.5 is indistinguishable, 1.0 always told apart.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from srgan_noise.base.config import ModelConfig
from srgan_noise.base.errors import UserError
from srgan_noise.base.metrics import quantize
from srgan_noise.models.discriminator import Discriminator

CRITIC_STEPS = 400  # the critic's Adam steps: about 8 s a test on one CPU thread for Set5
# Critic tests averaged (seeds 0..n-1, each its own split and initialisation): one test's accuracy
# moves by about 0.06 from seed to seed (Set5, the shipped PSNR model: 0.79 to 0.92 over five).
CRITIC_SEEDS = 5
TEST_FRACTION = 0.3  # of patch positions held out; the rest train the critic
MIN_PATCH = 16  # the Discriminator's smallest input


@dataclass(frozen=True)
class CriticResult:
    accuracy: float  # on held-out patches, ties counted half right: 0.5 indistinguishable, 1.0 always told apart
    test_count: int  # held-out patches (HR and SR, half each)
    train_accuracy: float  # on the training patches, unaugmented: far above `accuracy` means the critic overfitted
    train_count: int  # training patches (HR and SR, half each)

    @property
    def standard_error(self) -> float:
        """Binomial standard error of `accuracy`, as if the test patches were
        independent (HR and SR of one position are not, so read it as a floor)."""
        return math.sqrt(max(self.accuracy * (1 - self.accuracy), 0.0) / self.test_count)


def critic_config(channels: int = 8, dense: int = 64) -> ModelConfig:
    """A small discriminator (about 0.05 s per Adam step on 64 patches of 32x32 on
    one CPU thread): no batch norm, so a logit depends on its sample alone and
    identical inputs score identically; no minibatch features."""
    return ModelConfig(d_channels=channels, d_dense=dense, d_norm="none")


def cosine_learning_rate(step: int, steps: int, peak: float) -> float:
    """`peak` at step 0 down to 0 at `steps`: the last steps average out the
    noise of a high learning rate, so the final critic is not a random iterate."""
    return peak * 0.5 * (1 + math.cos(math.pi * step / steps))


def patch_grid(height: int, width: int, patch: int, border: int = 0) -> list[tuple[int, int]]:
    """Top-left corners (top, left) of the non-overlapping `patch`-sized squares
    that fit inside the image less `border` pixels on each side, row by row."""
    tops = range(border, height - border - patch + 1, patch)
    lefts = range(border, width - border - patch + 1, patch)
    return [(top, left) for top in tops for left in lefts]


def cut_patches(sr_images: list[torch.Tensor], hr_images: list[torch.Tensor], patch: int,
                border: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every grid position of every image pair -> SR and HR patches, each
    (N, 3, patch, patch) float in [0, 1], quantised to 8 bits (row n of both is
    the same position). Images smaller than a patch contribute nothing."""
    if len(sr_images) != len(hr_images):
        raise ValueError(f"{len(sr_images)} SR images but {len(hr_images)} HR images")
    sr_patches, hr_patches = [], []
    for index, (sr, hr) in enumerate(zip(sr_images, hr_images)):
        if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[0] != 3:
            raise ValueError(f"image {index}: expected SR and HR (3, H, W) of one shape, "
                             f"got {tuple(sr.shape)} and {tuple(hr.shape)}")
        # Quantise both, as a saved image would be: otherwise float SR against
        # 8-bit HR is a cue the critic could use that says nothing of realism.
        sr, hr = quantize(sr.float()), quantize(hr.float())
        for top, left in patch_grid(sr.shape[-2], sr.shape[-1], patch, border):
            sr_patches.append(sr[:, top : top + patch, left : left + patch])
            hr_patches.append(hr[:, top : top + patch, left : left + patch])
    if len(sr_patches) < 2:
        smallest = min((min(image.shape[-2:]) for image in hr_images), default=0)
        raise UserError(f"critic test needs at least 2 patches of {patch}x{patch} px (after a {border} px border) "
                        f"but the images give {len(sr_patches)} (smallest side {smallest} px)")
    return torch.stack(sr_patches), torch.stack(hr_patches)


def augment(sr: torch.Tensor, hr: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random flip and 90-degree rotation per position, the same one for the
    position's SR and HR patch: (N, 3, p, p) each -> the same shapes."""
    flips = torch.randint(2, (sr.shape[0],), generator=generator).tolist()
    turns = torch.randint(4, (sr.shape[0],), generator=generator).tolist()
    pairs = torch.stack([sr, hr], 1)  # (N, 2, 3, p, p)
    out = torch.empty_like(pairs)
    for i, (flip, turn) in enumerate(zip(flips, turns)):
        pair = pairs[i].flip(-1) if flip else pairs[i]
        out[i] = torch.rot90(pair, turn, dims=(-2, -1))
    return out[:, 0], out[:, 1]


@torch.no_grad()
def logits_of(critic: Discriminator, patches: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(N, 3, p, p) -> (N,) logits, in fixed-size chunks (bounded memory)."""
    return torch.cat([critic(patches[start : start + chunk]) for start in range(0, patches.shape[0], chunk)])


def paired_accuracy(critic: Discriminator, sr: torch.Tensor, hr: torch.Tensor) -> float:
    """Accuracy with HR labelled 1 and SR 0, threshold at logit 0, a logit of
    exactly 0 half right. SR and HR are scored in separate, identically chunked
    passes, so an SR patch equal to its HR patch gets the same logit and the
    pair is exactly one right out of two."""
    logits_hr, logits_sr = logits_of(critic, hr), logits_of(critic, sr)
    right_hr = (logits_hr > 0).double() + 0.5 * (logits_hr == 0).double()
    right_sr = (logits_sr < 0).double() + 0.5 * (logits_sr == 0).double()
    return (right_hr.sum() + right_sr.sum()).item() / (2 * sr.shape[0])


def critic_accuracy(sr_images: list[torch.Tensor], hr_images: list[torch.Tensor], patch: int = 32,
                    steps: int = CRITIC_STEPS, batch: int = 32, seed: int = 0, border: int = 0,
                    learning_rate: float = 2e-3) -> CriticResult:
    """Classifier two-sample test of SR against HR images.

    `sr_images` and `hr_images`: lists of (3, H, W) float in [0, 1], pairwise
    of one shape (any sizes). Each pair is cut into a grid of non-overlapping
    `patch` squares (`border` px left out at each side); the positions, pooled
    over images, are split at random 70/30 into train and test, and each puts its
    HR patch (label 1) and its SR patch (label 0) into the same split, so the
    critic is scored on content it never saw. A fresh `Discriminator`
    (`critic_config`, signal-preserving init) trains `steps` Adam steps (cosine-decayed
    learning rate) on `batch` positions at a time (both patches of each, the
    same random flip and rotation), then classifies the test patches. About
    8 s on one CPU thread for Set5 at the defaults. Deterministic for a seed
    and thread count; the global RNG state is left as it was."""
    if patch < MIN_PATCH:
        raise ValueError(f"patch must be at least {MIN_PATCH} px (the discriminator's smallest input), got {patch}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be positive, got {steps} and {batch}")
    sr, hr = cut_patches(sr_images, hr_images, patch, border)
    # Zero-centred input: the 0.5 offset of [0, 1] images would dominate the
    # first layer's response and slow training. A shared affine map keeps ties.
    sr, hr = sr * 2 - 1, hr * 2 - 1
    generator = torch.Generator().manual_seed(seed)

    # 1. Split positions, not patches: a test position's HR and SR are both unseen.
    order = torch.randperm(sr.shape[0], generator=generator)
    test_positions = max(1, round(TEST_FRACTION * sr.shape[0]))
    test, train = order[:test_positions], order[test_positions:]

    # 2. A fresh critic; its initialisation draws from the global RNG, so seed that
    #    inside a fork and leave the caller's state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = Discriminator(critic_config(), input_mean=0.0)  # inputs centred above; signal-preserving init
    optimizer = torch.optim.Adam(critic.parameters(), lr=learning_rate)

    # 3. Train on batches that hold both patches of each position picked: the pair
    #    differs only in what SR changed, which lowers the gradient's variance.
    critic.train()
    labels = torch.cat([torch.ones(batch), torch.zeros(batch)])
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(step, steps, learning_rate)
        picks = train[torch.randint(train.shape[0], (batch,), generator=generator)]
        sr_batch, hr_batch = augment(sr[picks], hr[picks], generator)
        logits = critic(torch.cat([hr_batch, sr_batch]))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # 4. Score held-out positions (and the training ones, to see overfitting).
    critic.eval()
    return CriticResult(accuracy=paired_accuracy(critic, sr[test], hr[test]), test_count=2 * test.shape[0],
                        train_accuracy=paired_accuracy(critic, sr[train], hr[train]),
                        train_count=2 * train.shape[0])


def repeated_critic_accuracy(sr_images: list[torch.Tensor], hr_images: list[torch.Tensor],
                             seeds: int = CRITIC_SEEDS, **options) -> tuple[float, float]:
    """(mean, standard error of the mean) of the held-out accuracy of `seeds` critic tests
    (critic_accuracy with seeds 0 .. seeds-1, the other options as given). The error is the
    seeds' spread over sqrt(seeds); for one seed, that test's binomial standard error."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    tests = [critic_accuracy(sr_images, hr_images, seed=seed, **options) for seed in range(seeds)]
    accuracies = [test.accuracy for test in tests]
    if seeds == 1:
        return accuracies[0], tests[0].standard_error
    return statistics.fmean(accuracies), statistics.stdev(accuracies) / math.sqrt(seeds)
