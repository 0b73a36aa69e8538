#!/usr/bin/env bash
# First check on a machine with one NVIDIA GPU: 200-step trainings in bf16-mixed / 32 / 16-mixed, at several batch
# sizes, compiled and eager, input feeding on and off (loss, test BLEU, tokens/s, fraction of the measured matmul
# peak, peak memory), a profile of one configuration's steps, greedy and beam-5 decoding at two batch sizes, cuda
# unit tests, DDP through NCCL on one device; prints a table and writes <out>/gpu_check.json. Details: bench/gpu_check.py, docs/multi-device.md.
#
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#   SEQ2SEQ_DATA_DIR=/path/to/data bash bench/gpu_check.sh            # on the GPU
#   SEQ2SEQ_DATA_DIR=/path/to/data bash bench/gpu_check.sh --cpu      # the same steps on the CPU
#   bash bench/gpu_check.sh --cpu --steps 20 -- data=parallel_text ...  # other settings for every run
#
# PYTHON picks the interpreter (default: the project's .venv, as `make install` creates it). On a GPU machine that can
# install nothing (no network), bench/device/prepare.sh here and bench/device/run.sh there run bench/gpu_check.py
# without this script and without a .venv (docs/performance.md, "GPU").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
    echo "gpu_check: $PYTHON not found. Fix: run make install first (or set PYTHON=/path/to/python)" >&2
    exit 2
fi
if [[ -z "${SEQ2SEQ_DATA_DIR:-}" && " $* " != *" data="* ]]; then
    echo "gpu_check: SEQ2SEQ_DATA_DIR is not set: Multi30k would be downloaded. Fix: SEQ2SEQ_DATA_DIR=<folder with multi30k/>" >&2
    exit 2
fi
exec "$PYTHON" bench/gpu_check.py "$@"
