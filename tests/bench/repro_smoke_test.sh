#!/usr/bin/env bash
# bench/repro/repro.py --smoke end to end: WordNet data with dev splits, a
# pretrained tiny base, a learning-rate sweep, LoRA and D2-LoRA fine-tuned at
# the rates it chose, the report written; then
# the report is rebuilt from the finished runs without training again.
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
R="$OUT/results.json"
[ -f "$R" ] && [ -f "$OUT/report.md" ] || fail "no results.json or report.md"
# Splits: dev answers are never training answers; validation exists.
python3 - "$OUT" <<'PY' || fail "results or splits are wrong"
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); r = json.load(open(out / "results.json"))
assert len(r["runs"]) == 2, r["runs"]
# The sweep: both methods at both rates, each method's rate one of them.
lrs = r["config"]["lrs"]
assert len(lrs) == 2, lrs
for m in ("lora_r", "d2lora_r"):
    assert sorted(r["sweep_dev_accuracy"][m]) == sorted(f"{lr:g}" for lr in lrs), r["sweep_dev_accuracy"]
    assert r["learning_rates"][m] in lrs, r["learning_rates"]
    best = max(r["sweep_dev_accuracy"][m].values())
    assert r["sweep_dev_accuracy"][m][f"{r['learning_rates'][m]:g}"] == best, r
# The control (LoRA r at D2-LoRA r's rate) runs exactly when their rates differ.
differ = r["learning_rates"]["lora_r"] != r["learning_rates"]["d2lora_r"]
assert len(r["controls"]) == (1 if differ else 0), r["controls"]
for run in r["controls"]:
    assert run["lr"] == r["learning_rates"]["d2lora_r"] and 0 <= run["accuracy"] <= 1, run
for run in r["runs"]:
    assert 0 <= run["accuracy"] <= 1, run
    assert run["merge_gap_pp"] is not None and abs(run["merge_gap_pp"]) <= 100, run
    assert run["max_logit_diff"] < 1e-3, run
    assert run["volatility"] is not None and run["train_seconds"] > 0, run
assert r["pretrain"]["perplexity"], "no pretraining perplexity curve"
assert "vs_lora_pp" in r["claims"], r["claims"]
data = out / "work" / "data" / "definition"
ans = lambda f: {(q := json.loads(l))["choices"][q["label"]] for l in open(data / f)}
assert not (ans("train.jsonl") & ans("dev.jsonl")), "a dev answer is a training answer"
assert not (ans("../sweep/train.jsonl") & ans("../sweep/dev.jsonl")), "a sweep dev answer is a sweep training answer"
assert ans("validation.jsonl"), "no validation questions"
PY
grep -q "D2-LoRA − LoRA r" "$OUT/report.md" || fail "report.md lacks the claims table"
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  [ -s "$OUT/loss_curves.png" ] && [ -s "$OUT/pretrain_perplexity.png" ] || fail "plots missing"
fi
# Resumable: a second run reuses every finished run (no training, seconds).
rm "$OUT/report.md"
start=$SECONDS
"$ROOT/bench/repro/repro.py" --smoke --build-dir "$BUILD" --out "$OUT" >"$OUT/log2" 2>&1 || { cat "$OUT/log2"; fail "rerun"; }
[ -f "$OUT/report.md" ] || fail "rerun wrote no report"
if grep -q "pretrain:" "$OUT/log2"; then fail "rerun trained the base again"; fi
echo "repro smoke: ok (rerun $((SECONDS - start)) s)"
