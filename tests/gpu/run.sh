#!/usr/bin/env bash
# tests/gpu/run.sh: the GPU check. For a machine with an NVIDIA GPU and no
# internet where Python's torch (2.x, CUDA) is installed but gRPC is not: builds
# the engine alone (-DD2LORA_SERVICE=OFF) against that torch's LibTorch, then
# runs on cuda:0, in bf16:
#   gpu_checks        (a) D2-LoRA training steps through the Trainer on a one-rank
#                     NCCL process group, plus NCCL AllReduceSum/Broadcast/Barrier
#                     on a real gradient bucket; (b) merged vs unmerged logits in
#                     bf16 against an fp32 reference; a measured bf16 GEMM rate
#                     (tests/gpu/gpu_checks.cc)
#   train_step_bench  bench/: whole training steps, D2-LoRA vs LoRA vs DoRA, MFU
#   eval_bench        bench/: evaluation throughput, merged vs unmerged
# and writes OUT/gpu_results.json: the machine, every step's exit status,
# duration and log, and the JSON each binary wrote. A global time budget (default
# 470 s, under 8 minutes) bounds the whole run; each step gets `timeout` with
# what is left.
#
# Usage:
#   tests/gpu/run.sh [--build-dir DIR] [--out DIR] [--skip-build] [--torch-prefix DIR]
#                    [--cuda-toolkit auto|none|DIR] [--budget SECONDS] [--jobs N]
#                    [--build-only] [--device cuda|cuda:N|cpu]
#
#   --build-dir DIR     build directory (default: build-gpu in the repository)
#   --out DIR           results directory (default: out/gpu in the repository)
#   --skip-build        reuse DIR's build as it is (no configure, no build)
#   --torch-prefix DIR  the LibTorch to build against instead of python3's torch:
#                       an unpacked libtorch zip, a prefix holding Torch/TorchConfig.cmake
#                       (site-packages/torch/share/cmake, /usr/lib/x86_64-linux-gnu/cmake)
#                       or the directory of TorchConfig.cmake itself
#   --cuda-toolkit X    auto (default): nvcc from CUDA_HOME, CUDA_PATH, PATH or
#                       /usr/local/cuda*; DIR: that toolkit; none: build without a
#                       toolkit from pip's nvidia-* packages (torch_cuda_targets.cmake)
#   --budget SECONDS    the whole run's time limit (default 470)
#   --jobs N            parallel compile jobs (default: cores, at most one per 2 GiB of memory)
#   --build-only        stop after the build
#   --device D          where the checks and benches run: cuda (cuda:0, the default),
#                       cuda:N (through CUDA_VISIBLE_DEVICES=N) or cpu (a dry run, fp32)
#
# Exit status: 0 every step passed; 1 a step failed or ran out of time; 2 bad
# usage; 3 the machine lacks something the build needs (the message says what
# to install; there is no internet, so this script installs nothing); 77 no
# CUDA device (the checks were skipped); 130 interrupted (Ctrl-C or TERM: the
# running step is stopped and the results so far are written).
#
# What LibTorch's CMake config needs at configure time, for a CUDA build of
# torch 2.x (share/cmake/Caffe2/public/cuda.cmake), and what this script does:
#  - the CUDA toolkit: FindCUDA wants nvcc, cuda.h, cudart (CUDA_TOOLKIT_ROOT_DIR);
#    newer releases also enable_language(CUDA) and find_package(CUDAToolkit) and
#    stop when the two disagree on the version. pip wheels ship the CUDA runtime
#    libraries and headers (site-packages/nvidia/*) but no nvcc. The script looks
#    for a toolkit and passes CUDA_TOOLKIT_ROOT_DIR, CUDAToolkit_ROOT and
#    CMAKE_CUDA_COMPILER. Without one, it includes torch_cuda_targets.cmake, which
#    defines torch::cudart (cuda.cmake returns at once when that target exists)
#    and the other imported targets LibTorch's targets link to, from pip's
#    nvidia-* packages: nothing here is compiled by nvcc.
#  - the GPU architectures: without TORCH_CUDA_ARCH_LIST, cuda.cmake compiles and
#    runs a probe to detect them; the script sets it (and CMAKE_CUDA_ARCHITECTURES)
#    from the GPU's compute capability.
#  - cuDNN: torch <= ~2.2 stops with "Your installed Caffe2 version uses cuDNN but
#    I cannot find the cuDNN libraries" when it finds none; newer ones look only
#    when CAFFE2_USE_CUDNN is set. The script points CUDNN_INCLUDE_PATH and
#    CUDNN_LIBRARY_PATH at pip's nvidia-cudnn (whose library has no unversioned
#    libcudnn.so, so FindCUDNN would not find it alone).
#  - NVTX: torch 2.0-2.4 link libnvToolsExt.so from the toolkit's lib64 (missing
#    from some CUDA 12 toolkits: "LIBNVTOOLSEXT-NOTFOUND" at link time), 2.5+ want
#    the nvtx3 headers; the script passes pip's nvidia-nvtx copies when the
#    toolkit lacks them.
#  - NCCL: the engine's NCCL process group needs nccl.h, which pip ships in
#    nvidia/nccl/include and toolkits do not: the script adds it to the include
#    path (without it the group reports "NCCL headers not found").
#  - The C++ ABI: pip wheels before torch 2.7 are built with the pre-C++11 ABI
#    (_GLIBCXX_USE_CXX11_ABI=0), Debian's abseil, yaml-cpp, RE2 and the rest with
#    the new one; the engine links both, so the mix fails at link time. The
#    script stops before configuring and says what to use instead.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$ROOT/build-gpu"
OUT="$ROOT/out/gpu"
SKIP_BUILD=0
BUILD_ONLY=0
TORCH_PREFIX=""
CUDA_TOOLKIT="auto"
BUDGET=470
JOBS=""
DEVICE="cuda"

usage() {
  local code="${1:-2}"
  if [ "$code" -eq 0 ]; then exec 3>&1; else exec 3>&2; fi
  sed -n '/^# Usage:/,/^# Exit status/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&3
  exit "$code"
}
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) need_value "$@"; BUILD_DIR="$2"; shift 2 ;;
    --out) need_value "$@"; OUT="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --torch-prefix) need_value "$@"; TORCH_PREFIX="$2"; shift 2 ;;
    --cuda-toolkit) need_value "$@"; CUDA_TOOLKIT="$2"; shift 2 ;;
    --budget) need_value "$@"; BUDGET="$2"; shift 2 ;;
    --jobs) need_value "$@"; JOBS="$2"; shift 2 ;;
    --device) need_value "$@"; DEVICE="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "run.sh: --budget expects seconds" >&2; exit 2; }
[[ -z "$JOBS" || "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --jobs expects a positive number" >&2; exit 2; }
[[ "$DEVICE" =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || { echo "run.sh: --device must be cuda, cuda:N or cpu" >&2; exit 2; }

# One rank per process: the checks use cuda:0, so cuda:N is chosen through CUDA_VISIBLE_DEVICES.
if [[ "$DEVICE" =~ ^cuda:([0-9]+)$ ]]; then
  export CUDA_VISIBLE_DEVICES="${BASH_REMATCH[1]}"
  DEVICE=cuda
fi

START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUT" "$OUT/logs" || { echo "run.sh: cannot create $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
ENV_JSON="$OUT/environment.json"
: >"$STEPS"
rm -f "$OUT/gpu_results.json" "$ENV_JSON"
EXIT_CODE=0
FINISHED=0

say() { echo "gpu/run.sh: $*"; }
left() { echo $((DEADLINE - $(date +%s))); }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# record NAME STATUS RC SECONDS LOG JSON NOTE: one line of steps.tsv.
record() {
  local note="${7//$'\t'/ }"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${note//$'\n'/ }" >>"$STEPS"
}

# run_step NAME LIMIT JSON CMD...: runs CMD under `timeout LIMIT` (in a process
# group of its own, all of which the limit or Ctrl-C ends), output to the console
# and OUT/logs/NAME.log; records passed, failed, timeout or skipped (exit 77).
RUNNING=""
run_step() {
  local name="$1" limit="$2" json="$3" log="$OUT/logs/$1.log" t0 rc status seconds
  shift 3
  if [ "$limit" -le 0 ]; then
    say "$name: skipped, the time budget is spent"
    record "$name" "timeout" "" 0 "" "" "not started: the ${BUDGET} s budget was spent"
    return 124
  fi
  say "$name (limit ${limit} s): $*"
  t0=$(date +%s.%N)
  rm -f "$OUT/logs/.$name.rc" "$OUT/logs/.$name.pid"
  [ -z "$json" ] || rm -f "$json"  # never merge an earlier run's figures
  RUNNING="$name"
  RUNNING_T0="$t0"
  {
    timeout --kill-after=10 "$limit" "$@" </dev/null 2>&1 &
    echo $! >"$OUT/logs/.$name.pid"
    wait $!
    echo $? >"$OUT/logs/.$name.rc"
  } | tee -p "$log" &
  wait $!
  RUNNING=""
  rc=$(cat "$OUT/logs/.$name.rc" 2>/dev/null || echo 1)
  rm -f "$OUT/logs/.$name.rc" "$OUT/logs/.$name.pid"
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case "$rc" in
    0) status=passed ;;
    77) status=skipped ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  say "$name: $status (exit $rc, ${seconds} s)"
  record "$name" "$status" "$rc" "$seconds" "$log" "$json" ""
  return "$rc"
}

# Ctrl-C or TERM: ends the running step (timeout passes the signal to its whole
# group), records it, writes the results.
interrupted() {
  if [ -n "$RUNNING" ]; then
    local pid
    pid=$(cat "$OUT/logs/.$RUNNING.pid" 2>/dev/null)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    sleep 1
    record "$RUNNING" "interrupted" "" "$(awk -v a="$RUNNING_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" \
      "$OUT/logs/$RUNNING.log" "" "interrupted by a signal"
    rm -f "$OUT/logs/.$RUNNING.rc" "$OUT/logs/.$RUNNING.pid"
    RUNNING=""
  fi
  EXIT_CODE=130
  finish
  exit 130
}

# Merges environment.json, steps.tsv and each step's JSON into gpu_results.json.
finish() {
  [ "$FINISHED" -eq 1 ] && return
  FINISHED=1
  [ -s "$ENV_JSON" ] || echo '{}' >"$ENV_JSON"
  python3 - "$OUT" "$BUDGET" "$START" "$EXIT_CODE" <<'PY'
import json, os, sys, time
out, budget, start, exit_code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(os.path.join(out, "environment.json")) as f:
    env = json.load(f)
steps, ok = [], True
with open(os.path.join(out, "steps.tsv")) as f:
    for line in f:
        name, status, rc, seconds, log, js, note = line.rstrip("\n").split("\t")
        step = {"name": name, "status": status, "exit_code": int(rc) if rc else None,
                "seconds": float(seconds), "log": log or None}
        if note:
            step["note"] = note
        if js:
            try:
                with open(js) as r:
                    step["result"] = json.load(r)
            except (OSError, ValueError) as e:
                step["result_error"] = f"{js}: {e}"
        steps.append(step)
results = {
    "schema": "d2lora-gpu-check/1",
    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "seconds": round(time.time() - start, 1),
    "budget_seconds": budget,
    "exit_code": exit_code,
    "passed": exit_code == 0,
    "environment": env,
    "steps": steps,
}
tmp = os.path.join(out, "gpu_results.json.tmp")
with open(tmp, "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(out, "gpu_results.json"))
def find(obj, pred, path=""):
    """(path, value) of every number whose key satisfies pred, depth first."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else k
            if isinstance(v, (int, float)) and not isinstance(v, bool) and pred(k):
                yield p, v
            else:
                yield from find(v, pred, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from find(v, pred, f"{path}[{i}]")

for s in steps:
    print(f"  {s['name']:<18} {s['status']:<10} {s['seconds']:>7.1f} s" + (f"  {s['note']}" if "note" in s else ""))
    # The headline figures: GEMM rates and model FLOP utilisation.
    for p, v in list(find(s.get("result"), lambda k: "mfu" in k.lower() or k == "best_tflops"))[:8]:
        print(f"      {p} = {v:.4g}")
PY
  say "results: $OUT/gpu_results.json ($(( $(date +%s) - START )) s, exit $EXIT_CODE)"
}
trap interrupted INT TERM
trap finish EXIT

# environment.json: what was found about the machine (as far as the probes got).
write_env() {
  python3 - "$ENV_JSON" "${PY_TORCH_JSON:-{\}}" "${TORCH_DIR:-}" "${TORCH_VERSION:-}" "${TORCH_HAS_CUDA:-}" \
    "${TORCH_ABI:-}" "${GPU_CSV:-}" "${CAPABILITY:-}" "${CUDA_ROOT:-}" "${SITE_NVIDIA:-}" "$DEVICE" <<'PY'
import json, os, platform, sys
(path, torch_py, torch_dir, version, has_cuda, abi, gpu, capability, cuda_root, pip_nvidia, device) = sys.argv[1:]
env = {
    "host": platform.node(), "os": platform.platform(), "cores": os.cpu_count(),
    "python_torch": json.loads(torch_py),
    "libtorch": {"dir": torch_dir or None, "version": version or None, "cuda": has_cuda == "1",
                 "cxx11_abi": int(abi) if abi else None},
    "gpu_nvidia_smi": gpu or None,
    "compute_capability": capability or None,
    "cuda_toolkit": cuda_root or None,
    "pip_nvidia_dir": pip_nvidia or None,
    "device": device,
}
with open(path, "w") as f:
    json.dump(env, f, indent=2)
PY
}

# stop CODE MESSAGE: records a setup failure and exits.
stop() {
  local code="$1"
  shift
  echo "gpu/run.sh: error: $*" >&2
  record "setup" "failed" "$code" 0 "" "" "$*"
  write_env 2>/dev/null
  EXIT_CODE="$code"
  exit "$code"
}

command -v python3 >/dev/null || { echo "gpu/run.sh: error: python3 is needed (torch, and the results JSON)" >&2; exit 3; }

# ---- the machine: torch, CUDA, the GPU ----------------------------------------
PY_TORCH_JSON="$(python3 - <<'PY' 2>/dev/null
import json
try:
    import torch
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    raise SystemExit
info = {"version": torch.__version__, "file": torch.__file__, "cuda": torch.version.cuda,
        "cmake_prefix_path": torch.utils.cmake_prefix_path,
        "cxx11_abi": int(bool(torch._C._GLIBCXX_USE_CXX11_ABI)),
        "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["device_count"] = torch.cuda.device_count()
    info["device_name"] = torch.cuda.get_device_name(0)
    info["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
print(json.dumps(info))
PY
)"
[ -n "$PY_TORCH_JSON" ] || PY_TORCH_JSON='{"error": "python3 failed"}'
# PT_<key> shell variables from that JSON (one python3 start: they are slow here).
eval "$(python3 -c '
import json, shlex, sys
d = json.loads(sys.argv[1])
for k in ("error", "version", "file", "cuda", "cmake_prefix_path", "cxx11_abi", "capability"):
    v = d.get(k)
    print("PT_%s=%s" % (k, shlex.quote("" if v is None else str(v))))
' "$PY_TORCH_JSON")"
pyget() { local v="PT_$1"; echo "${!v:-}"; }
if [ -n "$(pyget error)" ]; then
  say "python3 torch: not importable ($(pyget error))"
else
  say "python3 torch $(pyget version) (CUDA $(pyget cuda), C++11 ABI $(pyget cxx11_abi)) at $(pyget file)"
fi

GPU_CSV=""
if command -v nvidia-smi >/dev/null; then
  GPU_CSV="$(timeout 20 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  [ -n "$GPU_CSV" ] || GPU_CSV="$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
fi
if [ -n "$GPU_CSV" ]; then say "GPU (nvidia-smi): $GPU_CSV"; else say "GPU: nvidia-smi found none or is not installed"; fi
CAPABILITY="$(pyget capability)"
if [ -z "$CAPABILITY" ] && [ -n "$GPU_CSV" ]; then
  CAPABILITY="$(echo "$GPU_CSV" | awk -F', *' '$2 ~ /^[0-9]+\.[0-9]+$/ { print $2 }')"
fi

# ---- which LibTorch ---------------------------------------------------------------
if [ -z "$TORCH_PREFIX" ]; then
  TORCH_PREFIX="$(pyget cmake_prefix_path)"
  [ -n "$TORCH_PREFIX" ] || stop 3 "no LibTorch: python3 cannot import torch ($(pyget error)); install torch or pass --torch-prefix DIR"
fi
TORCH_PREFIX="$(cd "$TORCH_PREFIX" 2>/dev/null && pwd)" || stop 3 "--torch-prefix: no such directory"
TORCH_DIR=""
for d in "$TORCH_PREFIX" "$TORCH_PREFIX/Torch" "$TORCH_PREFIX/share/cmake/Torch" "$TORCH_PREFIX/cmake/Torch"; do
  if [ -f "$d/TorchConfig.cmake" ]; then TORCH_DIR="$(cd "$d" && pwd)"; break; fi
done
[ -n "$TORCH_DIR" ] || stop 3 "no TorchConfig.cmake under $TORCH_PREFIX (tried ., Torch/, share/cmake/Torch/, cmake/Torch/)"
CMAKE_PREFIX="$(dirname "$TORCH_DIR")"
TORCH_LIB_PREFIX="$(cd "$TORCH_DIR/../../.." && pwd)"
TORCH_VERSION="$(sed -n 's/^ *set(PACKAGE_VERSION "\([^"]*\)").*/\1/p' "$TORCH_DIR/TorchConfigVersion.cmake" 2>/dev/null | head -1)"
TORCH_HAS_CUDA=0
if ls "$TORCH_LIB_PREFIX"/lib/libtorch_cuda*.so >/dev/null 2>&1 ||
   grep -Eq 'set\(CAFFE2_USE_CUDA (ON|1|TRUE)\)' "$CMAKE_PREFIX/Caffe2/Caffe2Config.cmake" 2>/dev/null; then
  TORCH_HAS_CUDA=1
fi
say "LibTorch ${TORCH_VERSION:-?} at $TORCH_DIR ($([ $TORCH_HAS_CUDA -eq 1 ] && echo CUDA || echo CPU only))"

# The C++ ABI: TorchConfig.cmake's TORCH_CXX_FLAGS, else python's torch.
TORCH_ABI="$(grep -o '_GLIBCXX_USE_CXX11_ABI=[01]' "$TORCH_DIR/TorchConfig.cmake" | head -1 | cut -d= -f2)"
if [ -z "$TORCH_ABI" ] && [ "$TORCH_DIR" = "$(cd "$(pyget cmake_prefix_path)/Torch" 2>/dev/null && pwd)" ]; then
  TORCH_ABI="$(pyget cxx11_abi)"
fi
SITE_NVIDIA=""
for d in "$TORCH_LIB_PREFIX/../nvidia" "$(dirname "$(dirname "$(pyget file)")")/nvidia"; do
  if [ -d "$d" ]; then SITE_NVIDIA="$(cd "$d" && pwd)"; break; fi
done
# pip_find NAME: the first file or directory NAME in pip's nvidia packages
# (nvidia/<package>/{include,lib}; CUDA 13 wheels share nvidia/cu13/{include,lib}).
pip_find() {
  [ -n "$SITE_NVIDIA" ] || return 0
  find "$SITE_NVIDIA" -maxdepth 4 -name "$1" 2>/dev/null | sort | head -1
}
PIP_CUDART_H="$(pip_find cuda_runtime_api.h)"
PIP_NCCL_H="$(pip_find nccl.h)"

# ---- the engine's other dependencies (cmake/Dependencies.cmake) -------------------
GTEST=OFF
missing=()
have_pc() { command -v pkg-config >/dev/null && pkg-config --exists "$1"; }
command -v cmake >/dev/null || missing+=(cmake)
if command -v cmake >/dev/null; then
  cmake_version="$(cmake --version | sed -n 's/^cmake version \([0-9.]*\).*/\1/p')"
  if [ "$(printf '%s\n3.18\n' "$cmake_version" | sort -V | head -1)" != "3.18" ]; then
    missing+=("cmake(>=3.18, have $cmake_version)")
  fi
fi
command -v c++ >/dev/null || command -v g++ >/dev/null || missing+=(g++)
command -v pkg-config >/dev/null || missing+=(pkg-config)
have_pc absl_status || missing+=(libabsl-dev)
have_pc nlohmann_json || [ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
have_pc openssl || have_pc libcrypto || missing+=(libssl-dev)
have_pc re2 || missing+=(libre2-dev)
have_pc oniguruma || missing+=(libonig-dev)
have_pc libutf8proc || missing+=(libutf8proc-dev)
have_pc sentencepiece || missing+=(libsentencepiece-dev)
have_pc CLI11 || [ -f /usr/include/CLI/CLI.hpp ] || missing+=(libcli11-dev)
have_pc yaml-cpp || missing+=(libyaml-cpp-dev)
if have_pc gtest || ls /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib/cmake/GTest/GTestConfig.cmake >/dev/null 2>&1; then
  GTEST=ON
fi
GENERATOR="Ninja"
BUILD_TOOL=(ninja)
if ! command -v ninja >/dev/null; then
  GENERATOR="Unix Makefiles"
  BUILD_TOOL=(make)
  command -v make >/dev/null || missing+=(ninja-build)
fi

# ---- CUDA toolkit and hints -------------------------------------------------------
NVCC=""
CUDA_ROOT=""
if [ "$TORCH_HAS_CUDA" -eq 1 ]; then
  case "$CUDA_TOOLKIT" in
    none) ;;
    auto)
      for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" \
               /usr/local/cuda $(ls -d /usr/local/cuda-* 2>/dev/null | sort -rV); do
        if [ -n "$c" ] && [ -x "$c/bin/nvcc" ] && [ -f "$c/include/cuda.h" ]; then CUDA_ROOT="$(cd "$c" && pwd)"; break; fi
      done ;;
    *)
      [ -x "$CUDA_TOOLKIT/bin/nvcc" ] || stop 2 "--cuda-toolkit $CUDA_TOOLKIT: no bin/nvcc there"
      CUDA_ROOT="$(cd "$CUDA_TOOLKIT" && pwd)" ;;
  esac
  if [ -n "$CUDA_ROOT" ]; then
    NVCC="$CUDA_ROOT/bin/nvcc"
    nvcc_version="$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    say "CUDA toolkit: $CUDA_ROOT (nvcc $nvcc_version)"
    torch_cuda=""
    # torch's CUDA version, when the LibTorch is python3's own.
    [ "$TORCH_DIR" = "$(cd "$(pyget cmake_prefix_path)/Torch" 2>/dev/null && pwd)" ] && torch_cuda="$(pyget cuda)"
    if [ -n "$torch_cuda" ] && [ "${torch_cuda%%.*}" != "${nvcc_version%%.*}" ]; then
      if [ "$CUDA_TOOLKIT" = auto ] && [ -n "$PIP_CUDART_H" ]; then
        say "the toolkit is CUDA $nvcc_version, torch was built with CUDA $torch_cuda: using pip's CUDA $torch_cuda packages instead (a second major version would load a second libcudart)"
        CUDA_ROOT=""
        NVCC=""
      else
        say "warning: nvcc is CUDA $nvcc_version but torch was built with CUDA $torch_cuda; a different major version links a second libcudart"
      fi
    fi
  fi
  if [ -n "$CUDA_ROOT" ]; then
    :
  elif [ -n "$PIP_CUDART_H" ]; then
    say "CUDA toolkit: none (no nvcc); building from pip's CUDA packages in $SITE_NVIDIA (tests/gpu/torch_cuda_targets.cmake)"
  else
    stop 3 "this LibTorch uses CUDA, and its CMake config needs the CUDA toolkit (nvcc, cuda.h, cudart) at configure time: none found (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda*), nor pip's nvidia-cuda-runtime package to build without one. Install the toolkit matching torch's CUDA $(pyget cuda) (Debian: nvidia-cuda-toolkit; NVIDIA: cuda-toolkit-12-x) or pass --cuda-toolkit DIR"
  fi
fi

# ---- environment.json -------------------------------------------------------------
write_env

((${#missing[@]} == 0)) || stop 3 "missing build dependencies: ${missing[*]}. Debian 12 packages (deploy/packages.sh lists them all): apt-get install ${missing[*]} — this machine has no internet, so install them from a local mirror or an image that has them"
if [ "$TORCH_ABI" = "0" ]; then
  stop 3 "LibTorch ${TORCH_VERSION:-?} at $TORCH_DIR uses the pre-C++11 ABI (_GLIBCXX_USE_CXX11_ABI=0: pip wheels before torch 2.7), while Debian's abseil, yaml-cpp, RE2 and SentencePiece use the C++11 ABI, which the engine links with LibTorch; the link would fail. Use a cxx11-ABI LibTorch of the same version and CUDA (libtorch-cxx11-abi-shared-with-deps-<version>+cu<NNN>.zip from download.pytorch.org, unpacked, then --torch-prefix DIR/libtorch), or torch >= 2.7"
fi
[ -n "$TORCH_ABI" ] || say "warning: cannot tell LibTorch's C++ ABI; assuming the C++11 one"

# ---- configure and build ----------------------------------------------------------
TARGETS=(gpu_checks)
BENCHES=(train_step_bench eval_bench)
if [ -z "$JOBS" ]; then
  mem_gib=$(awk '/MemTotal/ { print int($2 / 1048576) }' /proc/meminfo 2>/dev/null || echo 4)
  JOBS=$(min "$(nproc)" "$(( mem_gib / 2 > 0 ? mem_gib / 2 : 1 ))")
fi

if [ "$SKIP_BUILD" -eq 0 ]; then
  args=(-S "$ROOT" -B "$BUILD_DIR" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
        -DD2LORA_SERVICE=OFF -DD2LORA_TESTS="$GTEST" -DD2LORA_GPU_CHECKS=ON -DD2LORA_BENCH=ON
        "-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX" "-DTorch_DIR=$TORCH_DIR")
  cxx_flags=()
  link_flags=()
  if [ "$TORCH_HAS_CUDA" -eq 1 ]; then
    if [ -n "$CAPABILITY" ]; then
      export TORCH_CUDA_ARCH_LIST="$CAPABILITY"
      args+=("-DTORCH_CUDA_ARCH_LIST=$CAPABILITY" "-DCMAKE_CUDA_ARCHITECTURES=${CAPABILITY//./}")
    fi
    if [ -n "$CUDA_ROOT" ]; then
      args+=("-DCUDA_TOOLKIT_ROOT_DIR=$CUDA_ROOT" "-DCUDAToolkit_ROOT=$CUDA_ROOT" "-DCMAKE_CUDA_COMPILER=$NVCC")
      export CUDA_HOME="$CUDA_ROOT" PATH="$CUDA_ROOT/bin:$PATH"
    else
      args+=("-DCMAKE_PROJECT_INCLUDE=$ROOT/tests/gpu/torch_cuda_targets.cmake" "-DD2LORA_PIP_NVIDIA_DIR=$SITE_NVIDIA")
    fi
    if [ -n "$SITE_NVIDIA" ]; then
      cudnn_h="$(pip_find cudnn_version.h)"
      [ -n "$cudnn_h" ] || cudnn_h="$(pip_find cudnn.h)"
      cudnn_so="$(pip_find 'libcudnn.so*')"
      if [ -n "$cudnn_h" ] && [ -n "$cudnn_so" ]; then
        args+=("-DCUDNN_INCLUDE_PATH=$(dirname "$cudnn_h")" "-DCUDNN_LIBRARY_PATH=$cudnn_so")
      fi
      nvtx_so="$(pip_find 'libnvToolsExt.so*')"
      if [ -n "$nvtx_so" ] && [ ! -e "${CUDA_ROOT:-/nonexistent}/lib64/libnvToolsExt.so" ]; then
        args+=("-DLIBNVTOOLSEXT=$nvtx_so")
      fi
      nvtx3="$(pip_find nvtx3)"
      if [ -n "$nvtx3" ] && [ ! -d "${CUDA_ROOT:-/nonexistent}/include/nvtx3" ]; then
        args+=("-Dnvtx3_dir=$(dirname "$nvtx3")")
      fi
      # nccl.h for the NCCL process group (torch's own NCCL's header); without
      # a toolkit, every pip header directory.
      [ -n "$PIP_NCCL_H" ] && cxx_flags+=("-isystem $(dirname "$PIP_NCCL_H")")
      if [ -z "$CUDA_ROOT" ]; then
        while IFS= read -r inc; do
          [ "$inc" = "$(dirname "$PIP_NCCL_H")" ] || cxx_flags+=("-isystem $inc")
        done < <(find "$SITE_NVIDIA" -maxdepth 2 -type d -name include | sort)
      fi
      # Lets the linker find libtorch_cuda's own dependencies (pip's nvidia libraries).
      while IFS= read -r lib; do
        link_flags+=("-Wl,-rpath-link,$lib")
      done < <(find "$SITE_NVIDIA" -maxdepth 2 -type d -name lib | sort)
    fi
    if [ -z "$PIP_NCCL_H" ] && [ ! -f "${CUDA_ROOT:-/nonexistent}/include/nccl.h" ] && [ ! -f /usr/include/nccl.h ]; then
      say "warning: no nccl.h found: the NCCL process group will be built without NCCL and check (a) will fail"
    fi
  fi
  ((${#cxx_flags[@]})) && args+=("-DCMAKE_CXX_FLAGS=${cxx_flags[*]}")
  ((${#link_flags[@]})) && args+=("-DCMAKE_EXE_LINKER_FLAGS=${link_flags[*]}" "-DCMAKE_SHARED_LINKER_FLAGS=${link_flags[*]}")

  if ! run_step configure "$(min 240 $(( $(left) - 60 )))" "" cmake "${args[@]}"; then
    log="$OUT/logs/configure.log"
    if grep -q "uses cuDNN but I cannot find" "$log"; then
      say "hint: this torch wants cuDNN at configure time: install nvidia-cudnn-cu12 next to torch (pip) or cuDNN in the toolkit, or pass -DCUDNN_INCLUDE_PATH/-DCUDNN_LIBRARY_PATH"
    elif grep -qi "CUDA cannot be found\|Failed to find nvcc\|CUDA_TOOLKIT_ROOT_DIR not found" "$log"; then
      say "hint: CMake found no CUDA toolkit; pass --cuda-toolkit DIR, or --cuda-toolkit none to build from pip's nvidia packages"
    elif grep -q "conflicting CUDA versions\|headers say the version is" "$log"; then
      say "hint: nvcc and the CUDA headers differ; point --cuda-toolkit at one toolkit (PATH, CUDA_HOME and CUDACXX agreeing)"
    elif grep -q "nvToolsExt\|nvtx3" "$log"; then
      say "hint: NVTX missing: install nvidia-nvtx-cu12 (pip) or a toolkit with libnvToolsExt / nvtx3 headers"
    elif grep -qi "Could NOT find\|Could not find a package" "$log"; then
      say "hint: a dependency was not found; see $log"
    fi
    EXIT_CODE=1
    exit 1
  fi
  for b in "${BENCHES[@]}"; do
    if "${BUILD_TOOL[0]}" -C "$BUILD_DIR" -t query "$b" >/dev/null 2>&1 ||
       { [ "${BUILD_TOOL[0]}" = make ] && make -C "$BUILD_DIR" -n "$b" >/dev/null 2>&1; }; then
      TARGETS+=("$b")
    fi
  done
  if ! run_step build "$(( $(left) - 60 - 45 * (${#TARGETS[@]} - 1) ))" "" \
       cmake --build "$BUILD_DIR" --target "${TARGETS[@]}" -j "$JOBS"; then
    say "hint: a build cut short by the budget resumes where it stopped: run again, or build first with"
    say "      cmake --build $BUILD_DIR --target ${TARGETS[*]} -j $JOBS   and rerun with --skip-build"
    EXIT_CODE=1
    exit 1
  fi
fi
[ -x "$BUILD_DIR/tests/gpu/gpu_checks" ] || stop 1 "no $BUILD_DIR/tests/gpu/gpu_checks (build it, or drop --skip-build)"
if [ "$BUILD_ONLY" -eq 1 ]; then
  say "built; --build-only: no checks run"
  exit 0
fi

# ---- the checks and the benches ---------------------------------------------------
DTYPE=bf16
[ "$DEVICE" = cpu ] && DTYPE=fp32
# The checks come first: the benches' share of the budget only when enough is left.
limit=$(( $(left) - 5 - 40 * ${#BENCHES[@]} ))
[ "$limit" -ge 60 ] || limit=$(( $(left) - 5 ))
run_step gpu_checks "$(min 180 "$limit")" "$OUT/gpu_checks.json" \
  "$BUILD_DIR/tests/gpu/gpu_checks" --device "$DEVICE" --dtype "$DTYPE" --json "$OUT/gpu_checks.json"
rc=$?
no_device=0
[ "$rc" -eq 77 ] && no_device=1
[ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || EXIT_CODE=1

benches_left=${#BENCHES[@]}
for b in "${BENCHES[@]}"; do
  exe="$BUILD_DIR/bench/$b"
  if [ ! -x "$exe" ]; then
    say "$b: not built (no such target in this tree)"
    record "$b" "not built" "" 0 "" "" "bench/$b is not in this build"
  elif [ "$no_device" -eq 1 ]; then
    record "$b" "skipped" "" 0 "" "" "no CUDA device"
  else
    bench_dtype="$DTYPE"
    run_step "$b" "$(min 240 $(( ($(left) - 5) / benches_left )))" "$OUT/$b.json" \
      "$exe" --device "$DEVICE" --dtype "$bench_dtype" --quick --json "$OUT/$b.json" || EXIT_CODE=1
  fi
  benches_left=$((benches_left - 1))
done
if [ "$EXIT_CODE" -eq 0 ] && [ "$no_device" -eq 1 ]; then EXIT_CODE=77; fi
exit "$EXIT_CODE"
