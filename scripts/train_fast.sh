#!/usr/bin/env bash
# Reproduce srgan_noise/pretrained/fast_x$SCALE.safetensors (srgan upscale --model fast): the `fast` preset
# (a sub-pixel network on the LR grid, generator.SubPixelGenerator) trained on MSE alone, on T91 + BSD200,
# LR patches from --degradation bicubic-mixed (each patch antialiased bicubic, the SR protocol, or OpenCV's
# INTER_CUBIC without antialiasing, what ESPCN and FSRCNN's published models were trained on), so that one
# model serves both (scripts/bench_peers.py scores it under both next to them).
# Usage: [SCALE=4] scripts/train_fast.sh [pretrain steps] [run folder]
# Resumable: run it again after an interruption and it continues from the run's last checkpoint.
# The shipped x4 file was made with the defaults on the shared 2-core CPU, one thread (OMP_NUM_THREADS=1),
# in about 40 minutes of CPU time (srgan_noise/pretrained/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-4}
steps=${1:-10000}
run=${2:-runs/release-fast-x$scale}
data=${DATA:-../shared/data}
shipped=srgan_noise/pretrained
if [ -f "$run/checkpoint.pt" ]; then
    .venv/bin/srgan train --resume "$run" --no-progress
else
    .venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" \
        --preset fast --scale "$scale" --degradation bicubic-mixed --pretrain-steps "$steps" --steps 0 \
        --batch-size 32 --patch-size 128 --pretrain-lr 1e-3 --pretrain-lr-schedule cosine \
        --log-every 500 --checkpoint-every 1000 --seed 0 --out "$run" --no-progress
fi
cp "$run/generator.safetensors" "$shipped/fast_x$scale.safetensors"
echo "wrote $shipped/fast_x$scale.safetensors from $run"
