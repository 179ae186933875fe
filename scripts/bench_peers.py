"""The `fast` model next to published fast x4 models, quality and speed, in one run.

The peers are the x4 FSRCNN, FSRCNN-small and ESPCN graphs of ../shared/peers/ (see its
README), run through OpenCV's dnn_superres; srgan_noise itself never needs OpenCV:

    .venv/bin/pip install opencv-contrib-python-headless    # for this benchmark only

Quality: Set5 x4, `srgan eval`'s protocol functions (evaluate.score: PSNR and SSIM on the
BT.601 Y channel, 4 px border, 8-bit outputs), with the LR images made two ways
(degradations.FAMILIES): pil-bicubic, the standard protocol (antialiased, as MATLAB
imresize), and cv-cubic, OpenCV's INTER_CUBIC without antialiasing, on which the peers were
trained. Every method gets the same 8-bit LR image.

Speed: a 256x256 image to 1024x1024, one thread (torch and OpenCV), process CPU seconds,
the methods interleaved, the median of --repeats; output megapixels per second. Ours is the
library call `srgan upscale` makes (srgan_noise.inference.upscale.upscale: float in and out, tile 256,
one tile a batch); the peers' is DnnSuperResImpl.upsample (8-bit BGR in and out: their
network on Y, bicubic chroma).

    .venv/bin/python scripts/bench_peers.py [--repeats 7] [--weights RUN/generator.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from srgan_noise.base.images import list_images, load_rgb
from srgan_noise.evaluation.evaluate import bicubic_up, score, super_resolve
from srgan_noise.inference.upscale import upscale
from srgan_noise.inference.weights import load_generator, shipped_weights
from srgan_noise.training.data import mod_crop
from srgan_noise.training.degradations import FAMILIES

SCALE = 4
PROTOCOLS = ("pil-bicubic", "cv-cubic")
# file, dnn_superres name, parameters (../shared/peers/README.md)
PEERS = {"FSRCNN": ("FSRCNN_x4.pb", "fsrcnn", 9_168), "FSRCNN-small": ("FSRCNN-small_x4.pb", "fsrcnn", 2_005),
         "ESPCN": ("ESPCN_x4.pb", "espcn", 24_752)}

Method = Callable[[torch.Tensor], torch.Tensor]  # LR (3, h, w) uint8 -> SR (3, 4h, 4w) float, [0, 1] or beyond


def peer_method(folder: Path, file: str, name: str) -> Method:
    import cv2

    model = cv2.dnn_superres.DnnSuperResImpl_create()
    model.readModel(str(folder / file))
    model.setModel(name, SCALE)

    def run(lr: torch.Tensor) -> torch.Tensor:
        bgr = np.ascontiguousarray(lr.permute(1, 2, 0).numpy()[..., ::-1])
        return torch.from_numpy(np.ascontiguousarray(model.upsample(bgr)[..., ::-1])).permute(2, 0, 1).float() / 255

    return run


def model_method(generator: torch.nn.Module) -> Method:
    """srgan eval's way: tiled (tile 256, the exact overlap), fp32."""
    return lambda lr: super_resolve(generator, lr.float() / 255)


def speed_run(generator: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """srgan upscale's library call on the CPU: tile 256, one tile a batch."""
    return lambda lr: upscale(generator, lr.float() / 255, tile=256, batch_tiles=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/Set5"))
    parser.add_argument("--peers", type=Path, default=Path("../shared/peers"))
    parser.add_argument("--weights", type=Path, help="score this generator as `fast` instead of the shipped one")
    parser.add_argument("--reference", nargs="*", default=["psnr"], help="shipped models to add (psnr: the small preset)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=256, help="input side of the speed test")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    methods: dict[str, Method] = {"bicubic (PIL)": lambda lr: bicubic_up(lr, SCALE).float() / 255}
    parameters: dict[str, int | None] = {"bicubic (PIL)": None}
    for name, (file, kind, count) in PEERS.items():
        methods[name], parameters[name] = peer_method(args.peers, file, kind), count
    ours = {"fast": args.weights or shipped_weights("fast", SCALE)}
    ours.update({name: shipped_weights(name, SCALE) for name in args.reference})
    generators = {name: load_generator(weights) for name, weights in ours.items()}
    for name, generator in generators.items():
        methods[name], parameters[name] = model_method(generator), sum(p.numel() for p in generator.parameters())

    # 1. Quality: each protocol's LR images, every method on the same ones.
    images = [(path.name, mod_crop(load_rgb(path), SCALE)) for path in list_images(args.data)]
    quality: dict[tuple[str, str], tuple[float, float]] = {}
    for protocol in PROTOCOLS:
        scores: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        for _, hr in images:
            lr = FAMILIES[protocol](hr, SCALE)
            for name, method in methods.items():
                psnr, ssim, _ = score(method(lr), hr.float() / 255, SCALE)
                scores[name].append((psnr, ssim))
        for name, values in scores.items():
            quality[name, protocol] = (statistics.mean(v[0] for v in values), statistics.mean(v[1] for v in values))

    # 2. Speed: interleaved repeats, process CPU time, medians.
    lr = load_rgb(list_images(args.data)[0])[:, :args.size, :args.size].contiguous()
    speed_runs = {name: speed_run(generators[name]) if name in generators else method for name, method in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in speed_runs}
    for run in speed_runs.values():  # warm-up
        run(lr)
    for _ in range(args.repeats):
        for name, run in speed_runs.items():
            start = time.process_time()
            run(lr)
            times[name].append(time.process_time() - start)
    megapixels = (args.size * SCALE) ** 2 / 1e6
    speed = {name: megapixels / statistics.median(values) for name, values in times.items()}

    print(f"Set5 x{SCALE}, PSNR dB / SSIM on Y (BT.601), {SCALE} px border; LR by pil-bicubic (the standard "
          f"protocol) and cv-cubic (OpenCV INTER_CUBIC, no antialiasing)")
    print(f"speed: {args.size}x{args.size} -> {args.size * SCALE}x{args.size * SCALE}, 1 thread, process CPU time, "
          f"median of {args.repeats}, output megapixels per second")
    header = f"{'method':16s} {'parameters':>10s}   {'pil-bicubic':>15s}   {'cv-cubic':>15s}   {'MP/s':>6s}"
    print(header)
    for name in methods:
        count = f"{parameters[name]:,}" if parameters[name] is not None else ""
        cells = "   ".join(f"{quality[name, p][0]:6.2f} / {quality[name, p][1]:.4f}" for p in PROTOCOLS)
        print(f"{name:16s} {count:>10s}   {cells}   {speed[name]:6.2f}")
    for peer in ("FSRCNN", "ESPCN"):
        gains = ", ".join(f"{quality['fast', p][0] - quality[peer, p][0]:+.2f} dB on {p}" for p in PROTOCOLS)
        print(f"fast against {peer}: {gains}; speed {speed['fast'] / speed[peer]:.2f}x")
    print(f"fast: {speed['fast']:.1f} output MP/s (goal >= 15)")


if __name__ == "__main__":
    main()
