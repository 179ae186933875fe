"""A pilot of the PSNR model at another width or depth (issue 30): the `small` preset with
--channels / --blocks changed, MSE on T91 + BSD200, the recipe of the shipped PSNR model
(batch 16 of 64 px, Adam 2e-4, constant or cosine), validated on Set5 every --log-every
steps. It resumes with --resume; the Set5 curve is the run's metrics.jsonl.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/pilot_psnr_width.py --channels 48 --blocks 6 --steps 3000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from srgan_noise.base.config import preset
from srgan_noise.training.train import train
from srgan_noise.training.train_config import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--schedule", default="constant", help="constant | cosine")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/pilot-psnr-C x B-STEPS")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    out = args.out or Path("runs") / f"pilot-psnr-{args.channels}x{args.blocks}-{args.steps}"
    config = TrainConfig(out=str(out), data=(str(SHARED / "T91"), str(SHARED / "BSD200")), val=str(SHARED / "Set5"),
                         model=preset("small", channels=args.channels, blocks=args.blocks), batch_size=16,
                         patch_size=64, pretrain_lr=2e-4, pretrain_lr_schedule=args.schedule,
                         pretrain_steps=args.steps, steps=0, log_every=args.log_every,
                         checkpoint_every=args.log_every, seed=0, progress=False)
    train(config, resume=args.resume)


if __name__ == "__main__":
    main()
