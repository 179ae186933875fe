"""A fresh discriminator against a fixed generator: how fast does D learn to tell its outputs from HR?

The generator (the shipped PSNR model by default) stays fixed; a discriminator built as
`srgan train` builds it (preset `small`: the U-Net of 8 channels, at `srgan train`'s default
D learning rate, unless overridden below) trains on real HR patches and the generator's
outputs for their bicubic LR, with the non-saturating loss, optional instance noise
(constant sigma) and the Roth regulariser (constant gamma), as `srgan train`'s D step does.
Per window: the mean D(real) and D(fake) over its steps (means over pixels for the U-Net;
on noisy inputs when sigma > 0), the mean logit and the spread of the logits over the
window's last batch (a collapsed D gives the same logit to everything), and the held-out
accuracy (no noise) on every non-overlapping patch of the held-out images, HR against SR
(a patch's verdict: its mean logit).

    .venv/bin/python scripts/bench_d_alone.py [--d-arch unet|vgg] [--lr 2e-3] [--d-channels 8 --d-dense 64]
        [--sigma 0.1] [--gamma 2] [--spectral-norm] [--equalized] [--warmup 100] [--steps 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from srgan_noise.base.config import preset
from srgan_noise.base.metrics import quantize
from srgan_noise.evaluation.evaluate import super_resolve
from srgan_noise.evaluation.realism import cut_patches
from srgan_noise.inference.weights import load_generator, shipped_weights
from srgan_noise.models.discriminator import build_discriminator
from srgan_noise.training.data import PatchSampler, load_folder, validation_pairs
from srgan_noise.training.losses import d_loss
from srgan_noise.training.regularisers import add_instance_noise, d_penalty
from srgan_noise.training.train_config import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@torch.no_grad()
def held_out_accuracy(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """The share of held-out patches D puts on the right side of 0.5: HR real, SR fake."""
    discriminator.eval()
    def verdicts(x: torch.Tensor) -> torch.Tensor:  # a patch's mean logit: the U-Net's are per pixel
        return discriminator(x).reshape(x.shape[0], -1).mean(1)

    right = sum(int((verdicts(real[i:i + 64]) > 0).sum()) + int((verdicts(fake[i:i + 64]) < 0).sum())
                for i in range(0, len(real), 64))
    discriminator.train()
    return right / (2 * len(real))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="the fixed generator (default: the shipped psnr model)")
    parser.add_argument("--data", type=Path, nargs="+", default=[SHARED / "T91", SHARED / "BSD200"])
    parser.add_argument("--held-out", type=Path, default=SHARED / "Set5")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: srgan train's D learning rate for the D")
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--beta2", type=float, default=0.999)
    parser.add_argument("--d-channels", type=int, default=None, help="default: the small preset's")
    parser.add_argument("--d-dense", type=int, default=None, help="default: the small preset's")
    parser.add_argument("--d-norm", default="none")
    parser.add_argument("--d-arch", default=None, help="vgg | unet (default: the small preset's)")
    parser.add_argument("--spectral-norm", action="store_true")
    parser.add_argument("--equalized", action="store_true",
                        help="each weight's rate scaled by sqrt(2 / fan-in) (Karras et al. 2018's equalized rate)")
    parser.add_argument("--warmup", type=int, default=0, help="steps of a linear learning-rate warm-up")
    parser.add_argument("--sigma", type=float, default=0.0, help="constant instance noise")
    parser.add_argument("--gamma", type=float, default=0.0, help="constant Roth regulariser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    generator = load_generator(args.weights or shipped_weights("psnr", 4))
    scale = generator.config.scale
    given = dict(d_channels=args.d_channels, d_dense=args.d_dense, d_arch=args.d_arch)
    model = preset("small", scale=scale, d_norm=args.d_norm, d_spectral_norm=args.spectral_norm,
                   **{name: value for name, value in given.items() if value is not None})
    if args.lr is None:
        args.lr = TrainConfig(model=model).d_learning_rate
    discriminator = build_discriminator(model).to(memory_format=torch.channels_last)
    if args.equalized:
        groups = [{"params": [p], "lr": args.lr * ((2 / p[0].numel()) ** 0.5 if p.dim() > 1 else 1.0)}
                  for p in discriminator.parameters()]
        optimizer = torch.optim.Adam(groups, lr=args.lr, betas=(args.beta1, args.beta2))
    else:
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, args.warmup)))
    sampler = PatchSampler([image for folder in args.data for image in load_folder(folder)], args.patch_size, scale,
                           " + ".join(map(str, args.data)))
    pairs = validation_pairs(load_folder(args.held_out), scale)
    sr_images = [quantize(super_resolve(generator, lr[0])) for lr, _ in pairs]
    held_fake, held_real = cut_patches(sr_images, [hr[0] for _, hr in pairs], args.patch_size, border=scale)
    data_rng = torch.Generator().manual_seed(args.seed)

    print(f"D: small preset, {model.d_arch}, {model.d_channels} channels"
          f"{f', dense {model.d_dense}' if model.d_arch == 'vgg' else ''}, norm {args.d_norm}"
          f"{', spectral norm' if args.spectral_norm else ''}; Adam lr {args.lr:g}, betas {args.beta1}, {args.beta2}; "
          f"sigma {args.sigma:g}, Roth gamma {args.gamma:g}; batch {args.batch_size} of {args.patch_size} px; "
          f"held out: {len(held_real)} patch pairs of {args.held_out.name}\n")
    print("| step | D(real) | D(fake) | mean logit | logit spread | held-out accuracy | s/step |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    sums, start = {"d_real": 0.0, "d_fake": 0.0, "logit": 0.0}, time.perf_counter()
    for step in range(1, args.steps + 1):
        lr, hr = sampler.sample(args.batch_size, data_rng)
        with torch.no_grad():
            fake = generator(lr.contiguous(memory_format=torch.channels_last)).float()
        x_real = add_instance_noise(hr, args.sigma).contiguous(memory_format=torch.channels_last)
        x_fake = add_instance_noise(fake, args.sigma).contiguous(memory_format=torch.channels_last)
        if args.gamma > 0:
            x_real, x_fake = x_real.requires_grad_(True), x_fake.requires_grad_(True)
        logits_real, logits_fake = discriminator(x_real), discriminator(x_fake)
        loss = d_loss("non-saturating", logits_real, logits_fake)
        if args.gamma > 0:
            loss = loss + args.gamma / 2 * d_penalty("roth", logits_real, x_real, logits_fake, x_fake)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warmup.step()
        logits_real, logits_fake = logits_real.detach(), logits_fake.detach()
        sums["d_real"] += float(torch.sigmoid(logits_real).mean())
        sums["d_fake"] += float(torch.sigmoid(logits_fake).mean())
        sums["logit"] += float(torch.cat([logits_real, logits_fake]).mean())
        if step % args.window == 0:
            spread = float(torch.cat([logits_real, logits_fake]).std())
            accuracy = held_out_accuracy(discriminator, held_real, held_fake)
            seconds = (time.perf_counter() - start) / args.window
            print(f"| {step} | {sums['d_real'] / args.window:.3f} | {sums['d_fake'] / args.window:.3f} | "
                  f"{sums['logit'] / args.window:+.2f} | {spread:.3f} | {accuracy:.3f} | {seconds:.3f} |", flush=True)
            sums, start = dict.fromkeys(sums, 0.0), time.perf_counter()


if __name__ == "__main__":
    main()
