#!/usr/bin/env bash
# Reproduce the shipped weights (package data in srgan_noise/inference/pretrained/) from scratch on the shared data.
#
# DEGRADATION=bicubic (the default): the benchmark-protocol pair at SCALE (default 4)
#   srresnet_x$SCALE.safetensors  MSE training (--model psnr), one run
#   srgan_x$SCALE.safetensors     a GAN phase started from it (--init; --model gan): content MSE +
#                                 1e-2 x adversarial, the VGG-style D without normalisation, constant
#                                 instance noise sigma 0.1 (docs/stabilisation-evidence.md)
# DEGRADATION=realistic: the generator for real photos (--model real, srgan upscale's default)
#   srresnet_real_x$SCALE.safetensors  MSE training on LR patches from the random realistic chain
#                                 (docs/real-photos.md), the learning rate on a cosine to 0: fine-tuned
#                                 from srresnet_x$SCALE where that is shipped (x4), from scratch otherwise
#                                 (x2). MSE, not a GAN: the model must beat bicubic on every LR family,
#                                 and the GAN phase costs PSNR. FINETUNE=N adds a second cosine cycle of
#                                 N steps at half the rate, seed 1, from the first run's weights.
# Usage: [SCALE=4] [DEGRADATION=bicubic] scripts/train_release.sh [preset] [pretrain steps] [gan steps] [run folder]
#   the shipped files:  scripts/train_release.sh                                  (x4 psnr + gan)
#                       DEGRADATION=realistic scripts/train_release.sh small 20000          (x4 real)
#                       SCALE=2 FINETUNE=3000 DEGRADATION=realistic scripts/train_release.sh small 16000  (x2 real;
#                         the shipped file's first run drew x4's odds of downscalers at x2 too, as the
#                         chain did at commit a3882f2: its exact commands are in pretrained/README.md)
# Check a model on every LR family: .venv/bin/python scripts/bench_degradations.py --weights RUN/generator.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-4}
degradation=${DEGRADATION:-bicubic}
preset=${1:-small}
pretrain=${2:-3000}
gan=${3:-2000}
shipped=srgan_noise/inference/pretrained
data=${DATA:-../shared/data}
common=(--data "$data/T91" --data "$data/BSD200" --val "$data/Set5" --preset "$preset" --scale "$scale"
        --batch-size 16 --patch-size 64 --pretrain-lr 2e-4 --log-every 100 --checkpoint-every 100 --seed 0 --no-progress)
if [ "$degradation" = realistic ]; then
    run=${4:-runs/release-$preset-x$scale-real}
    init=()
    if [ -f "$shipped/srresnet_x$scale.safetensors" ]; then init=(--init "$shipped/srresnet_x$scale.safetensors"); fi
    .venv/bin/srgan train "${common[@]}" --degradation realistic "${init[@]}" --pretrain-steps "$pretrain" --steps 0 \
        --pretrain-lr-schedule cosine --out "$run"
    if [ "${FINETUNE:-0}" -gt 0 ]; then
        .venv/bin/srgan train "${common[@]}" --degradation realistic --init "$run/generator.safetensors" \
            --pretrain-steps "$FINETUNE" --steps 0 --pretrain-lr 1e-4 --pretrain-lr-schedule cosine --seed 1 \
            --out "$run-ft"
        run=$run-ft
    fi
    cp "$run/generator.safetensors" "$shipped/srresnet_real_x$scale.safetensors"
    echo "wrote $shipped/srresnet_real_x$scale.safetensors from $run"
else
    run=${4:-runs/release-$preset-x$scale}
    .venv/bin/srgan train "${common[@]}" --pretrain-steps "$pretrain" --steps 0 --out "$run"
    cp "$run/generator_pretrain.safetensors" "$shipped/srresnet_x$scale.safetensors"
    .venv/bin/srgan train "${common[@]}" --init "$shipped/srresnet_x$scale.safetensors" --pretrain-steps 0 \
        --steps "$gan" --lr 1e-4 --adv-weight 1e-2 --d-arch vgg --d-norm none --noise constant --sigma0 0.1 --out "$run-gan"
    cp "$run-gan/generator.safetensors" "$shipped/srgan_x$scale.safetensors"
    echo "wrote $shipped/srresnet_x$scale.safetensors from $run and $shipped/srgan_x$scale.safetensors from $run-gan"
fi
