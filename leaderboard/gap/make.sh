#!/bin/sh
# How leaderboard/gap/ was made: the encoders of one dictionary (draw 0 of seed 0, Rademacher,
# N = 4096, d = 256), each trained by `harness train-sae` and stored in float16, then measured
# side by side with the iterative decoders by `harness gap`. Run from the repository's root;
# training takes about an hour of one core, the gap a few minutes. Each encoder's directory
# holds its training settings (harness_training) and its loss curve (losses.csv).
set -eu
E=leaderboard/gap/encoders
train() { out=$1; shift; [ -f "$E/$out/losses.csv" ] || \
  harness train-sae --n 4096 --d 256 --dtype float16 --out "$E/$out" "$@"; }
train sae-topk-k8  --k 8
train sae-jumprelu --k 8 --activation jumprelu
train mlp-1024     --k 8 --encoder mlp --hidden 1024 --objective supervised --learning-rate 1e-4
train lista-2      --k 16 --encoder lista --layers 2 --learning-rate 3e-4 --steps 1000 --warmup 50 --eval-every 25
train lista-4      --k 16 --encoder lista --layers 4 --learning-rate 3e-4 --steps 1000 --warmup 50 --eval-every 25
train lista-8      --k 20 --encoder lista --layers 8 --objective supervised --learning-rate 3e-4 --steps 800 \
                   --warmup 50 --eval-every 25
harness gap "$E/sae-topk-k8" "$E/sae-jumprelu" "$E/mlp-1024" "$E/lista-2" "$E/lista-4" "$E/lista-8" \
  --results leaderboard/gap --threads 1
