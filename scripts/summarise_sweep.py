"""Robust per-run figures of a `srgan compare` sweep folder, one line per run.

In a regime where validation swings from window to window (the seed's regime: SSIM
0.2 in one window, 0.7 in the next), `srgan compare`'s final and tail columns are
single draws; this prints the median over all GAN-phase windows instead, with the
windows below an SSIM floor, D's largest lead and the cached critic accuracy.

    .venv/bin/python scripts/summarise_sweep.py RUNS_FOLDER [--floor 0.7]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from srgan_noise.comparison.sr_runs import CRITIC_NAME
from srgan_noise.comparison.tables import gan_records
from srgan_noise.training.monitor import METRICS_NAME, read_metrics


def cached_critic(path: Path) -> str:
    """The critic accuracy `srgan compare` cached in `path` (a run's critic.json or a
    folder's init-critic.json), formatted; '' if there is none."""
    return f"{json.loads(path.read_text())['critic']:.3f}" if path.is_file() else ""


def figures(run: Path, gan: list[dict], floor: float) -> dict[str, str]:
    ssim = [r["val_ssim"] for r in gan]
    return {
        "run": run.name, "GAN windows": str(len(gan)),
        "D(real) / D(fake)": f"{statistics.fmean(r['d_real'] for r in gan):.3f} / "
                             f"{statistics.fmean(r['d_fake'] for r in gan):.3f}",
        "largest D(real) - D(fake)": f"{max(r['d_real'] - r['d_fake'] for r in gan):.2f}",
        "SSIM median": f"{statistics.median(ssim):.3f}",
        "SSIM min": f"{min(ssim):.3f}",
        f"windows SSIM < {floor}": f"{sum(s < floor for s in ssim)} of {len(ssim)}",
        "PSNR median": f"{statistics.median(r['val_psnr'] for r in gan):.2f}",
        "high-band median": f"{statistics.median(r['val_hf_ratio'] for r in gan):.2f}",
        "critic": cached_critic(run / CRITIC_NAME),
        "s/step": f"{statistics.fmean(r['seconds_per_step'] for r in gan):.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--floor", type=float, default=0.7)
    args = parser.parse_args()
    records = {run: read_metrics(run) for run in sorted(args.folder.iterdir())
               if (run / METRICS_NAME).is_file() and not run.name.startswith("pretrain-")}
    for start in sorted(args.folder.glob("pretrain-seed*")):
        if (start / METRICS_NAME).is_file():
            last = [r for r in read_metrics(start) if r.get("phase") == "pretrain"][-1]
            critic = cached_critic(start / CRITIC_NAME)
            print(f"start ({start.name}, step {last['step']}): SSIM {last['val_ssim']:.3f}, PSNR {last['val_psnr']:.2f}, "
                  f"high-band {last['val_hf_ratio']:.2f}" + (f", critic {critic}" if critic else ""))
    start = next((r for run_records in records.values() for r in run_records if r.get("phase") == "init"), None)
    if start is not None:  # `srgan compare --init`: the weights' own figures, recorded at step 0 of every run
        critic = cached_critic(args.folder / "init-critic.json")
        print(f"start (--init): SSIM {start['val_ssim']:.3f}, PSNR {start['val_psnr']:.2f}, "
              f"high-band {start['val_hf_ratio']:.2f}" + (f", critic {critic}" if critic else ""))
    rows = [figures(run, gan_records(run_records), args.floor) for run, run_records in records.items()
            if any(r.get("phase") == "gan" for r in run_records)]
    if not rows:
        raise SystemExit(f"{args.folder}: no runs with GAN-phase records")
    print("| " + " | ".join(rows[0]) + " |")
    print("|---" + "|---:" * (len(rows[0]) - 1) + "|")
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
