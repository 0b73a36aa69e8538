#!/usr/bin/env bash
# The GPU check on the lent GPU machine, as that machine is: its python3 and torch, no network, nothing installed
# but the wheels prepared here (bench/device/prepare.sh). One command there, carrying .whl and .device_data:
#
#   bash bench/device/run.sh                     # writes into $OUT (the machine sets it), else logs/device_check
#   bash bench/device/run.sh DIR [-- GPU_CHECK_ARGS ...]   # e.g. -- --cpu --steps 12 -- data=parallel_text ...
#
# Steps, each timed: the machine (nvidia-smi, python3, torch); the wheels installed with pip --target into a
# temporary folder and put on PYTHONPATH with the checkout (no build, no .venv); an import check; bench/gpu_check.py
# (docs/performance.md) with STEPS steps per training (default 100) within BUDGET_S seconds (default 300: about 7
# minutes for the call with the machine's start, and a rerun on the warm machine still fits in 15 minutes); then the output folder gets at most 5 files, none in
# a subfolder: gpu_check.json, gpu_check.txt (the table), run.log (this whole console), logs.tar.gz (every run's
# log, metrics and speed and profile figures; no checkpoints). Exit status: gpu_check's (0: every step ran).
# Environment: PYTHON (default python3), WHEELS (default .whl), BUDGET_S (default 300), STEPS (default 100).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$(pwd)"
OUT_DIR="${OUT:-logs/device_check}"
if [[ $# -gt 0 && "$1" != "--" ]]; then OUT_DIR="$1"; shift; fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
BUDGET_S="${BUDGET_S:-300}"
STEPS="${STEPS:-100}"
mkdir -p "$OUT_DIR" && OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/s2s-device-XXXXXX")"
exec > >(tee "$OUT_DIR/run.log") 2>&1
TEE=$!

START=$(date +%s.%N)
LAST=$START
stamp() {  # stamp STEP: the seconds since the last stamp and since the start
    local now; now=$(date +%s.%N)
    awk -v s="$1" -v a="$LAST" -v b="$START" -v n="$now" 'BEGIN { printf "[run.sh] %-24s %7.1f s   (total %6.1f s)\n", s, n - a, n - b }'
    LAST=$now
}
fail() { echo "run.sh: $*" >&2; stamp "stopped"; exec 1>&- 2>&-; wait "$TEE" 2>/dev/null; exit 2; }

echo "[run.sh] $(date -u '+%Y-%m-%d %H:%M:%S UTC'), checkout $REPO, output $OUT_DIR, work $WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || echo "[run.sh] no nvidia-smi"
"$PYTHON" -c "import sys, torch; print('[run.sh] python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" \
    || fail "$PYTHON cannot import torch. Fix: run on the GPU machine (python3 with torch), or set PYTHON"
stamp "machine"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [[ ${#wheels[@]} -eq 0 ]]; then
    fail "no wheels in $WHEELS. Fix: run bash bench/device/prepare.sh on the CPU machine and carry $WHEELS"
fi
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$WORK/site" "${wheels[@]}" || fail "pip could not install the wheels of $WHEELS into $WORK/site"
export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
echo "[run.sh] installed: $(cd "$WORK/site" && ls -d *.dist-info | sed 's/.dist-info//' | tr '\n' ' ')"
stamp "wheels"

"$PYTHON" -c "import hydra, omegaconf, seq2seq_lit.train, seq2seq_lit.translate" \
    || fail "the checkout does not import with the carried wheels. Fix: check bench/device/wheels.txt, rerun prepare.sh"
stamp "import check"

if [[ -f .device_data/multi30k/train.de ]]; then
    export SEQ2SEQ_DATA_DIR="$REPO/.device_data"
elif [[ " $* " != *" data="* ]]; then
    fail "no .device_data/multi30k. Fix: run bash bench/device/prepare.sh on the CPU machine and carry .device_data"
fi
export SEQ2SEQ_CACHE_DIR="$WORK/cache" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
"$PYTHON" bench/gpu_check.py --out "$WORK/check" --budget-s "$BUDGET_S" --steps "$STEPS" "$@"
status=$?
stamp "gpu_check"

cp "$WORK/check/gpu_check.json" "$WORK/check/gpu_check.txt" "$OUT_DIR/" 2>/dev/null || echo "[run.sh] gpu_check wrote no figures"
(cd "$WORK/check" && find . -type f \( -name '*.log' -o -name '*.json' -o -name '*.csv' -o -name '*.yaml' \) -print0 \
    | tar --null -czf "$OUT_DIR/logs.tar.gz" -T -) || echo "[run.sh] could not pack the logs"
stamp "output"
echo "[run.sh] wrote $(cd "$OUT_DIR" && ls | tr '\n' ' ')into $OUT_DIR; exit $status"
rm -rf "$WORK"
exec 1>&- 2>&-
wait "$TEE" 2>/dev/null  # run.log complete before the call returns
exit $status
