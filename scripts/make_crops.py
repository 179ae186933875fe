"""Side-by-side crops for the model card: bicubic / PSNR model / GAN model /
ground truth, x4, the LR input made as `srgan eval` makes it (PIL bicubic).

    .venv/bin/python scripts/make_crops.py ../shared/data/Set5/butterfly.png 96 80 --size 96 --out docs/crops-butterfly.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from srgan_noise.base.images import load_rgb  # noqa: E402
from srgan_noise.evaluation.evaluate import bicubic_down, bicubic_up, score, super_resolve  # noqa: E402
from srgan_noise.inference.weights import load_generator, shipped_weights  # noqa: E402
from srgan_noise.training.data import mod_crop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("top", type=int)
    parser.add_argument("left", type=int)
    parser.add_argument("--size", type=int, default=96, help="crop side in HR pixels")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    scale = 4
    hr = mod_crop(load_rgb(args.image), scale)
    lr = bicubic_down(hr, scale)
    hr_float = hr.float() / 255
    panels = {"bicubic": bicubic_up(lr, scale).float() / 255}
    for name, model in (("PSNR model", "psnr"), ("GAN model", "gan")):
        generator = load_generator(shipped_weights(model))
        panels[name] = super_resolve(generator, lr.float() / 255).clamp(0, 1)
    panels["ground truth"] = hr_float

    top, left, size = args.top, args.left, args.size
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for axis, (name, image) in zip(axes, panels.items()):
        crop = image[:, top:top + size, left:left + size]
        axis.imshow(crop.permute(1, 2, 0).numpy(), interpolation="nearest")
        title = name
        if name != "ground truth":
            psnr, ssim, high_band = score(image, hr_float, scale)
            title += f"\n{psnr:.2f} dB / {ssim:.3f} / high-band {high_band:.2f}\n(whole image)"
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(f"{args.image.name}, x4, crop {size}x{size} at ({top}, {left})", fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
