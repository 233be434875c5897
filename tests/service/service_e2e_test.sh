#!/usr/bin/env bash
# The service end to end, all real processes on loopback: a coordinator (token
# required) and two CPU workers run a 2-rank D2-LoRA job submitted with the CLI
# to SUCCEEDED; its merged model downloads and evaluates; a merge the gate stops. Then: refused calls
# (no token, bad specs), cancel mid-run, a worker SIGKILLed mid-job (the job is
# retried from its checkpoint and succeeds), a path no worker can read (the job
# fails at once), a coordinator SIGKILLed and
# restarted (nothing lost), and both /metrics endpoints (promtool check metrics).
#
#   service_e2e_test.sh D2LORA COORDINATOR WORKER
set -uo pipefail
D2="$1" COORD="$2" WORKER="$3"
T="$(mktemp -d)"
cleanup() {
  kill -9 $(jobs -p) 2>/dev/null
  pkill -9 -f "$T/" 2>/dev/null  # rank processes whose worker was killed
  rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/../lib.sh"
cd "$T"
export OMP_NUM_THREADS=1 D2LORA_DIST_TIMEOUT_S=20

make_tiny_model "$D2" m || { fail "init-model"; exit 1; }
gen_choices 64 1 >train.jsonl
gen_choices 16 2 >val.jsonl
tiny_spec svc "{epochs: 0, max_steps: 12, batch_size: 8, micro_batch_size: 4, lr: 5.0e-3, warmup_steps: 2, checkpoint_every: 4}" \
  "{every: 6}" "{threads: 1, world_size: 2}" >spec.yaml
echo "secret-$RANDOM$RANDOM" >token
ports=$((40000 + RANDOM % 20000))

starts=0
start_coordinator() {
  starts=$((starts + 1))
  local log="coord-$starts.log"
  "$COORD" --listen "127.0.0.1:${1:-0}" --metrics-listen 127.0.0.1:0 --data-dir data --token-file token \
    --heartbeat-interval 0.5 --heartbeat-timeout 3 >"$log" 2>&1 &
  COORD_PID=$!
  wait_for "$log" "metrics on" 20 || { fail "coordinator start: $(cat "$log")"; exit 1; }
  ENDPOINT=$(grep "listening on" "$log" | sed 's/.*listening on //')
  COORD_METRICS=$(grep "metrics on" "$log" | sed 's/.*metrics on //')
}
# start_worker NAME: one CPU slot, its own work directory.
start_worker() {
  "$WORKER" --coordinator "$ENDPOINT" --slots 1 --device cpu --work-dir "$T/work-$1" --metrics-listen 127.0.0.1:0 \
    --token-file token --name "$1" --rendezvous-ports "$ports-$((ports + 20))" --trainer "$D2" \
    --stop-grace-seconds 10 >"worker-$1.log" 2>&1 &
  eval "WORKER_$1=$!"
  wait_for "worker-$1.log" "registered as" 20 || fail "worker $1 start: $(cat "worker-$1.log")"
}
export D2LORA_TOKEN=""
cli() { "$D2" "$@" --endpoint "$ENDPOINT" --token-file token; }
state() { cli get "$1" --json 2>/dev/null | jq -r .state; }
field() { cli get "$1" --json 2>/dev/null | jq -r "$2"; }
is_state() { [ "$(state "$1")" == "$2" ]; }

start_coordinator
start_worker a
start_worker b

# 1. Refused calls: no token (UNAUTHENTICATED), bad requests (INVALID_ARGUMENT), exit code 3.
expect 3 "UNAUTHENTICATED" -- "$D2" list --endpoint "$ENDPOINT"
expect 3 "UNAUTHENTICATED" -- "$D2" list --endpoint "$ENDPOINT" --token wrong
expect 3 "batch_size" -- cli submit spec.yaml --world-size 3
expect 3 "spec.data.train" -- cli submit spec.yaml --set data.train=upload:up-000000000000/x.jsonl
expect 1 "train.lr" -- cli submit spec.yaml --set train.lr=fast
expect 3 "NOT_FOUND" -- cli get job-000000000000

# 2. A 2-rank job to SUCCEEDED; the merged model downloads and evaluates.
if cli submit spec.yaml --upload-inputs --wait >submit.log 2>&1; then
  pass "2-rank job submitted and succeeded"
else
  fail "submit --wait exited $?: $(tail -20 submit.log)"
fi
JOB=$(cli list --json | jq -r '.jobs[0].id')
[ "$(state "$JOB")" == "SUCCEEDED" ] && pass "state SUCCEEDED" || fail "state $(state "$JOB")"
[ "$(field "$JOB" '.workers | length')" == "2" ] && pass "ran on 2 workers" || fail "workers: $(field "$JOB" .workers)"
cli artifacts "$JOB" >artifacts.txt 2>&1
for f in adapter/adapter_model.safetensors adapter-peft/adapter_model.safetensors adapter-peft/adapter_config.json \
  merged/model.safetensors merged/config.json merge_report.json metrics.jsonl summary.json \
  logs/attempt-1-rank-0.log logs/attempt-1-rank-1.log checkpoints/step-12/trainer_state.json; do
  grep -q "$f" artifacts.txt || fail "artifact $f missing: $(cat artifacts.txt)"
done
[ "$(field "$JOB" .merge_check.passed)" == "true" ] && cli get "$JOB" 2>&1 | grep -q "^merge: *passed" &&
  pass "the merge gate's headline in the job" || fail "merge_check: $(field "$JOB" .merge_check)"

# The merge gate stops a merge over its threshold: FAILED_PRECONDITION, not
# retried, the adapter and the report kept as artifacts, no merged model.
cli submit spec.yaml --upload-inputs --set output.merge_dtype=bf16 --set output.merge_max_logit_diff=1e-12 \
  --max-retries 2 --json >gate.json 2>&1
GATE=$(jq -r .id gate.json)
until_true 120 is_state "$GATE" FAILED && [ "$(field "$GATE" .attempt)" == "1" ] &&
  [ "$(field "$GATE" .error.code)" == "FAILED_PRECONDITION" ] &&
  field "$GATE" .error.message | grep -q "MERGE_CHECK_FAILED: the merged model (bfloat16) was not published" &&
  [ "$(field "$GATE" '.merge_check.passed // false')" == "false" ] &&
  field "$GATE" '.merge_check.breaches[0]' | grep -q "logits: max_abs_diff" && pass "merge gate -> FAILED at once, headline kept" ||
  fail "merge gate: $(cli get "$GATE" 2>&1 | tail -12)"
cli artifacts "$GATE" >gate-artifacts.txt 2>&1
grep -q "adapter/adapter_model.safetensors" gate-artifacts.txt && grep -q "merge_report.json" gate-artifacts.txt &&
  ! grep -q "merged/" gate-artifacts.txt && pass "a stopped merge keeps the adapter and its report" ||
  fail "stopped merge artifacts: $(cat gate-artifacts.txt)"
if cli download "$JOB" merged --out got-merged >/dev/null 2>&1 &&
  "$D2" eval --model got-merged --data val.jsonl --task multiple_choice --json >eval.json 2>eval.err; then
  pass "merged model downloaded and evaluated ($(jq -c .accuracy eval.json 2>/dev/null))"
else
  fail "download/eval: $(cat eval.err)"
fi
cli download "$JOB" summary.json --out summary.json >/dev/null 2>&1 &&
  [ "$(jq -r .world_size summary.json)" == "2" ] && pass "summary.json says world_size 2" || fail "summary.json"
cli logs "$JOB" >logs.txt 2>&1 && pass "logs" || fail "logs: $(head -5 logs.txt)"

# A path no worker can read fails the job before training, naming the field, without retries.
cli submit spec.yaml --set data.train=/nonexistent/train.jsonl --max-retries 2 --json >bad.json 2>&1
BAD=$(jq -r .id bad.json)
until_true 60 is_state "$BAD" FAILED && [ "$(field "$BAD" .attempt)" == "1" ] &&
  field "$BAD" .error.message | grep -q "data.train: /nonexistent/train.jsonl" &&
  [ "$(field "$BAD" .error.code)" == "FAILED_PRECONDITION" ] && pass "unreadable data.train -> FAILED at once" ||
  fail "unreadable path: $(cli get "$BAD" 2>&1 | tail -8)"

# 3. Cancel mid-run: the job ends CANCELLED and its rank processes go away.
cli submit spec.yaml --upload-inputs --set train.max_steps=100000 --set train.checkpoint_every=0 --json >long.json 2>&1
LONG=$(jq -r .id long.json)
until_true 60 is_state "$LONG" RUNNING && pass "long job RUNNING" || fail "long job: $(state "$LONG")"
cli cancel "$LONG" --reason test >/dev/null 2>&1
[ "$(state "$LONG")" == "CANCELLED" ] && pass "cancelled" || fail "after cancel: $(state "$LONG")"
gone() { ! pgrep -f "work-.*/$LONG/" >/dev/null; }
until_true 20 gone && pass "rank processes stopped after cancel" || fail "ranks still running after cancel"

# 4. A worker SIGKILLed mid-job: the attempt fails, the job resumes from its checkpoint elsewhere.
cli submit spec.yaml --upload-inputs --set train.max_steps=200 --set train.checkpoint_every=4 --json >k.json 2>&1
KJOB=$(jq -r .id k.json)
has_checkpoint() { [ "$(field "$KJOB" '.checkpoint_step // 0')" -ge 4 ]; }
until_true 120 has_checkpoint && pass "checkpoint stored" || fail "no checkpoint: $(cli get "$KJOB" 2>&1 | tail -5)"
kill -9 "$WORKER_b"
start_worker c
until_true 300 is_state "$KJOB" SUCCEEDED && pass "job survived a SIGKILLed worker" ||
  fail "after worker kill: $(cli get "$KJOB" 2>&1 | tail -15)"
[ "$(field "$KJOB" .attempt)" == "2" ] && pass "second attempt" || fail "attempt $(field "$KJOB" .attempt)"
cli watch "$KJOB" --json >kwatch.json 2>&1
grep -q "resuming from step" kwatch.json && pass "the retry resumed from a checkpoint" || fail "no resume in events"

# 5. The coordinator SIGKILLed and restarted on the same port: nothing lost, work continues.
cli submit spec.yaml --upload-inputs --json >r.json 2>&1
RJOB=$(jq -r .id r.json)
port=${ENDPOINT##*:}
kill -9 "$COORD_PID"
wait "$COORD_PID" 2>/dev/null
start_coordinator "$port"
[ -n "$(state "$RJOB")" ] && [ "$(state "$JOB")" == "SUCCEEDED" ] && pass "jobs kept across a coordinator SIGKILL" ||
  fail "after restart: $(state "$RJOB") $(state "$JOB")"
until_true 180 is_state "$RJOB" SUCCEEDED && pass "job submitted before the restart succeeded" ||
  fail "after restart: $(cli get "$RJOB" 2>&1 | tail -10)"

# 6. /metrics of the coordinator and a worker parse, with the series the dashboards use.
curl -sf "http://$COORD_METRICS/metrics" >coord.metrics || fail "coordinator /metrics at $COORD_METRICS: $(tail -5 coord-$starts.log)"
WORKER_METRICS=$(grep "metrics on" worker-a.log | sed 's/.*metrics on //')
curl -sf "http://$WORKER_METRICS/metrics" >worker.metrics || fail "worker /metrics"
for m in d2lora_jobs d2lora_queue_depth d2lora_workers_alive d2lora_scheduling_latency_seconds_bucket \
  d2lora_rpc_requests_total d2lora_rpc_latency_seconds_bucket d2lora_jobs_finished_total; do
  grep -q "^$m" coord.metrics || fail "coordinator metric $m missing"
done
grep -q '^d2lora_worker_slots_capacity' worker.metrics || fail "worker metric d2lora_worker_slots_capacity missing"
if command -v promtool >/dev/null; then
  promtool check metrics <coord.metrics >promtool.log 2>&1 && promtool check metrics <worker.metrics >>promtool.log 2>&1 &&
    pass "promtool check metrics" || fail "promtool: $(cat promtool.log)"
else
  fail "promtool not installed (Debian package prometheus)"
fi

# 7. What a slot advertises decides what is placed: with only a worker whose
# slot advertises 64 MiB (--slot-memory), a job whose memory plan needs more is
# refused at submission, naming both sizes. A size the worker cannot read stops it.
"$WORKER" --coordinator "$ENDPOINT" --slots 1 --device cpu --work-dir "$T/work-x" --metrics-listen 127.0.0.1:0 \
  --slot-memory 80XB >bad-memory.log 2>&1
[ $? -eq 2 ] && grep -q -- '--slot-memory "80XB": unknown unit' bad-memory.log &&
  pass "--slot-memory 80XB refused" || fail "--slot-memory 80XB: $(cat bad-memory.log)"
kill -TERM "$WORKER_a" "$WORKER_c" 2>/dev/null
wait "$WORKER_a" "$WORKER_c" 2>/dev/null
"$WORKER" --coordinator "$ENDPOINT" --slots 1 --device cpu --work-dir "$T/work-small" --metrics-listen 127.0.0.1:0 \
  --token-file token --name small --rendezvous-ports "$ports-$((ports + 20))" --trainer "$D2" \
  --slot-memory 64MiB >worker-small.log 2>&1 &
WORKER_small=$!
wait_for worker-small.log "registered as" 20 || fail "worker small start: $(cat worker-small.log)"
# The coordinator forgets the stopped workers after --heartbeat-timeout (3 s).
only_small() { cli submit spec.yaml --upload-inputs --json >small.json 2>small.err; grep -q "fits no worker" small.err; }
until_true 30 only_small && grep -q "64.0 MiB" small.err && grep -q FAILED_PRECONDITION small.err &&
  pass "a job that fits no slot refused at submission" || fail "submit to a 64 MiB slot: $(cat small.json small.err)"

kill -TERM "$WORKER_small" "$COORD_PID" 2>/dev/null
wait 2>/dev/null
echo "failures: $failures"
[ "$failures" -eq 0 ]
