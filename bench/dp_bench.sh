#!/usr/bin/env bash
# Data-parallel efficiency on this host: the same D2-LoRA job (small preset,
# WordNet definition task, global batch 16) run as
#   one_rank_1core   1 rank, 1 intra-op thread, pinned to core 0
#   one_rank_all     1 rank, every core
#   one_rank_all_spin  the same with D2LORA_THREADING_DEFAULTS=0: OpenMP and
#                    OpenBLAS threads spin-wait as their libraries default to
#   two_ranks        2 Gloo ranks, 1 thread each, pinned to cores 0 and 1
# through the real `d2lora train`, alternating the variants repetition by
# repetition. From each run's metrics.jsonl (steps after the warm-up ones):
# tokens/s, median step seconds, and the all-reduce's share of a step on rank 0
# (allreduce_seconds includes waiting for the slower rank).
#
# Scaling efficiency = two_ranks tokens/s / (2 x one_rank_1core tokens/s).
#
#   bench/dp_bench.sh [--quick] [--build-dir DIR] [--json FILE] [--work-dir DIR] [--reps N]
#
# Needs: wordnet-base (the data), taskset, python3; at least 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR="$ROOT/build"
JSON=""
WORK=""
QUICK=0
REPS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --json) JSON=$2; shift ;;
    --work-dir) WORK=$2; shift ;;
    --reps) REPS=$2; shift ;;
    *) echo "dp_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "dp_bench.sh: no build directory $BUILD_DIR" >&2; exit 2; }
[[ -z "$JSON" || "$JSON" == /* ]] || JSON="$PWD/$JSON"  # the bench runs in its work directory
D2="$BUILD_DIR/client/d2lora"
[[ -x "$D2" ]] || { echo "dp_bench.sh: $D2 not found: build the d2lora target first (--build-dir)" >&2; exit 2; }
[[ -r /usr/share/wordnet/data.noun ]] || { echo "dp_bench.sh: WordNet not found: apt-get install wordnet-base" >&2; exit 2; }
CORES=$(nproc)
((CORES >= 2)) || { echo "dp_bench.sh: needs at least 2 cores, this process may use $CORES" >&2; exit 2; }

if ((QUICK)); then STEPS=8; WARMUP=2; : "${REPS:=1}"; else STEPS=16; WARMUP=3; : "${REPS:=2}"; fi
if [[ -z "$WORK" ]]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
cd "$WORK"

echo "dp_bench: data and model in $WORK" >&2
"$D2" prepare-wordnet --out data --tasks definition --seed 1 --max-train 2000 --max-val 10 --overwrite >/dev/null
"$D2" init-model --preset small --out model --seed 1 --corpus data/corpus.jsonl --overwrite >/dev/null

# spec OUT_DIR WORLD_SIZE THREADS
spec() {
  cat <<YAML
name: dp-bench
model: $WORK/model
method: d2lora
adapter: {r: 8, alpha: 16, target_modules: [all-linear]}
data: {train: $WORK/data/definition/train.jsonl, format: multiple_choice, max_seq_len: 128}
train: {epochs: 1, max_steps: $STEPS, batch_size: 16, micro_batch_size: 8, lr: 1.0e-3, warmup_steps: 2,
        checkpoint_every: 0}
output: {dir: $1, merge: false}
resources: {world_size: $2, threads: $3}
YAML
}

MASTER_PORT=$((29600 + RANDOM % 2000))
mkdir -p "$WORK/runs"
run_variant() {
  local name=$1 rep=$2 out="$WORK/runs/$1-$2"
  rm -rf "$out"
  case "$name" in
    one_rank_1core)
      spec "$out" 1 1 >"$out.yaml"
      taskset -c 0 "$D2" train --config "$out.yaml" --quiet ;;
    one_rank_all)
      spec "$out" 1 0 >"$out.yaml"
      "$D2" train --config "$out.yaml" --quiet ;;
    one_rank_all_spin)
      spec "$out" 1 0 >"$out.yaml"
      env -u OMP_WAIT_POLICY -u OPENBLAS_THREAD_TIMEOUT D2LORA_THREADING_DEFAULTS=0 \
        "$D2" train --config "$out.yaml" --quiet ;;
    two_ranks)
      spec "$out" 2 1 >"$out.yaml"
      MASTER_PORT=$((MASTER_PORT + 1))
      local pids=()
      for rank in 0 1; do
        taskset -c "$rank" "$D2" train --config "$out.yaml" --quiet --rank "$rank" --world-size 2 \
          --master-addr 127.0.0.1 --master-port "$MASTER_PORT" &
        pids+=($!)
      done
      local rc=0
      for p in "${pids[@]}"; do wait "$p" || rc=$?; done
      return "$rc" ;;
  esac
}

VARIANTS=(one_rank_1core two_ranks one_rank_all one_rank_all_spin)
for ((rep = 1; rep <= REPS; rep++)); do
  for v in "${VARIANTS[@]}"; do
    echo "dp_bench: rep $rep/$REPS $v ($STEPS steps)" >&2
    run_variant "$v" "$rep" >"$WORK/runs/$v-$rep.log" 2>&1 || {
      echo "dp_bench: $v failed:" >&2; tail -20 "$WORK/runs/$v-$rep.log" >&2; exit 1; }
  done
done

python3 - "$WORK/runs" "$REPS" "$WARMUP" "$JSON" "$QUICK" <<'PY'
import json, statistics, sys
runs, reps, warmup, out, quick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
result = {"bench": "dp", "quick": quick, "preset": "small", "method": "d2lora", "global_batch": 16,
          "max_seq_len": 128, "warmup_steps_dropped": warmup, "reps": reps, "variants": {}}
for v in ("one_rank_1core", "one_rank_all", "one_rank_all_spin", "two_ranks"):
    steps = []
    for rep in range(1, reps + 1):
        with open(f"{runs}/{v}-{rep}/metrics.jsonl") as f:
            recs = [json.loads(line) for line in f if line.strip()]
        steps += [r for r in recs if r.get("type", "step") == "step" and "step_seconds" in r][warmup:]
    if not steps:
        sys.exit(f"dp_bench: no step records for {v}")
    secs = sum(s["step_seconds"] for s in steps)
    result["variants"][v] = {
        "steps": len(steps),
        "tokens_per_second": sum(s["tokens"] for s in steps) / secs,
        "median_step_seconds": statistics.median(s["step_seconds"] for s in steps),
        "median_allreduce_seconds": statistics.median(s.get("allreduce_seconds", 0) for s in steps),
        "allreduce_share": sum(s.get("allreduce_seconds", 0) for s in steps) / secs,
    }
V = result["variants"]
result["two_ranks_over_one_rank_1core"] = V["two_ranks"]["tokens_per_second"] / V["one_rank_1core"]["tokens_per_second"]
result["scaling_efficiency"] = result["two_ranks_over_one_rank_1core"] / 2
result["two_ranks_over_one_rank_all"] = V["two_ranks"]["tokens_per_second"] / V["one_rank_all"]["tokens_per_second"]
result["passive_over_spin"] = V["one_rank_all"]["tokens_per_second"] / V["one_rank_all_spin"]["tokens_per_second"]
print(f"{'variant':<18} {'steps':>5} {'tokens/s':>9} {'step s':>8} {'allreduce s':>11} {'allreduce %':>11}")
for v, r in V.items():
    print(f"{v:<18} {r['steps']:>5} {r['tokens_per_second']:>9.0f} {r['median_step_seconds']:>8.3f} "
          f"{r['median_allreduce_seconds']:>11.4f} {100 * r['allreduce_share']:>10.1f}%")
print(f"2 ranks / 1 rank (1 core): {result['two_ranks_over_one_rank_1core']:.2f}x "
      f"(scaling efficiency {100 * result['scaling_efficiency']:.0f}%); "
      f"2 ranks / 1 rank (all cores): {result['two_ranks_over_one_rank_all']:.2f}x; "
      f"all cores, passive / spinning threads: {result['passive_over_spin']:.2f}x")
if out:
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    import os
    os.replace(out + ".tmp", out)
PY
