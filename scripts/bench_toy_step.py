"""Cost of the 2-D toy's training step under `srgan compare` schedules, measured in one run.

Each schedule's `toy_step` (one G and one D update, batch 256) is timed over
--steps steps per round, the schedules interleaved, and the median over the
rounds (the first dropped as warm-up) is printed with its ratio to the first
schedule's. Virtual batch norm's reference batch is drawn as train_toy draws it.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_toy_step.py --schedules none,virtual-batch-norm,ebgan,ebgan-pt
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from srgan_noise.comparison.toy_runs import toy_schedule_config
from srgan_noise.models.discriminator import reference_stream
from srgan_noise.training.toy import ToyConfig, build_toy_nets, sample_mixture, toy_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", default="none,virtual-batch-norm,ebgan,ebgan-pt")
    parser.add_argument("--mixture", default="ring")
    parser.add_argument("--steps", type=int, default=50, help="steps per schedule per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    configs = {name: toy_schedule_config(ToyConfig(mixture=args.mixture), name) for name in args.schedules.split(",")}
    nets = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        nets[name] = build_toy_nets(config)
        if config.d_norm == "virtual":
            nets[name].discriminator.reference.set(sample_mixture(args.mixture, config.batch_size, reference_stream(0)))
    rng = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, config in configs.items():
            real = sample_mixture(args.mixture, config.batch_size, rng)
            latent = torch.randn(config.batch_size, config.latent, generator=rng)
            start = time.perf_counter()
            for t in range(args.steps):
                toy_step(nets[name], real, latent, t, config)
            times[name].append((time.perf_counter() - start) / args.steps)
    median = {name: statistics.median(values[1:]) for name, values in times.items()}
    first = next(iter(median.values()))
    print(f"toy {args.mixture}, batch {ToyConfig().batch_size}, threads {torch.get_num_threads()}, "
          f"median of {args.rounds - 1} rounds of {args.steps} steps")
    for name, value in median.items():
        print(f"  {name:28s} {value * 1000:8.2f} ms  {value / first:.2f}x")


if __name__ == "__main__":
    main()
