#!/usr/bin/env bash
# One W&B sweep agent per GPU of this machine, each seeing only its GPU (CUDA_VISIBLE_DEVICES=i), so N GPUs run N
# trials at once; a finished trial's GPU takes the agent's next one. Run from the repository root:
#   wandb sweep sweeps/attention_decoder_grid.yaml          # prints <entity>/seq2seq-lit/<sweep id>
#   sweeps/agents.sh <entity>/seq2seq-lit/<sweep id> [wandb agent options, e.g. --count 10]
# GPUs: $GPUS if set (e.g. GPUS="0 2 3"), else every GPU that nvidia-smi lists. Each agent's output goes to
# logs/agents/<sweep id>/gpu<i>.log. Ctrl+C or SIGTERM is passed on to every agent (W&B then stops its run);
# exits with the first non-zero status of an agent.
set -uo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 ENTITY/PROJECT/SWEEP_ID [wandb agent options]" >&2
  exit 2
fi
sweep="$1"; shift
if [ -z "${GPUS:-}" ]; then
  if ! command -v nvidia-smi >/dev/null; then
    echo "error: no nvidia-smi to list the GPUs. Fix: set GPUS, e.g. GPUS=\"0 1\" $0 $sweep" >&2
    exit 2
  fi
  GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader | tr '\n' ' ')"
fi
if [ -z "${GPUS// /}" ]; then
  echo "error: no GPUs found (GPUS is empty). Fix: set GPUS=\"0 1 ...\", or run one agent: wandb agent $sweep" >&2
  exit 2
fi
logs="logs/agents/${sweep##*/}"
mkdir -p "$logs"
pids=()
for gpu in $GPUS; do
  CUDA_VISIBLE_DEVICES="$gpu" wandb agent "$@" "$sweep" >"$logs/gpu$gpu.log" 2>&1 &
  pids+=("$!")
  echo "agent on GPU $gpu: pid $!, log $logs/gpu$gpu.log" >&2
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
status=0
for pid in "${pids[@]}"; do
  wait "$pid"; rc=$?
  # wait returns early (> 128) when a trapped signal arrives: wait again for the agent itself
  while [ $rc -gt 128 ] && kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done
  if [ $rc -ne 0 ] && [ $status -eq 0 ]; then status=$rc; fi
done
exit $status
