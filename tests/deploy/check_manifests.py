#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests (kubectl kustomize output) for what a
cluster needs and what d2lora's deployment promises. Prints "ok: ..." and
"FAIL: ..." lines; exits 1 on any failure.

  check_manifests.py RENDERED.yaml cpu|gpu [COORDINATOR_BINARY WORKER_BINARY]

With the binaries, every --flag in a container's args must be one that the
binary's --help lists. Needs PyYAML (Debian: python3-yaml)."""
import re
import subprocess
import sys

import yaml

import checklib
from checklib import check, fail, ok


path, flavour = sys.argv[1], sys.argv[2]
binaries = {}
if len(sys.argv) >= 5:
    binaries = {"d2lora-coordinator": sys.argv[3], "d2lora-worker": sys.argv[4]}

try:
    docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
except yaml.YAMLError as e:
    fail(f"{path} does not parse: {e}")
    sys.exit(1)
ok(f"{len(docs)} documents parse")

CLUSTER_SCOPED = {"Namespace"}
by_kind = {}
for d in docs:
    kind = d.get("kind")
    name = (d.get("metadata") or {}).get("name")
    if not (d.get("apiVersion") and kind and name):
        fail(f"document without apiVersion, kind or metadata.name: {str(d)[:120]}")
        continue
    by_kind.setdefault(kind, {})[name] = d
    if kind not in CLUSTER_SCOPED:
        check(d["metadata"].get("namespace") == "d2lora", f"{kind}/{name} in namespace d2lora")
ok("every document has apiVersion, kind and metadata.name")

API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
       "PersistentVolumeClaim": "v1", "ServiceAccount": "v1", "Namespace": "v1",
       "NetworkPolicy": "networking.k8s.io/v1", "PodMonitor": "monitoring.coreos.com/v1",
       "PodDisruptionBudget": "policy/v1", "PrometheusRule": "monitoring.coreos.com/v1"}
for kind, objs in by_kind.items():
    for name, d in objs.items():
        check(API.get(kind) == d["apiVersion"], f"{kind}/{name} apiVersion {d['apiVersion']}")


def one(kind, prefix):
    """The object of KIND whose name is PREFIX (or PREFIX-HASH for generated ones)."""
    for name, d in by_kind.get(kind, {}).items():
        if name == prefix or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", name):
            return d
    return None


config = one("ConfigMap", "d2lora-config")
token = one("Secret", "d2lora-token")
check(config is not None, "ConfigMap d2lora-config")
check(token is not None and "token" in (token.get("data") or {}), "Secret d2lora-token with key token")
cfg = (config or {}).get("data") or {}

for sa in ("d2lora-coordinator", "d2lora-worker"):
    d = one("ServiceAccount", sa)
    check(d is not None and d.get("automountServiceAccountToken") is False,
          f"ServiceAccount {sa} with automountServiceAccountToken: false")
check(not by_kind.get("Role") and not by_kind.get("RoleBinding") and not by_kind.get("ClusterRoleBinding"),
      "no RBAC grants (the service needs no Kubernetes API)")
ns = one("Namespace", "d2lora")
check(ns is not None and ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
      "Namespace d2lora enforces the restricted Pod Security Standard")


def check_workload(w, binary):
    kind, name = w["kind"], w["metadata"]["name"]
    what = f"{kind}/{name}"
    spec = w["spec"]
    tmpl = spec["template"]
    pod = tmpl["spec"]
    sel = spec["selector"]["matchLabels"]
    labels = tmpl["metadata"].get("labels", {})
    check(all(labels.get(k) == v for k, v in sel.items()), f"{what}: selector matches the pod labels")
    check(pod.get("automountServiceAccountToken") is False, f"{what}: automountServiceAccountToken false")
    check(one("ServiceAccount", pod.get("serviceAccountName", "")) is not None, f"{what}: its ServiceAccount exists")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{what}: pod runAsNonRoot and seccomp RuntimeDefault")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"]: {"volumeClaimTemplate": t} for t in spec.get("volumeClaimTemplates", [])}
    for v in volumes.values():
        if "secret" in v:
            check(one("Secret", v["secret"]["secretName"]) is not None and v["secret"]["secretName"] in by_kind["Secret"],
                  f"{what}: secret volume {v['secret']['secretName']} exists")
        if "persistentVolumeClaim" in v:
            check(v["persistentVolumeClaim"]["claimName"] in by_kind.get("PersistentVolumeClaim", {}),
                  f"{what}: PVC {v['persistentVolumeClaim']['claimName']} exists")
    for c in pod["containers"]:
        cw = f"{what} container {c['name']}"
        check(bool(c.get("image")) and ":" in c["image"], f"{cw}: image with a tag ({c.get('image')})")
        res = c.get("resources", {})
        check(bool(res.get("requests", {}).get("cpu")) and bool(res.get("requests", {}).get("memory"))
              and bool(res.get("limits", {}).get("memory")), f"{cw}: cpu/memory requests and a memory limit")
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
              and "ALL" in sc.get("capabilities", {}).get("drop", []),
              f"{cw}: no privilege escalation, read-only root, capabilities drop ALL")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        check("/tmp" in mounts and "emptyDir" in volumes.get(mounts["/tmp"], {}), f"{cw}: /tmp is an emptyDir")
        check(all(m["name"] in volumes or m["name"] in claims for m in c.get("volumeMounts", [])),
              f"{cw}: every volumeMount has its volume or claim template")
        for ef in c.get("envFrom", []):
            ref = ef.get("configMapRef", {}).get("name")
            check(ref in by_kind.get("ConfigMap", {}), f"{cw}: envFrom ConfigMap {ref} exists")
        env = {e["name"] for e in c.get("env", [])} | set(cfg)
        for a in c.get("args", []):
            for var in re.findall(r"\$\(([A-Z0-9_]+)\)", a):
                check(var in env, f"{cw}: $({var}) in {a} is defined")
        if binary in binaries:
            helptext = subprocess.run([binaries[binary], "--help"], capture_output=True, text=True).stdout
            for a in c.get("args", []):
                flag = a.split("=", 1)[0]
                if flag.startswith("--"):
                    check(re.search(r"(^|[\s,])" + re.escape(flag) + r"\b", helptext) is not None,
                          f"{cw}: {binary} knows {flag}")
    return pod, pod["containers"][0]


def ports_of(container):
    return {p.get("name"): p["containerPort"] for p in container.get("ports", [])}


# The coordinator.
coord = by_kind.get("StatefulSet", {}).get("d2lora-coordinator")
if check(coord is not None, "StatefulSet d2lora-coordinator"):
    pod, c = check_workload(coord, "d2lora-coordinator")
    check(coord["spec"].get("replicas") == 1 and coord["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
          and coord["spec"].get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate",
          "coordinator: 1 replica, ordered (at most one pod opens the SQLite store)")
    gov = by_kind.get("Service", {}).get(coord["spec"].get("serviceName"), {})
    check(gov.get("spec", {}).get("clusterIP") == "None", f"coordinator: governing Service {coord['spec'].get('serviceName')} is headless")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check(c.get(probe, {}).get("grpc", {}).get("port") == 50051, f"coordinator: {probe} on gRPC health, port 50051")
    p = ports_of(c)
    check(p.get("grpc") == 50051 and p.get("metrics") == 9090, "coordinator: ports grpc 50051 and metrics 9090")
    args = " ".join(c.get("args", []))
    check("--listen=0.0.0.0:50051" in args and "--metrics-listen=0.0.0.0:9090" in args and "--token-file=" in args,
          "coordinator: listens on all interfaces, token required")
    data_mount = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/d2lora"]
    vols = {v["name"]: v for v in pod["volumes"]}
    tmpl = {t["metadata"]["name"]: t for t in coord["spec"].get("volumeClaimTemplates", [])}
    check(bool(data_mount) and data_mount[0]["name"] in tmpl and data_mount[0]["name"] not in vols and
          "--data-dir=/var/lib/d2lora" in args, "coordinator: --data-dir on its volume claim template")
    check(not by_kind.get("PodDisruptionBudget", {}) or not any(
        p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "d2lora-coordinator"
        for p in by_kind.get("PodDisruptionBudget", {}).values()), "coordinator: no PodDisruptionBudget (one replica)")

svc = by_kind.get("Service", {}).get("d2lora-coordinator")
if check(svc is not None, "Service d2lora-coordinator"):
    sp = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    check(sp == {"grpc": 50051, "metrics": 9090}, f"Service d2lora-coordinator ports {sp}")
    if coord:
        labels = coord["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the coordinator pods")

# The workers.
sts = by_kind.get("StatefulSet", {}).get("d2lora-worker")
if check(sts is not None, "StatefulSet d2lora-worker"):
    pod, c = check_workload(sts, "d2lora-worker")
    args = c.get("args", [])
    env = {e["name"]: e for e in c.get("env", [])}
    check("--advertise-host=$(POD_IP)" in args and
          env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
          "worker: advertises its pod IP (downward API status.podIP)")
    endpoint = cfg.get("D2LORA_COORDINATOR", "")
    host, _, port = endpoint.partition(":")
    check("--coordinator=$(D2LORA_COORDINATOR)" in args and host in by_kind.get("Service", {}) and port == "50051",
          f"worker: reaches the coordinator by its Service name ({endpoint})")
    grace = float(cfg.get("D2LORA_STOP_GRACE_SECONDS", "1e9"))
    check("--stop-grace-seconds=$(D2LORA_STOP_GRACE_SECONDS)" in args and
          pod.get("terminationGracePeriodSeconds", 30) > grace,
          f"worker: terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} > --stop-grace-seconds {grace}")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check(bool(anti.get("preferredDuringSchedulingIgnoredDuringExecution") or
               anti.get("requiredDuringSchedulingIgnoredDuringExecution")), "worker: pod anti-affinity")
    check(ports_of(c).get("metrics") == 9100 and "--metrics-listen=0.0.0.0:9100" in args, "worker: metrics port 9100")
    check(any(a.startswith("--trainer=") for a in args), "worker: --trainer names the d2lora binary in the image")
    gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    if flavour == "gpu":
        check(cfg.get("D2LORA_DEVICE") == "cuda" and gpus is not None and int(gpus) >= int(cfg.get("D2LORA_SLOTS", 1)),
              f"gpu: --device cuda with nvidia.com/gpu {gpus} >= slots {cfg.get('D2LORA_SLOTS')}")
        check("cuda" in c["image"], f"gpu: the CUDA worker image ({c['image']})")
    else:
        check(cfg.get("D2LORA_DEVICE") == "cpu" and gpus is None, "cpu: --device cpu and no GPU request")

    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", {}).values()
            if all(pod_labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items())]
    check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1,
          "worker: a PodDisruptionBudget lets drains take one worker at a time")

# Network policies: the coordinator's gRPC port only from workers and labelled clients.
pols = by_kind.get("NetworkPolicy", {})
cp = [p for p in pols.values() if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "d2lora-coordinator"]
if check(len(cp) == 1, "a NetworkPolicy selects the coordinator"):
    rules = cp[0]["spec"].get("ingress", [])
    grpc_from = [f for r in rules if any(p.get("port") == 50051 for p in r.get("ports", [])) for f in r.get("from", [])]
    check(bool(grpc_from) and all(f for f in grpc_from) and
          all(any(k in ("app.kubernetes.io/name", "d2lora.io/client") for k in f.get("podSelector", {}).get("matchLabels", {}))
              for f in grpc_from), "coordinator gRPC ingress only from workers and pods labelled d2lora.io/client")
    check(all(r.get("ports") for r in rules), "coordinator: every ingress rule names its ports")
    check(any(any(p.get("port") == 9090 for p in r.get("ports", [])) for r in rules), "coordinator metrics port open to Prometheus")
check(any(p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "d2lora-worker" for p in pols.values()),
      "a NetworkPolicy selects the workers")

# Monitoring: the PodMonitor's port exists on both pod templates.
mons = list(by_kind.get("PodMonitor", {}).values()) + list(by_kind.get("ServiceMonitor", {}).values())
if check(bool(mons), "a PodMonitor/ServiceMonitor"):
    port = mons[0]["spec"]["podMetricsEndpoints"][0]["port"]
    for w in (coord, sts):
        if w:
            check(port in ports_of(w["spec"]["template"]["spec"]["containers"][0]),
                  f"{w['kind']}/{w['metadata']['name']} has the monitored port {port}")

print(f"{path}: failures: {checklib.failures}")
sys.exit(1 if checklib.failures else 0)
