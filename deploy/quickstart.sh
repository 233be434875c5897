#!/usr/bin/env bash
# The quickstart: on a fresh Debian 12 machine, installs what is missing, builds
# d2lora, and runs its main job end to end on one machine, all through the
# service: a coordinator and two one-slot CPU workers on loopback (Gloo), a base
# model pretrained on WordNet's glosses, a 2-rank D2-LoRA fine-tune on a WordNet
# multiple-choice task (by default: the part of speech of a word), and the base
# and fine-tuned models evaluated side by side. Every process it starts is
# stopped when it ends (on success, failure or Ctrl-C).
#
#   deploy/quickstart.sh [--fast] [--task pos|definition] [--build-dir DIR] [--work-dir DIR]
#                        [--no-install] [--no-build] [--keep-running]
#
#   --fast          a much smaller run (a few steps, 96 validation questions) for CI
#   --task          pos (default): the part of speech of a word; definition: the
#                   word that a definition defines (harder: about chance at this scale)
#   --build-dir     where to build (default: build/, the same as tests/run.sh)
#   --work-dir      where everything it makes goes (default: quickstart-run/; emptied first)
#   --no-install    do not apt-get install anything
#   --no-build      use the binaries already in --build-dir
#   --keep-running  leave the service up at the end until Ctrl-C, with Debian's
#                   Prometheus scraping it (the shipped config and alert rules)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
WORK="$ROOT/quickstart-run"
FAST=0 INSTALL=1 BUILD=1 KEEP=0 KEPT=0 TASK=pos
usage() { sed -n '10,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case "$1" in
    --fast) FAST=1 ;;
    --task)
      TASK="${2:?--task needs pos or definition}"
      [[ $TASK == pos || $TASK == definition ]] || { echo "quickstart: --task $TASK: expected pos or definition" >&2; usage; }
      shift ;;
    --build-dir) BUILD_DIR="$(realpath -m "${2:?--build-dir needs a directory}")"; shift ;;
    --work-dir) WORK="$(realpath -m "${2:?--work-dir needs a directory}")"; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --keep-running) KEEP=1 ;;
    -h | --help) usage 0 ;;
    *) echo "quickstart: unknown argument $1" >&2; usage ;;
  esac
  shift
done

T0=$SECONDS
step() { printf '\n== [%s/6] %s (%s s so far)\n' "$1" "$2" "$((SECONDS - T0))"; }
die() { echo "quickstart: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. set-up
step 1 "install and build"
source "$ROOT/deploy/packages.sh"
if ((INSTALL)); then
  install_missing quickstart "${D2LORA_BUILD_PACKAGES[@]}" "${D2LORA_QUICKSTART_EXTRA[@]}"
  if ((KEEP)); then install_missing quickstart prometheus; fi
fi
for tool in jq curl; do command -v "$tool" >/dev/null || die "$tool is missing (run without --no-install)"; done
[ -f /usr/share/wordnet/data.noun ] || die "/usr/share/wordnet is missing: apt-get install wordnet-base"
if ((BUILD)); then
  configure_build "$ROOT" "$BUILD_DIR" ON >/dev/null
  # Only the three binaries: the tests (tests/run.sh) build the rest.
  build_start=$SECONDS
  cmake --build "$BUILD_DIR" --target d2lora d2lora-coordinator d2lora-worker -j "$(nproc)"
  echo "built in $((SECONDS - build_start)) s"
fi
D2="$BUILD_DIR/client/d2lora"
COORD="$BUILD_DIR/server/d2lora-coordinator"
WORKER="$BUILD_DIR/worker/d2lora-worker"
for b in "$D2" "$COORD" "$WORKER"; do [ -x "$b" ] || die "$b is not built (run without --no-build)"; done

# ------------------------------------------------------ 2. the service, up
step 2 "start a coordinator and two workers on loopback"
# Only a directory this script made (it leaves a marker) is emptied.
if [ -e "$WORK" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ] && [ ! -f "$WORK/.d2lora-quickstart" ]; then
  die "$WORK is not empty and was not made by the quickstart; pick another --work-dir"
fi
rm -rf "$WORK"
mkdir -p "$WORK"/{logs,models,results}
touch "$WORK/.d2lora-quickstart"
cd "$WORK"
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    echo "quickstart: stopping the coordinator and workers"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${PIDS[@]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${PIDS[@]}" 2>/dev/null || true  # ranks follow their worker (PDEATHSIG)
    wait 2>/dev/null || true
  fi
  # After a complete --keep-running run, Ctrl-C or TERM is the normal way to end.
  ((KEPT && (status == 130 || status == 143))) && status=0
  ((status == 0)) || echo "quickstart: failed (exit $status); logs are in $WORK/logs" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_line FILE PATTERN: the value after PATTERN in FILE, once it appears (30 s).
wait_line() {
  for _ in $(seq 300); do
    if grep -q -- "$2" "$1" 2>/dev/null; then grep -m1 -- "$2" "$1" | sed "s/.*$2 //"; return 0; fi
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1" >&2
  die "no \"$2\" in $1"
}
head -c 32 /dev/urandom | base64 | tr -d '/+=' >token
"$COORD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$WORK/service" --token-file token \
  --heartbeat-interval 1 --heartbeat-timeout 10 >logs/coordinator.log 2>&1 &
PIDS+=($!)
ENDPOINT=$(wait_line logs/coordinator.log "listening on")
COORD_METRICS=$(wait_line logs/coordinator.log "metrics on")
ports=$((40000 + RANDOM % 20000))
# The two workers share this machine: each gets half of the cores this script
# may use (taskset), so their ranks do not fight over the same cores.
CPUS=($(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' | awk -F- '{ for (i = $1; i <= (NF > 1 ? $2 : $1); i++) print i }'))
HALF=$(((${#CPUS[@]} + 1) / 2))
CORES_A=$(IFS=,; echo "${CPUS[*]:0:HALF}")
CORES_B=$(IFS=,; echo "${CPUS[*]:${#CPUS[@]}-HALF}")
WORKER_METRICS=()
for w in a b; do
  cores=$([ $w = a ] && echo "$CORES_A" || echo "$CORES_B")
  taskset -c "$cores" "$WORKER" --coordinator "$ENDPOINT" --token-file token --slots 1 --device cpu --name "worker-$w" \
    --work-dir "$WORK/worker-$w" --metrics-listen 127.0.0.1:0 --rendezvous-ports "$ports-$((ports + 20))" \
    --trainer "$D2" --clean-work-dirs >"logs/worker-$w.log" 2>&1 &
  PIDS+=($!)
  WORKER_METRICS+=("$(wait_line "logs/worker-$w.log" "metrics on")")
  echo "worker-$w: cores $cores"
  wait_line "logs/worker-$w.log" "registered as" >/dev/null
done
export D2LORA_ENDPOINT="$ENDPOINT" D2LORA_TOKEN="$(cat token)"
echo "coordinator: gRPC $ENDPOINT (bearer token in $WORK/token), /metrics http://$COORD_METRICS/metrics"
echo "workers: /metrics http://${WORKER_METRICS[0]}/metrics and http://${WORKER_METRICS[1]}/metrics"
PROM=""
if ((KEEP)); then
  # A live look (Grafana is not packaged for Debian): Prometheus with the shipped
  # config and alert rules, its targets pointed at this service, from now on.
  command -v prometheus >/dev/null || die "prometheus is missing (apt-get install prometheus, or run without --no-install)"
  mkdir -p prometheus
  cp "$ROOT/deploy/prometheus/d2lora.rules.yml" prometheus/
  PROM="127.0.0.1:$((ports + 30))"
  sed -e "s/scrape_interval: 15s/scrape_interval: 1s/" -e "s/'coordinator:9090'/'$COORD_METRICS'/" \
    -e "s/'worker-1:9100', 'worker-2:9100'/'${WORKER_METRICS[0]}', '${WORKER_METRICS[1]}'/" \
    -e "s/'localhost:9090'/'$PROM'/" "$ROOT/deploy/prometheus/prometheus.yml" >prometheus/prometheus.yml
  prometheus --config.file=prometheus/prometheus.yml --storage.tsdb.path=prometheus/data \
    --web.listen-address="$PROM" >logs/prometheus.log 2>&1 &
  PIDS+=($!)
  wait_line logs/prometheus.log "Server is ready to receive web requests" >/dev/null
  echo "prometheus: http://$PROM (scraping the coordinator and both workers every second)"
fi

# ------------------------------------------------------------- 3. the data
step 3 "prepare WordNet data and a base model"
if ((FAST)); then
  PRESET=tiny PRE_STEPS=30 PRE_BATCH=16 PRE_LR=5.0e-3 FT_STEPS=24 FT_LR=5.0e-3 MAX_VAL=96 SEQ=96
else
  PRESET=tiny PRE_STEPS=600 PRE_BATCH=32 PRE_LR=1.0e-2 FT_STEPS=600 FT_LR=5.0e-3 MAX_VAL=400 SEQ=128
fi
case $TASK in
  pos) TASK_TITLE='"part of speech" (What part of speech is "…"? noun, verb, adjective or adverb; as many of each)' ;;
  definition) TASK_TITLE='"definition -> word" (Which word means "…"? four words of one part of speech)' ;;
esac
"$D2" prepare-wordnet --wordnet-dir /usr/share/wordnet --out data --tasks "$TASK" --seed 1 \
  --max-train $((FT_STEPS * 16)) --max-val "$MAX_VAL" | sed 's/^/  /'
# The gloss corpus for pretraining, four dictionary entries a record; every 100th record held out.
jq -r .text data/corpus.jsonl | paste -d '\t' - - - - | jq -R -c '{text: (split("\t") | join("\n"))}' >data/pack.jsonl
awk 'NR % 100 == 0' data/pack.jsonl >data/corpus-val.jsonl
awk 'NR % 100 != 0' data/pack.jsonl >data/corpus-train.jsonl
rm data/pack.jsonl
echo "  gloss corpus: $(wc -l <data/corpus-train.jsonl) training and $(wc -l <data/corpus-val.jsonl) validation records"
"$D2" init-model --preset "$PRESET" --out models/init --seed 1 --corpus data/corpus.jsonl | sed 's/^/  /'

# submit_and_watch SPEC: submits through the service with its inputs uploaded,
# follows it live (step, loss, volatility, tokens/s, ETA), prints the job id last.
submit_and_watch() {
  local job
  job=$("$D2" submit "$1" --world-size 2 --upload-inputs 2>>logs/submit.log) || { cat logs/submit.log >&2; die "submit $1"; }
  echo "  job $job submitted ($1, 2 ranks); following it:" >&2
  "$D2" watch "$job" >&2 || die "job $job did not succeed: $("$D2" get "$job" 2>&1 | tail -5)"
  echo "$job"
}

# ------------------------------------------------------ 4. pretraining
step 4 "pretrain the base model on the glosses ($PRESET preset, method: full, $PRE_STEPS steps)"
cat >pretrain.yaml <<YAML
name: quickstart-base
model: ./models/init
method: full
data: {train: ./data/corpus-train.jsonl, validation: ./data/corpus-val.jsonl, format: lm, max_seq_len: $SEQ}
train: {epochs: 1, max_steps: $PRE_STEPS, batch_size: $PRE_BATCH, micro_batch_size: $((PRE_BATCH / 2)),
        lr: $PRE_LR, warmup_steps: 10, checkpoint_every: $((PRE_STEPS / 3))}
eval: {every: 0, max_examples: 200}
output: {merge: true}
YAML
PRE_JOB=$(submit_and_watch pretrain.yaml)
"$D2" download "$PRE_JOB" merged --out models/base >/dev/null
"$D2" download "$PRE_JOB" summary.json --out results/pretrain-summary.json >/dev/null

# ------------------------------------------------------ 5. D2-LoRA
step 5 "fine-tune it with D2-LoRA on the $TASK task ($FT_STEPS steps, 2 ranks)"
cat >d2lora.yaml <<YAML
name: quickstart-d2lora
model: ./models/base
method: d2lora
adapter: {r: 8, alpha: 16, target_modules: [all-linear]}
data: {train: ./data/$TASK/train.jsonl, validation: ./data/$TASK/validation.jsonl,
       format: multiple_choice, max_seq_len: $SEQ}
train: {epochs: 1, max_steps: $FT_STEPS, batch_size: 16, micro_batch_size: 8, lr: $FT_LR, warmup_steps: 10,
        checkpoint_every: $((FT_STEPS / 3))}
eval: {every: $((FT_STEPS / 6)), scoring: mean}
output: {merge: true}
YAML
FT_JOB=$(submit_and_watch d2lora.yaml)
for a in adapter merged summary.json metrics.jsonl; do "$D2" download "$FT_JOB" "$a" --out "results/$a" >/dev/null; done

# ------------------------------------------------------ 6. evaluation
step 6 "evaluate the base and the fine-tuned model on the validation split"
VAL=data/$TASK/validation.jsonl
# accuracy CORES NAME EVAL-ARGS...: results/eval-NAME.json, on those cores.
accuracy() {
  local cores="$1" name="$2"
  shift 2
  taskset -c "$cores" "$D2" eval "$@" --data "$VAL" --task multiple_choice --scoring mean --json \
    >"logs/eval-$name.log" 2>&1 || { cat "logs/eval-$name.log" >&2; return 1; }
  tail -1 "logs/eval-$name.log" >"results/eval-$name.json"
}
# The base and the merged model side by side (one half of the cores each), then base + adapter.
accuracy "$CORES_A" base --model models/base &
base_eval=$!
PIDS+=("$base_eval")
accuracy "$CORES_B" merged --model results/merged || die "eval of the merged model"
wait "$base_eval" || die "eval of the base model"
accuracy "$CORES_A,$CORES_B" adapter --model models/base --adapter results/adapter || die "eval with the adapter"
# The picture: both jobs' curves (their metrics.jsonl, fetched by job id) and the accuracy bars.
"$D2" plot "$PRE_JOB" "$FT_JOB" --label "pretraining (full, $PRE_STEPS steps)" --label "fine-tune (D2-LoRA, $FT_STEPS steps)" \
  --bar "base=results/eval-base.json" --bar "merged=results/eval-merged.json" \
  --bar "base + adapter=results/eval-adapter.json" --chance 0.25 \
  --title "d2lora quickstart: the $TASK task, 2 ranks through the service" --out results/training.png \
  >logs/plot.log 2>&1 || { cat logs/plot.log >&2; die "d2lora plot"; }
ACC_BASE=$(jq .accuracy results/eval-base.json)
ACC_MERGED=$(jq .accuracy results/eval-merged.json)
ACC_ADAPTER=$(jq .accuracy results/eval-adapter.json)
S=results/summary.json
P=results/pretrain-summary.json
pct() { jq -rn --arg v "$1" '($v | tonumber) * 100 | . * 10 | round / 10 | tostring + " %"'; }
# pct_se EVAL.json: "62.5 % ± 2.4" (the binomial standard error, in points)
pct_se() { jq -r '"\(.accuracy * 1000 | round / 10) % ± \(.standard_error * 1000 | round / 10)"' "$1"; }
# gain A.json B.json: B's accuracy minus A's in points, with the standard error of
# the mean of the per-question differences (the two models answered the same questions).
gain_json() {
  jq -n --slurpfile a "$1" --slurpfile b "$2" '
    [$a[0].predictions, $b[0].predictions, $a[0].labels] | transpose
    | map((if .[1] == .[2] then 1 else 0 end) - (if .[0] == .[2] then 1 else 0 end)) as $d
    | ($d | length) as $n | ($d | add / $n) as $m
    | {pp: ($m * 100), se_pp: ((($d | map((. - $m) * (. - $m)) | add) / ($n - 1) / $n | sqrt) * 100)}'
}
gain() { gain_json "$1" "$2" | jq -r '"\(if .pp >= 0 then "+" else "" end)\(.pp * 10 | round / 10) pp ± \(.se_pp * 10 | round / 10)"'; }
TOKENS=$(jq -s '[.[] | select(.event == "step")] | unique_by(.step) | map(.tokens) | add' results/metrics.jsonl)
N_VAL=$(wc -l <"$VAL")
cat <<TABLE

D2-LoRA on WordNet $TASK_TITLE:
4 choices, $N_VAL validation questions, no word shared with training; scoring: mean log-likelihood
per token of each choice; ± one standard error
  base model ($PRESET preset, pretrained $PRE_STEPS steps)     $(pct_se results/eval-base.json)
  fine-tuned, merged model                         $(pct_se results/eval-merged.json)   ($(gain results/eval-base.json results/eval-merged.json) over the base model, paired by question)
  fine-tuned, base + adapter (merged at load)      $(pct_se results/eval-adapter.json)
  fine-tuned, training form (in the job, unmerged) $(pct "$(jq -r .merge_check.accuracy_unmerged "$S")")
  merged vs unmerged (in the job)                  gap $(jq -r '.merge_check.accuracy_gap_pp * 1000 | round / 1000' "$S") pp, largest logit difference $(jq -r .merge_check.max_logit_diff "$S")
  training volatility (std of step-to-step loss)   $(jq -r '.volatility.volatility * 1000 | round / 1000' "$S") (loss $(jq -r '.volatility.loss_first * 100 | round / 100' "$S") -> $(jq -r '.volatility.loss_last * 100 | round / 100' "$S"), $(jq -r .volatility.spikes "$S") spikes)
  throughput (2 ranks, whole run)                  $(jq -rn "$TOKENS / $(jq .train_seconds "$S") | round") tokens/s ($TOKENS tokens in $(jq -r '.train_seconds | round' "$S") s)
  pretraining                                      loss $(jq -r '.volatility.loss_first * 100 | round / 100' "$P") -> $(jq -r '.volatility.loss_last * 100 | round / 100' "$P"), validation perplexity $(jq -r '.eval.perplexity | round' "$P")

Picture: $WORK/results/training.png (d2lora plot: loss, volatility, validation accuracy, the bars above)
Artifacts: $WORK/service/artifacts/jobs/{$PRE_JOB,$FT_JOB}/ (downloaded copies in $WORK/results/)
Jobs: D2LORA_ENDPOINT=$ENDPOINT D2LORA_TOKEN=\$(cat $WORK/token) $D2 list
Metrics (while it runs): http://$COORD_METRICS/metrics, http://${WORKER_METRICS[0]}/metrics, http://${WORKER_METRICS[1]}/metrics
TABLE
jq -n --argjson base "$ACC_BASE" --argjson merged "$ACC_MERGED" --argjson adapter "$ACC_ADAPTER" \
  --argjson tokens "$TOKENS" --argjson n "$N_VAL" --arg preset "$PRESET" --arg pre_job "$PRE_JOB" --arg job "$FT_JOB" \
  --arg task "$TASK" --argjson se_base "$(jq .standard_error results/eval-base.json)" \
  --argjson se_merged "$(jq .standard_error results/eval-merged.json)" \
  --slurpfile gain <(gain_json results/eval-base.json results/eval-merged.json) \
  --slurpfile s "$S" --slurpfile p "$P" --argjson seconds "$((SECONDS - T0))" '{
    task: $task, validation_questions: $n, scoring: "mean", preset: $preset,
    pretrain_job: $pre_job, d2lora_job: $job, accuracy_base: $base, accuracy_merged: $merged,
    accuracy_adapter: $adapter, standard_error_base: $se_base, standard_error_merged: $se_merged,
    gain_pp: $gain[0].pp, gain_se_pp: $gain[0].se_pp, merge_check: $s[0].merge_check, volatility: $s[0].volatility,
    tokens: $tokens, train_seconds: $s[0].train_seconds, tokens_per_second: ($tokens / $s[0].train_seconds),
    pretrain: {volatility: $p[0].volatility, eval: $p[0].eval}, quickstart_seconds: $seconds}' >results/quickstart.json
echo "The figures as JSON: $WORK/results/quickstart.json"
curl -s "http://$COORD_METRICS/metrics" | grep -E '^d2lora_jobs_finished_total' | sed 's/^/  /'
echo "quickstart: done in $((SECONDS - T0)) s"
if ((KEEP)); then
  echo "quickstart: the service keeps running (--keep-running); Ctrl-C stops it"
  echo "Prometheus (the shipped config and alert rules): http://$PROM/graph; paste a query, Graph tab:"
  echo "  training volatility   max by (job_id) (d2lora_train_volatility)"
  echo "  training loss         max by (job_id) (d2lora_train_loss)"
  echo "  tokens per second     sum by (job_id) (rate(d2lora_train_tokens_total[1m]))"
  echo "  (alerts: http://$PROM/alerts; targets: http://$PROM/targets)"
  KEPT=1
  while :; do  # `wait` (unlike a foreground sleep) lets INT and TERM through at once
    sleep 3600 &
    PIDS+=($!)
    wait $!
  done
fi
