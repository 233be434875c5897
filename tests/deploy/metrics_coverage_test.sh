#!/usr/bin/env bash
# Every metric that the Grafana dashboards (deploy/grafana/**/*.json) and the
# Prometheus rules (deploy/prometheus/*rules*.yml) use is one the service
# really exports. Starts a real coordinator and one CPU worker on loopback,
# runs a tiny 1-rank job, scrapes both /metrics while it is RUNNING with steps
# done (the d2lora_train_* series exist only then, on the coordinator alone)
# and again after it ended, and fails naming every used metric that no scrape
# showed.
#
#   metrics_coverage_test.sh D2LORA COORDINATOR WORKER
set -uo pipefail
D2="$1" COORD="$2" WORKER="$3"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
T="$(mktemp -d)"
cleanup() {
  kill -9 $(jobs -p) 2>/dev/null
  pkill -9 -f "$T/" 2>/dev/null  # rank processes of this test only (their paths are under $T)
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1
export OMP_NUM_THREADS=1 D2LORA_TOKEN=""

make_tiny_model "$D2" m || { fail "init-model"; exit 1; }
gen_choices 64 1 >train.jsonl
gen_choices 8 2 >val.jsonl
tiny_spec metrics "{epochs: 0, max_steps: 100000, batch_size: 4, micro_batch_size: 4, lr: 5.0e-3, warmup_steps: 1, checkpoint_every: 0}" \
  "{every: 2}" "{threads: 1, world_size: 1}" >spec.yaml
echo "secret-$RANDOM$RANDOM" >token

"$COORD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir data --token-file token \
  --heartbeat-interval 0.5 --heartbeat-timeout 5 >coord.log 2>&1 &
wait_for coord.log "metrics on" 20 || { fail "coordinator start: $(cat coord.log)"; exit 1; }
ENDPOINT=$(grep "listening on" coord.log | sed 's/.*listening on //')
COORD_METRICS=$(grep "metrics on" coord.log | sed 's/.*metrics on //')
ports=$((40000 + RANDOM % 20000))
"$WORKER" --coordinator "$ENDPOINT" --slots 1 --device cpu --work-dir "$T/work" --metrics-listen 127.0.0.1:0 \
  --token-file token --name w --rendezvous-ports "$ports-$((ports + 20))" --trainer "$D2" \
  --report-interval-ms 200 --stop-grace-seconds 5 >worker.log 2>&1 &
wait_for worker.log "registered as" 20 || { fail "worker start: $(cat worker.log)"; exit 1; }
WORKER_METRICS=$(grep "metrics on" worker.log | sed 's/.*metrics on //')

cli() { "$D2" "$@" --endpoint "$ENDPOINT" --token-file token; }
scrape() {  # scrape NAME: both endpoints, appended to NAME.{coord,worker}.metrics
  curl -sf "http://$COORD_METRICS/metrics" >>"$1.coord.metrics" || fail "coordinator /metrics at $COORD_METRICS"
  curl -sf "http://$WORKER_METRICS/metrics" >>"$1.worker.metrics" || fail "worker /metrics at $WORKER_METRICS"
}
"$D2" list --endpoint "$ENDPOINT" >/dev/null 2>&1  # an UNAUTHENTICATED call: a code!="OK" series

cli submit spec.yaml --upload-inputs --json >job.json 2>job.err || { fail "submit: $(cat job.err)"; exit 1; }
JOB=$(jq -r .id job.json)
# Running with a few steps done and an evaluation reported, on both endpoints.
trained() {
  curl -sf "http://$COORD_METRICS/metrics" >c.now && curl -sf "http://$WORKER_METRICS/metrics" >w.now &&
    awk '/^d2lora_train_step\{/ && $2 >= 3 {ok = 1} END {exit !ok}' c.now &&
    grep -q '^d2lora_train_eval_accuracy{' c.now && awk '/^d2lora_train_tokens_total\{/ && $2 > 0 {ok = 1} END {exit !ok}' c.now
}
if until_true 45 trained; then
  pass "job $JOB running with steps done and an evaluation"
else
  fail "no training series within 45 s: $(cli get "$JOB" 2>&1 | tail -5); $(tail -5 worker.log)"
fi
scrape running
# Each training series has one source: the coordinator (the worker forwards rank 0's figures).
grep -q '^d2lora_train_' running.worker.metrics && fail "the worker exports training series too: $(grep -m3 '^d2lora_train_' running.worker.metrics)" ||
  pass "training series from the coordinator only"
cli cancel "$JOB" --reason "scraped" >/dev/null 2>&1
ended() { [ "$(cli get "$JOB" --json 2>/dev/null | jq -r .state)" == "CANCELLED" ]; }
until_true 20 ended || fail "job not CANCELLED after cancel"
idle() { curl -sf "http://$WORKER_METRICS/metrics" | grep -q '^d2lora_worker_slots_busy 0'; }
until_true 20 idle || fail "worker still busy after cancel"
scrape ended
grep -q '^d2lora_train_step{' ended.coord.metrics && fail "d2lora_train_* still exported after the job ended" ||
  pass "d2lora_train_* removed after the job ended"

# Every name the scrapes showed: samples and # TYPE families.
cat ./*.metrics | awk '/^# TYPE / {print $3; next} /^d2lora_/ {sub(/[{ ].*/, ""); print}' | sort -u >exported.txt
# Every d2lora_* name the dashboards and rules use; histogram suffixes stripped.
used() {
  find "$ROOT/deploy/grafana" -name '*.json' -print0 | xargs -0 cat
  cat "$ROOT"/deploy/prometheus/*rules*.yml
}
used | grep -o 'd2lora_[a-z0-9_]*[a-z0-9]' | sed -E 's/_(bucket|sum|count)$//' | sort -u >used.txt
[ -s used.txt ] || fail "no d2lora_* metric found in deploy/grafana or deploy/prometheus"
while read -r m; do
  if grep -qx -- "$m" exported.txt; then pass "$m exported"; else fail "$m is used but no scrape showed it"; fi
done <used.txt
# Exported but used nowhere: worth knowing, not a failure.
unused=$(comm -23 <(sed -E 's/_(bucket|sum|count)$//' exported.txt | grep '^d2lora_' | sort -u) used.txt | tr '\n' ' ')
[ -n "$unused" ] && echo "note: exported but on no dashboard or rule: $unused"

kill -TERM $(jobs -p) 2>/dev/null
wait 2>/dev/null
echo "failures: $failures"
[ "$failures" -eq 0 ]
