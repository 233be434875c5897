#!/usr/bin/env bash
# docker/ without a Docker engine: check_docker.py (PyYAML: python3-yaml)
# over the Dockerfiles and docker-compose.yml (see its docstring), the
# healthcheck script's syntax, `docker compose config` where a compose CLI
# exists, and a self-test: the checker must reject a Dockerfile that copies a
# missing file and (given the binaries) lacks a runtime library. The scripts
# that need an engine (deploy/images.sh, tests/deploy/stack_test.sh) parse.
#
#   docker_test.sh [D2LORA COORDINATOR WORKER]
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
CHECK="$ROOT/tests/deploy/check_docker.py"
python3 -c 'import yaml' 2>/dev/null || { fail "python3 without PyYAML (Debian package python3-yaml)"; exit 1; }

if python3 "$CHECK" "$ROOT" "$@" >"$T/check.log" 2>&1; then
  pass "docker/: $(grep -c '^ok:' "$T/check.log") checks"
else
  grep -v '^ok:' "$T/check.log"
  fail "docker/ checks"
fi
bash -n "$ROOT/docker/healthcheck.sh" && pass "healthcheck.sh parses" || fail "healthcheck.sh syntax"
# What runs only with an engine (deploy/README.md): it must at least parse here.
bash -n "$ROOT/deploy/images.sh" && bash -n "$ROOT/tests/deploy/stack_test.sh" &&
  python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" "$ROOT/tests/deploy/check_stack_prometheus.py" 2>"$T/pyc.err" &&
  "$ROOT/deploy/images.sh" --help | grep -q 'deploy/images.sh \[--engine' &&
  pass "images.sh, stack_test.sh and check_stack_prometheus.py parse" || fail "deploy scripts: $(cat "$T/pyc.err")"

if docker compose version >/dev/null 2>&1; then
  docker compose -f "$ROOT/docker/docker-compose.yml" config -q >"$T/compose.err" 2>&1 &&
    pass "docker compose config" || fail "docker compose config: $(cat "$T/compose.err")"
else
  echo "note: no docker compose CLI here; compose checked by check_docker.py only"
fi

# Self-test on a copy of the repository whose Dockerfile is broken.
mkdir "$T/root"
for f in "$ROOT"/* "$ROOT"/.[!.]*; do
  [ -e "$f" ] && [ "$(basename "$f")" != docker ] && ln -s "$f" "$T/root/$(basename "$f")"
done
cp -r "$ROOT/docker" "$T/root/docker"
sed -i -e 's/^COPY server server/COPY no-such-dir server/' -e 's/ libsqlite3-0 / /' "$T/root/docker/Dockerfile.coordinator"
python3 "$CHECK" "$T/root" "$@" >"$T/broken.log" 2>&1
status=$?
want='FAIL: .*COPY no-such-dir'
[ $# -ge 3 ] && want="$want|FAIL: .*libsqlite3.so.0"
if [ $status -ne 0 ] && [ "$(grep -cE "$want" "$T/broken.log")" -eq "$( [ $# -ge 3 ] && echo 2 || echo 1)" ]; then
  pass "the checker rejects a broken Dockerfile"
else
  fail "the checker missed a broken Dockerfile: $(grep FAIL "$T/broken.log")"
fi

echo "failures: $failures"
[ "$failures" -eq 0 ]
