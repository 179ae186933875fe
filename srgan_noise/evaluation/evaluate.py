"""`srgan eval`: the standard SR benchmark protocol on a folder of HR images.

Each HR image is cropped to a multiple of the scale (top-left kept), the LR input
is made with PIL bicubic (antialiased; or another of degradations.FAMILIES, named by
`degradation`), the generator super-resolves it, and the
result is compared with the HR image on the ITU-R BT.601 luma, `scale` pixels
cropped from each border (PSNR; SSIM with an 11x11 Gaussian window, sigma 1.5;
the high-band power ratio, base/metrics.py; optionally the critic two-sample test, realism.py).
The bicubic baseline is PIL bicubic down and up, which reproduces the published
Set5 x4 figure (28.42 dB / 0.8104, Ledig et al. 2017, Table 2) to 0.01 dB."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from rich.table import Table

from srgan_noise.base.atomic import existing_ancestor, write_text_atomic
from srgan_noise.base.device import resolve_device
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import list_images, load_rgb, pil_to_tensor
from srgan_noise.base.metrics import high_band_ratio, quantize, y_metrics
from srgan_noise.evaluation.realism import CRITIC_SEEDS, repeated_critic_accuracy
from srgan_noise.evaluation.report import HR, report_html
from srgan_noise.evaluation.results import BICUBIC, MODEL, EvalResult, ImageScore
from srgan_noise.inference.upscale import upscale_fitting_memory
from srgan_noise.inference.weights import load_generator, shipped_weights
from srgan_noise.models.generator import Generator
from srgan_noise.training.data import mod_crop
from srgan_noise.training.degradations import FAMILIES, PROTOCOL

SSIM_WINDOW = 11  # the Gaussian window of metrics.y_metrics; images need this much left after the border crop
CSV_COLUMNS = ("method", "image", "height", "width", "psnr", "ssim", "hf_ratio")

ImageDone = Callable[[str], None]  # called with each image's name once it is scored


@dataclass(frozen=True)
class EvalConfig:
    data: str  # folder of HR images (the ground truth)
    weights: str | None = None  # None: the shipped weights of `model`, or no model when absent and `bicubic` is set
    model: str = "gan"  # gan | psnr | fast | real: which shipped weights, when `weights` is None
    scale: int = 4  # must match the generator's
    bicubic: bool = False  # also score PIL bicubic upscaling
    degradation: str = PROTOCOL  # how the LR inputs are made: a name of degradations.FAMILIES
    critic_steps: int = 0  # > 0: also the critic two-sample test, its critic trained this many steps per method
    critic_seeds: int = CRITIC_SEEDS  # critic tests averaged per method
    out: str | None = None  # folder for results.csv and results.json; None: nothing written
    html: Path | None = None  # folder for index.html, the visual report (report.py); None: none written
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"--device must be one of auto, cpu, cuda, got {self.device!r}")
        if self.critic_steps < 0:
            raise UserError(f"critic steps must be >= 0, got {self.critic_steps}")
        if self.critic_seeds < 1:
            raise UserError(f"--critic-seeds must be at least 1, got {self.critic_seeds}")
        if self.degradation not in FAMILIES:
            raise UserError(f"--degradation must be one of {', '.join(FAMILIES)}, got {self.degradation!r}")
        if self.scale < 2:
            raise UserError(f"--scale must be at least 2, got {self.scale}")


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, H, W) uint8, H and W multiples of `scale` -> (3, H/scale, W/scale) uint8,
    PIL bicubic (antialiased when downscaling, as MATLAB imresize)."""
    return _pil_resize(hr, (hr.shape[-1] // scale, hr.shape[-2] // scale))


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, h, w) uint8 -> (3, h*scale, w*scale) uint8, PIL bicubic."""
    return _pil_resize(lr, (lr.shape[-1] * scale, lr.shape[-2] * scale))


def _pil_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    return pil_to_tensor(pil.resize(size, Image.BICUBIC))


def super_resolve(generator: Generator, lr: torch.Tensor) -> torch.Tensor:
    """(3, h, w) float in [0, 1] -> (3, h*scale, w*scale) float32 on the CPU, unclamped.

    Tiled in fp32 with the exact overlap: equal to one untiled forward, in
    bounded memory whatever the image size (generator in eval mode, on its device)."""
    sr, _, _ = upscale_fitting_memory(generator, lr, tile=256, overlap=None, batch_tiles=1)
    return sr


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float, float]:
    """PSNR (dB), SSIM and high-band power ratio of (3, H, W) in [0, 1] against the
    HR image, Y channel, `scale` pixels cropped from each border, both quantised to 8 bits."""
    metrics = y_metrics(sr[None], hr[None], border=scale)
    ratio = high_band_ratio(sr[None], hr[None], scale, border=scale)
    return metrics["psnr"].item(), metrics["ssim"].item(), ratio.item()


def evaluate_images(images: list[tuple[str, torch.Tensor]], scale: int, generator: Generator | None = None,
                    bicubic: bool = False, on_image: ImageDone | None = None, critic_steps: int = 0,
                    keep_images: bool = False, degradation: str = PROTOCOL,
                    critic_seeds: int = CRITIC_SEEDS) -> EvalResult:
    """Score named HR images, each (3, H, W) uint8, with the generator and/or the
    bicubic baseline, both given the same LR input made by the `degradation` family;
    with `critic_steps`, also the critic two-sample test per method (the mean of `critic_seeds` tests);
    with `keep_images`, the 8-bit outputs and HR images in the result, for the report.
    Pure apart from `on_image`; the generator must be in eval mode."""
    if generator is None and not bicubic:
        raise ValueError("nothing to evaluate: no generator and bicubic=False")
    if generator is not None and generator.config.scale != scale:
        raise ValueError(f"scale {scale} does not match the generator's x{generator.config.scale}")
    model_rows, bicubic_rows = [], []
    outputs: dict[str, list[torch.Tensor]] = {MODEL: [], BICUBIC: []}  # 8-bit, as saved, for the critic
    hr_images: list[torch.Tensor] = []  # what the critic tells them from
    kept: dict[str, dict[str, torch.Tensor]] = {}
    for name, image in images:
        hr = mod_crop(image, scale)
        height, width = hr.shape[-2:]
        if min(height, width) < 2 * scale + SSIM_WINDOW:
            raise UserError(f"{name}: {width}x{height} after cropping to a multiple of {scale} is too small to "
                            f"score (at least {2 * scale + SSIM_WINDOW} px a side: {scale} px borders and an "
                            f"{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window)")
        lr = FAMILIES[degradation](hr, scale)
        hr_float = hr.float().div(255)
        if critic_steps:
            hr_images.append(hr_float)
        if keep_images:
            kept[name] = {HR: hr}
        if generator is not None:
            sr = super_resolve(generator, lr.float().div(255))
            model_rows.append(ImageScore(MODEL, name, height, width, *score(sr, hr_float, scale)))
            if critic_steps:
                outputs[MODEL].append(quantize(sr))
            if keep_images:
                kept[name][MODEL] = sr.clamp(0, 1).mul(255).round().to(torch.uint8)
        if bicubic:
            up_8bit = bicubic_up(lr, scale)
            up = up_8bit.float().div(255)
            bicubic_rows.append(ImageScore(BICUBIC, name, height, width, *score(up, hr_float, scale)))
            if critic_steps:
                outputs[BICUBIC].append(up)
            if keep_images:
                kept[name][BICUBIC] = up_8bit
        if on_image is not None:
            on_image(name)
    rows = tuple(model_rows + bicubic_rows)
    mean = {}
    for method in (MODEL, BICUBIC):
        scores = [row for row in rows if row.method == method]
        if scores:
            # The protocol's mean is over images (of per-image PSNR), not the PSNR of the pooled MSE.
            mean[method] = {"psnr": float(np.mean([row.psnr for row in scores])),
                            "ssim": float(np.mean([row.ssim for row in scores])),
                            "hf_ratio": float(np.mean([row.hf_ratio for row in scores]))}
            if critic_steps:
                accuracy, error = repeated_critic_accuracy(outputs[method], hr_images, critic_seeds,
                                                           steps=critic_steps, border=scale)
                mean[method].update(critic=accuracy, critic_se=error)
    return EvalResult(rows, mean, scale, weights=None, degradation=degradation,
                      images=kept if keep_images else None)


def resolve_weights(config: EvalConfig) -> Path | None:
    """The weights to score: --weights, else the shipped file, else None when only
    the bicubic baseline was asked for."""
    if config.weights is not None:
        return Path(config.weights)
    try:
        return shipped_weights(config.model, config.scale)
    except UserError as error:
        if config.bicubic:
            return None
        raise UserError(f"{error}, or use --bicubic alone for the bicubic baseline") from None


def evaluate(config: EvalConfig, on_image: ImageDone | None = None) -> EvalResult:
    """Run the protocol on the folder `config.data`; write results.csv and
    results.json to `config.out` and index.html to `config.html` when they are set.
    An unreadable image is skipped with a warning, as `srgan train` and `srgan upscale`
    do, and named in the results (`skipped`): the means are then over the others."""
    for folder in (config.out, config.html):
        if folder is not None:
            check_writable(Path(folder))
    paths = list_images(Path(config.data))
    weights = resolve_weights(config)
    generator = None
    if weights is not None:
        generator = load_generator(weights, resolve_device(config.device))
        if generator.config.scale != config.scale:
            raise UserError(f"--scale {config.scale} does not match {weights}, a x{generator.config.scale} "
                            f"generator; use --scale {generator.config.scale}")
    images, skipped = [], []
    for path in paths:
        try:
            images.append((path.name, load_rgb(path)))
        except UserError as error:
            warnings.warn(f"skipping {error}; the means are over the other images", stacklevel=2)
            skipped.append(path.name)
    if not images:
        raise UserError(f"{config.data}: none of its {len(skipped)} image files could be read")
    result = evaluate_images(images, config.scale, generator, config.bicubic, on_image, config.critic_steps,
                             keep_images=config.html is not None, degradation=config.degradation,
                             critic_seeds=config.critic_seeds)
    result = replace(result, weights=str(weights) if weights is not None else None, skipped=tuple(skipped))
    if config.out is not None:
        write_results(result, Path(config.out))
    if config.html is not None:
        write_report(result, Path(config.html))
    return result


def check_writable(folder: Path) -> None:
    """Refuse an output folder that cannot be one (a file in its place or on its
    way, a read-only parent) before the images are scored, not after."""
    existing = existing_ancestor(folder.absolute())
    if not existing.is_dir():
        raise UserError(f"{folder}: not a folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: cannot write there (permission denied on {existing})")


def results_table(result: EvalResult) -> Table:
    """Per-image PSNR/SSIM, one column pair per method, and the mean as the last row."""
    table = Table(title=f"x{result.scale}, LR by {result.degradation}, Y channel, {result.scale} px border",
                  title_justify="left")
    table.add_column("image")
    table.add_column("size", justify="right")
    for method in result.methods:
        label = result.label(method)
        table.add_column(f"{label}\nPSNR dB", justify="right")
        table.add_column(f"{label}\nSSIM", justify="right")
        table.add_column(f"{label}\nhigh-band", justify="right")
    scores = {(row.method, row.image): row for row in result.rows}
    images = dict.fromkeys(row.image for row in result.rows)
    for image in images:
        first = next(row for row in result.rows if row.image == image)
        cells = [image, f"{first.width}x{first.height}"]
        for method in result.methods:
            row = scores[method, image]
            cells += [f"{row.psnr:.2f}", f"{row.ssim:.4f}", f"{row.hf_ratio:.3f}"]
        table.add_row(*cells)
    table.add_section()
    cells = [f"mean of {len(images)}", ""]
    for method in result.methods:
        mean = result.mean[method]
        cells += [f"{mean['psnr']:.2f}", f"{mean['ssim']:.4f}", f"{mean['hf_ratio']:.3f}"]
    table.add_row(*cells, style="bold")
    if all("critic" in result.mean[method] for method in result.methods):
        cells = ["critic accuracy", "(0.5: real)"]
        for method in result.methods:
            cells += [f"{result.mean[method]['critic']:.3f}", f"± {result.mean[method]['critic_se']:.3f}", ""]
        table.add_row(*cells, style="bold")
    return table


def write_results(result: EvalResult, folder: Path) -> tuple[Path, Path]:
    """results.csv (per-image rows, then a `mean` row per method) and results.json
    in `folder`, each written atomically. Returns their paths."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows:
        writer.writerow([row.method, row.image, row.height, row.width, f"{row.psnr:.4f}", f"{row.ssim:.6f}",
                         f"{row.hf_ratio:.4f}"])
    for method, mean in result.mean.items():
        writer.writerow([method, "mean", "", "", f"{mean['psnr']:.4f}", f"{mean['ssim']:.6f}", f"{mean['hf_ratio']:.4f}"])
    document = {"scale": result.scale, "weights": result.weights, "degradation": result.degradation,
                "skipped": list(result.skipped),
                "border": result.scale, "channel": "Y (BT.601)",
                "rows": [asdict(row) for row in result.rows], "mean": result.mean}
    csv_path, json_path = folder / "results.csv", folder / "results.json"
    _write_text_atomic(csv_path, buffer.getvalue())
    _write_text_atomic(json_path, json.dumps(document, indent=2) + "\n")
    return csv_path, json_path


def write_report(result: EvalResult, folder: Path) -> Path:
    """index.html in `folder`, written atomically (report.py; needs the kept images)."""
    path = folder / "index.html"
    _write_text_atomic(path, report_html(result), "the report")
    return path


def _write_text_atomic(path: Path, text: str, what: str = "results") -> None:
    """Through a temporary file in the same folder, then a rename: never half a file."""
    try:
        write_text_atomic(path, text)
    except OSError as error:
        raise UserError(f"{path.parent}: cannot write {what} there ({error.strerror or error})") from None
