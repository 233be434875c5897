#!/usr/bin/env bash
# The memory plan against measured peaks: for each preset (tiny, small, base),
# sequence length (128, 512) and method (d2lora, lora), the real `d2lora
# train` runs a short job (2 optimizer steps of one micro-batch of 4
# sequences, every sequence max_seq_len tokens long, a validation pass and the
# merge gate) and its summary.json records the plan's predicted peak beside
# the process's measured peak (VmHWM, every phase of the run). Goal: measured
# within +-15% of predicted on every row. D2LORA_MALLOC=system in the
# environment runs the trainer on glibc's malloc instead of tcmalloc (each row
# records its allocator and the run's train_seconds).
#
#   bench/memory_plan_bench.sh [--quick] [--build-dir DIR] [--json FILE] [--work-dir DIR]
#
# --quick: the tiny and small presets only. Needs python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR="$ROOT/build"
JSON=""
WORK=""
PRESETS="tiny small base"
SEQS="128 512"
METHODS="d2lora lora"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) PRESETS="tiny small" ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --json) JSON=$2; shift ;;
    --work-dir) WORK=$2; shift ;;
    --presets) PRESETS=${2//,/ }; shift ;;
    --seqs) SEQS=${2//,/ }; shift ;;
    --methods) METHODS=${2//,/ }; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "memory_plan_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "memory_plan_bench.sh: no build directory $BUILD_DIR" >&2; exit 2; }
[[ -z "$JSON" || "$JSON" == /* ]] || JSON="$PWD/$JSON"  # the bench runs in its work directory
D2="$BUILD_DIR/client/d2lora"
[[ -x "$D2" ]] || { echo "memory_plan_bench.sh: $D2 not found: build the d2lora target first" >&2; exit 2; }
if [[ -z "$WORK" ]]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
cd "$WORK"

# Text whose every example is longer than 512 tokens: random words, so that the
# tokenizer learnt from it keeps many tokens per word.
python3 - <<'PY'
import json, random
rng = random.Random(7)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
def text():
    return " ".join(rng.choice(words) for _ in range(900))
with open("corpus.txt", "w") as f:
    for _ in range(50):
        f.write(text() + "\n")
for name, n in (("train.jsonl", 16), ("val.jsonl", 8)):
    with open(name, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"text": text()}) + "\n")
PY

rows=()
for preset in $PRESETS; do
  "$D2" init-model --preset "$preset" --out "model-$preset" --seed 1 --corpus corpus.txt >/dev/null
  for seq in $SEQS; do
    for method in $METHODS; do
      out="out-$preset-$seq-$method"
      cat >"spec-$preset-$seq-$method.yaml" <<YAML
name: plan-$preset-$seq-$method
model: ./model-$preset
method: $method
adapter: {r: 8, alpha: 16, target_modules: [all-linear]}
data: {train: ./train.jsonl, validation: ./val.jsonl, format: lm, max_seq_len: $seq}
train: {epochs: 0, max_steps: 2, batch_size: 4, micro_batch_size: 4, warmup_steps: 0, checkpoint_every: 0}
eval: {every: 0}
output: {dir: ./$out}
YAML
      echo "memory_plan_bench: $preset seq $seq $method" >&2
      start=$SECONDS
      "$D2" train --config "spec-$preset-$seq-$method.yaml" --quiet >"$out.log" 2>&1 ||
        { echo "memory_plan_bench: the run failed: $(tail -3 "$out.log")" >&2; exit 1; }
      echo "memory_plan_bench:   $((SECONDS - start)) s" >&2
      rows+=("$preset $seq $method $out/summary.json")
    done
  done
done

python3 - "$JSON" "${rows[@]}" <<'PY'
import json, platform, os, sys, time
out, rows = sys.argv[1], sys.argv[2:]
results = []
mib = 1 << 20
print(f"{'preset':<6} {'seq':>4} {'method':<7} {'predicted':>10} {'measured':>10} {'ratio':>6}  "
      f"{'runtime':>8} {'weights':>8} {'activ.':>8} {'transient':>9} {'train_s':>7}  phase, allocator")
for row in rows:
    preset, seq, method, path = row.split(" ", 3)
    summary = json.load(open(path))
    m = summary["memory"]
    p = m["plan"]
    ratio = m["measured_peak_bytes"] / m["predicted_peak_bytes"]
    r = {"preset": preset, "seq": int(seq), "method": method, "predicted_bytes": m["predicted_peak_bytes"],
         "measured_bytes": m["measured_peak_bytes"], "measured_runtime_bytes": m.get("measured_runtime_bytes"),
         "measured_over_predicted": ratio, "within_15pct": abs(ratio - 1) <= 0.15, "plan": p,
         "allocator": m.get("allocator"), "train_seconds": summary.get("train_seconds")}
    results.append(r)
    print(f"{preset:<6} {seq:>4} {method:<7} {p['peak_bytes'] / mib:>9.1f}M {m['measured_peak_bytes'] / mib:>9.1f}M "
          f"{ratio:>6.3f}  {p['runtime_bytes'] / mib:>7.1f}M {p['weights_bytes'] / mib:>7.1f}M "
          f"{p['activations_bytes'] / mib:>7.1f}M {p['backward_transient_bytes'] / mib:>8.1f}M "
          f"{r['train_seconds']:>7.2f}  {p['peak_phase']}, {r['allocator']}")
worst = max(abs(r["measured_over_predicted"] - 1) for r in results)
print(f"\nworst |measured / predicted - 1| = {worst:.3f} (goal <= 0.15); measured runtime (RSS before the model): "
      + ", ".join(sorted({f"{r['measured_runtime_bytes'] / mib:.0f}M" for r in results if r['measured_runtime_bytes']})))
if out:
    with open(out, "w") as f:
        json.dump({"machine": {"host": platform.node(), "cores": os.cpu_count()},
                   "date": time.strftime("%Y-%m-%d"), "results": results, "worst_abs_error": worst,
                   "all_within_15pct": all(r["within_15pct"] for r in results)}, f, indent=1)
PY
