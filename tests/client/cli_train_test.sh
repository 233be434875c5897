#!/usr/bin/env bash
# `d2lora train` end to end through the built binary, with real processes:
# a run and its outputs, spec errors (and the error file a failed run
# writes), a refused output directory, SIGTERM
# (graceful stop + --resume) and SIGKILL (resume from the last checkpoint)
# both ending with the adapter of an uninterrupted run, two ranks over Gloo
# (by flags and by torchrun's environment), and a rank whose peer never comes;
# the merge gate of `d2lora merge` and `d2lora export-adapter` on the trained adapter.
set -uo pipefail
D2="$1"
T="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
cd "$T"

make_tiny_model "$D2" m || { fail "init-model"; exit 1; }

gen_choices 64 1 >train.jsonl
gen_choices 16 2 >val.jsonl
cat >spec.yaml <<'YAML'
name: cli-train
model: ./m
method: d2lora
adapter: {r: 4, alpha: 8, target_modules: [all-linear]}
data: {train: ./train.jsonl, validation: ./val.jsonl, format: multiple_choice, max_seq_len: 64}
train: {epochs: 0, max_steps: 40, batch_size: 8, micro_batch_size: 4, lr: 5.0e-3, warmup_steps: 2, checkpoint_every: 4}
eval: {every: 6}
output: {dir: ./out}
resources: {threads: 1}
YAML
sha() { sha256sum "$1" | cut -d' ' -f1; }

# 1. A run: outputs, summary, JSON progress lines on a non-TTY stderr.
if D2LORA_ERROR_FILE="$T/ok-error.json" "$D2" train --config spec.yaml >out.log 2>err.log; then
  pass "train"
else
  fail "train exited $?: $(tail -5 err.log)"; exit 1
fi
[ ! -e ok-error.json ] && pass "a run that succeeds writes no error file" || fail "ok-error.json: $(cat ok-error.json)"
for f in spec.yaml metrics.jsonl summary.json adapter/adapter_config.json adapter/adapter_model.safetensors \
  merged/config.json merged/model.safetensors merged/tokenizer.json checkpoints/step-40/trainer_state.json; do
  [ -f "out/$f" ] || fail "no out/$f"
done
grep -q '"status": "completed"' out/summary.json && grep -q '"merge_check"' out/summary.json &&
  grep -q '"letter"' out/summary.json && pass "summary.json" || fail "summary.json: $(head -c 600 out/summary.json)"
grep -q '"event":"step"' err.log && grep -q '"event":"end"' out/metrics.jsonl && pass "progress and metrics lines" ||
  fail "progress: $(head -3 err.log)"
[ "$(ls out/checkpoints)" == "$(printf 'step-32\nstep-36\nstep-40')" ] && pass "checkpoints kept" || fail "checkpoints: $(ls out/checkpoints)"
reference=$(sha out/adapter/adapter_model.safetensors)

# The memory plan: `d2lora plan` before the run, and summary.json's predicted
# peak beside the measured one (the tiny model: mostly the runtime term).
if "$D2" plan --config spec.yaml >plan.txt 2>&1 && grep -q "^  peak " plan.txt && grep -q "activations" plan.txt; then
  pass "plan"
else
  fail "plan: $(cat plan.txt)"
fi
"$D2" plan --config spec.yaml --json >plan.json 2>&1 &&
  python3 -c 'import json,sys; j=json.load(open("plan.json")); sys.exit(0 if j["peak_bytes"] > j["weights_bytes"] > 0 and j["data_is_bound"] else 1)' &&
  pass "plan --json" || fail "plan --json: $(head -c 400 plan.json)"
python3 - out/summary.json <<'PY' && pass "summary.json: predicted and measured peak" || fail "summary memory: $(grep -A8 '"memory"' out/summary.json)"
import json, sys
m = json.load(open(sys.argv[1]))["memory"]
ratio = m["measured_peak_bytes"] / m["predicted_peak_bytes"]
print("measured/predicted", round(ratio, 3), file=sys.stderr)
# bench/memory_plan_bench.sh measured 1.03-1.10 with tcmalloc (1.08 here).
sys.exit(0 if m["plan"]["data_is_bound"] is False and m["measured_peak_bytes"] > m["measured_runtime_bytes"] > 0
         and m["allocator"] == "tcmalloc" and 0.9 <= ratio <= 1.25 else 1)
PY
expect 1 "adapter.target_modules: no linear layer of the model matches" -- \
  "$D2" plan --config spec.yaml --set 'adapter.target_modules=[nothing_here]'

# The merged model is a plain model the other subcommands use.
"$D2" merge --model m --adapter out/adapter --out merged2 --dtype fp32 >/dev/null 2>&1 &&
  "$D2" eval --model merged2 --data val.jsonl --task multiple_choice --json >/dev/null 2>&1 &&
  pass "merge + eval of the trained adapter" || fail "merge/eval of the trained adapter"

# The merge gate: every merge writes merge_report.json; a threshold no merge can
# meet stops it (exit 1, MERGE_CHECK_FAILED, only the report written), --force
# writes it anyway.
[ -f out/merge_report.json ] && [ -f merged2/merge_report.json ] &&
  grep -q '"passed": true' merged2/merge_report.json && pass "merge reports" || fail "no merge_report.json"
expect 1 "MERGE_CHECK_FAILED: the merged model (bfloat16) was not published" -- \
  "$D2" merge --model m --adapter out/adapter --out merged-bf16 --dtype bf16 --max-logit-diff 1e-12
[ -f merged-bf16/merge_report.json ] && [ ! -e merged-bf16/model.safetensors ] &&
  grep -q '"passed": false' merged-bf16/merge_report.json && pass "a stopped merge writes only its report" ||
  fail "stopped merge: $(ls merged-bf16 2>&1)"
"$D2" merge --model m --adapter out/adapter --out merged-forced --dtype bf16 --max-logit-diff 1e-12 --force >forced.log 2>&1 &&
  [ -f merged-forced/model.safetensors ] && grep -q "FAILED (written anyway: --force)" forced.log &&
  pass "merge --force writes past the gate" || fail "merge --force: $(cat forced.log)"

# export-adapter: the D2-LoRA job's adapter-peft/ is the export; peft-lora is
# refused for the projected method, naming why.
[ -f out/adapter-peft/adapter_config.json ] && grep -q '"use_dora": true' out/adapter-peft/adapter_config.json &&
  pass "the job wrote adapter-peft/" || fail "no out/adapter-peft"
"$D2" export-adapter --model m --adapter out/adapter --out peft >/dev/null 2>&1 &&
  cmp -s peft/adapter_model.safetensors out/adapter-peft/adapter_model.safetensors &&
  pass "export-adapter --format peft-dora equals the job's adapter-peft/" || fail "export-adapter peft-dora"
"$D2" eval --model m --adapter peft --data val.jsonl --task multiple_choice --json >peft.json 2>/dev/null &&
  "$D2" eval --model m --adapter out/adapter --data val.jsonl --task multiple_choice --json >d2.json 2>/dev/null &&
  [ "$(tail -1 peft.json)" == "$(tail -1 d2.json)" ] && pass "the PEFT DoRA export scores as the D2-LoRA adapter" ||
  fail "export scores: $(tail -1 peft.json) vs $(tail -1 d2.json)"
expect 1 "peft-lora cannot hold this D2-LoRA adapter" -- \
  "$D2" export-adapter --model m --adapter out/adapter --format peft-lora --out peft-lora
[ ! -e peft-lora ] && pass "a refused export writes nothing" || fail "refused export left peft-lora/"

# d2lora plot: the run's curves (and bars from eval --json) into a PNG; errors name
# the source, the file and the flag, and write nothing.
if "$D2" plot out --out plot.png --bar "trained=d2.json" --bar "fixed=0.25" --chance 0.25 --title t >plot.log 2>&1 &&
  [ "$(head -c 8 plot.png | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ] && [ "$(stat -c %s plot.png)" -gt 20000 ]
then pass "plot: a PNG of $(stat -c %s plot.png) bytes"; else fail "plot: $(cat plot.log)"; fi
expect 1 "nowhere: no such file or directory" -- "$D2" plot nowhere --out p2.png
expect 1 "val.jsonl: no training step" -- "$D2" plot val.jsonl --out p2.png
expect 1 "--bar 'oops': expected LABEL=EVAL.json" -- "$D2" plot out --out p2.png --bar oops
expect 1 "val.jsonl: no \"accuracy\"" -- "$D2" plot out --out p2.png --bar "x=val.jsonl"
expect 1 "--label given 2 times for 1 sources" -- "$D2" plot out --out p2.png --label a --label b
[ ! -e p2.png ] && pass "a refused plot writes nothing" || fail "a refused plot wrote p2.png"

# 2. Errors name the key, the file or the directory; nothing is overwritten.
expect 1 "train.lr" -- "$D2" train --config spec.yaml --set train.lr=fast --set output.dir=./x
expect 1 "train.bogus" -- "$D2" train --config spec.yaml --set train.bogus=1 --set output.dir=./x
expect 1 "already holds files" -- "$D2" train --config spec.yaml
[ "$(sha out/adapter/adapter_model.safetensors)" == "$reference" ] && pass "refused run left the output alone" ||
  fail "refused run changed out/"
printf '{"question": "q", "choices": ["a", "b"], "label": 0}\n{"bad json\n' >bad.jsonl
expect 1 "bad.jsonl:2" -- "$D2" train --config spec.yaml --set data.train=./bad.jsonl --set output.dir=./x
expect 1 "no checkpoint" -- "$D2" train --config spec.yaml --resume ./nowhere --set output.dir=./x
expect 2 "config" -- "$D2" train
[ ! -e x ] && pass "refused jobs leave no output directory" || fail "refused jobs left ./x: $(ls -R x)"

# 2b. The trainer-process contract: with $D2LORA_ERROR_FILE set, a failed run
#     says why in that file (code, message, reason, retryable, step).
# error_file FILE KEY VALUE...: FILE holds each "KEY": VALUE pair as written.
error_file() {
  local file="$1"; shift
  [ -f "$file" ] || return 1
  while [ $# -gt 0 ]; do grep -q "\"$1\": $2" "$file" || return 1; shift 2; done
}
D2LORA_ERROR_FILE="$T/e-invalid.json" TORCHELASTIC_ERROR_FILE="$T/e-torchrun.json" "$D2" train --config spec.yaml \
  --set train.lr=fast --set output.dir=./x >/dev/null 2>&1
error_file e-invalid.json code '"INVALID_ARGUMENT"' retryable false message '".*train.lr' &&
  ! grep -q '"step"' e-invalid.json && pass "an invalid spec: INVALID_ARGUMENT, not retryable" ||
  fail "e-invalid.json: $(cat e-invalid.json 2>&1)"
# Under torchrun, its TORCHELASTIC_ERROR_FILE gets torchelastic's format too.
jq -e '(.message.message | startswith("INVALID_ARGUMENT: ")) and (.message.message | contains("train.lr"))
       and (.message.extraInfo.timestamp | tonumber > 0) and (.message.extraInfo.py_callstack | type) == "string"' \
  e-torchrun.json >/dev/null 2>&1 && pass "TORCHELASTIC_ERROR_FILE in torchelastic's format" ||
  fail "e-torchrun.json: $(cat e-torchrun.json 2>&1)"
D2LORA_ERROR_FILE="$T/e-usage.json" "$D2" train --config spec.yaml --bogus >/dev/null 2>&1
error_file e-usage.json code '"INVALID_ARGUMENT"' reason '"USAGE"' retryable false &&
  pass "a command line that does not parse: USAGE, not retryable" || fail "e-usage.json: $(cat e-usage.json 2>&1)"
D2LORA_ERROR_FILE="$T/e-diverged.json" "$D2" train --config spec.yaml --set output.dir=./diverged --quiet \
  --set train.lr=1e30 --set train.max_nonfinite_steps=1 --set train.max_steps=12 >/dev/null 2>&1
error_file e-diverged.json code '"FAILED_PRECONDITION"' reason '"DIVERGED"' retryable false step '[0-9]' \
  message '"training diverged: ' && pass "a divergence: DIVERGED at a step, not retryable" ||
  fail "e-diverged.json: $(cat e-diverged.json 2>&1)"

# 3. SIGTERM: stops after the current step with a checkpoint; --resume finishes
#    with the uninterrupted run's adapter, bit for bit.
slow=(--set output.dir=./term)
D2LORA_ERROR_FILE="$T/e-term.json" "$D2" train --config spec.yaml "${slow[@]}" --quiet 2>term.log &
pid=$!
wait_for term/metrics.jsonl '"step":3,' || fail "no step 3 before SIGTERM"
kill -TERM $pid
wait $pid
code=$?
if [ $code -eq 143 ] && grep -q "stopped at step" term.log; then pass "SIGTERM stops with exit 143"; else
  fail "SIGTERM: exit $code, $(cat term.log)"; fi
grep -q '"status": "stopped"' term/summary.json || fail "stopped summary: $(head -c 300 term/summary.json)"
error_file e-term.json code '"ABORTED"' reason '"STOPPED"' retryable true message '"stopped at step' &&
  pass "a stop: ABORTED, STOPPED, retryable" || fail "e-term.json: $(cat e-term.json 2>&1)"
"$D2" train --config spec.yaml "${slow[@]}" --quiet --resume ./term 2>>term.log &&
  [ "$(sha term/adapter/adapter_model.safetensors)" == "$reference" ] &&
  pass "resume after SIGTERM = uninterrupted" || fail "resume after SIGTERM: $(tail -3 term.log)"
# SIGINT (Ctrl-C) stops the same way, with the shell's 130.
"$D2" train --config spec.yaml --set output.dir=./int --quiet 2>int.log &
pid=$!
wait_for int/metrics.jsonl '"step":1,' || fail "no step 1 before SIGINT"
kill -INT $pid
wait $pid
code=$?
if [ $code -eq 130 ] && grep -q '"status": "stopped"' int/summary.json; then pass "SIGINT stops with exit 130"; else
  fail "SIGINT: exit $code, $(cat int.log)"; fi

# 4. SIGKILL after a checkpoint: resume from it and end the same.
"$D2" train --config spec.yaml --set output.dir=./kill --quiet 2>kill.log &
pid=$!
for _ in $(seq 600); do [ -f kill/checkpoints/step-4/trainer_state.json ] && break; sleep 0.1; done
kill -KILL $pid
wait $pid 2>/dev/null
"$D2" train --config spec.yaml --set output.dir=./kill --quiet --resume ./kill 2>>kill.log &&
  [ "$(sha kill/adapter/adapter_model.safetensors)" == "$reference" ] &&
  pass "resume after SIGKILL = uninterrupted" || fail "resume after SIGKILL: $(tail -3 kill.log)"

# 5. Two ranks over Gloo, by flags and by torchrun's environment.
port=$((20000 + RANDOM % 20000))
two=(--set resources.world_size=2 --quiet)
"$D2" train --config spec.yaml "${two[@]}" --set output.dir=./dp --rank 0 --world-size 2 --master-port $port 2>dp0.log &
p0=$!
"$D2" train --config spec.yaml "${two[@]}" --set output.dir=./dp --rank 1 --world-size 2 --master-port $port 2>dp1.log
c1=$?
wait $p0
c0=$?
[ $c0 -eq 0 ] && [ $c1 -eq 0 ] && grep -q '"world_size": 2' dp/summary.json && pass "two ranks by flags" ||
  fail "two ranks: $c0/$c1 $(tail -n 3 dp0.log dp1.log)"
port=$((port + 1))
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port LOCAL_RANK=0 \
  "$D2" train --config spec.yaml "${two[@]}" --set output.dir=./env 2>env0.log &
p0=$!
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port LOCAL_RANK=1 \
  "$D2" train --config spec.yaml "${two[@]}" --set output.dir=./env 2>env1.log
c1=$?
wait $p0
c0=$?
[ $c0 -eq 0 ] && [ $c1 -eq 0 ] && [ -f env/adapter/adapter_model.safetensors ] && pass "two ranks by environment" ||
  fail "torchrun env: $c0/$c1 $(tail -n 3 env0.log env1.log)"

# 6. A rank whose peer never arrives fails in its timeout, naming the rendezvous.
port=$((port + 1))
D2LORA_DIST_TIMEOUT_S=2 "$D2" train --config spec.yaml "${two[@]}" --set output.dir=./lonely --rank 0 \
  --world-size 2 --master-port $port >/dev/null 2>lonely.log
code=$?
[ $code -eq 1 ] && grep -q "127.0.0.1:$port" lonely.log && pass "missing peer -> clear error" ||
  fail "missing peer: exit $code, $(cat lonely.log)"

echo "cli_train: $failures failure(s)"
[ $failures -eq 0 ]
