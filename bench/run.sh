#!/usr/bin/env bash
# Every benchmark of issue 8, one after the other, on an idle machine:
#   train_step_bench    adapter overhead (D2-LoRA / LoRA / DoRA), peak memory,
#                       model FLOP utilisation, activation checkpointing cost
#   eval_bench          merged / base / unmerged evaluation throughput, and
#                       multiple-choice scoring with a shared prompt
#   dp_bench.sh         2 Gloo ranks vs 1, all-reduce share, thread waiting
#   coordinator_bench   submissions/s and scheduling latency, 100 workers
#   coordinator_load    coordinator_bench --mode load --rps 1000: RPCs/s,
#                       p50/p99 latency and errors per RPC, store consistency
#   adapter_bench       one adapted layer (Google Benchmark), when built
#   memory_plan         the memory plan's predicted peak against `d2lora train`'s
#                       measured one (tiny, small, base at 128 and 512 tokens)
#   allocator           the trainer on tcmalloc vs glibc's malloc: peak and time
# Each prints its table; the headline figures are printed at the end and
# everything is written to OUT/bench.json (one key per bench).
#
#   bench/run.sh [--quick] [--build-dir DIR] [--out DIR] [--no-build] [--only NAME[,NAME]]
#
# --quick takes about 10 minutes on a 2-core machine, the full run about an
# hour. Figures are ratios of variants measured in the same run; compare them,
# not absolute times across machines.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR="$ROOT/build"
OUT="$ROOT/bench/results"
QUICK=()
BUILD=1
ONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ALL=(train_step eval dp coordinator coordinator_load adapter memory_plan allocator)
wanted() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }

if ((BUILD)); then
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    source "$ROOT/deploy/packages.sh"
    configure_build "$ROOT" "$BUILD_DIR" ON
  fi
  targets=(train_step_bench eval_bench d2lora)
  grep -q '^D2LORA_SERVICE:BOOL=ON' "$BUILD_DIR/CMakeCache.txt" && targets+=(coordinator_bench)
  grep -q '^benchmark_DIR:PATH=/' "$BUILD_DIR/CMakeCache.txt" && targets+=(adapter_bench)
  cmake --build "$BUILD_DIR" --target "${targets[@]}"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

LOAD=$(cut -d' ' -f1 /proc/loadavg)
echo "bench/run.sh: $(nproc) cores, load average $LOAD$([[ ${#QUICK[@]} -gt 0 ]] && echo ', quick')" >&2
awk -v l="$LOAD" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
  echo "bench/run.sh: warning: the machine is busy (load $LOAD); the figures will be noisy" >&2

failed=()
# run NAME COMMAND...: the bench's table to the terminal and OUT/NAME.txt, its JSON to OUT/NAME.json.
run() {
  local name=$1
  shift
  wanted "$name" || return 0
  echo "=== $name: $*" >&2
  local start=$SECONDS
  if "$@" --json "$OUT/$name.json" "${QUICK[@]}" | tee "$OUT/$name.txt"; then
    echo "=== $name: $((SECONDS - start)) s" >&2
  else
    echo "=== $name: FAILED after $((SECONDS - start)) s" >&2
    failed+=("$name")
  fi
}

B="$BUILD_DIR/bench"
run train_step "$B/train_step_bench"
run eval "$B/eval_bench"
run dp "$ROOT/bench/dp_bench.sh" --build-dir "$BUILD_DIR"
run memory_plan "$ROOT/bench/memory_plan_bench.sh" --build-dir "$BUILD_DIR"
run allocator "$ROOT/bench/allocator_bench.sh" --build-dir "$BUILD_DIR"
[[ -x "$B/coordinator_bench" ]] && run coordinator "$B/coordinator_bench"
[[ -x "$B/coordinator_bench" ]] && run coordinator_load "$B/coordinator_bench" --mode load --rps 1000
if [[ -x "$B/adapter_bench" ]] && wanted adapter; then
  echo "=== adapter: $B/adapter_bench" >&2
  "$B/adapter_bench" --benchmark_out="$OUT/adapter.json" --benchmark_out_format=json | tee "$OUT/adapter.txt" || failed+=(adapter)
fi

python3 "$ROOT/bench/summarize.py" "$OUT" "${ALL[@]}"
if ((${#failed[@]})); then
  echo "bench/run.sh: failed: ${failed[*]}" >&2
  exit 1
fi
