#!/usr/bin/env bash
# --version on the three binaries: exit 0, "NAME X.Y.Z (commit C)" first
# (C: 12 hex digits of the commit configured, or "unknown"), d2lora's LibTorch
# and CUDA line, and no error.json written (--version is not a usage error).
#
#   version_test.sh D2LORA COORDINATOR WORKER
set -uo pipefail
D2="$(readlink -f "$1")" COORD="$(readlink -f "$2")" WORKER="$(readlink -f "$3")"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../lib.sh"
cd "$T"

for pair in "d2lora:$D2" "d2lora-coordinator:$COORD" "d2lora-worker:$WORKER"; do
  name=${pair%%:*} bin=${pair#*:}
  out=$(D2LORA_ERROR_FILE="$T/$name-error.json" "$bin" --version 2>&1)
  code=$?
  first=$(head -n 1 <<<"$out")
  if [ $code -eq 0 ] && [[ "$first" =~ ^$name\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ ([0-9a-f]{12}|unknown)\)$ ]]; then
    pass "$name --version: $first"
  else
    fail "$name --version: exit $code, $out"
  fi
  [ ! -e "$T/$name-error.json" ] && pass "$name --version writes no error file" ||
    fail "$name --version wrote $(cat "$T/$name-error.json")"
done
out=$("$D2" --version 2>&1)
grep -Eq '^LibTorch [0-9]+\.[0-9]+(\.[0-9]+)?[^;]*; CUDA: (not built|built, [0-9]+ device\(s\) visible)$' <<<"$out" &&
  pass "d2lora --version names LibTorch and CUDA" || fail "d2lora --version: $out"
"$WORKER" --version | grep -q "LibTorch: not linked" && pass "d2lora-worker says it links no LibTorch" ||
  fail "d2lora-worker --version: $("$WORKER" --version 2>&1)"

[ "$failures" -eq 0 ] && echo "version: all passed" || echo "version: $failures failed"
[ "$failures" -eq 0 ]
