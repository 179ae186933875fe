"""A fresh discriminator against a fixed generator: how fast does D learn to tell its outputs from HR?

The generator (the shipped PSNR model by default) stays fixed; a discriminator built as
`srgan train` builds it (preset `small`, with the overrides below) trains on real HR
patches and the generator's outputs for their bicubic LR, with the non-saturating loss,
optional instance noise (constant sigma) and the Roth regulariser (constant gamma), as
`srgan train`'s D step does. Per window: the mean D(real) and D(fake) over its steps (on
noisy inputs when sigma > 0), the mean logit and the spread of the logits over the
window's last batch (a collapsed D gives the same logit to everything), and the held-out
accuracy (no noise) on every non-overlapping patch of the held-out images, HR against SR.

    .venv/bin/python scripts/bench_d_alone.py [--lr 1e-4] [--d-channels 32 --d-dense 256]
        [--sigma 0.1] [--gamma 2] [--spectral-norm] [--steps 300] [--threads 1]
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@torch.no_grad()
def held_out_accuracy(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """The share of held-out patches D puts on the right side of 0.5: HR real, SR fake."""
    discriminator.eval()
    right = sum(int((discriminator(real[i:i + 64]) > 0).sum()) + int((discriminator(fake[i:i + 64]) < 0).sum())
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
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--d-channels", type=int, default=32, help="the small preset's")
    parser.add_argument("--d-dense", type=int, default=256, help="the small preset's")
    parser.add_argument("--d-norm", default="none")
    parser.add_argument("--spectral-norm", action="store_true")
    parser.add_argument("--sigma", type=float, default=0.0, help="constant instance noise")
    parser.add_argument("--gamma", type=float, default=0.0, help="constant Roth regulariser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    generator = load_generator(args.weights or shipped_weights("psnr", 4))
    scale = generator.config.scale
    model = preset("small", scale=scale, d_channels=args.d_channels, d_dense=args.d_dense, d_norm=args.d_norm,
                   d_spectral_norm=args.spectral_norm)
    discriminator = build_discriminator(model).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    sampler = PatchSampler([image for folder in args.data for image in load_folder(folder)], args.patch_size, scale,
                           " + ".join(map(str, args.data)))
    pairs = validation_pairs(load_folder(args.held_out), scale)
    sr_images = [quantize(super_resolve(generator, lr[0])) for lr, _ in pairs]
    held_fake, held_real = cut_patches(sr_images, [hr[0] for _, hr in pairs], args.patch_size, border=scale)
    data_rng = torch.Generator().manual_seed(args.seed)

    print(f"D: small preset, {args.d_channels} channels, dense {args.d_dense}, norm {args.d_norm}"
          f"{', spectral norm' if args.spectral_norm else ''}; Adam lr {args.lr:g}, beta1 {args.beta1}; "
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
