#!/usr/bin/env bash
# Issue 18 sweeps, two compare processes on disjoint schedule lists, one thread each.
# Re-running this script resumes: compare reuses finished runs and continues unfinished ones.
#
# REGIME=srgan (the default): the SRGAN setting with a BN-free discriminator and 30x the default
#   adversarial weight (content MSE + 3e-2 x adversarial), every run's GAN phase started from the
#   shipped PSNR model (--init), 1000 GAN steps, batch 16 of 64 px, SEEDS seeds (default 2).
# REGIME=seed: the seed's regime (affine projection, adversarial loss alone), D with batch norm,
#   300 MSE steps then 2000 GAN steps, batch 8, 2 seeds (the earlier, batch-norm screen).
cd "$(dirname "$0")/.."
REGIME=${REGIME:-srgan}
SEEDS=${SEEDS:-2}
data=(--data ../shared/data/T91 --data ../shared/data/BSD200 --val ../shared/data/Set5 --preset small)
export OMP_NUM_THREADS=1
if [ "$REGIME" = seed ]; then
    OUT=${OUT:-runs/sweep-seed}
    COMMON=("${data[@]}" --upsample pixel-shuffle --d-norm batch --projection affine --content none --adv-weight 1
            --pretrain-steps 300 --steps 2000 --seeds 2 --log-every 50 --out "$OUT" --no-progress --device cpu)
    A=none,noise-linear@0.1,noise-constant@0.03,noise-linear@0.03,noise-constant@0.1,noise-linear@0.01,noise-constant@0.01,label-smoothing,noise-linear@0.003,noise-constant@0.003
    B=roth-constant@1,roth-annealed@1,roth-constant@0.1,roth-annealed@0.1,r1@1,roth-constant@2,roth-annealed@2,roth-constant@0.01,roth-annealed@0.01
    nohup .venv/bin/srgan compare --schedules "$A" "${COMMON[@]}" > "$OUT.A.log" 2>&1 &
    # B waits until A has made the shared pre-training of both seeds
    ( while [ ! -f "$OUT/pretrain-seed1/generator_pretrain.safetensors" ]; do sleep 20; done
      nohup .venv/bin/srgan compare --schedules "$B" "${COMMON[@]}" > "$OUT.B.log" 2>&1 ) &
else
    OUT=${OUT:-runs/sweep}
    COMMON=("${data[@]}" --init srgan_noise/inference/pretrained/srresnet_x4.safetensors --d-norm none --adv-weight 3e-2
            --steps 1000 --batch-size 16 --patch-size 64 --log-every 100 --seeds "$SEEDS" --out "$OUT"
            --no-progress --device cpu)
    A=none,noise-constant@0.03,noise-linear@0.1,roth-constant@0.1/4,roth-constant@1/4
    B=noise-constant@0.1,noise-constant@0.01,roth-constant@0.01/4,label-smoothing,r1@0.1/4
    nohup .venv/bin/srgan compare --schedules "$A" "${COMMON[@]}" > "$OUT.A.log" 2>&1 &
    nohup .venv/bin/srgan compare --schedules "$B" "${COMMON[@]}" > "$OUT.B.log" 2>&1 &
fi
wait
