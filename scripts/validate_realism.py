"""Check the high-band ratio (`srgan_noise.base.metrics`) and the critic test (`srgan_noise.evaluation.realism`) on controlled degradations of HR images, all in one run.

Each HR image (cropped to a multiple of the scale) is degraded by Gaussian blur
(sigma 0, 0.5, 1, 2 px, reflect border) or by added Gaussian noise (sigma 2, 5,
10 on the 0..255 scale, seeded, clipped and quantised); the bicubic x4
down-and-up image is scored too, as the blur an SR model starts from. Each is
scored as the "SR" image against its HR image: the mean high-band power ratio
over images (x4, 4 px border) and the critic two-sample test's held-out
accuracy. Expected: HR itself ratio 1 and accuracy 0.5; with more blur the
ratio falls and the accuracy rises; noise lifts the ratio above 1 and the
critic catches it. Prints a Markdown table.

    .venv/bin/python scripts/validate_realism.py [--data ../shared/data/Set5] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from kornia.filters import gaussian_blur2d

from srgan_noise.base.images import list_images, load_rgb
from srgan_noise.base.metrics import high_band_ratio, quantize
from srgan_noise.evaluation.evaluate import bicubic_down, bicubic_up
from srgan_noise.evaluation.realism import critic_accuracy
from srgan_noise.training.data import mod_crop

SCALE = 4
BLUR_SIGMAS = (0.0, 0.5, 1.0, 2.0)  # px
NOISE_SIGMAS = (2.0, 5.0, 10.0)  # on the 0..255 scale


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> the same, Gaussian-blurred (kernel 2*ceil(3 sigma)+1, reflect border), quantised."""
    if sigma == 0:
        return image
    size = 2 * math.ceil(3 * sigma) + 1
    return quantize(gaussian_blur2d(image[None], (size, size), (sigma, sigma), border_type="reflect")[0])


def add_noise(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> plus N(0, (sigma/255)^2) per value, clipped and quantised."""
    return quantize(image + sigma / 255 * torch.randn(image.shape, generator=generator))


def score(name: str, degraded: list[torch.Tensor], hr: list[torch.Tensor], seed: int) -> dict[str, object]:
    start = time.perf_counter()
    ratios = [high_band_ratio(sr[None], target[None], SCALE, border=SCALE).item() for sr, target in zip(degraded, hr)]
    critic = critic_accuracy(degraded, hr, border=SCALE, seed=seed)
    return {"name": name, "ratio": sum(ratios) / len(ratios), "ratios": ratios, "critic": critic,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "Set5",
                        help="folder of HR images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="for the noise and the critic")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    hr = [mod_crop(load_rgb(path), SCALE) for path in list_images(args.data)]
    bicubic = [bicubic_up(bicubic_down(image, SCALE), SCALE).float().div(255) for image in hr]
    hr = [image.float().div(255) for image in hr]
    generator = torch.Generator().manual_seed(args.seed)
    cases = [(f"blur sigma {sigma:g} px" if sigma else "none (HR itself)", [blur(image, sigma) for image in hr])
             for sigma in BLUR_SIGMAS]
    cases += [(f"noise sigma {sigma:g}/255", [add_noise(image, sigma, generator) for image in hr])
              for sigma in NOISE_SIGMAS]
    cases.append((f"bicubic x{SCALE} down and up", bicubic))

    start = time.perf_counter()
    rows = [score(name, degraded, hr, args.seed) for name, degraded in cases]
    total = time.perf_counter() - start

    print(f"{len(hr)} images from {args.data}, x{SCALE}, {SCALE} px border, "
          f"{args.threads} thread(s), seed {args.seed}\n")
    print("| degradation | high-band ratio (mean) | per image | critic accuracy (held out) | critic train acc. | s |")
    print("|---|---:|---|---:|---:|---:|")
    for row in rows:
        critic = row["critic"]
        per_image = " ".join(f"{ratio:.3f}" for ratio in row["ratios"])
        print(f"| {row['name']} | {row['ratio']:.3f} | {per_image} | {critic.accuracy:.3f} "
              f"± {critic.standard_error:.3f} (n={critic.test_count}) | {critic.train_accuracy:.3f} "
              f"| {row['seconds']:.1f} |")
    print(f"\ntotal {total:.0f} s")


if __name__ == "__main__":
    main()
