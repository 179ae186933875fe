#!/usr/bin/env bash
# The real-photo GAN run (issue 27): scripts/train_gan.sh's regime (the U-Net D at 2e-3 against G's
# 1e-4, content MSE + 0.1 x the paired D-feature loss + 0.1 x non-saturating adversarial, G's moving
# average 0.999, no instance noise) on LR from the realistic degradation chain, started from the
# shipped real-input MSE model of that scale; one thread, in the background, resuming where it stopped.
# Usage: [SCALE=4|2] scripts/train_real_gan.sh [gan steps] [run folder]
#   (default: 10000 steps, runs/gan-real-x$SCALE), logging to RUN.log
# Check it: .venv/bin/python scripts/bench_degradations.py and
#   .venv/bin/srgan eval --data ../shared/data/Set5 --weights RUN/generator.safetensors --degradation realistic --critic
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10000}
scale=${SCALE:-4}
run=${2:-runs/gan-real-x$scale}
data=${DATA:-../shared/data}
if [ -f "$run/checkpoint.pt" ]; then
    command=(.venv/bin/srgan train --resume "$run" --steps "$steps" --no-progress)
else
    mkdir -p "$(dirname "$run")"
    command=(.venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" --preset small
             --scale "$scale" --degradation realistic
             --init "srgan_noise/inference/pretrained/srresnet_real_x$scale.safetensors" --pretrain-steps 0
             --steps "$steps" --batch-size 16 --patch-size 64 --lr 1e-4 --loss non-saturating --adv-weight 0.1
             --d-feature-weight 0.1 --noise none --ema 0.999 --log-every 100 --checkpoint-every 100
             --seed 0 --no-progress --out "$run")
fi
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup "${command[@]}" >> "$run.log" 2>&1 &
echo "training in the background (pid $!): $run, log $run.log"
