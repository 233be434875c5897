#!/usr/bin/env python3
"""The running stack's Prometheus, from the host (tests/deploy/stack_test.sh).

  check_stack_prometheus.py PROMETHEUS_URL JOB_ID START_UNIX_SECONDS ROOT

Checks: every scrape target is up; every PromQL expression on both Grafana
dashboards (their panels and template variables) and in the alert rules
evaluates without error (instant query, Grafana's variables replaced: $job_id
by JOB_ID, $__rate_interval by 1m); and the core panels return data for the
job that ran (range queries from START to now, step 15 s: the per-job
series end when the job ends, as the exporters drop them). Prints ok/FAIL
lines, exits 1 on any failure. Needs PyYAML (python3-yaml)."""
import glob
import json
import os
import sys
import time
import urllib.parse
import urllib.request

import yaml

from checklib import check, fail
import checklib

URL, JOB, START, ROOT = sys.argv[1].rstrip("/"), sys.argv[2], float(sys.argv[3]), sys.argv[4]

# Panels (dashboard file, title) that must show data from the job that ran.
CORE_PANELS = [
    ("d2lora-overview.json", "Jobs by state"),
    ("d2lora-overview.json", "Queue depth"),
    ("d2lora-overview.json", "Workers alive and slots"),
    ("d2lora-overview.json", "Worker slots busy"),
    ("d2lora-training.json", "Loss and loss EMA"),
    ("d2lora-training.json", "Volatility"),
    ("d2lora-training.json", "Tokens per second"),
    ("d2lora-training.json", "Step / total steps"),
]


def api(path, **params):
    url = f"{URL}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422: a bad expression; the body says why
        return json.load(e)


def grafana(expr):
    return expr.replace("$job_id", JOB).replace("${job_id}", JOB).replace("$__rate_interval", "1m")


# 1. Every target up (the first scrapes can take one interval).
deadline = time.time() + 60
while True:
    targets = api("targets")["data"]["activeTargets"]
    down = [f"{t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}"
            for t in targets if t["health"] != "up"]
    if not down or time.time() > deadline:
        break
    time.sleep(3)
check(targets and not down, f"{len(targets)} scrape targets up" + (f"; not: {down}" if down else ""))
jobs = {t["labels"].get("job") for t in targets}
check({"d2lora-coordinator", "d2lora-worker"} <= jobs, f"targets include the coordinator and the workers ({sorted(jobs)})")

# 2. Every expression evaluates.
exprs = []  # (where, expr)
panels = {}  # (file, title) -> [expr]
for f in sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json"))):
    d = json.load(open(f))
    name = os.path.basename(f)
    for p in d.get("panels", []):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                exprs.append((f"{name} '{p.get('title')}'", grafana(t["expr"])))
                panels.setdefault((name, p.get("title")), []).append(grafana(t["expr"]))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            if q.startswith("label_values("):  # label_values(METRIC, LABEL): a series query
                metric = q[len("label_values("):].rsplit(",", 1)[0].strip()
                r = api("series", **{"match[]": metric, "start": START})
                check(r.get("status") == "success" and any(JOB == s.get("job_id") for s in r["data"]),
                      f"{name} variable {v['name']}: {q} lists {JOB}")
            else:
                exprs.append((f"{name} variable {v['name']}", grafana(q)))
rules = yaml.safe_load(open(os.path.join(ROOT, "deploy", "prometheus", "d2lora.rules.yml")))
for g in rules["groups"]:
    for r in g["rules"]:
        exprs.append((f"rule {r.get('alert') or r.get('record')}", r["expr"]))
bad = []
for where, e in exprs:
    r = api("query", query=e)
    if r.get("status") != "success":
        bad.append(f"{where}: {r.get('error')}")
check(exprs and not bad, f"{len(exprs)} expressions (dashboards and rules) evaluate" + (f"; errors: {bad}" if bad else ""))

# The rules are loaded and evaluated by this Prometheus.
loaded = api("rules")
n = sum(len(g["rules"]) for g in loaded.get("data", {}).get("groups", []))
want = sum(len(g["rules"]) for g in rules["groups"])
check(n == want, f"Prometheus loaded the {want} alert rules ({n})")
unhealthy = [r["name"] for g in loaded.get("data", {}).get("groups", []) for r in g["rules"] if r.get("health") not in ("ok", "unknown")]
check(not unhealthy, "every rule evaluates healthy" + (f" (not: {unhealthy})" if unhealthy else ""))

# 3. The core panels have data from the job's run.
end = time.time()
for key in CORE_PANELS:
    if key not in panels:
        fail(f"no panel {key[1]} on {key[0]}")
        continue
    points = 0
    for e in panels[key]:
        r = api("query_range", query=e, start=START, end=end, step=15)
        if r.get("status") == "success":
            points += sum(len(s["values"]) for s in r["data"]["result"])
    check(points > 0, f"{key[0]} '{key[1]}' has data ({points} points)")
# The job's own training series: its loss was scraped while it trained.
r = api("query_range", query=f'max(d2lora_train_loss{{job_id="{JOB}"}})', start=START, end=end, step=15)
values = [float(v) for s in r.get("data", {}).get("result", []) for _, v in s["values"]]
check(values and all(v > 0 for v in values), f"d2lora_train_loss of {JOB} scraped ({len(values)} points)")

print(f"failures: {checklib.failures}")
sys.exit(1 if checklib.failures else 0)
