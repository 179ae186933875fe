#!/usr/bin/env bash
# The release GAN runs of the realism issue (docs/realism.md): the U-Net D (small preset, 8 channels,
# D at 2e-3 against G's 1e-4), content MSE + 0.1 x the paired D-feature loss + 0.1 x adversarial,
# G's moving average (0.999), no instance noise; one thread, in the background, resuming where it
# stopped (run it again after an interruption).
#   - bicubic protocol (the `gan` file: `scripts/train_gan.sh 6800`): from the shipped PSNR model;
#   - DEGRADATION=realistic (issue 27, the real-photo GAN): LR from the realistic chain, from the
#     shipped real-input MSE model of that scale (SCALE=4 or 2).
# Usage: [LOSS=non-saturating|relativistic] [ADV=0.1] [FEATURES=0.1] [DEGRADATION=realistic [SCALE=4|2]]
#        scripts/train_gan.sh [gan steps] [run folder]
#   (default: 20000 steps, runs/gan-small-$LOSS-adv$ADV-feat$FEATURES, or runs/gan-real-x$SCALE with
#   DEGRADATION=realistic), logging to RUN.log
# Check it on Set5: .venv/bin/srgan eval --data ../shared/data/Set5 --weights RUN/generator.safetensors --critic
#   (with DEGRADATION=realistic: --degradation realistic, and scripts/bench_degradations.py)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20000}
loss=${LOSS:-non-saturating}
adv=${ADV:-0.1}
features=${FEATURES:-0.1}
scale=${SCALE:-4}
data=${DATA:-../shared/data}
if [ "${DEGRADATION:-}" = realistic ]; then
    run=${2:-runs/gan-real-x$scale}
    start=(--scale "$scale" --degradation realistic --init "srgan_noise/inference/pretrained/srresnet_real_x$scale.safetensors")
else
    run=${2:-runs/gan-small-$loss-adv$adv-feat$features}
    start=(--scale 4 --init srgan_noise/inference/pretrained/srresnet_x4.safetensors)
fi
if [ -f "$run/checkpoint.pt" ]; then
    command=(.venv/bin/srgan train --resume "$run" --steps "$steps" --no-progress)
else
    mkdir -p "$(dirname "$run")"
    command=(.venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" --preset small
             "${start[@]}" --pretrain-steps 0 --steps "$steps"
             --batch-size 16 --patch-size 64 --lr 1e-4 --loss "$loss" --adv-weight "$adv"
             --d-feature-weight "$features" --noise none --ema 0.999 --log-every 100 --checkpoint-every 500
             --seed 0 --no-progress --out "$run")
fi
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup "${command[@]}" >> "$run.log" 2>&1 &
echo "training in the background (pid $!): $run, log $run.log"
