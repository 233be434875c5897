#!/usr/bin/env bash
# deploy/kubernetes renders and is what a cluster needs: `kubectl kustomize`
# of overlays/cpu and overlays/gpu (offline, no cluster), then
# check_manifests.py on each (PyYAML: Debian python3-yaml): apiVersion, kind,
# names, namespace, images, resources, security contexts, gRPC probes on the
# coordinator, Recreate, the worker's pod IP and grace period, network
# policies, the PodMonitor, and, given the binaries, that every --flag in the
# args is one they accept. Then the checker itself must catch a broken render.
#
#   kubernetes_test.sh [COORDINATOR WORKER]
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
CHECK="$ROOT/tests/deploy/check_manifests.py"

command -v kubectl >/dev/null || { fail "kubectl not installed (Debian package kubernetes-client)"; exit 1; }
python3 -c 'import yaml' 2>/dev/null || { fail "python3 without PyYAML (Debian package python3-yaml)"; exit 1; }

# A copy with a token file, as an operator would create it (not in git).
cp -r "$ROOT/deploy/kubernetes" "$T/k"
rm -f "$T/k/base/token"
if kubectl kustomize "$T/k/overlays/cpu" >"$T/none.yaml" 2>"$T/none.err"; then
  fail "overlays/cpu rendered without base/token"
else
  pass "no render without the token file"
fi
head -c 24 /dev/urandom | base64 >"$T/k/base/token"

for o in cpu gpu; do
  if kubectl kustomize "$T/k/overlays/$o" >"$T/$o.yaml" 2>"$T/$o.err"; then
    pass "kubectl kustomize overlays/$o ($(grep -c '^kind:' "$T/$o.yaml") objects)"
  else
    fail "kubectl kustomize overlays/$o: $(cat "$T/$o.err")"
    continue
  fi
  if python3 "$CHECK" "$T/$o.yaml" "$o" "$@" >"$T/$o.check" 2>&1; then
    pass "overlays/$o manifests: $(grep -c '^ok:' "$T/$o.check") checks"
  else
    grep -v '^ok:' "$T/$o.check"
    fail "overlays/$o manifests"
  fi
done

# The PrometheusRule is the alert rules file, regenerated (prometheusrule.py).
if python3 "$ROOT/deploy/kubernetes/prometheusrule.py" --out "$T/prometheusrule.yaml" 2>"$T/gen.err" &&
   cmp -s "$T/prometheusrule.yaml" "$ROOT/deploy/kubernetes/base/prometheusrule.yaml"; then
  pass "base/prometheusrule.yaml is deploy/prometheus/d2lora.rules.yml (regenerated, same bytes)"
else
  fail "base/prometheusrule.yaml differs from the rules: run deploy/kubernetes/prometheusrule.py $(cat "$T/gen.err")"
fi
python3 "$ROOT/deploy/kubernetes/prometheusrule.py" --runbook-base https://example.org/d2lora --out - |
  grep -q 'runbook_url: https://example.org/d2lora/deploy/README.md#d2lorajobfailed' &&
  pass "prometheusrule.py --runbook-base makes the runbook URLs absolute" || fail "prometheusrule.py --runbook-base"

# The checker finds a broken manifest: a writable root filesystem, no probe.
sed -e '0,/readOnlyRootFilesystem: true/s//readOnlyRootFilesystem: false/' -e 's/readinessProbe:/xReadinessProbe:/' \
  "$T/cpu.yaml" >"$T/broken.yaml"
python3 "$CHECK" "$T/broken.yaml" cpu >"$T/broken.check" 2>&1
if [ $? -ne 0 ] && grep -q 'FAIL: .*read-only root' "$T/broken.check" && grep -q 'FAIL: coordinator: readinessProbe' "$T/broken.check"; then
  pass "the checker catches a broken manifest"
else
  fail "the checker passed a broken manifest: $(grep FAIL "$T/broken.check")"
fi

echo "failures: $failures"
[ "$failures" -eq 0 ]
