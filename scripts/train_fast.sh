#!/usr/bin/env bash
# Reproduce srgan_noise/inference/pretrained/fast_x$SCALE.safetensors (srgan upscale --model fast): the `fast` preset
# (a sub-pixel network on the LR grid, generator.SubPixelGenerator) trained on MSE alone, on T91 + BSD200,
# LR patches from --degradation bicubic-mixed (per patch, antialiased bicubic, the SR protocol, or, nine
# times in ten, OpenCV's INTER_CUBIC without antialiasing, what ESPCN and FSRCNN's published models were
# trained on), so that one model serves both (scripts/bench_peers.py scores it under both next to them).
# Two stages of the same length: Adam 1e-3 with a cosine decay, then, from its weights (--init), Adam 5e-4
# with a cosine decay again and another data order.
# Usage: [SCALE=4] scripts/train_fast.sh [steps per stage] [run folder prefix]
# Resumable: run it again after an interruption and it continues from the stage's last checkpoint.
# The shipped x4 file was made with the defaults on the shared 2-core CPU, one thread (OMP_NUM_THREADS=1),
# in about an hour of CPU time for the two stages (srgan_noise/inference/pretrained/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-4}
steps=${1:-10000}
prefix=${2:-runs/release-fast-x$scale}
data=${DATA:-../shared/data}
shipped=srgan_noise/inference/pretrained

stage() {  # stage RUN LR SEED [--init WEIGHTS]
    local run=$1 lr=$2 seed=$3
    shift 3
    if [ -f "$run/checkpoint.pt" ]; then
        .venv/bin/srgan train --resume "$run" --no-progress
    else
        .venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" \
            --preset fast --scale "$scale" --degradation bicubic-mixed --pretrain-steps "$steps" --steps 0 \
            --batch-size 32 --patch-size 128 --pretrain-lr "$lr" --pretrain-lr-schedule cosine \
            --log-every 500 --checkpoint-every 1000 --seed "$seed" --out "$run" --no-progress "$@"
    fi
}

stage "$prefix" 1e-3 0
stage "$prefix-stage2" 5e-4 1 --init "$prefix/generator.safetensors"
cp "$prefix-stage2/generator.safetensors" "$shipped/fast_x$scale.safetensors"
echo "wrote $shipped/fast_x$scale.safetensors from $prefix-stage2"
