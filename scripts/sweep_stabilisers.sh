#!/usr/bin/env bash
# Issue 18 sweep: the seed's regime (affine projection, adversarial loss alone), small preset,
# 2000 GAN steps, 2 seeds; two compare processes on disjoint schedule lists, one thread each.
# Re-running this script resumes: compare reuses finished runs and continues unfinished ones.
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/sweep-seed}
COMMON=(--data ../shared/data/T91 --data ../shared/data/BSD200 --val ../shared/data/Set5 --preset small
        --projection affine --content none --adv-weight 1 --pretrain-steps 300 --steps 2000 --seeds 2
        --log-every 50 --out "$OUT" --no-progress --device cpu)
A=none,noise-linear@0.1,noise-constant@0.03,noise-linear@0.03,noise-constant@0.1,noise-linear@0.01,noise-constant@0.01,label-smoothing,noise-linear@0.003,noise-constant@0.003
B=roth-constant@1,roth-annealed@1,roth-constant@0.1,roth-annealed@0.1,r1@1,roth-constant@2,roth-annealed@2,roth-constant@0.01,roth-annealed@0.01
export OMP_NUM_THREADS=1
nohup .venv/bin/srgan compare --schedules "$A" "${COMMON[@]}" > "$OUT.A.log" 2>&1 &
# B waits until A has made the shared pre-training of both seeds
( while [ ! -f "$OUT/pretrain-seed1/generator_pretrain.safetensors" ]; do sleep 20; done
  nohup .venv/bin/srgan compare --schedules "$B" "${COMMON[@]}" > "$OUT.B.log" 2>&1 ) &
