#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (a separate build directory, only the
# engine's parsers, sanitized) and runs each for a bounded time on its committed
# seed corpus (tests/fuzz/corpus/NAME). Exits non-zero on any crash, leak,
# sanitizer report, timeout or broken invariant, printing the reproducer.
#
#   tests/fuzz/run.sh                      # every fuzzer, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh jsonl   # one fuzzer, longer
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_SECONDS, FUZZ_ARTIFACTS
# (where reproducers go; default FUZZ_BUILD_DIR/artifacts), FUZZ_CORPUS_DIR
# (a directory kept between runs for the inputs found; default a temporary
# one, deleted at the end), JOBS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${FUZZ_SECONDS:-20}"
ARTIFACTS="${FUZZ_ARTIFACTS:-$BUILD/artifacts}"
JOBS="${JOBS:-$(nproc)}"
ALL=(safetensors tokenizer_json job_spec jsonl config_json)
NAMES=("$@")
((${#NAMES[@]})) || NAMES=("${ALL[@]}")

source "$ROOT/deploy/packages.sh"
install_missing tests/fuzz/run.sh clang-14 libclang-rt-14-dev

start=$SECONDS
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
CC=clang-14 CXX=clang++-14 cmake -S "$HERE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${NAMES[@]/%/_fuzzer}"
echo "tests/fuzz/run.sh: build took $((SECONDS - start)) s"

mkdir -p "$ARTIFACTS"
status=0
for name in "${NAMES[@]}"; do
  if [ -n "${FUZZ_CORPUS_DIR:-}" ]; then
    work="$FUZZ_CORPUS_DIR/$name"
    mkdir -p "$work"
  else
    work="$(mktemp -d "${TMPDIR:-/tmp}/d2lora-fuzz-$name.XXXXXX")"
  fi
  log="$BUILD/$name.log"
  # New inputs go to $work (first directory); the committed corpus is only read.
  # -timeout: one input taking longer is a hang; -rss_limit_mb: an input that
  # makes a parser allocate without bound is a crash too.
  if OMP_NUM_THREADS=1 "$BUILD/${name}_fuzzer" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
       -max_len=16384 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" \
       "$work" "$HERE/corpus/$name" >"$log" 2>&1; then
    stats="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
    echo "fuzz_$name: ok, $(grep -E 'stat::number_of_executed_units' "$log" | awk '{print $2}') runs in ${SECONDS_EACH} s; ${stats:-}"
  else
    status=1
    echo "fuzz_$name: FAILED (log $log)"
    grep -E 'ERROR|invariant failed|SUMMARY|Test unit written|artifact_prefix' "$log" | head -20 || tail -40 "$log"
    echo "fuzz_$name: reproduce with $BUILD/${name}_fuzzer <the file above>"
  fi
  [ -n "${FUZZ_CORPUS_DIR:-}" ] || rm -rf "$work"
done
echo "tests/fuzz/run.sh: build and fuzzing took $((SECONDS - start)) s"
exit $status
