#!/usr/bin/env bash
# The local `d2lora` subcommands end to end through the built binary:
# init-model, eval (lm and multiple_choice, --json), generate, merge, and the
# errors a user meets (missing paths, bad JSONL lines, usage errors).
set -uo pipefail
D2="$1"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
failures=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }

# expect CODE PATTERN -- CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect() {
  local code="$1" pattern="$2"; shift 3
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  if [ "$got" -ne "$code" ]; then fail "$* exited $got, wanted $code: $(cat "$T/err")"; return; fi
  if ! grep -q -- "$pattern" "$T/err"; then fail "$*: stderr lacks '$pattern': $(cat "$T/err")"; return; fi
  pass "$* -> $code, '$pattern'"
}

cat >"$T/corpus.txt" <<'TXT'
the cat sat on the mat
the dog sat on the log
a bird in the hand is worth two in the bush
TXT
if "$D2" init-model --preset tiny --out "$T/m" --seed 1 --corpus "$T/corpus.txt" >"$T/out"; then
  grep -q "preset tiny" "$T/out" && pass "init-model" || fail "init-model output: $(cat "$T/out")"
else
  fail "init-model"; exit 1
fi
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -f "$T/m/$f" ] || fail "init-model wrote no $f"
done

printf '{"text": "the cat sat on the mat"}\n\n{"input_ids": [5, 6, 7, 8]}\n' >"$T/lm.jsonl"
last=$("$D2" eval --model "$T/m" --data "$T/lm.jsonl" --task lm --json | tail -n 1)
if [[ "$last" =~ ^\{\"loss\":[0-9.e+-]+,\"perplexity\":[0-9.e+-]+,\"tokens\":[0-9]+\}$ ]]; then
  pass "eval lm --json: $last"
else
  fail "eval lm --json last line: $last"
fi
# The input_ids record predicts 3 tokens; the text one its token count minus one.
[[ "$last" =~ \"tokens\":([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 3 ] || fail "token count in $last"

cat >"$T/mc.jsonl" <<'TXT'
{"question": "Where does the cat sit?", "choices": ["mat", "log", "bush", "hand"], "label": 0}
{"context": "A dog.", "question": "Where does the dog sit?", "choices": ["mat", "log"], "label": 1}
TXT
for scoring in sum mean byte letter; do
  last=$("$D2" eval --model "$T/m" --data "$T/mc.jsonl" --task multiple_choice --scoring $scoring --json | tail -n 1)
  # accuracy, n, correct and the binomial standard error agree with the per-question labels and predictions.
  if jq -e '.n == 2 and .labels == [0, 1] and (.predictions | length) == 2 and
            .predictions[0] >= 0 and .predictions[0] < 4 and .predictions[1] >= 0 and .predictions[1] < 2 and
            .correct == ([.labels, .predictions] | transpose | map(select(.[0] == .[1])) | length) and
            .accuracy == .correct / .n and
            ((.standard_error - ((.accuracy * (1 - .accuracy) / .n) | sqrt)) | fabs) < 1e-12' <<<"$last" >/dev/null
  then pass "eval mc $scoring: $last"; else fail "eval mc $scoring: $last"; fi
done
# The spec's names (eval.scoring) are the flag's: anything else is a usage error naming them.
"$D2" eval --model "$T/m" --data "$T/mc.jsonl" --task multiple_choice --scoring median >/dev/null 2>"$T/scoring.err"
code=$?
[ $code -eq 2 ] && grep -q "unknown value 'median'; expected sum, mean, byte, letter" "$T/scoring.err" &&
  pass "eval --scoring median -> 2, naming the scorings" || fail "eval --scoring median: exit $code, $(cat "$T/scoring.err")"

out=$("$D2" generate --model "$T/m" --prompt "the cat" --max-new-tokens 5 --seed 3)
[[ "$out" == "the cat"* ]] && pass "generate: $out" || fail "generate: $out"
a=$("$D2" generate --model "$T/m" --prompt "the" --max-new-tokens 8 --temperature 1.0 --seed 5)
b=$("$D2" generate --model "$T/m" --prompt "the" --max-new-tokens 8 --temperature 1.0 --seed 5)
[ "$a" == "$b" ] && pass "generate is deterministic in its seed" || fail "generate seeds: '$a' vs '$b'"

# Errors name the file and the problem, with exit code 1; usage errors exit 2.
expect 1 "$T/nowhere" -- "$D2" eval --model "$T/nowhere" --data "$T/lm.jsonl"
printf '{"text": "fine"}\n{"text": 5}\n' >"$T/bad.jsonl"
expect 1 "$T/bad.jsonl:2" -- "$D2" eval --model "$T/m" --data "$T/bad.jsonl"
printf '{"text": "fine"}\nnot json\n' >"$T/bad2.jsonl"
expect 1 "$T/bad2.jsonl:2" -- "$D2" eval --model "$T/m" --data "$T/bad2.jsonl"
"$D2" eval --model "$T/m" --data "$T/bad2.jsonl" --skip-invalid --json >"$T/out" 2>"$T/err" &&
  grep -q "skipped 1 invalid line" "$T/err" && pass "--skip-invalid counts" || fail "--skip-invalid: $(cat "$T/err")"
printf '{"question": "q", "choices": ["a", "b"], "label": 2}\n' >"$T/badmc.jsonl"
expect 1 "$T/badmc.jsonl:1" -- "$D2" eval --model "$T/m" --data "$T/badmc.jsonl" --task multiple_choice
expect 1 "$T/no-adapter/adapter_config.json" -- "$D2" merge --model "$T/m" --adapter "$T/no-adapter" --out "$T/merged"
[ ! -e "$T/merged" ] && pass "failed merge leaves no output" || fail "failed merge left $T/merged"
echo '{"broken' >"$T/m/config.json"
expect 1 "$T/m/config.json" -- "$D2" generate --model "$T/m" --prompt hi
expect 2 "bogus" -- "$D2" eval --model "$T/m" --data "$T/lm.jsonl" --bogus
expect 2 "preset" -- "$D2" init-model --preset huge --out "$T/x"
expect 2 "required" -- "$D2" merge --model "$T/m"

echo "cli_local: $failures failure(s)"
[ "$failures" -eq 0 ]
