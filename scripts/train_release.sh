#!/usr/bin/env bash
# Reproduce the shipped x4 weights from scratch on the shared data:
#   weights/srresnet_x4.safetensors  the generator at the end of MSE pre-training
#   weights/srgan_x4.safetensors     after the GAN phase, with the stabiliser `srgan compare`
#                                    found best on the SR task: the Roth et al. regulariser,
#                                    constant gamma 2.0 (docs: README "Comparing stabilisers")
# Usage: scripts/train_release.sh [preset] [pretrain steps] [gan steps] [run folder]
# The shipped files were made on a 2-core CPU with the defaults below (see weights/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-small}
pretrain=${2:-3000}
gan=${3:-400}
run=${4:-runs/release-$preset-x4}
data=${DATA:-../shared/data}
.venv/bin/srgan train --data "$data/T91" --data "$data/BSD200" --val "$data/Set5" \
    --preset "$preset" --scale 4 --pretrain-steps "$pretrain" --steps "$gan" \
    --batch-size 16 --patch-size 64 --pretrain-lr 2e-4 --lr 1e-4 \
    --noise none --reg roth --gamma0 2.0 --gamma-schedule constant \
    --log-every 100 --checkpoint-every 100 --seed 0 --out "$run" --no-progress
cp "$run/generator_pretrain.safetensors" weights/srresnet_x4.safetensors
cp "$run/generator.safetensors" weights/srgan_x4.safetensors
echo "wrote weights/srresnet_x4.safetensors and weights/srgan_x4.safetensors from $run"
