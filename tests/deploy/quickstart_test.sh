#!/usr/bin/env bash
# deploy/quickstart.sh --fast against the built tree: it refuses a work
# directory it did not make; a whole run ends with the figures (base, merged and
# base+adapter accuracies that agree, standard errors and the paired gain, a merge
# check, throughput) and the picture (d2lora plot by job id), keeps serving with
# --keep-running until TERM with a Prometheus that scrapes it (targets up, the
# shipped rules, the jobs' series), and leaves no process behind; interrupted like
# Ctrl-C (SIGINT to its process group) in the middle of a job, it stops
# everything it started.
#
#   quickstart_test.sh BUILD_DIR
set -uo pipefail
BUILD="$1"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
T="$(mktemp -d)"
trap 'pkill -9 -f "$T/" 2>/dev/null; rm -rf "$T"' EXIT
source "$ROOT/tests/lib.sh"
cd "$T"
QS=("$ROOT/deploy/quickstart.sh" --fast --no-install --no-build --build-dir "$BUILD")
left_behind() { pgrep -f "$1/" >/dev/null; }

# A work directory it did not make is never emptied.
mkdir -p "$T/mine" && echo keep >"$T/mine/precious.txt"
expect 1 "not made by the quickstart" -- "${QS[@]}" --work-dir "$T/mine"
[ -f "$T/mine/precious.txt" ] && pass "the foreign directory is untouched" || fail "precious.txt was removed"

# A whole run, kept running at the end (--keep-running): the service still
# answers; TERM then ends it with exit 0.
"${QS[@]}" --work-dir "$T/run" --keep-running >"$T/run.log" 2>&1 &
pid=$!
code=1
if wait_for "$T/run.log" "keeps running" 600; then
  endpoint=$(grep -o 'gRPC [0-9.:]*' "$T/run.log" | cut -d' ' -f2)
  D2LORA_TOKEN=$(cat "$T/run/token") "$BUILD/client/d2lora" list --endpoint "$endpoint" --json |
    jq -e '[.jobs[].state] == ["SUCCEEDED", "SUCCEEDED"]' >/dev/null &&
    pass "--keep-running: the service answers, both jobs SUCCEEDED" || fail "--keep-running: list failed"
  # Its Prometheus: the shipped rules loaded, every target up, the jobs' training series scraped.
  prom=$(grep -o 'prometheus: http://[0-9.:]*' "$T/run.log" | sed 's|.*http://||')
  q() { curl -sfg "http://$prom/api/v1/$1" 2>/dev/null; }  # -g: [1h] is no curl glob
  if [ -n "$prom" ] && until_true 30 eval 'q query?query=up | jq -e "[.data.result[] | .value[1]] == [\"1\",\"1\",\"1\",\"1\"]" >/dev/null'; then
    pass "--keep-running: Prometheus at $prom, its 4 targets up"
  else fail "--keep-running: Prometheus targets: $(q query?query=up)"; fi
  q rules | jq -e '[.data.groups[].rules[]] | length > 5' >/dev/null &&
    pass "--keep-running: Prometheus loaded the shipped alert rules" || fail "rules: $(q rules | head -c 300)"
  q 'query?query=count(max_over_time(d2lora_train_loss[1h]))' | jq -e '.data.result[0].value[1] | tonumber >= 1' >/dev/null &&
    pass "--keep-running: Prometheus holds the training loss of the jobs" ||
    fail "no d2lora_train_loss in Prometheus: $(q 'query?query=d2lora_train_loss')"
  grep -q "max by (job_id) (d2lora_train_volatility)" "$T/run.log" && pass "--keep-running prints the queries to paste" ||
    fail "no queries printed"
  kill -TERM "$pid"
fi
wait "$pid"
code=$?
R="$T/run/results/quickstart.json"
if [ $code -eq 0 ] && [ -f "$R" ]; then
  pass "quickstart --fast exits 0 in $(jq .quickstart_seconds "$R") s"
  jq -e '[.accuracy_base, .accuracy_merged, .accuracy_adapter] | all(. >= 0 and . <= 1)' "$R" >/dev/null &&
    pass "accuracies in [0, 1]: $(jq -c '[.accuracy_base, .accuracy_merged, .accuracy_adapter]' "$R")" ||
    fail "accuracies: $(cat "$R")"
  # The downloaded merged model and base + adapter (merged at load, fp32) score alike,
  # and agree with the job's own merge check.
  jq -e '(.accuracy_merged - .accuracy_adapter | fabs) <= 0.011 and (.merge_check.accuracy_gap_pp | fabs) <= 1.1
         and (.accuracy_merged - .merge_check.accuracy_merged | fabs) <= 0.011' "$R" >/dev/null &&
    pass "merged, base + adapter and the job's merge check agree" || fail "merge figures disagree: $(cat "$R")"
  jq -e '.tokens > 0 and .tokens_per_second > 0 and .volatility.steps > 0' "$R" >/dev/null &&
    pass "throughput and volatility reported" || fail "throughput/volatility: $(cat "$R")"
  grep -q "fine-tuned, merged model .* % ± .* over the base model, paired by question" "$T/run.log" &&
    pass "the table is printed, with standard errors and the paired gain" || fail "no table in the output"
  jq -e '.task == "pos" and .validation_questions > 0 and .standard_error_base > 0 and .standard_error_merged > 0
         and (.gain_pp | type) == "number" and .gain_se_pp >= 0
         and ((.gain_pp - 100 * (.accuracy_merged - .accuracy_base)) | fabs) < 1e-6' "$R" >/dev/null &&
    pass "standard errors and the gain: $(jq -c '{gain_pp, gain_se_pp}' "$R")" || fail "gain figures: $(cat "$R")"
  png="$T/run/results/training.png"
  [ "$(head -c 8 "$png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ] && [ "$(stat -c %s "$png")" -gt 30000 ] &&
    pass "results/training.png drawn from both jobs ($(stat -c %s "$png") bytes)" || fail "no training.png: $(cat "$T/run/logs/plot.log" 2>&1)"
  [ -d "$T/run/results/adapter" ] && [ -f "$T/run/results/merged/config.json" ] &&
    pass "adapter and merged model downloaded" || fail "artifacts missing"
else
  fail "quickstart --fast exited $code: $(tail -40 "$T/run.log")"
fi
sleep 0.5
left_behind "$T/run" && fail "processes left behind: $(pgrep -af "$T/run/")" || pass "nothing left running"

# Ctrl-C while a job runs: SIGINT to the script's whole process group, as a terminal sends it.
set -m
"${QS[@]}" --work-dir "$T/int" >"$T/int.log" 2>&1 &
pid=$!
set +m
if wait_for "$T/int.log" "submitted" 120; then
  sleep 3
  kill -INT -- -"$pid"
  wait "$pid"
  code=$?
  [ $code -ne 0 ] && pass "interrupted quickstart exits $code" || fail "interrupted quickstart exited 0"
  grep -q "stopping the coordinator and workers" "$T/int.log" && pass "it stops what it started" ||
    fail "no clean-up message: $(tail -20 "$T/int.log")"
  sleep 1
  left_behind "$T/int" && fail "left behind after Ctrl-C: $(pgrep -af "$T/int/")" || pass "nothing left after Ctrl-C"
else
  fail "no job submitted: $(tail -20 "$T/int.log")"
  kill -9 -- -"$pid" 2>/dev/null
fi
[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
