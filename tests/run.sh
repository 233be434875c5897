#!/usr/bin/env bash
# The one test command: on a fresh Debian 12 machine it installs what is
# missing, configures, builds and runs every test. Exits non-zero on any failure.
#
#   tests/run.sh                 # everything (D2LORA_SERVICE=ON)
#   D2LORA_SERVICE=OFF tests/run.sh   # the engine and local tools only
#   BUILD_DIR=build-x tests/run.sh    # another build directory
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

# Tests use one LibTorch thread each and run two at a time on two cores.
export OMP_NUM_THREADS=1
start=$SECONDS
status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 900 || status=$?
echo "run.sh: tests took $((SECONDS - start)) s"
exit $status
