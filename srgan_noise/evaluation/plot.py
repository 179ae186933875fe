"""The seed's monitoring figure from a run's metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from srgan_noise.base.atomic import atomic_path, reporting_write_errors
from srgan_noise.base.errors import UserError
from srgan_noise.training.monitor import read_metrics

# In drawing order: orange wide underneath, red thin on top, so where D(fake) and
# D_t(G_{t+1}) coincide (D did not move after G's step) red shows inside an orange band.
D_CURVES = (("d_real", "D(real)", "tab:blue", 1.5, 4), ("d_fake_next", "D$_t$(G$_{t+1}$)", "tab:orange", 4.0, 8),
            ("d_fake", "D(fake)", "tab:red", 1.5, 4))
FEW_POINTS = 12  # windows up to which each one gets a marker (one window alone is no line)


def draw_d_curves(axis, records: list[dict[str, Any]], legend_loc: str = "best") -> None:
    """Blue D(real), red D(fake) over a wider orange D_t(G_{t+1}), over GAN steps on one axis;
    markers on each window when there are few (a single window draws no line)."""
    gan = [r for r in records if r.get("phase") == "gan"]
    steps = [r["step"] for r in gan]
    lines = {}
    for zorder, (key, label, colour, width, marker_size) in enumerate(D_CURVES, start=2):
        lines[key], = axis.plot(steps, [r[key] for r in gan], color=colour, label=label, linewidth=width,
                                marker="o" if len(gan) <= FEW_POINTS else None, markersize=marker_size,
                                zorder=zorder)
    if not gan:
        axis.text(0.5, 0.5, "no GAN steps yet", transform=axis.transAxes, ha="center", va="center", color="grey")
    axis.set_ylim(-0.02, 1.02)
    axis.set_ylabel("mean D output")
    axis.legend(handles=[lines["d_real"], lines["d_fake"], lines["d_fake_next"]], loc=legend_loc, fontsize="small")


def monitor_figure(records: list[dict[str, Any]], name: str):
    """The monitoring figure (a matplotlib Figure) of a run's metrics records: D curves,
    then validation SSIM, MSE, PSNR and the high-band power ratio (or the train MSE
    when there was no validation). All panels share the whole run's step axis, so a
    window sits at the same x in each; the D panel is empty over the shaded MSE
    pre-training and spans the GAN phase."""
    from matplotlib.figure import Figure

    has_val = "val_ssim" in records[-1]
    quality = [("val_ssim", "SSIM"), ("val_mse", "MSE (Y, 0-255)"), ("val_psnr", "PSNR (dB)")]
    if "val_hf_ratio" in records[-1]:  # runs from before the ratio existed lack it
        quality.append(("val_hf_ratio", "high-band ratio"))
    panels = 1 + len(quality) if has_val else 2
    figure = Figure(figsize=(8, 2.6 * panels))
    axes = figure.subplots(panels, 1, sharex=True)
    pretrain_end = max((r["step"] for r in records if r["phase"] == "pretrain"), default=None)
    # Over the pre-training, where D has no data, the legend hides none.
    draw_d_curves(axes[0], records, "best" if pretrain_end is None else "upper left")
    axes[0].set_title(f"{name}: discriminator outputs (GAN phase)")
    steps = [r["step"] for r in records]
    if has_val:
        for axis, (key, label) in zip(axes[1:], quality):
            axis.plot(steps, [r.get(key, math.nan) for r in records], color="black",
                      marker="o" if len(records) <= FEW_POINTS else None, markersize=3)
            axis.set_ylabel(f"val {label}")
        if len(quality) == 4:  # 1.0: as much fine detail (above the LR Nyquist) as the real images
            axes[4].axhline(1.0, color="grey", linewidth=1)
    else:
        axes[1].plot(steps, [r.get("loss_pixel", r["loss_content"]) for r in records], color="black")
        axes[1].set_ylabel("train MSE")
    first, last = min(steps), max(steps)
    margin = 0.02 * (last - first) or 1  # one record: a step either side, not a singular axis
    axes[0].set_xlim(first - margin, last + margin)  # shared: every panel gets it
    for axis in axes:
        if pretrain_end is not None:
            axis.axvspan(first - margin, pretrain_end, color="grey", alpha=0.12, linewidth=0)
        axis.grid(alpha=0.3)
    if pretrain_end is not None:
        axes[0].text(((first - margin) + pretrain_end) / 2, 0.5, "MSE pre-training\n(no D)", ha="center",
                     va="center", color="grey")
    for axis in axes[:-1]:
        axis.tick_params(labelbottom=True)  # shared x, but each panel keeps its step labels
    axes[-1].set_xlabel("step (shaded: MSE pre-training)" if pretrain_end is not None else "step")
    figure.tight_layout()
    return figure


def check_figure_format(out: Path) -> None:
    """A one-line error, before anything is drawn, for a name whose extension matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in formats:
        raise UserError(f"{out}: matplotlib cannot write a {out.suffix or 'name without an extension'}; end it in "
                        f"one of {', '.join('.' + name for name in sorted(formats))}")


def plot_run(run: Path, out: Path | None = None) -> Path:
    """Write <run>/monitor.png (or `out`): the monitor_figure of its metrics.jsonl."""
    records = read_metrics(run)
    if not records:
        raise UserError(f"{run}: no metrics.jsonl with records to plot")
    out = out or run / "monitor.png"
    check_figure_format(out)
    figure = monitor_figure(records, run.name)
    with reporting_write_errors(out, "the previous plot is kept"), atomic_path(out, suffix=out.suffix) as tmp:
        figure.savefig(tmp, dpi=110)
    return out
