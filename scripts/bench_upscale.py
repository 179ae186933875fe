"""Benchmark `srgan_noise.inference.upscale`, all figures measured in one run:

1. CPU, srresnet x4, 512^2 input: tiled / untiled time and max abs difference
   (plus the tiled path on one whole-image tile, which isolates its own overhead).
2. Peak CPU memory (ru_maxrss, a fresh process per size) at 256^2, 512^2, 1024^2:
   memory beyond the output buffer stays flat when tiled.
3. CUDA, if present: output megapixels/s of fp16 batched tiles vs fp32 one tile at a
   time (the Real-ESRGAN way) on a 1024^2 input.
4. CPU, 512^2 input: tiled upscale with the affine projection (--projection affine)
   against without, per preset, its matrices built afresh each time (a new image size).

    .venv/bin/python scripts/bench_upscale.py [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from srgan_noise.base.config import preset
from srgan_noise.inference.tiles import plan_tiles
from srgan_noise.inference.upscale import upscale
from srgan_noise.models.generator import Generator, receptive_radius

MB = 2**20


def make_generator(device: str = "cpu", name: str = "srresnet", projection: str = "none") -> Generator:
    torch.manual_seed(0)
    return Generator(preset(name, scale=4, projection=projection)).eval().to(device, memory_format=torch.channels_last)


def untiled(generator: Generator, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        batch = image[None].to(next(generator.parameters()).device).contiguous(memory_format=torch.channels_last)
        return generator(batch)[0].float().cpu()


def timed(function, *args, **kwargs) -> tuple[float, torch.Tensor]:
    """Wall seconds, the GPU synchronised."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def cpu_timed(function, *args, **kwargs) -> tuple[float, torch.Tensor]:
    """Process CPU seconds: on a shared machine, unlike wall time, they do not count
    the time other processes hold the cores (exact for one thread)."""
    start = time.process_time()
    result = function(*args, **kwargs)
    return time.process_time() - start, result


def rss() -> tuple[int, int]:
    """(current, peak) resident bytes of this process. VmHWM, not ru_maxrss: a child's
    ru_maxrss starts at its parent's peak."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def window_pixels(size: int, tile: int, overlap: int) -> int:
    return sum((t.input_end_y_pad - t.input_start_y_pad) * (t.input_end_x_pad - t.input_start_x_pad)
               for t in plan_tiles(size, size, tile, overlap))


def cpu_time(args: argparse.Namespace) -> None:
    generator = make_generator()
    overlap = receptive_radius(generator.config)
    image = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    untiled(generator, image[:, :32, :32])  # warm-up
    times: dict[str, list[float]] = {"untiled": [], "tiled": [], "one tile": []}
    for _ in range(args.repeats):  # interleaved, best of each: the machine is shared
        seconds, reference = cpu_timed(untiled, generator, image)
        times["untiled"].append(seconds)
        seconds, tiled = cpu_timed(upscale, generator, image, tile=args.tile, batch_tiles=args.batch_tiles)
        times["tiled"].append(seconds)
        seconds, _ = cpu_timed(upscale, generator, image, tile=args.size, batch_tiles=1)
        times["one tile"].append(seconds)
    best = {name: min(values) for name, values in times.items()}
    floor = window_pixels(args.size, args.tile, overlap) / args.size**2
    print(f"[1] CPU, srresnet x4, {args.size}x{args.size} input, {torch.get_num_threads()} thread(s), "
          f"process CPU seconds, best of {args.repeats}")
    print(f"    untiled forward             {best['untiled']:7.2f} s")
    print(f"    tiled --tile {args.tile} (overlap {overlap}, batch {args.batch_tiles})  {best['tiled']:7.2f} s   "
          f"ratio {best['tiled'] / best['untiled']:.3f}   (goal <= 1.05)")
    print(f"    tiled, one {args.size}^2 tile          {best['one tile']:7.2f} s   "
          f"ratio {best['one tile'] / best['untiled']:.3f}   (the tiling machinery alone)")
    print(f"    window pixels / image pixels at --tile {args.tile}: {floor:.3f}   (the input's recompute; "
          f"Generator.forward_window crops each layer's context as it goes)")
    print(f"    max |tiled - untiled| = {(tiled - reference).abs().max().item():.2e}   (goal <= 1e-4)")


def memory_child(size: int, tile: int, batch_tiles: int, tiled: bool) -> None:
    """Runs in a fresh process: prints peak RSS beyond the baseline, as JSON."""
    generator = make_generator()
    image = torch.rand(3, size, size)
    untiled(generator, image[:, :8, :8])  # libraries initialised before the baseline
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # peak RSS := current RSS
    baseline, _ = rss()
    output = upscale(generator, image, tile=tile, batch_tiles=batch_tiles) if tiled else untiled(generator, image)
    _, peak = rss()
    print(json.dumps({"peak_beyond_baseline": peak - baseline, "output": output.numel() * output.element_size()}))


def cpu_memory(args: argparse.Namespace) -> None:
    print(f"[2] peak CPU memory (VmHWM) beyond the baseline (model, input), srresnet x4, --tile {args.tile} "
          f"--batch-tiles {args.batch_tiles}, a fresh process each")
    overlap = receptive_radius(preset("srresnet", scale=4))
    print(f"    (windows are at most (tile + 2*overlap)^2 = {args.tile + 2 * overlap}^2 LR pixels whatever the image size)")
    print("    input      mode      largest window   output buffer   peak beyond baseline   beyond the output buffer")
    runs = [(size, True) for size in args.memory_sizes] + [(size, False) for size in args.untiled_memory_sizes]
    for size, tiled in runs:
        command = [sys.executable, __file__, "--memory-child", str(size), "--tile", str(args.tile),
                   "--batch-tiles", str(args.batch_tiles), "--threads", str(args.threads)]
        command += [] if tiled else ["--untiled"]
        figures = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        peak, output = figures["peak_beyond_baseline"], figures["output"]
        window = max(max(t.window_shape) for t in plan_tiles(size, size, args.tile, overlap)) if tiled else size
        print(f"    {size:4d}^2    {'tiled  ' if tiled else 'untiled'}   {window:10d}^2   {output / MB:9.0f} MB   "
              f"{peak / MB:14.0f} MB   {(peak - output) / MB:18.0f} MB")


def cuda_throughput(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("[3] CUDA: skipped (no CUDA device)")
        return
    torch.backends.cudnn.benchmark = True
    generator = make_generator("cuda")
    image = torch.rand(3, 1024, 1024)
    megapixels = (1024 * 4) ** 2 / 1e6
    print(f"[3] CUDA ({torch.cuda.get_device_name()}), srresnet x4, 1024x1024 input, --tile {args.tile}")
    results = {}
    for name, precision, batch_tiles in [("fp32, one tile at a time", "fp32", 1),
                                         (f"fp16, {args.cuda_batch_tiles} tiles a batch", "fp16", args.cuda_batch_tiles)]:
        upscale(generator, image[:, :300, :300], tile=args.tile, batch_tiles=batch_tiles, precision=precision)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        seconds = min(timed(upscale, generator, image, tile=args.tile, batch_tiles=batch_tiles,
                            precision=precision)[0] for _ in range(args.repeats))
        results[name] = megapixels / seconds
        print(f"    {name:28s} {results[name]:8.2f} output MP/s   "
              f"peak GPU memory {torch.cuda.max_memory_allocated() / MB:6.0f} MB")
    fp32, fp16 = results.values()
    print(f"    speed-up {fp16 / fp32:.2f}x   (goal >= 3x)")


def projection_cost(args: argparse.Namespace) -> None:
    from srgan_noise.models import projection

    image = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"[4] CPU, affine projection, {args.size}x{args.size} input, tiled --tile {args.tile}, "
          f"{torch.get_num_threads()} thread(s), process CPU seconds, best of {args.repeats}")
    for name in ("small", "srresnet"):
        plain, projected = make_generator(name=name), make_generator(name=name, projection="affine")
        times: dict[str, list[float]] = {"plain": [], "projected": []}
        for _ in range(args.repeats):
            for variant, generator in (("plain", plain), ("projected", projected)):
                projection.downscale_matrix.cache_clear()  # as for an image size not seen before
                projection._gram_factor.cache_clear()
                seconds, _ = cpu_timed(upscale, generator, image, tile=args.tile, batch_tiles=args.batch_tiles)
                times[variant].append(seconds)
        best = {variant: min(values) for variant, values in times.items()}
        print(f"    {name:9s} without {best['plain']:7.2f} s   with {best['projected']:7.2f} s   "
              f"ratio {best['projected'] / best['plain']:.3f}   (goal <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch-tiles", type=int, default=1, help="on the CPU (srgan upscale's default there)")
    parser.add_argument("--cuda-batch-tiles", type=int, default=8)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[256, 512, 1024])
    parser.add_argument("--untiled-memory-sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--skip", nargs="*", default=[], choices=["time", "memory", "cuda", "projection"])
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--untiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.tile, args.batch_tiles, tiled=not args.untiled)
        return
    if "time" not in args.skip:
        cpu_time(args)
    if "memory" not in args.skip:
        cpu_memory(args)
    if "cuda" not in args.skip:
        cuda_throughput(args)
    if "projection" not in args.skip:
        projection_cost(args)


if __name__ == "__main__":
    main()
