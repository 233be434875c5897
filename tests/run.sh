#!/usr/bin/env bash
# The one test command: on a fresh Debian 12 machine it installs what is
# missing, configures, builds and runs every test. Exits non-zero on any failure.
#
#   tests/run.sh                 # everything (D2LORA_SERVICE=ON)
#   D2LORA_SERVICE=OFF tests/run.sh   # the engine and local tools only
#   BUILD_DIR=build-x tests/run.sh    # another build directory
#   D2LORA_FUZZ=OFF tests/run.sh      # without the fuzzers (tests/fuzz/run.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
SERVICE="${D2LORA_SERVICE:-ON}"
JOBS="${JOBS:-$(nproc)}"

source "$ROOT/deploy/packages.sh"
install_missing tests/run.sh "${D2LORA_BUILD_PACKAGES[@]}" "${D2LORA_QUICKSTART_EXTRA[@]}" "${D2LORA_TEST_EXTRA[@]}"

configure_build "$ROOT" "$BUILD_DIR" "$SERVICE"
start=$SECONDS
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "run.sh: build took $((SECONDS - start)) s"

# The parsers under libFuzzer (tests/fuzz/run.sh: clang, a build of its own,
# FUZZ_SECONDS (10) each on the committed seed corpora; any crash fails the
# run) go alongside the tests, niced: most service tests wait on timeouts.
# D2LORA_FUZZ=OFF skips them.
fuzz_pid=""
if [ "${D2LORA_FUZZ:-ON}" != OFF ]; then
  FUZZ_SECONDS="${FUZZ_SECONDS:-10}" nice -n 10 "$ROOT/tests/fuzz/run.sh" >"$BUILD_DIR/fuzz.log" 2>&1 &
  fuzz_pid=$!
fi

# Tests use one LibTorch thread each and run two at a time on two cores.
export OMP_NUM_THREADS=1
start=$SECONDS
status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 900 || status=$?
echo "run.sh: tests took $((SECONDS - start)) s"

if [ -n "$fuzz_pid" ]; then
  fuzz_status=0
  wait "$fuzz_pid" || fuzz_status=$?
  cat "$BUILD_DIR/fuzz.log"
  echo "run.sh: fuzzers exited $fuzz_status ($((SECONDS - start)) s after the tests began)"
  ((fuzz_status == 0)) || status=1
fi
exit $status
