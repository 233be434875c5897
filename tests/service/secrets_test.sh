#!/usr/bin/env bash
# No secret in logs, metrics or the job store: a real coordinator (full and
# read-only tokens, spec paths restricted to one root) and a real worker; the
# CLI makes calls with the right, the read-only and wrong tokens (and the
# read-only token is refused submit and cancel with PERMISSION_DENIED); a job
# runs until the worker fails it. Then neither token, nor the wrong one, may
# appear in any log, in either /metrics page, or anywhere under the data and
# work directories (jobs.db and its WAL included).
#
#   secrets_test.sh D2LORA COORDINATOR WORKER
set -uo pipefail
D2="$(readlink -f "$1")" COORD="$(readlink -f "$2")" WORKER="$(readlink -f "$3")"
T="$(mktemp -d)"
cleanup() {
  kill -9 $(jobs -p) 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/../lib.sh"
cd "$T"
mkdir -p secrets root/data root/model logs out
FULL="full-$RANDOM$RANDOM-$RANDOM$RANDOM" READ="read-$RANDOM$RANDOM-$RANDOM$RANDOM" WRONG="wrong-$RANDOM$RANDOM-guess"
echo "$FULL" >secrets/full
echo "$READ" >secrets/read
export D2LORA_TOKEN=""

"$COORD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$T/data" --token-file secrets/full \
  --read-token-file secrets/read --allowed-path-root "$T/root" --heartbeat-interval 0.5 --heartbeat-timeout 3 \
  >logs/coordinator.log 2>&1 &
wait_for logs/coordinator.log "metrics on" 20 || { fail "coordinator start: $(cat logs/coordinator.log)"; exit 1; }
ENDPOINT=$(grep "listening on" logs/coordinator.log | sed 's/.*listening on //')
COORD_METRICS=$(grep "metrics on" logs/coordinator.log | sed 's/.*metrics on //')
"$WORKER" --coordinator "$ENDPOINT" --slots 1 --device cpu --work-dir "$T/work" --metrics-listen 127.0.0.1:0 \
  --token-file secrets/full --name w --trainer "$D2" >logs/worker.log 2>&1 &
wait_for logs/worker.log "registered as" 20 || fail "worker start: $(cat logs/worker.log)"
WORKER_METRICS=$(grep "metrics on" logs/worker.log | sed 's/.*metrics on //')

# A spec under the root whose model is missing: the worker fails it before any rank starts.
cat >root/spec.yaml <<YAML
name: secrets
model: $T/root/model
data: {train: $T/root/data/train.jsonl}
train: {max_steps: 1, batch_size: 1, micro_batch_size: 1}
YAML
echo '{"text": "a"}' >root/data/train.jsonl
cli() { "$D2" "$@" --endpoint "$ENDPOINT"; }
succeeds() { "$@" >/dev/null 2>expect.err && pass "$2 succeeds" || fail "$2 exited $?: $(cat expect.err)"; }

succeeds cli list --token "$FULL"
succeeds cli list --token-file secrets/read
expect 3 "UNAUTHENTICATED" -- cli list --token "$WRONG"
expect 3 "PERMISSION_DENIED: JobService/SubmitJob" -- cli submit root/spec.yaml --token-file secrets/read
expect 3 "spec.model" -- cli submit root/spec.yaml --token "$FULL" --set model=/etc
cli submit root/spec.yaml --token "$FULL" --max-retries 0 --json >out/submit.json 2>out/submit.err ||
  fail "submit: $(cat out/submit.err)"
JOB=$(jq -r .id out/submit.json)
expect 3 "PERMISSION_DENIED: JobService/CancelJob" -- cli cancel "$JOB" --token-file secrets/read
# Watched to its end with the read-only token: the worker fails it (no model there).
expect 4 "FAILED" -- timeout 60 "$D2" watch "$JOB" --endpoint "$ENDPOINT" --token-file secrets/read
succeeds cli logs "$JOB" --token "$FULL"

curl -sf "http://$COORD_METRICS/metrics" >out/coordinator.metrics || fail "coordinator /metrics"
curl -sf "http://$WORKER_METRICS/metrics" >out/worker.metrics || fail "worker /metrics"
grep -q 'code="PERMISSION_DENIED"' out/coordinator.metrics && grep -q 'code="UNAUTHENTICATED"' out/coordinator.metrics &&
  pass "refused calls counted" || fail "d2lora_rpc_requests_total lacks the refused calls"
kill -TERM $(jobs -p) 2>/dev/null
wait

# Everything the run left, except the token files themselves.
for secret in "$FULL" "$READ" "$WRONG"; do
  hits=$(grep -r -a -l -F -- "$secret" logs out data work 2>/dev/null)
  [ -z "$hits" ] && pass "${secret%%-*} token appears nowhere" || fail "${secret%%-*} token found in: $hits"
done
[ -s data/jobs.db ] && [ -s logs/coordinator.log ] && [ -s logs/worker.log ] && pass "searched a non-empty store and logs" ||
  fail "nothing to search"
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
