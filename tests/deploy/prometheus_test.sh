#!/usr/bin/env bash
# deploy/prometheus: the scrape config and the alert rules are valid
# (promtool check config / check rules), and the rule unit tests pass
# (promtool test rules tests.yml: each alert fires on a synthetic series made
# for it and stays quiet on one that must not fire). Grafana's provisioning
# points at the same Prometheus, and its dashboards are valid JSON.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
P="$ROOT/deploy/prometheus"
command -v promtool >/dev/null || { fail "promtool not installed (Debian package prometheus)"; exit 1; }

run() {  # run NAME COMMAND...: ok/FAIL with the command's output on failure
  local name="$1"; shift
  local out
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name: $out"; fi
}
run "promtool check config prometheus.yml" promtool check config "$P/prometheus.yml"
run "promtool check rules d2lora.rules.yml" promtool check rules "$P/d2lora.rules.yml"
run "promtool test rules tests.yml" bash -c "cd '$P' && promtool test rules tests.yml"

# Every alert of the rule file has a test that expects it to fire, and one
# evaluation where it must not.
for a in $(grep -o 'alert: [A-Za-z0-9_]*' "$P/d2lora.rules.yml" | cut -d' ' -f2); do
  awk -v a="$a" '$0 ~ "alertname: " a "$" {want = 1; next}
    want && /exp_alerts: \[\]/ {quiet = 1} want && /exp_labels:/ {fires = 1} /alertname:/ {want = 0}
    END {exit !(quiet && fires)}' "$P/tests.yml" &&
    pass "$a: tested firing and quiet" || fail "$a: tests.yml lacks a firing or a quiet case"
done

# Grafana: dashboards are JSON with a uid and panels; the job_id variable is there.
for f in "$ROOT"/deploy/grafana/dashboards/*.json; do
  if jq -e '.uid and .title and (.panels | length > 0)' "$f" >/dev/null 2>&1; then
    pass "$(basename "$f") is a dashboard ($(jq '[.panels[] | select(.type != "row")] | length' "$f") panels)"
  else
    fail "$(basename "$f") is not a valid dashboard"
  fi
  # Every panel query names a d2lora metric; every panel has a datasource.
  jq -e '[.panels[] | select(.type != "row") | .targets[]?.expr | test("d2lora_")] | all' "$f" >/dev/null &&
    jq -e '[.panels[] | select(.type != "row") | .datasource.uid] | all(. == "${datasource}")' "$f" >/dev/null &&
    pass "$(basename "$f"): every query uses d2lora_* and the datasource variable" ||
    fail "$(basename "$f"): a query without d2lora_ or a panel without the datasource variable"
done
jq -e '.templating.list[] | select(.name == "job_id") | .query.query == "label_values(d2lora_train_step, job_id)"' \
  "$ROOT/deploy/grafana/dashboards/d2lora-training.json" >/dev/null &&
  pass "training dashboard: variable job_id from label_values(d2lora_train_step, job_id)" || fail "no job_id variable"
grep -q 'url: http://prometheus:9090' "$ROOT/deploy/grafana/provisioning/datasources/prometheus.yml" &&
  grep -q 'path: /var/lib/grafana/dashboards/d2lora' "$ROOT/deploy/grafana/provisioning/dashboards/d2lora.yml" &&
  pass "grafana provisioning: datasource and dashboard provider" || fail "grafana provisioning"

# Every alert has a runbook: runbook_url names a section of deploy/README.md (GitHub's heading anchors).
run "every alert's runbook_url is a section of deploy/README.md" python3 - "$ROOT" <<'PY'
import re, sys, yaml
root = sys.argv[1]
anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.+)$", open(f"{root}/deploy/README.md").read(), re.M)}
bad = []
for g in yaml.safe_load(open(f"{root}/deploy/prometheus/d2lora.rules.yml"))["groups"]:
    for r in g["rules"]:
        url = r.get("annotations", {}).get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if "alert" in r and (page != "deploy/README.md" or anchor not in anchors):
            bad.append(f"{r['alert']}: {url or 'no runbook_url'}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

echo "failures: $failures"
[ "$failures" -eq 0 ]
