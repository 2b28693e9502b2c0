#!/usr/bin/env bash
# GPU check of r1: one script, about 10 minutes on one H100, no network needed.
#
# Usage:
#   bash bench/gpu_check.sh [--dry-run] [--smoke] [--budget SECONDS] [--work DIR]
#
#   --dry-run   print every command (and its timeout) without running anything
#   --smoke     CPU run of the same plumbing: the tiny model, 2 steps, fp32; parts that
#               need CUDA (vLLM, FSDP2 offload) are skipped
#   --budget    wall-clock seconds for the whole check (default 570); a part starts only
#               with at least 30 s left and its timeout is cut to what is left
#   --work DIR  where models and logs go (default: a new temporary directory)
#
# Environment: PYTHON (default: the repo's .venv/bin/python, else python3); R1_SHARED: the
# folder holding bench/make_tiny_model.py, make_shaped_model.py and trl_grpo_baseline.py
# (default: the first of ./shared, ../shared and /work/shared that has them); OUT: when
# set, the summary and every log are copied there.
#
# Parts (each under its own `timeout`, so one failure does not stop the rest):
#   setup      import r1agent, else pip install -e '.[vllm,gpu,dev]' (bounded), else
#              pip install --no-deps -e ., else PYTHONPATH=repo
#   models     tiny tokenizer model, then random-init models of Qwen2.5-0.5B and 1.5B shape
#   plan       r1agent plan for each configuration below (estimated peak, GiB)
#   grpo-*     bench/grpo_throughput.py steps at bf16 autocast (dtype=auto): HF rollouts,
#              vLLM colocated rollouts without and with sleep mode (rollout.vllm_sleep),
#              async GRPO (async.max_staleness=1), LoRA and full fine-tuning at 0.5B and 1.5B
#              shapes, torchrun with fsdp=true; completion tokens/s and
#              torch.cuda.max_memory_allocated. vLLM server mode (one GPU generating, one
#              training) needs two GPUs and is listed as skipped on one.
#   offload-*  FSDP2 train steps at 1.5B shape, one-process group, with and without
#              CPUOffloadPolicy (r1agent.infra.distributed.wrap_model): step time, peak memory
#   pipeline   tests/r1agent/test_pipeline_gpu_example.py with -m slow (when present)
#   trl        TRL's GRPOTrainer on the 0.5B shape (--lr 1e-9 --reward varied)
# A summary table ends the output: part, status, seconds, tokens/s, peak GiB, estimate GiB.
set -uo pipefail

DRY_RUN=0
SMOKE=0
BUDGET=570
WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --smoke) SMOKE=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
if [ -z "$WORK" ]; then WORK="$(mktemp -d "${TMPDIR:-/tmp}/r1_gpu_check.XXXXXX")"; fi
mkdir -p "$WORK"
SUMMARY="$WORK/summary.tsv"
printf 'part\tstatus\tseconds\ttokens_per_s\tpeak_gib\testimate_gib\n' >"$SUMMARY"
START=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_DISABLED=true
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

find_shared() {
  local d
  for d in "${R1_SHARED:-}" "$REPO/shared" "$REPO/../shared" /work/shared; do
    if [ -n "$d" ] && [ -f "$d/bench/make_shaped_model.py" ]; then
      (cd "$d" && pwd)
      return 0
    fi
  done
  return 1
}

SHARED="$(find_shared || true)"
if [ -z "$SHARED" ]; then
  echo "warning: no shared/bench/make_shaped_model.py (set R1_SHARED); model parts will fail" >&2
  SHARED="${R1_SHARED:-$REPO/../shared}"
fi

left() { echo $((BUDGET - ($(date +%s) - START))); }

# run_part NAME TIMEOUT ESTIMATE_GIB CMD...: run CMD under `timeout`, log it, add a summary row
run_part() {
  local name="$1" limit="$2" est="$3" rc t0 secs toks peak status remaining
  shift 3
  echo
  echo "=== $name (timeout ${limit}s)"
  # shellcheck disable=SC2016  # the quotes are printed; $R1_BENCH_SET expands
  echo "+ ${R1_BENCH_SET:+R1_BENCH_SET='$R1_BENCH_SET' }$*"
  if [ "$DRY_RUN" = 1 ]; then
    printf '%s\tdry-run\t-\t-\t-\t%s\n' "$name" "$est" >>"$SUMMARY"
    return 0
  fi
  remaining=$(left)
  if [ "$remaining" -lt 30 ]; then
    echo "skipped: ${remaining}s of the ${BUDGET}s budget left"
    printf '%s\tskipped (budget)\t-\t-\t-\t%s\n' "$name" "$est" >>"$SUMMARY"
    return 0
  fi
  if [ "$limit" -gt "$remaining" ]; then limit=$remaining; fi
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  tail -n 15 "$WORK/$name.log"
  toks=$(grep -oE 'completion_tokens_per_s=[0-9.]+' "$WORK/$name.log" | tail -n 1 | cut -d= -f2)
  peak=$(grep -oE 'GPU_PEAK_GIB=[0-9.]+' "$WORK/$name.log" | tail -n 1 | cut -d= -f2)
  case $rc in
    0) status=ok ;;
    124|137) status="timeout (${limit}s)" ;;
    *) status="failed (rc $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "${toks:--}" "${peak:--}" "$est" \
    >>"$SUMMARY"
  return 0
}

skip_part() {
  echo
  echo "=== $1: skipped ($2)"
  printf '%s\tskipped (%s)\t-\t-\t-\t-\n' "$1" "$2" >>"$SUMMARY"
}

# ------------------------------------------------------------------ helper scripts (written)

WRAP="$WORK/run_with_overrides.py"
cat >"$WRAP" <<'EOF'
"""Run a bench script in this process with extra GRPO overrides (R1_BENCH_SET="k=v ...")
and print the peak GPU memory torch allocated (GPU_PEAK_GIB=...)."""
import os
import runpy
import sys

extra = os.environ.get("R1_BENCH_SET", "").split()
if extra:
    import r1agent.infra.config as config

    original = config.load_config

    def load_config(source, overrides=None, **fields):
        cfg = original(source, overrides, **fields)
        return original(cfg.model_dump(by_alias=True), extra)

    config.load_config = load_config
script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    import torch

    if torch.cuda.is_available():
        print(f"GPU_PEAK_GIB={torch.cuda.max_memory_allocated() / 2**30:.2f}", flush=True)
EOF

OFFLOAD="$WORK/offload_step.py"
cat >"$OFFLOAD" <<'EOF'
"""FSDP2 train steps on one GPU with or without CPU offload: step time and peak memory.

Run under torchrun (one process). Dist's world only gates wrap_model's FSDP2 branch; the
process group has one process, so parameters are "sharded" over one rank: the figure is
what CPUOffloadPolicy moves off the GPU.
"""
import sys
import time

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM

from r1agent.infra.distributed import Dist, wrap_model

model_dir, offload = sys.argv[1], sys.argv[2] == "1"
dev = torch.device("cuda", 0)
torch.cuda.set_device(dev)
dist.init_process_group("cpu:gloo,cuda:nccl")
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(dev)
model.gradient_checkpointing_enable()
wrapped = wrap_model(model, Dist(rank=0, world=2), dev, fsdp=True, offload=offload)
opt = torch.optim.AdamW(model.parameters(), lr=1e-9, foreach=True)
ids = torch.randint(0, 1000, (8, 512), device=dev)
torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(3):
    t = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = wrapped(ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
print(f"offload={offload} step_s={[round(x, 3) for x in times]} tokens_per_step={ids.numel()}")
print(f"completion_tokens_per_s={ids.numel() / (sum(times[1:]) / len(times[1:])):.1f}")
print(f"GPU_PEAK_GIB={torch.cuda.max_memory_allocated() / 2**30:.2f}", flush=True)
dist.destroy_process_group()
EOF

# ------------------------------------------------------------------ setup

echo "r1 GPU check: repo $REPO, work $WORK, shared $SHARED, python $PYTHON"
echo "budget ${BUDGET}s, dry-run $DRY_RUN, smoke $SMOKE"
if [ "$DRY_RUN" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
fi

install() {
  if "$PYTHON" -c "import r1agent, peft" 2>/dev/null; then
    echo "r1agent importable: no install"
    return 0
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=10 PIP_RETRIES=0
  timeout 240 "$PYTHON" -m pip install -q -e '.[vllm,gpu,dev]' && return 0
  echo "full install failed; trying the package alone (no dependencies)"
  timeout 120 "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . && return 0
  echo "no install: using PYTHONPATH=$REPO"
  return 1
}

if [ "$DRY_RUN" = 1 ]; then
  echo "+ install: $PYTHON -m pip install -e '.[vllm,gpu,dev]' (when r1agent is not importable)"
else
  install || export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
fi
has() { [ "$DRY_RUN" = 1 ] || "$PYTHON" -c "import $1" 2>/dev/null; }

# Flags of bench/grpo_throughput.py (used when it has them, else the same settings as
# config overrides through the wrapper).
HELP="$("$PYTHON" bench/grpo_throughput.py --help 2>/dev/null || true)"
flag() { grep -qE -- "$1([ ,=]|$)" <<<"$HELP"; }
MAX_NEW=64
COMMON=(--prompts-per-step 8 --group-size 8 --max-new-tokens "$MAX_NEW" --force-length --steps 4)
BASE_SET="dtype=auto"
if [ "$SMOKE" = 1 ]; then
  MAX_NEW=8
  COMMON=(--prompts-per-step 2 --group-size 2 --max-new-tokens "$MAX_NEW" --force-length --steps 2)
  BASE_SET="dtype=float32 device=cpu"
fi
if flag --lr; then COMMON+=(--lr 1e-9); else BASE_SET="$BASE_SET lr=1e-9"; fi
if flag --reward; then COMMON+=(--reward varied); fi
LORA_ARGS=()
LORA_SET="lora.r=16"
if flag --lora; then
  if grep -qE -- '--lora [A-Z_]+' <<<"$HELP"; then LORA_ARGS=(--lora 16); else LORA_ARGS=(--lora); fi
  LORA_SET=""
fi
CKPT_ARGS=()
CKPT_SET="gradient_checkpointing=true"
if flag --grad-ckpt; then CKPT_ARGS=(--grad-ckpt); CKPT_SET=""; fi

# ------------------------------------------------------------------ models

M_TINY="$WORK/tiny"
M05="$WORK/qwen2.5-0.5b"
M15="$WORK/qwen2.5-1.5b"
# shellcheck disable=SC2329  # run through `bash -c build_models` under timeout
build_models() {
  "$PYTHON" "$SHARED/bench/make_tiny_model.py" "$M_TINY" || return 1
  if [ "$SMOKE" = 1 ]; then return 0; fi
  "$PYTHON" "$SHARED/bench/make_shaped_model.py" "$M_TINY" "$M05" --shape qwen2.5-0.5b || return 1
  "$PYTHON" "$SHARED/bench/make_shaped_model.py" "$M_TINY" "$M15" --shape qwen2.5-1.5b
}
export -f build_models
export PYTHON SHARED SMOKE M_TINY M05 M15
run_part models 240 - bash -c build_models
L05=0.5b
L15=1.5b
if [ "$SMOKE" = 1 ]; then M05="$M_TINY"; M15="$M_TINY"; L05=tiny-as-0.5b; L15=tiny-as-1.5b; fi

# ------------------------------------------------------------------ estimates

PLAN_YAML="$WORK/plan.yaml"
printf 'model: %s\nenvs: {r1/Arithmetic-v0: 1.0}\nmax_turns: 1\nmax_new_tokens: %s\n' \
  "$M05" "$MAX_NEW" >"$PLAN_YAML"
# estimate MODEL OVERRIDES...: the planned peak in GiB ("-" when it cannot be planned)
estimate() {
  local model="$1" out
  shift
  if [ "$DRY_RUN" = 1 ]; then echo "-"; return; fi
  local mem=()
  if ! "$PYTHON" -c "import torch,sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    mem=(--memory-gib 80)
  fi
  out=$(timeout 60 "$PYTHON" -m r1agent.cli plan "$PLAN_YAML" "model=$model" "$@" \
    --prompt-tokens 64 "${mem[@]}" 2>&1)
  echo "$out" >>"$WORK/plan.log"
  grep -oE '^peak [0-9.]+' <<<"$out" | cut -d' ' -f2 || echo "-"
}
DEV=cuda
if [ "$SMOKE" = 1 ]; then DEV=cpu; fi
PLAN_SET=("device=$DEV" micro_batch_size=64)

# ------------------------------------------------------------------ GRPO steps

grpo() {  # grpo NAME TIMEOUT MODEL "OVERRIDES" PLAN_OVERRIDES... -- EXTRA_FLAGS...
  local name="$1" limit="$2" model="$3" set="$4" est
  shift 4
  local plan_args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do plan_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  est=$(estimate "$model" "${PLAN_SET[@]}" "${plan_args[@]}")
  R1_BENCH_SET="$BASE_SET $set" run_part "$name" "$limit" "${est:--}" \
    "$PYTHON" "$WRAP" bench/grpo_throughput.py --model "$model" "${COMMON[@]}" "$@"
}

# (bench/grpo_throughput.py turns gradient checkpointing off unless --grad-ckpt)
grpo "grpo-hf-$L05-full" 120 "$M05" "" gradient_checkpointing=false --
grpo "grpo-hf-$L05-lora" 120 "$M05" "$LORA_SET" lora.r=16 gradient_checkpointing=false \
  -- "${LORA_ARGS[@]}"
grpo "grpo-hf-$L15-full" 150 "$M15" "$CKPT_SET" gradient_checkpointing=true -- "${CKPT_ARGS[@]}"
grpo "grpo-hf-$L15-lora" 150 "$M15" "$LORA_SET $CKPT_SET" lora.r=16 gradient_checkpointing=true \
  -- "${LORA_ARGS[@]}" "${CKPT_ARGS[@]}"

if has trl; then
  TRL_SIZE=(--bs 64 --gens 8 --max-new "$MAX_NEW" --steps 4)
  if [ "$SMOKE" = 1 ]; then TRL_SIZE=(--bs 4 --gens 2 --max-new "$MAX_NEW" --steps 2); fi
  run_part "trl-$L05" 150 - "$PYTHON" "$WRAP" "$SHARED/bench/trl_grpo_baseline.py" \
    --model "$M05" "${TRL_SIZE[@]}" --force-length --lr 1e-9 --reward varied --quiet
else
  skip_part trl "trl not importable"
fi

VLLM_SET="rollout.engine=vllm rollout.vllm_gpu_memory_utilization=0.3"
if [ "$SMOKE" = 1 ]; then
  skip_part grpo-vllm-0.5b-full "smoke: vLLM needs CUDA here"
  skip_part grpo-vllm-sleep-0.5b-full "smoke: vLLM sleep mode needs CUDA"
elif has vllm; then
  grpo "grpo-vllm-$L05-full" 240 "$M05" "$VLLM_SET rollout.vllm_sleep=false" \
    gradient_checkpointing=false --
  # sleep mode: vLLM's weights go to host memory and its KV cache is freed during the update
  grpo "grpo-vllm-sleep-$L05-full" 240 "$M05" "$VLLM_SET rollout.vllm_sleep=true" \
    gradient_checkpointing=false --
else
  skip_part grpo-vllm-0.5b-full "vllm not importable"
  skip_part grpo-vllm-sleep-0.5b-full "vllm not importable"
fi
# async GRPO: the next step's rollouts (HF engine) are generated while this step updates
grpo "grpo-async-$L05-full" 150 "$M05" "async.max_staleness=1" gradient_checkpointing=false --
# server mode needs one GPU for `r1agent serve` and another for training
skip_part grpo-vllm-server-0.5b "needs two GPUs: one generating, one training"

TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1)
est=$(estimate "$M05" "${PLAN_SET[@]}" fsdp=true gradient_checkpointing=false)
R1_BENCH_SET="$BASE_SET fsdp=true" run_part "grpo-torchrun1-fsdp-$L05" 150 "${est:--}" \
  "${TORCHRUN[@]}" "$WRAP" bench/grpo_throughput.py --model "$M05" "${COMMON[@]}"

# ------------------------------------------------------------------ FSDP2 CPU offload

if [ "$SMOKE" = 1 ]; then
  skip_part offload "smoke: CPUOffloadPolicy needs CUDA"
else
  run_part "offload-off-$L15" 120 - "${TORCHRUN[@]}" "$OFFLOAD" "$M15" 0
  run_part "offload-on-$L15" 150 - "${TORCHRUN[@]}" "$OFFLOAD" "$M15" 1
fi

# ------------------------------------------------------------------ GPU pipeline example

if [ -f tests/r1agent/test_pipeline_gpu_example.py ] && [ "$SMOKE" = 0 ]; then
  run_part pipeline 180 - "$PYTHON" -m pytest -q -x -m slow tests/r1agent/test_pipeline_gpu_example.py
else
  skip_part pipeline "no tests/r1agent/test_pipeline_gpu_example.py, or smoke"
fi

# ------------------------------------------------------------------ summary

echo
echo "=== summary ($(($(date +%s) - START)) s; tokens/s: completion tokens per second, first"
echo "    step excluded; peak: torch.cuda.max_memory_allocated; estimate: r1agent plan)"
column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$SUMMARY" "$OUT/" 2>/dev/null
  tar -czf "$OUT/logs.tar.gz" -C "$WORK" --exclude='qwen2.5-*' --exclude=tiny . 2>/dev/null
fi
exit 0
