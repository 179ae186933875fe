"""How much of each generator's error repeats every `scale` output pixels, on Set5.

For SR output y and HR x (Y channel, 0-255, standard protocol LR: Pillow bicubic, 8-bit),
the residual r = y - x is averaged over all positions of each of the scale x scale sub-pixel
phases; the variance of those scale^2 means is the power of r's component that is periodic
with the LR grid: a pattern the PixelShuffle stages can grow (they have weights per
sub-pixel position) and a conv critic sees at once. Prints it per weights file, mean over images.

    .venv/bin/python scripts/periodic_residual.py WEIGHTS [WEIGHTS ...] [--data ../shared/data/Set5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srgan_noise.base.images import list_images, load_rgb
from srgan_noise.base.metrics import rgb_to_y
from srgan_noise.evaluation.evaluate import evaluate_images
from srgan_noise.evaluation.report import HR
from srgan_noise.evaluation.results import MODEL
from srgan_noise.inference.weights import load_generator


def periodic_power(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> float:
    """(3, H, W) SR and HR in [0, 1], H and W multiples of scale -> the variance over the
    scale^2 sub-pixel phases of the Y residual's mean at each phase, in (0-255 levels)^2."""
    residual = (rgb_to_y(sr[None]) - rgb_to_y(hr[None]))[0, 0]
    height, width = residual.shape
    phases = residual.reshape(height // scale, scale, width // scale, scale).mean((0, 2))
    return float(phases.var(correction=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/Set5"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = [(path.name, load_rgb(path)) for path in list_images(args.data)]
    for path in args.weights:
        generator = load_generator(path)
        scale = generator.config.scale
        # srgan eval's protocol and its 8-bit outputs: cropped HR, Pillow bicubic LR, tiled SR
        kept = evaluate_images(images, scale, generator, keep_images=True).images
        powers = [periodic_power(pair[MODEL].float().div(255), pair[HR].float().div(255), scale)
                  for pair in kept.values()]
        print(f"{path}: periodic residual power {sum(powers) / len(powers):.3f} (per image "
              + ", ".join(f"{p:.3f}" for p in powers) + f"; upsample {generator.config.upsample})")


if __name__ == "__main__":
    main()
