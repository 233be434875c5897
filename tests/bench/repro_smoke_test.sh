#!/usr/bin/env bash
# bench/repro/repro.py --smoke end to end: WordNet data with dev splits, a
# pretrained tiny base evaluated zero-shot, a learning-rate sweep, the
# headline methods fine-tuned at the common rate (and at their own best rate
# where it differs) on two tasks and two seeds, bf16 merges, the report with
# its paired statistics; then the report is rebuilt from the finished runs
# without training again. Each check below can fail.
#
#   repro_smoke_test.sh BUILD_DIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$1"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$ROOT/bench/repro/repro.py" --smoke --build-dir "$BUILD" --out "$OUT" --jobs 2 >"$OUT/log" 2>&1 ||
  { cat "$OUT/log"; fail "repro.py --smoke exited non-zero"; }
for f in results.json report.md predictions.json.gz; do [ -s "$OUT/$f" ] || fail "no $f"; done
python3 - "$OUT" "$ROOT/bench/repro" <<'PY' || fail "results, predictions or splits are wrong"
import gzip, json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1]); sys.path.insert(0, sys.argv[2])
import report
r = json.load(open(out / "results.json"))
cfg = r["config"]
methods, tasks, seeds, lrs = cfg["methods"], cfg["tasks"], cfg["seeds"], cfg["lrs"]
assert len(lrs) == 2 and len(seeds) == 2 and len(tasks) == 2, cfg

# The rates follow PLAN.md's rule, recomputed here from the sweep.
dev = r["sweep_dev_accuracy"]
for m in methods:
    means = {lr: statistics.mean(dev[m][f"{lr:g}"]) for lr in lrs}
    top = max(means.values())
    assert r["learning_rates"]["best"][m] == min(lr for lr in lrs if means[lr] == top), (m, means, r["learning_rates"])
overall = {lr: statistics.mean(v for m in methods for v in dev[m][f"{lr:g}"]) for lr in lrs}
common = r["learning_rates"]["common"]
assert common == min(lr for lr in lrs if overall[lr] == max(overall.values())), (overall, common)

# Every method x task x seed at the common rate; the headline methods at their best rate too.
expected = {report.run_name(m, t, s, lr) for m in methods for t in tasks for s in seeds
            for lr in report.rates_of(m, {"common": common, "best": r["learning_rates"]["best"]})}
assert set(r["runs"]) == expected, sorted(set(r["runs"]) ^ expected)

# predictions.json.gz: the answers behind every accuracy in results.json.
p = json.load(gzip.open(out / "predictions.json.gz", "rt"))
for t in tasks:
    assert len(p["labels"][t]) == r["questions"][t] > 0, t
    for s in report.SCORINGS:
        assert len(p["base"][t][s]) == len(p["labels"][t]), (t, s)
for name in expected:
    run = p["runs"][name]
    task = next(t for t in tasks if f"-{t}-" in name)
    labels = p["labels"][task]
    for s in report.SCORINGS:
        acc = statistics.mean(int(a == b) for a, b in zip(run["training_form"][s], labels))
        assert abs(acc - r["runs"][name]["accuracy"][s]) < 1e-9, (name, s, acc, r["runs"][name]["accuracy"])
    assert len(run["merged"]) == len(labels), name
    assert r["runs"][name]["max_logit_diff"] < 1e-3, (name, r["runs"][name]["max_logit_diff"])
    assert r["runs"][name]["volatility"] is not None and r["runs"][name]["train_seconds"] > 0, name
    lowp = name.split("-")[0] in report.LOW_PRECISION_METHODS and name.endswith(f"lr{common:g}")
    assert ("merged_bf16" in run) == lowp, name
    if lowp:
        assert len(run["merged_bf16"]) == len(labels), name

# bf16 rounding moves the logits far more than an fp32 merge (~1e-6), within reason.
bf16 = r["merge"]["bf16"]
assert set(bf16) == set(report.LOW_PRECISION_METHODS), bf16
for m, v in bf16.items():
    assert v["runs"] == len(tasks) * len(seeds) and 1e-4 < v["max_logit_diff"] < 1.0, (m, v)

# The claims: both families present, Holm never lowers a p-value, every verdict one of PLAN.md's.
keys = [c["key"] for c in r["claims"]]
for k in ("vs_lora", "vs_lora_2r", "vs_dora", "vs_lora_best", "vs_lora_2r_best", "vs_dora_best",
          "volatility", "merge_fp32", "merge_bf16"):
    assert k in keys, (k, keys)
for c in r["claims"]:
    assert 0 <= c["p"] <= c["p_holm"] <= 1, c
    assert c["verdict"].split(":")[0].split(",")[0] in ("held", "failed", "not decided at this scale"), c["verdict"]
    lo, hi = c["ci95"]
    assert lo <= c["mean"] <= hi, c
# The fine-tuned rows against the base model, paired on the same questions.
assert set(r["vs_base"]) == set(methods), r["vs_base"]
assert r["rows_common_rate"]["base"][tasks[0]]["mean"], r["rows_common_rate"]["base"]

# Dev questions never share a word with the training questions.
import repro
data = out / "work" / "data"
for t in tasks:
    words = lambda f: {repro.question_key(q) for q in repro.read_jsonl(data / t / f)}
    assert words("dev.jsonl") and not (words("train.jsonl") & words("dev.jsonl")), t
    assert words("validation.jsonl"), t
PY
grep -q "D2-LoRA r − LoRA r (common rate)" "$OUT/report.md" || fail "report.md lacks the claims table"
grep -q "^| base |" "$OUT/report.md" || fail "report.md lacks the base model's row"
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  for f in loss_curves.png pretrain_perplexity.png claims.png; do [ -s "$OUT/$f" ] || fail "plot $f missing"; done
fi
# Resumable: a second run reuses every finished run, evaluation and merge (no process runs).
rm "$OUT/report.md"
start=$SECONDS
"$ROOT/bench/repro/repro.py" --smoke --build-dir "$BUILD" --out "$OUT" >"$OUT/log2" 2>&1 || { cat "$OUT/log2"; fail "rerun"; }
[ -f "$OUT/report.md" ] || fail "rerun wrote no report"
if grep -q "pretrain:" "$OUT/log2"; then fail "rerun trained the base again"; fi
find "$OUT/work" -newer "$OUT/log" -name summary.json | grep -q . && fail "rerun trained a run again"
# A run that failed twice (PLAN.md section 6) is named, and the claims that need it say so.
for gone in "$OUT"/work/runs/d2lora_r-pos-s1-*; do  # at every rate it ran at
  rm -rf "$gone/out" && echo "exited 1" >"$gone/FAILED"
done
"$ROOT/bench/repro/repro.py" --smoke --build-dir "$BUILD" --out "$OUT" --report-only >"$OUT/log3" 2>&1 ||
  { cat "$OUT/log3"; fail "report with a failed run"; }
grep -q "^- \`$(basename "$gone")\`" "$OUT/report.md" || fail "the failed run is not named"
grep -q "^- D2-LoRA r − LoRA r (common rate)" "$OUT/report.md" || fail "the claims without every run are not listed"
echo "repro smoke: ok (rerun $((SECONDS - start)) s)"
