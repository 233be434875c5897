# Debian 12 packages d2lora needs, in one place: tests/run.sh and
# deploy/quickstart.sh source this file. Keep the README's lists in sync.
#
#   D2LORA_BUILD_PACKAGES    build the engine, the CLI, the service, the tests and benches
#   D2LORA_IMAGE_BUILD_PACKAGES  the part of it the container images build with (docker/)
#   D2LORA_QUICKSTART_EXTRA  what the quickstart adds: WordNet (its data), curl and jq
#   D2LORA_TEST_EXTRA        what the tests add: promtool, a TLS certificate, manifest checks,
#                            clang and libFuzzer (tests/fuzz)
#   D2LORA_REPRO_EXTRA       what bench/repro/repro.py (the fidelity study) adds: its plots
D2LORA_IMAGE_BUILD_PACKAGES=(  # what the container images' build stage needs (docker/)
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread  # LibTorch 1.13 (CPU), Gloo headers for c10d, a fast BLAS
  libtcmalloc-minimal4  # the trainer's allocator, preloaded (worker/engine/runtime.h)
  libabsl-dev nlohmann-json3-dev libre2-dev libsentencepiece-dev libyaml-cpp-dev libcli11-dev libssl-dev
  libonig-dev libutf8proc-dev  # tokenizer.json: Oniguruma patterns, Unicode normalizers
  # the service: gRPC, Protobuf, prometheus-cpp, SQLite
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler prometheus-cpp-dev libsqlite3-dev
)
D2LORA_BUILD_PACKAGES=(
  "${D2LORA_IMAGE_BUILD_PACKAGES[@]}" git
  libgtest-dev libgmock-dev libbenchmark-dev
  libcairo2-dev  # `d2lora plot` draws PNGs with Cairo (without it the CLI has no plot)
)
D2LORA_QUICKSTART_EXTRA=(wordnet-base curl jq)
D2LORA_TEST_EXTRA=(prometheus openssl python3-yaml iproute2 procps)  # ss, pgrep: the fault matrix
D2LORA_TEST_EXTRA+=(unicode-data)  # NormalizationTest.txt: the tokenizer's normalizers
D2LORA_TEST_EXTRA+=(clang-14 libclang-rt-14-dev)  # libFuzzer: tests/fuzz/run.sh
D2LORA_REPRO_EXTRA=(python3-matplotlib)  # bench/repro/repro.py's plots (its --smoke test runs without)
# `kubectl kustomize` renders deploy/kubernetes; Debian's kubectl is in
# kubernetes-client (a machine may already have another kubectl package).
command -v kubectl >/dev/null || D2LORA_TEST_EXTRA+=(kubernetes-client)

# install_missing WHO PACKAGE...: apt-get installs (non-interactive, sudo when
# not root) the packages that are not installed yet.
install_missing() {
  local who="$1" p missing=()
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "$who: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# configure_build ROOT BUILD_DIR SERVICE: the one CMake configuration both
# scripts use (so a quickstart build is reused by the tests and back).
# Optimised without debug info: -g makes LibTorch-heavy files ~25% slower to
# compile, and CI's whole run must stay well inside its limit on 2 cores.
configure_build() {
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DD2LORA_SERVICE="$3"
}
