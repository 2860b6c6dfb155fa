#!/usr/bin/env bash
# Pairs per second of MiniLM on the HH-RLHF sample on 1 GPU and on N GPUs (default: all of
# them), through torchrun and rewardtrain.launch with nccl and bf16, the same global batch on
# every row. Run it on a GPU node from the repository root; record the figures in
# docs/benchmarks.md with `nvidia-smi --query-gpu=name --format=csv,noheader`.
#
#   benchmarks/train_gpu.sh            # 1 and all GPUs
#   benchmarks/train_gpu.sh 4 2048     # 1 and 4 GPUs, 2048 pairs
set -euo pipefail
cd "$(dirname "$0")/.."
gpus="${1:-$(nvidia-smi --list-gpus | wc -l)}"
pairs="${2:-2048}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
.venv/bin/python benchmarks/train_scaling.py --device cuda --processes 1 "$gpus" \
    --pairs "$pairs" --global-batch 64 --max-length 512 "${@:3}"
