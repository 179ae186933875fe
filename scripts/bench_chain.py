"""What making the LR patches costs per training batch, for each --degradation, next to
the MSE step of a preset that consumes them; one process, one CPU thread, variants
interleaved, medians (docs/real-photos.md).

    .venv/bin/python scripts/bench_chain.py                      # x4, 16 patches of 64 px, small
    .venv/bin/python scripts/bench_chain.py --scale 2 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import contextlib

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_noise.base.config import preset  # noqa: E402
from srgan_noise.training.data import DEGRADATIONS, PatchSampler, load_folder  # noqa: E402
from srgan_noise.training.steps import build_nets, pretrain_step  # noqa: E402
from srgan_noise.training.train_config import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "T91")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = load_folder(args.data)
    samplers = {name: PatchSampler(images, args.patch_size, args.scale, str(args.data), name) for name in DEGRADATIONS}
    config = TrainConfig(model=preset(args.preset, scale=args.scale), batch_size=args.batch_size,
                         patch_size=args.patch_size, progress=False)
    nets = build_nets(config.model, config, torch.device("cpu"))
    batch = tuple(x.contiguous(memory_format=torch.channels_last)  # as train's loop hands it over
                  for x in samplers["bicubic"].sample(args.batch_size, torch.Generator().manual_seed(0)))

    def mse_step() -> None:  # srgan train's own pre-training step
        pretrain_step(nets, batch, contextlib.nullcontext)

    rng = torch.Generator().manual_seed(0)
    variants = {f"LR patches, {name}": (lambda s=sampler: s.sample(args.batch_size, rng)) for name, sampler in
                samplers.items()}
    step_label = f"{args.preset} MSE step (forward, backward, Adam)"
    variants[step_label] = mse_step
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(args.repeats):
        for label, run in variants.items():
            start = time.process_time()
            run()
            times[label].append(time.process_time() - start)

    step = statistics.median(times[step_label])
    print(f"x{args.scale}, {args.batch_size} patches of {args.patch_size} px, one thread, "
          f"median process CPU time of {args.repeats}\n")
    print("| | ms | share of the MSE step |")
    print("|---|---:|---:|")
    for label, samples in times.items():
        median = statistics.median(samples)
        print(f"| {label} | {1000 * median:.1f} | {median / step:.2f} |")


if __name__ == "__main__":
    main()
