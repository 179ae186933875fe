"""The seed's monitoring figure from a run's metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from srgan_noise.atomic import atomic_path, reporting_write_errors
from srgan_noise.errors import UserError
from srgan_noise.monitor import read_metrics

D_CURVES = (("d_real", "D(real)", "tab:blue"), ("d_fake", "D(fake)", "tab:red"),
            ("d_fake_next", "D$_t$(G$_{t+1}$)", "tab:orange"))


def draw_d_curves(axis, records: list[dict[str, Any]]) -> None:
    """Blue D(real), red D(fake), orange D_t(G_{t+1}) over GAN steps on one axis."""
    gan = [r for r in records if r.get("phase") == "gan"]
    steps = [r["step"] for r in gan]
    for key, label, colour in D_CURVES:
        axis.plot(steps, [r[key] for r in gan], color=colour, label=label)
    axis.set_ylim(-0.02, 1.02)
    axis.set_ylabel("mean D output")
    axis.legend(loc="best", fontsize="small")


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Write <run>/monitor.png (or `out`): D curves, then validation SSIM, MSE, PSNR
    and the high-band power ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    if not records:
        raise UserError(f"{run}: no metrics.jsonl with records to plot")
    out = out or run / "monitor.png"
    has_val = "val_ssim" in records[-1]
    quality = [("val_ssim", "SSIM"), ("val_mse", "MSE (Y, 0-255)"), ("val_psnr", "PSNR (dB)")]
    if "val_hf_ratio" in records[-1]:  # runs from before the ratio existed lack it
        quality.append(("val_hf_ratio", "high-band ratio"))
    panels = 1 + len(quality) if has_val else 2
    # The D panel spans the GAN phase alone (pre-training would squash it);
    # the quality panels share the whole run's step axis.
    figure, axes = plt.subplots(panels, 1, figsize=(8, 2.6 * panels))
    for axis in axes[2:]:
        axis.sharex(axes[1])
    draw_d_curves(axes[0], records)
    axes[0].set_title(f"{run.name}: discriminator outputs (GAN phase)")
    axes[0].set_xlabel("step")
    axes[0].grid(alpha=0.3)
    steps = [r["step"] for r in records]
    if has_val:
        for axis, (key, label) in zip(axes[1:], quality):
            axis.plot(steps, [r.get(key, math.nan) for r in records], color="black")
            axis.set_ylabel(f"val {label}")
        if len(quality) == 4:  # 1.0: as much fine detail (above the LR Nyquist) as the real images
            axes[4].axhline(1.0, color="grey", linewidth=1)
    else:
        axes[1].plot(steps, [r.get("loss_pixel", r["loss_content"]) for r in records], color="black")
        axes[1].set_ylabel("train MSE")
    pretrain_end = max((r["step"] for r in records if r["phase"] == "pretrain"), default=None)
    for axis in axes[1:]:
        if pretrain_end is not None:
            axis.axvline(pretrain_end, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("step (dotted: end of MSE pre-training)" if pretrain_end else "step")
    figure.tight_layout()
    try:
        with reporting_write_errors(out, "the previous plot is kept"), atomic_path(out, suffix=out.suffix) as tmp:
            figure.savefig(tmp, dpi=110)
    finally:
        plt.close(figure)
    return out
