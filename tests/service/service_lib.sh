# Shared by the service shell tests (fault_matrix_test.sh, soak_test.sh): a coordinator and
# CPU workers as real processes on loopback, all under one temporary directory
# $T (absolute paths everywhere, so that `pgrep -f "$T/"` finds every process of
# the test, rank processes included), and the CLI against them.
#
# Source it after tests/lib.sh with D2, COORD, WORKER and T set and `cd "$T"`.

echo "secret-$RANDOM$RANDOM" >"$T/token"
RDV_PORT=$((30000 + RANDOM % 25000))  # rendezvous ports RDV_PORT..RDV_PORT+20
COORD_PID="" ENDPOINT="" COORD_METRICS="" COORD_PORT=""
coord_starts=0
case_ports=()  # every port a process of the test listened on

# start_coordinator [PORT [WRAPPER...]]: a coordinator on 127.0.0.1:PORT (0: any)
# with its data in $T/data, heartbeats every 0.5 s, lost after
# $HEARTBEAT_TIMEOUT (default 3) s. WRAPPER (e.g. `unshare -m ...`) runs it.
start_coordinator() {
  local port="${1:-0}"
  shift 2>/dev/null
  coord_starts=$((coord_starts + 1))
  local log="$T/coord-$coord_starts.log"
  "$@" "$COORD" --listen "${COORD_HOST:-127.0.0.1}:$port" --metrics-listen 127.0.0.1:0 --data-dir "$T/data" \
    --token-file "$T/token" --heartbeat-interval 0.5 --heartbeat-timeout "${HEARTBEAT_TIMEOUT:-3}" \
    --max-retries 2 >"$log" 2>&1 &
  COORD_PID=$!
  wait_for "$log" "metrics on" 30 || { fail "coordinator start: $(cat "$log")"; return 1; }
  ENDPOINT=$(grep "listening on" "$log" | sed 's/.*listening on //')
  COORD_METRICS=$(grep "metrics on" "$log" | sed 's/.*metrics on //')
  COORD_PORT=${ENDPOINT##*:}
  case_ports+=("$COORD_PORT" "${COORD_METRICS##*:}")
}

# start_worker NAME [PREFIX...]: one CPU slot, work directory $T/work-NAME; sets
# WORKER_NAME to its pid. PREFIX (e.g. `ip netns exec NS`) must exec the worker;
# WORKER_ENDPOINT overrides the coordinator's address.
start_worker() {
  local name="$1"
  shift
  local log="$T/worker-$name.log"
  : >"$log.start"
  "$@" "$WORKER" --coordinator "${WORKER_ENDPOINT:-$ENDPOINT}" --slots 1 --device cpu --work-dir "$T/work-$name" --metrics-listen 127.0.0.1:0 \
    --token-file "$T/token" --name "$name" --rendezvous-ports "$RDV_PORT-$((RDV_PORT + 20))" --trainer "$D2" \
    --stop-grace-seconds 5 >>"$log" 2>&1 &
  eval "WORKER_$name=$!"
  wait_for "$log" "registered as" 30 || { fail "worker $name start: $(cat "$log")"; return 1; }
  local m
  m=$(grep -m1 "metrics on" "$log" | sed 's/.*metrics on //')
  [ -n "$m" ] && case_ports+=("${m##*:}")
  return 0
}

export D2LORA_TOKEN=""
cli() { "$D2" "$@" --endpoint "$ENDPOINT" --token-file "$T/token"; }
state() { cli get "$1" --json 2>/dev/null | jq -r .state; }
field() { cli get "$1" --json 2>/dev/null | jq -r "$2"; }
is_state() { [ "$(state "$1")" == "$2" ]; }
# submit ARGS...: prints the new job's id.
submit() { cli submit "$@" --json 2>"$T/submit.err" | jq -r .id; }
# job_ids: every job the coordinator lists, sorted.
job_ids() { cli list --json 2>/dev/null | jq -r '.jobs[].id' | sort; }
# artifact_names JOB: the job's artifact names, sorted.
artifact_names() { cli artifacts "$1" --json 2>/dev/null | jq -r '.. | objects | .name? // empty' | sort; }
# the rank processes of JOB (any worker, any attempt).
rank_pids() { pgrep -f "$T/work-[^/]*/jobs/$1/" || true; }

# verify_artifacts JOB: every artifact the coordinator lists for JOB is a whole
# file in the store whose SHA-256 is the one listed and the one recorded when
# it was committed (its sidecar, ROOT/.d2lora-meta/KEY: "v1 SIZE MTIME INODE
# SHA256"): no half-written or altered file is visible under an artifact's
# name. The sidecars are read before the listing, since the store rehashes a
# file whose sidecar no longer matches it (and rewrites the sidecar): the
# listing alone would not tell. The store is $STORE (default $T/data/artifacts).
# No artifact at all fails too, unless the second argument is "or-none".
verify_artifacts() {
  local job="$1" none_ok="${2:-}" bad="" n=0 root="${STORE:-$T/data/artifacts}" f
  local -A committed=()
  while IFS= read -r f; do
    committed["${f#"$root/.d2lora-meta/jobs/$job/"}"]=$(awk '{print $5}' "$f")
  done < <(find "$root/.d2lora-meta/jobs/$job" -type f 2>/dev/null)
  while read -r name sha; do
    [ -z "$name" ] && continue
    n=$((n + 1))
    local actual
    actual=$(sha256sum "$root/jobs/$job/$name" 2>/dev/null | cut -d' ' -f1)
    [ "$actual" == "$sha" ] && [ "$actual" == "${committed[$name]:-}" ] || bad="$bad $name"
  done < <(cli artifacts "$job" --json 2>/dev/null | jq -r '.artifacts[]? | "\(.name) \(.sha256)"')
  [ -z "$bad" ] && { [ "$n" -gt 0 ] || [ "$none_ok" == or-none ]; } && return 0
  echo "artifacts of $job ($n) not matching their committed SHA-256:$bad"
  return 1
}
artifact_list() { cli artifacts "$1" --json 2>/dev/null | jq -r '.artifacts[]? | "\(.name) \(.sha256 // "")"' | sort; }

# kill_coordinator: SIGKILL, reaped.
kill_coordinator() {
  kill -9 "$COORD_PID" 2>/dev/null
  wait "$COORD_PID" 2>/dev/null
}

# check_nothing_left: stops the processes still running (SIGTERM), then asserts
# that no process of the test remains and that none of its ports listens.
check_nothing_left() {
  kill -TERM $(jobs -p) 2>/dev/null
  local deadline=$((SECONDS + 30))
  while [ -n "$(jobs -pr)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  wait 2>/dev/null
  no_process() { ! pgrep -f "$T/" >/dev/null; }
  until_true 15 no_process && pass "no process of the test is left" ||
    fail "processes left: $(pgrep -af "$T/" | cut -c1-200)"
  local busy=""
  for p in "${case_ports[@]}" $(seq "$RDV_PORT" $((RDV_PORT + 20))); do
    [ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && busy="$busy $p"
  done
  # A rendezvous port in the range may belong to someone else: only ours matter.
  local ours=""
  for p in $busy; do
    ss -Htlnp "sport = :$p" 2>/dev/null | grep -q "$T" && ours="$ours $p"
    for q in "${case_ports[@]}"; do [ "$p" == "$q" ] && ours="$ours $p"; done
  done
  [ -z "$ours" ] && pass "no port of the test is listening" || fail "ports still listening:$ours"
}

svc_cleanup() {
  kill -9 $(jobs -p) 2>/dev/null
  pkill -9 -f "$T/" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP_TMP:-}" ] && echo "kept $T" || rm -rf "$T" 2>/dev/null
}
