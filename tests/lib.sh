# Shared by the end-to-end shell tests: results, waiting, and a tiny model with
# multiple-choice data. Source it after `set -uo pipefail`.
failures=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }

# wait_for FILE PATTERN [SECONDS]: until FILE contains PATTERN (default 60 s).
wait_for() {
  local tries=$((${3:-60} * 10))
  for _ in $(seq "$tries"); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# until_true SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds,
# for at most SECONDS of wall time (however long each try takes).
until_true() {
  local deadline=$((SECONDS + $1)); shift
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    ((SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

# expect CODE PATTERN -- COMMAND...: COMMAND exits CODE and its stderr has PATTERN.
expect() {
  local code="$1" pattern="$2"; shift 3
  "$@" >/dev/null 2>expect.err
  local got=$?
  [ "$got" -eq "$code" ] && grep -q -- "$pattern" expect.err && pass "$pattern -> $code" ||
    fail "$* exited $got (wanted $code), stderr: $(cat expect.err)"
}

# make_tiny_model D2 DIR: a tiny random model with a tokenizer trained on a few lines.
make_tiny_model() {
  printf 'the cat sat on the mat\nthe dog sat on the log\na bird in the hand is worth two in the bush\n' >corpus.txt
  "$1" init-model --preset tiny --out "$2" --seed 1 --corpus corpus.txt >/dev/null
}

# gen_choices N SEED: N multiple-choice lines, "Which is X?" over three words.
gen_choices() {
  local words=(cat dog bird fish cow horse mat log hand bush)
  RANDOM=$2
  for ((i = 0; i < $1; i++)); do
    local a=${words[$((RANDOM % 10))]} b=${words[$((RANDOM % 10))]} c=${words[$((RANDOM % 10))]} l=$((RANDOM % 3))
    local arr=($a $b $c)
    echo "{\"question\": \"Which is ${arr[$l]}?\", \"choices\": [\"$a\", \"$b\", \"$c\"], \"label\": $l}"
  done
}

# tiny_spec NAME TRAIN EVAL RESOURCES: a multiple-choice D2-LoRA spec on ./m,
# ./train.jsonl and ./val.jsonl; TRAIN, EVAL and RESOURCES are YAML flow maps.
tiny_spec() {
  cat <<YAML
name: $1
model: ./m
method: d2lora
adapter: {r: 4, alpha: 8, target_modules: [all-linear]}
data: {train: ./train.jsonl, validation: ./val.jsonl, format: multiple_choice, max_seq_len: 64}
train: $2
eval: $3
resources: $4
YAML
}
