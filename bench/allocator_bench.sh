#!/usr/bin/env bash
# The trainer's allocator: the same short `d2lora train` job (bench/
# memory_plan_bench.sh's, one preset and sequence length) run alternately with
# tcmalloc (the default, preloaded) and glibc's malloc (D2LORA_MALLOC=system),
# REPS times each, interleaved. Prints each run's measured peak and training
# seconds and the medians' ratios (system / tcmalloc).
#
#   bench/allocator_bench.sh [--build-dir DIR] [--json FILE] [--preset small] [--seq 512] [--method lora] [--reps 3]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR="$ROOT/build"
JSON=""
PRESET=small
SEQ=512
METHOD=lora
REPS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR=$2; shift ;;
    --json) JSON=$2; shift ;;
    --preset) PRESET=$2; shift ;;
    --seq) SEQ=$2; shift ;;
    --method) METHOD=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --quick) REPS=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "allocator_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
runs=()
for ((i = 0; i < REPS; ++i)); do
  for malloc in tcmalloc system; do
    out="$WORK/$malloc-$i.json"
    D2LORA_MALLOC=$malloc "$ROOT/bench/memory_plan_bench.sh" --build-dir "$BUILD_DIR" --work-dir "$WORK/w-$malloc-$i" \
      --presets "$PRESET" --seqs "$SEQ" --methods "$METHOD" --json "$out" >/dev/null
    runs+=("$out")
  done
done
python3 - "$JSON" "${runs[@]}" <<'PY'
import json, statistics, sys, time
out, paths = sys.argv[1], sys.argv[2:]
rows = [json.load(open(p))["results"][0] for p in paths]
by = {}
for r in rows:
    by.setdefault(r["allocator"], []).append(r)
    print(f"{r['allocator']:<9} peak {r['measured_bytes'] / 2**20:8.1f} MiB  train {r['train_seconds']:6.2f} s")
med = {a: {"peak_bytes": statistics.median(x["measured_bytes"] for x in rs),
           "train_seconds": statistics.median(x["train_seconds"] for x in rs)} for a, rs in by.items()}
ratios = {}
if "tcmalloc" in med and "system" in med:
    ratios = {k: med["system"][k] / med["tcmalloc"][k] for k in ("peak_bytes", "train_seconds")}
    print(f"system / tcmalloc, medians: peak {ratios['peak_bytes']:.3f}, train seconds {ratios['train_seconds']:.3f}")
else:
    print("allocator_bench: tcmalloc is not installed (apt-get install libtcmalloc-minimal4): nothing to compare")
if out:
    json.dump({"date": time.strftime("%Y-%m-%d"), "runs": rows, "medians": med, "system_over_tcmalloc": ratios},
              open(out, "w"), indent=1)
PY
