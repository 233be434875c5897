#!/usr/bin/env bash
# The whole stack in containers, end to end (its own command, not in
# tests/run.sh: building the images takes about 25 minutes on 2 cores the
# first time; see deploy/README.md). With Docker (docker compose) or Podman
# (podman-compose), as root:
#   1. images: deploy/images.sh (the layer cache makes a rebuild of an
#      unchanged tree a matter of seconds);
#   2. up: docker/docker-compose.yml's coordinator (store and artifacts on a
#      named volume), two CPU workers and Prometheus with the shipped config
#      and alert rules (Grafana too where its image is present); every
#      container healthy (HEALTHCHECK) and non-root;
#   3. job: from the host, with the CLI through the published port and the
#      bearer token, a 2-rank D2-LoRA job on WordNet data, followed to
#      SUCCEEDED; its merged model downloaded and evaluated;
#   4. prometheus: check_stack_prometheus.py (targets up, every dashboard and
#      rule expression evaluates, the core panels have the job's data);
#   5. restart: the coordinator container killed and started again; the job
#      and its artifacts (same digests) are still there;
#   6. down: everything the test started removed (containers, volumes, network).
# Prints how long each phase took.
#
#   tests/deploy/stack_test.sh [--keep] [--no-build] [--engine docker|podman] [--build-dir DIR]
#
# --keep leaves the stack running (remove it with the command it prints);
# --no-build runs the images there are (deploy/images.sh not called).
# Needs on the host: the d2lora CLI (--build-dir, default build/), WordNet
# (wordnet-base), jq, curl, python3-yaml.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
KEEP=0 BUILD=1 ENGINE="" BUILD_DIR="$ROOT/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --build-dir) BUILD_DIR="$(cd "$2" && pwd)"; shift 2 ;;
    *) echo "stack_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
D2="$BUILD_DIR/client/d2lora"
[ -x "$D2" ] || { echo "stack_test.sh: no CLI at $D2 (build it, or --build-dir)" >&2; exit 2; }
if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
if [ "$ENGINE" = docker ]; then COMPOSE=(docker compose); else COMPOSE=(podman-compose); fi
command -v "${COMPOSE[0]}" >/dev/null || { echo "stack_test.sh: no ${COMPOSE[*]} (apt-get install podman-compose)" >&2; exit 2; }

PROJECT="d2lora-stack-test"
T="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export D2LORA_PORT D2LORA_PROMETHEUS_PORT D2LORA_TOKEN
D2LORA_PORT=$(free_port) D2LORA_PROMETHEUS_PORT=$(free_port)
D2LORA_TOKEN="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
export D2LORA_ENDPOINT="127.0.0.1:$D2LORA_PORT"
PROM="http://127.0.0.1:$D2LORA_PROMETHEUS_PORT"
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/docker/docker-compose.yml" "$@"; }
# The container of a compose service (docker: PROJECT-SERVICE-1, podman-compose: PROJECT_SERVICE_1).
container() { "$ENGINE" ps -a --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1; }
down() {
  compose down -v >"$T/down.log" 2>&1
  # podman-compose 1.0.3 leaves the network behind.
  "$ENGINE" network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
cleanup() {
  case "$KEEP" in
    0) down ;;
    1) echo "left running; remove with: ${COMPOSE[*]} -p $PROJECT -f docker/docker-compose.yml down -v" ;;
  esac
  rm -rf "$T"
}
trap cleanup EXIT
PHASE_START=$SECONDS PHASE="" TIMES=()
phase() {  # phase NAME: ends the previous phase (its time kept for the summary), starts NAME
  [ -n "$PHASE" ] && TIMES+=("$(printf '  %-32s %5d s' "$PHASE" $((SECONDS - PHASE_START)))")
  PHASE="$1" PHASE_START=$SECONDS
  [ -n "$1" ] && echo "== $1"
}

# -------------------------------------------------------------- 1. images
phase "1. images ($ENGINE)"
if ((BUILD)); then
  "$ROOT/deploy/images.sh" --engine "$ENGINE" | tee "$T/images.log" || { fail "deploy/images.sh"; exit 1; }
fi
VERSION=$(sed -n 's/^project(d2lora VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
export D2LORA_VERSION="$VERSION"
if ! "$ENGINE" image inspect "${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}" >/dev/null 2>&1 &&
   "$ENGINE" image inspect d2lora/prometheus:debian >/dev/null 2>&1; then
  export PROMETHEUS_IMAGE=d2lora/prometheus:debian
fi
for image in "d2lora/coordinator:$VERSION" "d2lora/worker:$VERSION" "${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}"; do
  "$ENGINE" image inspect "$image" >/dev/null 2>&1 || { fail "no image $image (deploy/images.sh)"; exit 1; }
done

# -------------------------------------------------------------- 2. up
phase "2. up"
SERVICES=(token-init coordinator worker-1 worker-2 prometheus)
grafana_image=$(python3 -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["services"]["grafana"]["image"])' \
  "$ROOT/docker/docker-compose.yml")
grafana_image=$(eval "echo \"$grafana_image\"")  # its ${GRAFANA_VERSION:-...}
if "$ENGINE" image inspect "$grafana_image" >/dev/null 2>&1; then SERVICES+=(grafana); else
  echo "note: no $grafana_image here (Grafana is not packaged for Debian): the stack runs without it"; fi
down  # a stack left over from an earlier run
compose up -d --no-build "${SERVICES[@]}" >"$T/up.log" 2>&1 || { cat "$T/up.log"; fail "compose up"; exit 1; }
healthy() {  # SERVICE: its HEALTHCHECK passes now
  local c
  c=$(container "$1")
  [ -n "$c" ] || return 1
  if [ "$ENGINE" = podman ]; then podman healthcheck run "$c" >/dev/null 2>&1
  else [ "$(docker inspect --format '{{.State.Health.Status}}' "$c")" = healthy ]; fi
}
for s in coordinator worker-1 worker-2 prometheus; do
  if until_true 120 healthy "$s"; then pass "$s healthy (HEALTHCHECK)"; else
    fail "$s not healthy: $("$ENGINE" logs --tail 20 "$(container "$s")" 2>&1)"; fi
done
for s in coordinator worker-1 worker-2; do
  uid=$("$ENGINE" exec "$(container "$s")" id -u 2>&1)
  [ "$uid" = 10001 ] && pass "$s runs as uid $uid" || fail "$s runs as uid '$uid'"
done
((failures == 0)) || exit 1  # (a worker's HEALTHCHECK passes once it is registered with the coordinator)

# -------------------------------------------------------------- 3. job
phase "3. job"
cd "$T"
"$D2" prepare-wordnet --wordnet-dir /usr/share/wordnet --out data --tasks pos --seed 1 \
  --max-train 12288 --max-val 200 >prepare.log 2>&1 || { cat prepare.log; fail "prepare-wordnet"; exit 1; }
"$D2" init-model --preset tiny --out models/init --seed 1 --corpus data/corpus.jsonl >init.log 2>&1 ||
  { cat init.log; fail "init-model"; exit 1; }
# About a minute of training at ~14k tokens/s: several 15 s scrapes of the training series.
cat >job.yaml <<YAML
name: stack-test-d2lora
model: ./models/init
method: d2lora
adapter: {r: 8, alpha: 16, target_modules: [all-linear]}
data: {train: ./data/pos/train.jsonl, validation: ./data/pos/validation.jsonl, format: multiple_choice, max_seq_len: 96}
train: {epochs: 1, max_steps: 720, batch_size: 16, micro_batch_size: 8, lr: 5.0e-3, warmup_steps: 10, checkpoint_every: 240}
eval: {every: 240, scoring: mean}
output: {merge: true}
YAML
START=$(date +%s)
JOB=$("$D2" submit job.yaml --world-size 2 --upload-inputs 2>submit.err) || { cat submit.err; fail "submit"; exit 1; }
pass "submitted $JOB through $D2LORA_ENDPOINT"
"$D2" watch "$JOB" >watch.log 2>&1
state=$("$D2" get "$JOB" --json | jq -r .state)
[ "$state" = SUCCEEDED ] && pass "$JOB SUCCEEDED" || { fail "$JOB ended $state: $(tail -5 watch.log)"; exit 1; }
"$D2" get "$JOB" --json >job.json
jq -e '.current_world_size == 2 and (.workers | length == 2) and (.workers | unique | length == 2)' job.json >/dev/null &&
  pass "2 ranks on the two workers ($(jq -r '.workers | join(", ")' job.json)), $(jq -r '.summary_json | fromjson |
    "\(.steps) steps in \(.train_seconds | floor) s"' job.json)" || fail "not 2 ranks on 2 workers: $(jq -c '{current_world_size, workers}' job.json)"
"$D2" download "$JOB" merged --out merged >/dev/null 2>download.err && [ -f merged/config.json ] &&
  pass "merged model downloaded" || fail "download merged: $(cat download.err)"
"$D2" eval --model merged --data data/pos/validation.jsonl --task multiple_choice --scoring mean --json \
  >eval.log 2>&1 && acc=$(tail -1 eval.log | jq -r .accuracy) && [ -n "$acc" ] && [ "$acc" != null ] &&
  pass "merged model evaluated: accuracy $acc on $(tail -1 eval.log | jq -r .n) questions" ||
  fail "eval: $(tail -3 eval.log)"
"$D2" artifacts "$JOB" --json >artifacts-before.json 2>&1 || fail "artifacts: $(cat artifacts-before.json)"

# -------------------------------------------------------------- 4. prometheus
phase "4. prometheus"
sleep 16  # one more scrape after the job ended
python3 "$ROOT/tests/deploy/check_stack_prometheus.py" "$PROM" "$JOB" "$START" "$ROOT" >prom.log 2>&1
grep '^ok:' prom.log | sed 's/^/  /'
if grep -q '^FAIL' prom.log; then grep '^FAIL' prom.log; fail "Prometheus checks"; else pass "Prometheus checks"; fi

# -------------------------------------------------------------- 5. restart
phase "5. restart the coordinator"
c=$(container coordinator)
"$ENGINE" kill "$c" >/dev/null && "$ENGINE" start "$c" >restart.log 2>&1 || fail "kill and start $c: $(cat restart.log)"
until_true 120 healthy coordinator && pass "coordinator healthy again" || fail "coordinator not healthy after the restart"
state=$("$D2" get "$JOB" --json 2>&1 | jq -r .state)
[ "$state" = SUCCEEDED ] && pass "$JOB still SUCCEEDED after the restart" || fail "$JOB after the restart: $state"
"$D2" artifacts "$JOB" --json >artifacts-after.json 2>&1
if jq -S '[.artifacts[] | {name, sha256, size}]' artifacts-before.json >a.json 2>/dev/null &&
   jq -S '[.artifacts[] | {name, sha256, size}]' artifacts-after.json >b.json 2>/dev/null &&
   [ "$(jq length a.json)" -gt 0 ] && cmp -s a.json b.json; then
  pass "$(jq length a.json) artifacts unchanged (names, digests, sizes)"
else
  fail "artifacts changed across the restart: $(diff a.json b.json | head -5)"
fi
rm -rf merged2
"$D2" download "$JOB" merged --out merged2 >/dev/null 2>&1 && diff -r merged merged2 >/dev/null &&
  pass "merged model downloads the same after the restart" || fail "merged model differs after the restart"

# -------------------------------------------------------------- 6. down
phase "6. down"
if [ "$KEEP" = 0 ]; then
  down
  left=$("$ENGINE" ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}')
  vols=$("$ENGINE" volume ls --format '{{.Name}}' | grep "^${PROJECT}_\|^${PROJECT}-" || true)
  [ -z "$left$vols" ] && pass "containers and volumes removed" || fail "left behind: $left $vols"
  KEEP=2  # cleanup: already down
fi
phase ""
echo "phases:"
printf '%s\n' "${TIMES[@]}"
echo "failures: $failures"
[ "$failures" -eq 0 ]
