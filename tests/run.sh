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

# Debian packages the build and the tests need. Keep in sync with the README.s
# install step.
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-pthread  # LibTorch 1.13 (CPU), Gloo headers for c10d, a fast BLAS
  libabsl-dev nlohmann-json3-dev libre2-dev libsentencepiece-dev libyaml-cpp-dev libcli11-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the service: gRPC, Protobuf, prometheus-cpp, SQLite; promtool, curl and jq for its end-to-end test
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler prometheus-cpp-dev libsqlite3-dev
  prometheus curl jq openssl
  python3-yaml  # the deployment checks (tests/deploy/)
)
# `kubectl kustomize` renders deploy/kubernetes; Debian's kubectl is in
# kubernetes-client (a machine may already have another kubectl package).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Optimised without debug info: -g makes LibTorch-heavy files ~25% slower to
# compile, and the whole run must stay well inside CI's limit on 2 cores.
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DD2LORA_SERVICE="$SERVICE"
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
