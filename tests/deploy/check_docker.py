#!/usr/bin/env python3
"""Static checks of docker/ without a Docker engine. Prints ok/FAIL lines,
exits 1 on any failure.

  check_docker.py ROOT [D2LORA COORDINATOR WORKER]

Dockerfiles: multi-stage, version build arguments, a non-root USER and a
HEALTHCHECK in the final stage; every file COPY takes from the context
exists; every `cmake --build --target` is a target of the project and every
file copied out of the build stage is one of those targets' outputs (and,
given the binaries, exists in their build tree); the image runs one of the
project's binaries with flags its --help lists; the worker images hold both
d2lora-worker and d2lora (--trainer); the coordinator and CPU worker images
share their build stage word for word. Dockerfiles of third-party programs
(no cmake build: Dockerfile.prometheus) get the stage, USER and HEALTHCHECK
checks only. For the Debian images: every runtime
package exists (apt-cache) and, given the binaries, every shared library they
need (readelf NEEDED) comes from a runtime package or its dependencies.
docker-compose.yml: parses, its Dockerfiles and bind-mounted files exist, its
named volumes and depends_on are declared, the d2lora commands use flags the
binaries accept, and deploy/prometheus/prometheus.yml scrapes its services'
metrics ports. Needs PyYAML (python3-yaml)."""
import glob
import os
import re
import shlex
import subprocess
import sys

import yaml

import checklib
from checklib import check, fail, ok


ROOT = sys.argv[1]
BIN = {}
if len(sys.argv) >= 5:
    BIN = {"d2lora": sys.argv[2], "d2lora-coordinator": sys.argv[3], "d2lora-worker": sys.argv[4]}
BUILD_DIR = os.path.dirname(os.path.dirname(BIN["d2lora-coordinator"])) if BIN else None
PROJECT_BINARIES = {"d2lora", "d2lora-coordinator", "d2lora-worker"}

# The project's CMake targets.
targets = set()
for top, dirs, files in os.walk(ROOT):
    dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]  # build trees, .git
    if "CMakeLists.txt" not in files:
        continue
    cm = os.path.join(top, "CMakeLists.txt")
    targets |= set(re.findall(r"add_(?:executable|library)\(\s*([A-Za-z0-9_.+-]+)", open(cm).read()))

_help = {}


def help_of(binary):
    if binary not in _help:
        _help[binary] = subprocess.run([BIN[binary], "--help"], capture_output=True, text=True).stdout
    return _help[binary]


def check_flags(what, binary, args):
    if binary not in BIN:
        return
    bad = [a for a in args if a.startswith("--") and not re.search(
        r"(^|[\s,])" + re.escape(a.split("=", 1)[0]) + r"\b", help_of(binary))]
    check(not bad, f"{what}: {binary} accepts every flag" + (f" (not: {bad})" if bad else ""))


def instructions(path):
    """(INSTRUCTION, text) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in open(path):
        s = line.rstrip("\n")
        if not cur and (s.strip().startswith("#") or not s.strip()):
            continue
        if s.strip().startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def exec_form(text):
    text = text.strip()
    if text.startswith("["):
        import json
        return json.loads(text)
    return shlex.split(text)


def apt_closure(pkgs):
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                        "--no-breaks", "--no-replaces", "--no-enhances"] + pkgs, capture_output=True, text=True)
    names = set()
    for line in r.stdout.splitlines():
        line = line.strip().lstrip("|")
        if line.startswith(("Depends:", "PreDepends:")):
            names.add(line.split(":", 1)[1].strip().strip("<>").split(":")[0])
        elif line and not line.startswith("<") and ":" not in line:
            names.add(line)
    return names


_lib_package = {}


def packages_of_libs(sonames):
    """soname -> Debian package (None where not found), in two dpkg calls."""
    ldconfig = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = {}
    for so in sonames:
        m = re.search(r"^\s*" + re.escape(so) + r" \(libc6,x86-64\) => (\S+)", ldconfig, re.M)
        if m:
            real = os.path.realpath(m.group(1))
            paths[so] = [real, real.replace("/usr/lib/", "/lib/", 1), m.group(1)]
    owner = {}
    queries = sorted({p for ps in paths.values() for p in ps})
    if queries:
        out = subprocess.run(["dpkg", "-S"] + queries, capture_output=True, text=True).stdout
        for line in out.splitlines():
            pkg, _, path = line.partition(": ")
            owner[path.strip()] = pkg.split(":")[0]
    return {so: next((owner[p] for p in paths.get(so, []) if p in owner), None) for so in sonames}


def output_target(path):
    base = os.path.basename(path)
    if base in targets:
        return base
    m = re.fullmatch(r"lib(.+)\.so", base)
    return m.group(1) if m and m.group(1) in targets else None


build_stages = {}
for df in sorted(glob.glob(os.path.join(ROOT, "docker", "Dockerfile*"))):
    name = os.path.relpath(df, ROOT)
    ins = instructions(df)
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if not check(len(froms) >= 2, f"{name}: multi-stage ({len(froms)} stages)"):
        continue
    pre_args = [t for w, t in ins[:froms[0]] if w == "ARG"]
    check(any("${" + a.split("=")[0] + "}" in ins[froms[0]][1] for a in pre_args),
          f"{name}: base image versions are build arguments ({', '.join(a.split('=')[0] for a in pre_args)})")
    stages = []
    for k, start in enumerate(froms):
        end = froms[k + 1] if k + 1 < len(froms) else len(ins)
        stages.append(ins[start:end])
    final = stages[-1]
    users = [t for w, t in final if w == "USER"]
    check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), f"{name}: final stage runs as a non-root USER ({users[-1] if users else None})")
    check(any(w == "HEALTHCHECK" for w, _ in final), f"{name}: HEALTHCHECK")
    check(any(w == "ARG" and t.startswith("VERSION") for w, t in final) or any("VERSION" in t for w, t in ins if w == "ARG"),
          f"{name}: a VERSION build argument")
    project = any(w == "RUN" and "cmake --build" in t for w, t in ins)
    if not project:  # a third-party program packaged by Debian (Dockerfile.prometheus)
        continue
    build_stages[name] = stages[0]
    # The configure step needs every directory the top-level CMakeLists.txt adds (tests and benches are off).
    copied = {shlex.split(t)[0].rstrip("/") for w, t in ins if w == "COPY" and not t.startswith("--")}
    needed = {d.split("/")[0] for d in re.findall(r"add_subdirectory\((\S+?)\)", open(os.path.join(ROOT, "CMakeLists.txt")).read())}
    needed -= {"tests", "bench"}
    check(needed <= copied, f"{name}: copies every directory CMake configures ({sorted(needed)})"
          + ("" if needed <= copied else f"; missing: {sorted(needed - copied)}"))
    built = set()
    for w, t in ins:
        if w == "RUN":
            for m in re.finditer(r"cmake --build \S+ --target ((?:[A-Za-z0-9_.+-]+ ?)+)", t):
                for tg in m.group(1).split():
                    if tg.startswith("-"):
                        break
                    built.add(tg)
    check(bool(built) and built <= targets, f"{name}: builds project targets {sorted(built)}"
          + ("" if built <= targets else f" (unknown: {sorted(built - targets)})"))
    image_files = {}
    for w, t in ins:
        if w not in ("COPY", "ADD"):
            continue
        parts = shlex.split(t)
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        srcs, dest = paths[:-1], paths[-1]
        frm = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
        for s in srcs:
            if not frm:
                check(os.path.exists(os.path.join(ROOT, s)), f"{name}: COPY {s} exists in the repository")
            elif any(w2 == "RUN" and re.search(r">\s*" + re.escape(s) + r"(\s|$)", t2) for w2, t2 in ins):
                ok(f"{name}: {s} is written by a RUN of the build stage")
            elif s.startswith("/build/"):
                tg = output_target(s)
                check(tg in built, f"{name}: {s} is the output of built target {tg}")
                if BUILD_DIR:
                    check(os.path.exists(os.path.join(BUILD_DIR, s[len('/build/'):])),
                          f"{name}: {s} is where the build puts it ({BUILD_DIR})")
            if w == "COPY" and (not frm or s.startswith("/build/") or s.startswith("docker/")):
                image_files[dest] = s
    entry = [exec_form(t) for w, t in final if w == "ENTRYPOINT"]
    cmd = [exec_form(t) for w, t in final if w == "CMD"]
    ep = entry[-1] if entry else []
    binary = os.path.basename(ep[0]) if ep else None
    check(binary in PROJECT_BINARIES and ep[0] in image_files, f"{name}: ENTRYPOINT runs {ep[0] if ep else None}, copied into the image")
    if binary and cmd:
        check_flags(f"{name} CMD", binary, cmd[-1])
    if binary == "d2lora-worker":
        trainer = [a.split("=", 1)[1] for a in (cmd[-1] if cmd else []) if a.startswith("--trainer=")]
        check("/usr/local/bin/d2lora" in image_files and trainer == ["/usr/local/bin/d2lora"],
              f"{name}: holds d2lora-worker and d2lora (--trainer={trainer[0] if trainer else None})")
    for w, t in final:
        if w == "HEALTHCHECK":
            hc = exec_form(t.split("CMD", 1)[1])
            check(hc[0] in image_files, f"{name}: HEALTHCHECK runs {hc[0]}, copied into the image")
    # Debian runtime packages.
    base = ins[froms[-1]][1]
    if "debian" in base and subprocess.run(["apt-cache", "show", "libc6"], capture_output=True).returncode != 0:
        print(f"note: {name}: no apt package lists here (apt-get update); runtime packages not checked")
    elif "debian" in base:
        pkgs = []
        for w, t in final:
            if w == "RUN" and "apt-get install" in t:
                after = t.split("--no-install-recommends", 1)[1]
                pkgs += after.split("&&")[0].split()
        shown = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs, capture_output=True, text=True).stdout
        known = set(re.findall(r"^Package: (\S+)", shown, re.M))
        missing = [p for p in pkgs if p not in known]
        check(pkgs and not missing, f"{name}: runtime packages exist in Debian ({len(pkgs)})"
              + (f"; unknown: {missing}" if missing else ""))
        if BIN and pkgs and not missing:
            closure = apt_closure(pkgs) | {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
            for dest, src in image_files.items():
                if not src.startswith("/build/"):
                    continue
                local = os.path.join(BUILD_DIR, src[len("/build/"):])
                needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                                    subprocess.run(["readelf", "-d", local], capture_output=True, text=True).stdout)
                owners = packages_of_libs(needed)
                lacking = [f"{so} ({p})" for so, p in owners.items() if p is None or p not in closure]
                check(not lacking, f"{name}: every library {os.path.basename(local)} needs is installed ({len(needed)})"
                      + (f"; missing: {lacking}" if lacking else ""))

# One compile serves both Debian images (the layer cache): their build stages are the same.
same = [build_stages.get(os.path.join("docker", f)) for f in ("Dockerfile.coordinator", "Dockerfile.worker")]
check(same[0] is not None and same[0] == same[1], "Dockerfile.coordinator and Dockerfile.worker have the same build stage")

# docker-compose.yml
cf = os.path.join(ROOT, "docker", "docker-compose.yml")
try:
    compose = yaml.safe_load(open(cf))
    ok("docker-compose.yml parses")
except Exception as e:  # noqa: BLE001
    fail(f"docker-compose.yml: {e}")
    sys.exit(1)
cdir = os.path.dirname(cf)
services = compose.get("services", {})
check({"coordinator", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services),
      f"compose services {sorted(services)}")
volumes = set((compose.get("volumes") or {}).keys())
metrics_ports = {}
for sname, s in services.items():
    b = s.get("build")
    if b:
        ctx = os.path.normpath(os.path.join(cdir, b.get("context", ".")))
        check(os.path.isfile(os.path.join(ctx, b.get("dockerfile", "Dockerfile"))),
              f"compose {sname}: {b.get('dockerfile')} exists in context {os.path.relpath(ctx, ROOT) or '.'}")
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith((".", "/")):
            check(os.path.exists(os.path.normpath(os.path.join(cdir, src))), f"compose {sname}: bind mount {src} exists")
        else:
            check(src in volumes, f"compose {sname}: named volume {src} declared")
    deps = s.get("depends_on", [])
    check(all(d in services for d in deps), f"compose {sname}: depends_on {list(deps)} are services")
    image = s.get("image", "")
    binary = {"d2lora/coordinator": "d2lora-coordinator", "d2lora/worker": "d2lora-worker"}.get(image.split(":")[0])
    if binary:
        cmd = s.get("command", [])
        check_flags(f"compose {sname} command", binary, cmd)
        flags = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
        tf = flags.get("token-file", "")
        check(any(tf.startswith(v.split(":")[1] + "/") for v in s.get("volumes", [])),
              f"compose {sname}: --token-file {tf} is on a mounted volume")
        metrics_ports[sname] = flags.get("metrics-listen", ":").rsplit(":", 1)[1]
        if binary == "d2lora-worker":
            check(flags.get("advertise-host") == s.get("hostname") == sname,
                  f"compose {sname}: advertises its own host name")
            check(flags.get("coordinator", "").split(":")[0] in services, f"compose {sname}: --coordinator is a service")
prom = yaml.safe_load(open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")))
targets_scraped = {t for sc in prom["scrape_configs"] for c in sc.get("static_configs", []) for t in c["targets"]}
for sname, port in metrics_ports.items():
    check(f"{sname}:{port}" in targets_scraped, f"prometheus.yml scrapes {sname}:{port}")

print(f"failures: {checklib.failures}")
sys.exit(1 if checklib.failures else 0)
