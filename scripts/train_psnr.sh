#!/usr/bin/env bash
# The PSNR model at what a CPU allows (issue 30): the `small` preset trained long with MSE on T91 + BSD200,
# the learning rate on a cosine from 2e-4 to 0, one thread, in the background; it resumes where it stopped.
# Usage: scripts/train_psnr.sh [steps] [run folder]      (default: 50000 steps, runs/psnr-small-50k)
#   runs there with nohup, logging to RUN/log; run it again after an interruption to continue
# Check it on Set5: .venv/bin/srgan eval --data ../shared/data/Set5 --weights RUN/generator.safetensors --bicubic
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-50000}
run=${2:-runs/psnr-small-50k}
data=${DATA:-../shared/data}
if [ -f "$run/checkpoint.pt" ]; then
    command=(.venv/bin/srgan train --resume "$run" --pretrain-steps "$steps" --no-progress)
else
    mkdir -p "$(dirname "$run")"
    command=(.venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" --preset small --scale 4
             --batch-size 16 --patch-size 64 --pretrain-lr 2e-4 --pretrain-lr-schedule cosine --pretrain-steps "$steps"
             --steps 0 --log-every 1000 --checkpoint-every 1000 --seed 0 --no-progress --out "$run")
fi
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup "${command[@]}" >> "$run.log" 2>&1 &
echo "training in the background (pid $!): $run, log $run.log"
