"""Peak memory of `srgan upscale` (the real `upscale_files` path: read, tile, write) against
the output's own size, all figures measured in one run.

Each size runs in a fresh child process whose VmHWM (peak resident bytes) is read at the
end; `base` is its resident memory after imports and loading the generator, before the
image is read, and the last line splits it: the interpreter, `import torch`, the rest of
what `srgan upscale` imports, the generator. A random generator (tiny preset by default; the weights do not change
memory) upscales a random RGB PNG x4 on the CPU, written as PNG. The goal: peak at most
1.5 x the 8-bit output's bytes + 1 GB, whatever the size.

    .venv/bin/python scripts/bench_upscale_memory.py [--sizes 500x400,1000x750,2000x1500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1e9


def status() -> tuple[int, int]:
    """(current, peak) resident bytes of this process (VmRSS, VmHWM)."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def child(args: argparse.Namespace) -> None:
    python, _ = status()
    import torch

    after_torch, _ = status()
    from rich.console import Console

    from srgan_noise.inference.upscale_files import UpscaleConfig, upscale_files
    from srgan_noise.inference.weights import load_generator

    after_imports, _ = status()
    torch.set_num_threads(args.threads)
    load_generator(Path(args.weights), torch.device("cpu"))  # what upscale_files loads, to count in `base`
    base, _ = status()
    config = UpscaleConfig(inputs=(args.image,), out=args.out, weights=args.weights, device="cpu", tile=args.tile,
                           force=True, progress=False)
    start = time.perf_counter()
    report = upscale_files(config, Console(stderr=True))
    seconds = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"failed: {report.failed}")
    _, peak = status()
    print(json.dumps({"base": base, "peak": peak, "seconds": seconds, "python": python, "torch": after_torch - python,
                      "imports": after_imports - after_torch, "model": base - after_imports}))


def parent(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from srgan_noise.base.config import preset
    from srgan_noise.inference.weights import save_generator
    from srgan_noise.models.generator import Generator

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        torch.manual_seed(0)
        weights = folder / "generator.safetensors"
        save_generator(Generator(preset(args.preset, scale=4)).eval(), weights)
        print(f"{args.preset} x4, CPU, {args.threads} thread(s), tile {args.tile}, RGB PNG in and out")
        print(f"{'input':>11} {'output GB':>9} {'base GB':>8} {'peak GB':>8} {'peak/out':>8} "
              f"{'(peak-base)/out':>15} {'goal GB':>8} {'ok':>3} {'s':>6}")
        rng = np.random.default_rng(0)
        parts = []
        for size in args.sizes.split(","):
            width, height = map(int, size.split("x"))
            image = folder / f"in_{size}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(image, compress_level=1)
            out = folder / f"out_{size}.png"
            result = subprocess.run([sys.executable, __file__, "--child", "--image", str(image), "--weights", str(weights),
                                     "--out", str(out), "--threads", str(args.threads), "--tile", str(args.tile)],
                                    capture_output=True, text=True, check=True)
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            output_bytes = 3 * (4 * width) * (4 * height)
            goal = 1.5 * output_bytes + GB
            peak, base = measured["peak"], measured["base"]
            print(f"{size:>11} {output_bytes / GB:9.2f} {base / GB:8.2f} {peak / GB:8.2f} {peak / output_bytes:8.2f} "
                  f"{(peak - base) / output_bytes:15.2f} {goal / GB:8.2f} {'yes' if peak <= goal else 'NO':>3} "
                  f"{measured['seconds']:6.1f}")
            image.unlink()
            out.unlink()
            parts.append(measured)
        first = parts[0]
        print(f"\nbase, resident GB: Python {first['python'] / GB:.2f} + import torch {first['torch'] / GB:.2f} "
              f"+ srgan_noise's upscale imports {first['imports'] / GB:.2f} + the generator {first['model'] / GB:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500x400,1000x750,2000x1500", help="LR WIDTHxHEIGHT, comma-separated")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.child else parent(args)


if __name__ == "__main__":
    main()
