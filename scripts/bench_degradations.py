"""Gain over bicubic per LR family: for each shipped model (and any --weights), the mean
PSNR of its output minus the mean PSNR of PIL bicubic upsampling of the same LR input,
on the Y channel with `scale` px borders (srgan eval's protocol), for each family of
srgan_noise.training.degradations. Prints a markdown table (docs/real-photos.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_degradations.py                # Set5 x4, the shipped models
    .venv/bin/python scripts/bench_degradations.py --weights runs/<run>/generator.safetensors --scale 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_noise.base.images import list_images, load_rgb  # noqa: E402
from srgan_noise.evaluation.evaluate import evaluate_images  # noqa: E402
from srgan_noise.evaluation.results import BICUBIC, MODEL  # noqa: E402
from srgan_noise.inference.weights import SHIPPED, load_generator, shipped_scales, shipped_weights  # noqa: E402
from srgan_noise.training.degradations import FAMILIES, REAL_INPUT_FAMILIES  # noqa: E402

# The families the real-input model is held to (at least +0.5 dB each), then the training chain.
DEFAULT_FAMILIES = (*REAL_INPUT_FAMILIES, "realistic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "Set5")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--weights", type=Path, action="append", default=[], help="more generators to score")
    parser.add_argument("--families", default=",".join(DEFAULT_FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(1)

    families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = [name for name in families if name not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    models = {f"--model {name}": shipped_weights(name, args.scale) for name in SHIPPED
              if args.scale in shipped_scales(name)}
    models.update({str(path): path for path in args.weights})
    if not models:
        parser.error(f"no shipped x{args.scale} weights and no --weights")
    images = [(path.name, load_rgb(path)) for path in list_images(args.data)]
    generators = {label: load_generator(path) for label, path in models.items()}

    start = time.perf_counter()
    bicubic, gains = {}, {label: {} for label in models}
    for family in families:
        baseline = evaluate_images(images, args.scale, bicubic=True, degradation=family).mean[BICUBIC]["psnr"]
        bicubic[family] = baseline
        for label, generator in generators.items():
            psnr = evaluate_images(images, args.scale, generator, degradation=family).mean[MODEL]["psnr"]
            gains[label][family] = psnr - baseline
        print(f"{family}: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    print(f"\nGain over bicubic, dB (mean PSNR of the model - mean PSNR of PIL bicubic upsampling of the same LR; "
          f"{args.data.name} x{args.scale}, Y channel, {args.scale} px border)\n")
    print("| LR family | bicubic PSNR dB | " + " | ".join(f"`{label}`" for label in models) + " |")
    print("|---|---:|" + "---:|" * len(models))
    for family in families:
        cells = [f"{gains[label][family]:+.2f}" for label in models]
        print(f"| {family} | {bicubic[family]:.2f} | " + " | ".join(cells) + " |")
    goal = [family for family in families if family in REAL_INPUT_FAMILIES]
    if goal:
        worst = {label: min(gains[label][family] for family in goal) for label in models}
        print(f"| **worst of the {len(goal)} goal families** | | "
              + " | ".join(f"**{worst[label]:+.2f}**" for label in models) + " |")


if __name__ == "__main__":
    main()
