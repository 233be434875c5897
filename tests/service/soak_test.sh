#!/usr/bin/env bash
# A soak run (not in tests/run.sh: it takes about as long as --minutes): a
# coordinator and W CPU workers as real processes on loopback take N small
# jobs (1 and 2 ranks, checkpoints, evaluations) submitted at a steady pace
# over the first half of the run, while workers are SIGKILLed (daemon and
# ranks) and replaced at random and the coordinator is SIGKILLed and
# restarted once at half time. Then, once every job has ended:
#   - every acknowledged job is listed (none lost) and ended SUCCEEDED, or
#     FAILED with a recorded reason; none is left QUEUED or RUNNING;
#   - every artifact of every SUCCEEDED job is whole and matches its SHA-256
#     (the listed one and the one recorded at commit: verify_artifacts);
#   - the job store passes SQLite's integrity check;
#   - no process of the run is left and none of its ports listens.
# Prints the figures and writes them as JSON (--out).
#
#   tests/service/soak_test.sh [--jobs N] [--minutes M] [--workers W] [--seed S]
#                              [--build-dir DIR] [--out FILE]
# Defaults: 200 jobs, 20 minutes, 3 workers, seed 1, build/, no JSON file.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N=200 MINUTES=20 W=3 SEED=1 BUILD_DIR="$ROOT/build" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) N="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --workers) W="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --build-dir) BUILD_DIR="$(cd "$2" && pwd)"; shift 2 ;;
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    *) echo "soak_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
D2="$BUILD_DIR/client/d2lora" COORD="$BUILD_DIR/server/d2lora-coordinator" WORKER="$BUILD_DIR/worker/d2lora-worker"
for b in "$D2" "$COORD" "$WORKER"; do [ -x "$b" ] || { echo "soak_test.sh: no $b (build first)" >&2; exit 2; }; done
T="$(mktemp -d /tmp/d2lora-soak.XXXXXX)"
source "$ROOT/tests/lib.sh"
source "$ROOT/tests/service/service_lib.sh"
trap svc_cleanup EXIT
cd "$T" || exit 1
export OMP_NUM_THREADS=1 D2LORA_DIST_TIMEOUT_S=10 HEARTBEAT_TIMEOUT=3
RANDOM=$SEED
T0=$SECONDS

make_tiny_model "$D2" m || { fail "init-model"; exit 1; }
gen_choices 64 1 >train.jsonl
gen_choices 16 2 >val.jsonl
# Long enough to be caught mid-run by a kill now and then (a few seconds each).
tiny_spec soak1 "{epochs: 0, max_steps: 24, batch_size: 8, micro_batch_size: 4, lr: 5.0e-3, warmup_steps: 2, \
checkpoint_every: 6, keep_checkpoints: 2}" "{every: 12}" "{threads: 1, world_size: 1}" >one.yaml
tiny_spec soak2 "{epochs: 0, max_steps: 24, batch_size: 8, micro_batch_size: 4, lr: 5.0e-3, warmup_steps: 2, \
checkpoint_every: 6, keep_checkpoints: 2}" "{every: 12}" "{threads: 1, world_size: 2}" >two.yaml

start_coordinator 0 || exit 1
PORT=$COORD_PORT
workers=()
generation=0
add_worker() {
  generation=$((generation + 1))
  start_worker "w$generation" && workers+=("w$generation")
}
for _ in $(seq "$W"); do add_worker || exit 1; done

# Submissions: N jobs over the first half of the run, one in three with 2 ranks.
# A submit the coordinator does not answer (it is down) is retried, as a client would.
submitter() {
  local interval_ms=$((MINUTES * 60 * 1000 / 2 / N)) i spec id tries
  for ((i = 1; i <= N; i++)); do
    spec=one.yaml
    ((i % 3 == 0)) && spec=two.yaml
    tries=0
    until id=$(cli submit "$spec" --json 2>>submit.err | jq -r '.id // empty') && [ -n "$id" ]; do
      tries=$((tries + 1))
      echo "$i" >>submit.retries
      ((tries > 120)) && { echo "job $i: no answer after 120 tries" >>submit.err; break; }
      sleep 1
    done
    [ -n "$id" ] && echo "$id" >>acked.txt
    sleep "$(awk -v ms="$interval_ms" 'BEGIN {printf "%.3f", ms / 1000}')"
  done
}
submitter &
SUBMITTER=$!

# Chaos for the whole run: a random worker SIGKILLed (daemon and its ranks) and
# replaced every 30-90 s; the coordinator SIGKILLed and restarted once at half time.
kills=0 coordinator_restarts=0
end_at=$((T0 + MINUTES * 60)) half_at=$((T0 + MINUTES * 30))
next_kill=$((SECONDS + 30 + RANDOM % 60))
while ((SECONDS < end_at)); do
  if ((coordinator_restarts == 0 && SECONDS >= half_at)); then
    kill_coordinator
    sleep 2
    start_coordinator "$PORT" || exit 1
    coordinator_restarts=1
    echo "$((SECONDS - T0)) s: coordinator SIGKILLed and restarted"
  fi
  if ((SECONDS >= next_kill)); then
    victim_index=$((RANDOM % ${#workers[@]}))
    victim=${workers[$victim_index]}
    pid_var="WORKER_$victim"
    kill -9 "${!pid_var}" 2>/dev/null
    pkill -9 -f "$T/work-$victim/" 2>/dev/null
    wait "${!pid_var}" 2>/dev/null
    kills=$((kills + 1))
    unset 'workers[victim_index]'
    workers=("${workers[@]}")
    sleep 3
    add_worker || exit 1
    echo "$((SECONDS - T0)) s: worker $victim SIGKILLed, replaced by w$generation"
    next_kill=$((SECONDS + 30 + RANDOM % 60))
  fi
  sleep 1
done
wait "$SUBMITTER"
echo "$((SECONDS - T0)) s: chaos over; $(wc -l <acked.txt) jobs acknowledged; waiting for them to end"

# Every acknowledged job ends (the queue drains on the surviving workers).
ended_all() {
  cli list --all --json >list.json 2>/dev/null || return 1
  jq -e '[.jobs[] | select(.state == "QUEUED" or .state == "RUNNING")] | length == 0' list.json >/dev/null
}
until_true 900 ended_all || fail "jobs still not ended 15 minutes after the chaos: $(jq -c '[.jobs[] |
  select(.state == "QUEUED" or .state == "RUNNING") | .id]' list.json)"
drained_at=$((SECONDS - T0))

acked=$(sort -u acked.txt | wc -l)
jq -r '.jobs[].id' list.json | sort >listed.txt
lost=$(comm -23 <(sort -u acked.txt) listed.txt | wc -l)
[ "$acked" -eq "$N" ] && pass "all $N submissions acknowledged" || fail "only $acked of $N submissions acknowledged"
[ "$lost" -eq 0 ] && pass "no acknowledged job lost" || fail "$lost acknowledged jobs not listed: $(comm -23 <(sort -u acked.txt) listed.txt | head -5)"

# Each job's final record.
: >jobs.jsonl
while read -r id; do cli get "$id" --json >>jobs.jsonl 2>/dev/null || echo "{\"id\": \"$id\", \"state\": \"UNREADABLE\"}" >>jobs.jsonl; done <acked.txt
jq -s -c 'group_by(.state) | map({(.[0].state): length}) | add' jobs.jsonl >states.json
succeeded=$(jq -r '.SUCCEEDED // 0' states.json)
unreasoned=$(jq -s '[.[] | select(.state == "FAILED" and ((.error.message // "") == ""))] | length' jobs.jsonl)
other=$(jq -s '[.[] | select(.state != "SUCCEEDED" and .state != "FAILED")] | length' jobs.jsonl)
[ "$other" -eq 0 ] && pass "every job SUCCEEDED or FAILED ($(cat states.json))" || fail "jobs in other states: $(cat states.json)"
[ "$unreasoned" -eq 0 ] && pass "every FAILED job has a recorded reason" || fail "$unreasoned FAILED jobs without a reason"

bad_artifacts=0
while read -r id; do
  verify_artifacts "$id" >>artifacts.log || bad_artifacts=$((bad_artifacts + 1))
done < <(jq -r 'select(.state == "SUCCEEDED") | .id' jobs.jsonl)
[ "$bad_artifacts" -eq 0 ] && pass "every artifact of the $succeeded SUCCEEDED jobs matches its SHA-256" ||
  fail "$bad_artifacts jobs with artifacts not matching: $(head -3 artifacts.log)"

integrity=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("PRAGMA integrity_check").fetchone()[0])' \
  "$T/data/jobs.db" 2>&1)
[ "$integrity" == ok ] && pass "job store: SQLite integrity_check ok" || fail "job store: $integrity"

# Figures: retries, latencies (submit to end), failure reasons.
jq -s '{
  retried: [.[] | select((.attempt // 1) > 1)] | length,
  max_attempt: ([.[] | .attempt // 1] | max),
  latency_s: ([.[] | select(.end_time and .create_time) |
               ((.end_time | sub("\\.[0-9]+"; "") | fromdateiso8601) - (.create_time | sub("\\.[0-9]+"; "") | fromdateiso8601))] | sort),
  failure_reasons: ([.[] | select(.state == "FAILED") | .error.message | .[0:120]] | group_by(.) | map({reason: .[0], jobs: length}))
}' jobs.jsonl >figures.json
p() { jq -r --argjson q "$1" '.latency_s as $l | if ($l | length) == 0 then null else $l[(($l | length) - 1) * $q | floor] end' figures.json; }
summary=$(jq -n --argjson n "$N" --argjson acked "$acked" --argjson lost "$lost" --slurpfile states states.json \
  --slurpfile f figures.json --argjson minutes "$MINUTES" --argjson workers "$W" --argjson kills "$kills" \
  --argjson restarts "$coordinator_restarts" --argjson drained "$drained_at" --argjson seed "$SEED" \
  --argjson bad "$bad_artifacts" --arg integrity "$integrity" --argjson p50 "$(p 0.5)" --argjson p95 "$(p 0.95)" \
  --argjson retries "$( [ -f submit.retries ] && wc -l <submit.retries || echo 0)" \
  '{date: (now | todate), jobs: $n, acknowledged: $acked, lost: $lost, states: $states[0], minutes: $minutes,
    workers: $workers, seed: $seed, worker_kills: $kills, coordinator_restarts: $restarts,
    submit_retries_while_coordinator_down: $retries, seconds_until_drained: $drained,
    retried_jobs: $f[0].retried, max_attempt: $f[0].max_attempt, latency_p50_s: $p50, latency_p95_s: $p95,
    jobs_with_bad_artifacts: $bad, store_integrity: $integrity, failure_reasons: $f[0].failure_reasons}')
echo "$summary"
[ -n "$OUT" ] && echo "$summary" >"$OUT"
check_nothing_left
echo "failures: $failures"
[ "$failures" -eq 0 ]
