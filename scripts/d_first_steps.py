"""Why the VGG-style discriminator collapses at high learning rates: its first Adam steps, layer by layer.

Adam's first steps move every weight by about the learning rate whatever its gradient's size
(m / sqrt(v) is +-1 at step 1), so a unit's pre-activation moves by up to lr x fan-in x mean |input|,
all in one direction when the inputs are all of one sign. For each conv and linear layer of a fresh
discriminator, on a fixed batch of real HR patches and of the shipped PSNR model's outputs for their
LR patches: the pre-activations' spread over the batch before any step, and how far each unit's mean
moved after each of the first steps (the mean over units of |shift|, in units of that spread: near 1
or above, the units are pushed past where their inputs can tell real from fake), and the share of
positive pre-activations.

    .venv/bin/python scripts/d_first_steps.py [--lr 1e-3] [--d-channels 32 --d-dense 256] [--steps 2] [--weights G]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from srgan_noise.base.config import preset
from srgan_noise.inference.weights import load_generator, shipped_weights
from srgan_noise.models.discriminator import build_discriminator
from srgan_noise.training.data import PatchSampler, load_folder
from srgan_noise.training.losses import d_loss

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pre_activations(discriminator: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every conv's and linear layer's output on x, by name."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.detach()))
             for name, module in discriminator.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        discriminator(x)
    for hook in hooks:
        hook.remove()
    return outputs


def unit_means(x: torch.Tensor) -> torch.Tensor:
    """A layer's output (N, units, ...) -> each unit's mean over the batch and positions (units,)."""
    return x.transpose(0, 1).flatten(1).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="the generator making the fakes (default: the shipped psnr model)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--d-channels", type=int, default=32)
    parser.add_argument("--d-dense", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=SHARED / "T91")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    generator = load_generator(args.weights or shipped_weights("psnr", 4))
    discriminator = build_discriminator(preset("small", d_arch="vgg", d_channels=args.d_channels,
                                               d_dense=args.d_dense))
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr)
    sampler = PatchSampler(load_folder(args.data), 64, 4, str(args.data))
    lr, hr = sampler.sample(args.batch_size, torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        fake = generator(lr).float()
    batch = torch.cat([hr, fake])

    before = pre_activations(discriminator, batch)
    shifts: list[dict[str, float]] = []
    positive: list[dict[str, float]] = []
    for _ in range(args.steps):
        loss = d_loss("non-saturating", discriminator(hr), discriminator(fake))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        after = pre_activations(discriminator, batch)
        shifts.append({name: float(unit_means(after[name] - before[name]).abs().mean()) for name in before})
        positive.append({name: float((after[name] > 0).float().mean()) for name in before})

    print(f"VGG D of the small preset: {args.d_channels} channels, dense {args.d_dense}; Adam lr {args.lr:g}; "
          f"{args.batch_size} HR + {args.batch_size} SR patches of 64 px\n")
    steps = " | ".join(f"|shift| after step {t + 1} / spread | positive after {t + 1}" for t in range(args.steps))
    print(f"| layer | fan-in | spread before | positive before | {steps} |")
    print("|---|---:|---:|---:|" + "---:|---:|" * args.steps)
    modules = dict(discriminator.named_modules())
    for name, value in before.items():
        weight = modules[name].weight
        fan_in = weight[0].numel()
        spread = float(value.std())
        cells = " | ".join(f"{shifts[t][name] / spread:.2f} | {positive[t][name]:.2f}" for t in range(args.steps))
        print(f"| {name} | {fan_in} | {spread:.3f} | {float((value > 0).float().mean()):.2f} | {cells} |")


if __name__ == "__main__":
    main()
