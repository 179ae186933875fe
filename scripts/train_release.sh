#!/usr/bin/env bash
# Reproduce the shipped weights (package data in srgan_noise/pretrained/) from scratch on the shared data.
# With DEGRADATION=bicubic (the default), the benchmark-protocol pair:
#   srgan_noise/pretrained/srresnet_x$SCALE.safetensors  the generator at the end of MSE pre-training (--model psnr)
#   srgan_noise/pretrained/srgan_x$SCALE.safetensors     after the GAN phase (--model gan), with the stabiliser
#                                    `srgan compare` found best on the SR task: the Roth et al. regulariser,
#                                    constant gamma 2.0 (docs: README "Comparing stabilisers")
# With DEGRADATION=realistic, the weights for real photos (--model real, srgan upscale's default):
#   srgan_noise/pretrained/srgan_real_x$SCALE.safetensors  after the GAN phase, LR patches from the
#                                    random realistic chain (README "Real photos")
# Usage: [SCALE=4] [DEGRADATION=bicubic] scripts/train_release.sh [preset] [pretrain steps] [gan steps] [run folder]
# The shipped x4 bicubic files were made on a 2-core CPU with the defaults below (see srgan_noise/pretrained/README.md).
# Check a realistic model with: .venv/bin/python scripts/bench_degradations.py --weights RUN/generator.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-4}
degradation=${DEGRADATION:-bicubic}
preset=${1:-small}
pretrain=${2:-3000}
gan=${3:-400}
suffix=$([ "$degradation" = realistic ] && echo -real || true)
run=${4:-runs/release-$preset-x$scale$suffix}
data=${DATA:-../shared/data}
shipped=srgan_noise/pretrained
.venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" \
    --preset "$preset" --scale "$scale" --degradation "$degradation" --pretrain-steps "$pretrain" --steps "$gan" \
    --batch-size 16 --patch-size 64 --pretrain-lr 2e-4 --lr 1e-4 \
    --noise none --reg roth --gamma0 2.0 --gamma-schedule constant \
    --log-every 100 --checkpoint-every 100 --seed 0 --out "$run" --no-progress
if [ "$degradation" = realistic ]; then
    cp "$run/generator.safetensors" "$shipped/srgan_real_x$scale.safetensors"
    echo "wrote $shipped/srgan_real_x$scale.safetensors from $run"
else
    cp "$run/generator_pretrain.safetensors" "$shipped/srresnet_x$scale.safetensors"
    cp "$run/generator.safetensors" "$shipped/srgan_x$scale.safetensors"
    echo "wrote $shipped/srresnet_x$scale.safetensors and $shipped/srgan_x$scale.safetensors from $run"
fi
