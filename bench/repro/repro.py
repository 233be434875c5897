#!/usr/bin/python3
"""The method-fidelity study, second edition (issue 27): the paper's claims,
tested at a scale this machine can train, with the power to tell methods
apart. The analysis is fixed in bench/repro/PLAN.md before the full run.

  bench/repro/repro.py --full             # the study (PLAN.md): about two hours on 2 cores
  bench/repro/repro.py --quick            # a smaller study of the same shape: about 25 minutes
  bench/repro/repro.py --smoke            # about two minutes: checks the pipeline only
  bench/repro/repro.py --full --report-only   # rewrite the report from the finished runs

Stages (each resumable: a finished run keeps its summary.json and is not run
again; an unfinished one is started over):
  1. data      WordNet 3.0 (Debian: wordnet-base) through `d2lora prepare-wordnet`:
               the study's tasks (PLAN.md), train and validation split by word; a
               dev split carved from train (by the question's word) for the sweep;
               the gloss corpus.
  2. pretrain  `init-model` + `train` with method: full on the glosses.
  3. base      the pretrained model itself on every task's validation questions,
               under every scoring (`d2lora eval`): the zero-shot row.
  4. sweep     every method at every learning rate, for each sweep seed, trained
               on a mix of the tasks' training questions and scored on their dev
               questions. Each method's best rate, and one common rate (PLAN.md).
  5. runs      every method x task x seed at the common rate; the headline methods
               also at their own best rate where it differs. Each run keeps
               predictions.json (every question's answer, training form and merged).
  6. merges    the headline runs' adapters merged in bf16 and fp16 (`d2lora merge`)
               and evaluated (`d2lora eval`): the merge gap in low precision.
  7. report    results.json, predictions.json.gz, report.md and PNG plots.

Every training is `d2lora train` on one rank with one thread; --jobs of them
run at once, each pinned to its own core when the process may use enough.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (bench/repro/report.py)

RANK = 8
ALPHA_PER_R = 2  # alpha = 2r, as in the quickstart and the paper's set-up
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]

# Method name -> spec overrides. Ablations are D2-LoRA r with one part changed.
METHODS = {
    "lora_r": {"method": "lora", "adapter": {"r": RANK}},
    "lora_2r": {"method": "lora", "adapter": {"r": 2 * RANK}},
    # PEFT's DoRA: the magnitude's norm is detached from the graph.
    "dora_r": {"method": "dora", "adapter": {"r": RANK, "norm_grad": "detached"}},
    "d2lora_r": {"method": "d2lora", "adapter": {"r": RANK}},
    # tau fixed at 0: the negative branch adds nothing and gets no gradient.
    "d2lora_no_negative": {"method": "d2lora", "adapter": {"r": RANK, "tau_init": 0.0}},
    "d2lora_no_projection": {"method": "d2lora", "adapter": {"r": RANK, "projection_strength": 0.0}},
    "d2lora_no_residual": {"method": "d2lora", "adapter": {"r": RANK, "residual": False}},
    "d2lora_learnable_tau": {"method": "d2lora", "adapter": {"r": RANK, "tau_learnable": True}},
    "d2lora_tau_1": {"method": "d2lora", "adapter": {"r": RANK, "tau_init": 1.0}},
    "d2lora_detached_norm": {"method": "d2lora", "adapter": {"r": RANK, "norm_grad": "detached"}},
    # The paper's module ablation: attention projections only.
    "d2lora_attention_only": {"method": "d2lora", "adapter": {"r": RANK, "target_modules": ATTENTION}},
    # The paper's rank ablation: two branches of r/2 hold as many parameters as LoRA r.
    "d2lora_half_r": {"method": "d2lora", "adapter": {"r": RANK // 2}},
}
# report.HEADLINE: the methods also run at their own best rate; report.LOW_PRECISION_METHODS:
# those merged in bf16 and fp16 too (one list each, for the runs and the report).

# Scale of each mode (PLAN.md fixes --full's). tiny: the 316k-parameter preset
# the quickstart uses; questions are ~30-60 tokens; one step is a micro-batch
# of 16 on one thread.
MODES = {
    "smoke": dict(preset="tiny", tasks=["pos", "category"], max_train=96, max_val=40, dev=16, sweep_train=32,
                  seq=96, pre_steps=10, pre_batch=8, pre_lr=5e-3, pre_eval_every=5, epochs=1, max_steps=4,
                  batch=8, lrs=[5e-3, 1e-2], sweep_seeds=[1], seeds=[1, 2], methods=report.HEADLINE,
                  low_precision=["bf16"]),
    # quick: a smaller study of the same shape (1 sweep seed, 2 rates, 2 seeds, fewer questions): about 25 min.
    "quick": dict(preset="tiny", tasks=["pos", "antonym", "category"], max_train=1000, max_val=300, dev=100,
                  sweep_train=300, seq=128, pre_steps=600, pre_batch=32, pre_lr=3e-3, pre_eval_every=100, epochs=2,
                  max_steps=0, batch=16, lrs=[3e-3, 1e-2], sweep_seeds=[1], seeds=[1, 2], methods=list(METHODS),
                  low_precision=["bf16", "fp16"]),
    # full: PLAN.md's design, about two hours on 2 cores.
    "full": dict(preset="tiny", tasks=["pos", "antonym", "category"], max_train=3000, max_val=1200, dev=200,
                 sweep_train=800, seq=128, pre_steps=2000, pre_batch=32, pre_lr=3e-3, pre_eval_every=200, epochs=3,
                 max_steps=0, batch=16, lrs=[1e-3, 3e-3, 1e-2], sweep_seeds=[1, 2], seeds=[1, 2, 3],
                 methods=list(METHODS), low_precision=["bf16", "fp16"]),
}


def log(msg):
    print(f"[repro {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"repro: error: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd, logfile, cores=None, check=True):
    """Runs cmd with output to logfile; names the log on failure."""
    if cores is not None:
        cmd = ["taskset", "-c", cores] + cmd
    # Threads: each spec's resources.threads sizes LibTorch's and OpenBLAS's
    # pools alike (worker/engine/runtime.h); eval takes --threads.
    with open(logfile, "w") as out:
        rc = subprocess.call([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT)
    if check and rc != 0:
        tail = Path(logfile).read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {rc}; last lines of {logfile}:\n" + "\n".join(tail))
    return rc


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def question_key(q):
    """The question's word (its first quoted string): pos and category ask
    about a word, definition quotes the definition."""
    m = re.search(r'"([^"]+)"', q["question"])
    return m.group(1) if m else q["question"]


def dev_bucket(q):
    return int(hashlib.sha256(question_key(q).encode()).hexdigest()[:8], 16) % 1000


def prepare_data(d2, out, cfg):
    data = out / "data"
    if (data / "done").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    run([d2, "prepare-wordnet", "--out", data / "wordnet", "--tasks", ",".join(cfg["tasks"]), "--seed", "1",
         "--val-fraction", "0.3", "--max-train", cfg["max_train"] + cfg["dev"] * 2,
         "--max-val", cfg["max_val"]], data / "prepare.log")
    for task in cfg["tasks"]:
        train = read_jsonl(data / "wordnet" / task / "train.jsonl")
        # dev: questions whose word falls in a hash bucket; no dev word is a train word.
        dev = [q for q in train if dev_bucket(q) < 150][: cfg["dev"]]
        dev_words = {question_key(q) for q in dev}
        rest = [q for q in train if dev_bucket(q) >= 150 and question_key(q) not in dev_words]
        (data / task).mkdir()
        write_jsonl(data / task / "train.jsonl", rest[: cfg["max_train"]])
        write_jsonl(data / task / "dev.jsonl", dev)
        shutil.copy(data / "wordnet" / task / "validation.jsonl", data / task / "validation.jsonl")
    # The sweep trains on a mix of the tasks' training questions and scores on all their dev questions.
    (data / "sweep").mkdir()
    parts = [read_jsonl(data / task / "train.jsonl")[: cfg["sweep_train"]] for task in cfg["tasks"]]
    write_jsonl(data / "sweep" / "train.jsonl", [q for group in zip(*parts) for q in group])
    write_jsonl(data / "sweep" / "dev.jsonl", [q for task in cfg["tasks"] for q in read_jsonl(data / task / "dev.jsonl")])
    # Gloss corpus for pretraining: four glosses per record, 1% for validation.
    glosses = [r["text"] for r in read_jsonl(data / "wordnet" / "corpus.jsonl")]
    packs = ["\n".join(glosses[i:i + 4]) for i in range(0, len(glosses), 4)]
    write_jsonl(data / "corpus-train.jsonl", [{"text": t} for i, t in enumerate(packs) if i % 100 != 0])
    write_jsonl(data / "corpus-val.jsonl", [{"text": t} for i, t in enumerate(packs) if i % 100 == 0][:300])
    counts = {t: {s: sum(1 for _ in open(data / t / f"{s}.jsonl")) for s in ("train", "dev", "validation")}
              for t in cfg["tasks"]}
    (data / "counts.json").write_text(json.dumps(counts, indent=1))
    (data / "done").touch()
    log(f"data: {json.dumps(counts)}")
    return data


def spec_text(spec):
    return json.dumps(spec, indent=1)  # JSON is YAML: the spec parser reads both


def pretrain(d2, out, data, cfg, cores):
    base = out / "pretrain"
    if (base / "out" / "summary.json").exists():
        return base / "out" / "merged"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    run([d2, "init-model", "--preset", cfg["preset"], "--out", base / "init", "--seed", "1",
         "--corpus", data / "wordnet" / "corpus.jsonl"], base / "init.log")
    spec = {
        "name": "repro-pretrain", "model": str(base / "init"), "method": "full",
        "data": {"train": str(data / "corpus-train.jsonl"), "validation": str(data / "corpus-val.jsonl"),
                 "format": "lm", "max_seq_len": cfg["seq"]},
        "train": {"epochs": 0, "max_steps": cfg["pre_steps"], "batch_size": cfg["pre_batch"],
                  "micro_batch_size": cfg["pre_batch"] // 2, "lr": cfg["pre_lr"], "warmup_steps": 20,
                  "checkpoint_every": 0, "keep_checkpoints": 1, "seed": 1},
        "eval": {"every": cfg["pre_eval_every"], "max_examples": 300},
        "output": {"dir": str(base / "out"), "merge": True},
        "resources": {"world_size": 1, "threads": len(cores.split(","))},
    }
    (base / "spec.yaml").write_text(spec_text(spec))
    log(f"pretrain: {cfg['preset']} preset, {cfg['pre_steps']} steps of {cfg['pre_batch']} records")
    t0 = time.time()
    run([d2, "train", "--config", base / "spec.yaml", "--quiet"], base / "train.log", cores=cores)
    log(f"pretrain: done in {time.time() - t0:.0f} s")
    return base / "out" / "merged"


def finetune_spec(name, model, train, validation, method, lr, seed, cfg, out_dir, merge=True):
    m = METHODS[method]
    adapter = {"alpha": ALPHA_PER_R * m["adapter"]["r"], "target_modules": ["all-linear"]}
    adapter.update(m["adapter"])
    return {
        "name": name, "model": str(model), "method": m["method"], "adapter": adapter,
        "data": {"train": str(train), "validation": str(validation),
                 "format": "multiple_choice", "max_seq_len": cfg["seq"]},
        "train": {"epochs": cfg["epochs"] if not cfg["max_steps"] else 0, "max_steps": cfg["max_steps"],
                  "batch_size": cfg["batch"], "micro_batch_size": cfg["batch"], "lr": lr, "warmup_steps": 10,
                  "seed": seed, "checkpoint_every": 0, "keep_checkpoints": 1},
        "eval": {"every": 0, "scoring": "mean"},
        "metrics": {"volatility_window": 50},
        "output": {"dir": str(out_dir), "merge": merge, "merge_dtype": "fp32"},
        "resources": {"world_size": 1, "threads": 1},
    }


def train_one(d2, run_dir, spec, cores, keep_adapter):
    """One fine-tuning run; returns its summary (cached when finished before).
    PLAN.md: a run that fails is run once more with the same seed; one that
    fails twice is left out (FAILED names it; the report lists it) and the
    study goes on."""
    summary = run_dir / "out" / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "completed":
        return json.loads(summary.read_text())
    if (run_dir / "FAILED").exists():
        return None
    for attempt in (1, 2):
        shutil.rmtree(run_dir, ignore_errors=True)  # unfinished or failed: run it again
        run_dir.mkdir(parents=True)
        (run_dir / "spec.yaml").write_text(spec_text(spec))
        rc = run([d2, "train", "--config", run_dir / "spec.yaml", "--quiet"], run_dir / "train.log", cores=cores,
                 check=False)
        if rc == 0:
            break
        tail = "\n".join((run_dir / "train.log").read_text(errors="replace").splitlines()[-5:])
        log(f"{run_dir.name}: attempt {attempt} exited {rc}:\n{tail}")
    else:
        (run_dir / "FAILED").write_text(tail + "\n")
        return None
    # Keep the study small on disk: what the report reads stays.
    for d in ("merged", "adapter-peft", "checkpoints") + (() if keep_adapter else ("adapter",)):
        shutil.rmtree(run_dir / "out" / d, ignore_errors=True)
    return json.loads(summary.read_text())


def eval_json(d2, model, data, scoring, logfile, cores, adapter=None):
    """`d2lora eval --json` of a model on a multiple-choice file: accuracy, labels, predictions."""
    cmd = [d2, "eval", "--model", model, "--data", data, "--task", "multiple_choice", "--scoring", scoring,
           "--json", "--threads", "1", "--batch-size", "16"]
    if adapter:
        cmd += ["--adapter", adapter]
    run(cmd, logfile, cores=cores)
    return json.loads(Path(logfile).read_text().strip().splitlines()[-1])


def base_one(d2, base, data, task, scoring, out, cores):
    f = out / f"{task}-{scoring}.json"
    if not f.exists():
        r = eval_json(d2, base, data / task / "validation.jsonl", scoring, out / f"{task}-{scoring}.log", cores)
        f.write_text(json.dumps(r))
    return json.loads(f.read_text())


def merge_one(d2, base, run_dir, validation, dtype, cores):
    """The run's adapter merged in `dtype` (weights rounded to it), evaluated."""
    f = run_dir / f"merged-{dtype}.json"
    if f.exists():
        return json.loads(f.read_text())
    if not (run_dir / "out" / "adapter").exists():  # a run that failed twice (FAILED)
        return None
    merged = run_dir / f"merged-{dtype}"
    shutil.rmtree(merged, ignore_errors=True)
    # --force: the gate's verdict is recorded, the merged model kept for evaluation.
    run([d2, "merge", "--model", base, "--adapter", run_dir / "out" / "adapter", "--out", merged, "--dtype", dtype,
         "--force"], run_dir / f"merge-{dtype}.log", cores=cores)
    gate = json.loads((merged / "merge_report.json").read_text())["headline"]
    r = eval_json(d2, merged, validation, "mean", run_dir / f"eval-{dtype}.log", cores)
    r["merge_gate"] = gate
    shutil.rmtree(merged, ignore_errors=True)
    f.write_text(json.dumps(r))
    return r


def core_slots(jobs):
    """--jobs groups of cores from this process's affinity (one core each if possible)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < jobs:
        return [None] * jobs
    return [str(cores[i]) for i in range(jobs)]


def run_pool(items, jobs, what):
    """items: (name, fn(cores)). Runs them --jobs at a time, each on its own
    core; returns the results in order; a failure raises with the log's tail."""
    slots = core_slots(jobs)
    free = list(range(jobs))
    results = [None] * len(items)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {}
        queue = list(enumerate(items))
        done = 0
        while queue or pending:
            while queue and free:
                i, (name, fn) = queue.pop(0)
                slot = free.pop()
                pending[pool.submit(fn, slots[slot])] = (i, slot, name)
            finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                i, slot, name = pending.pop(fut)
                free.append(slot)
                results[i] = fut.result()
                done += 1
                if len(items) <= 20 or done % 10 == 0 or done == len(items):
                    log(f"{what}: {done}/{len(items)} {name} ({time.time() - t0:.0f} s so far)")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    for m in MODES:
        mode.add_argument(f"--{m}", dest="mode", action="store_const", const=m)
    ap.add_argument("--build-dir", default=str(ROOT / "build"), help="where bin client/d2lora is (default: build)")
    ap.add_argument("--out", help="results directory (default: bench/repro/results/MODE)")
    ap.add_argument("--jobs", type=int, default=0, help="trainings at once (default: the cores this process may use)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from finished runs")
    args = ap.parse_args()
    mode = args.mode or "quick"
    cfg = dict(MODES[mode], rank=RANK, alpha_per_r=ALPHA_PER_R)
    d2 = Path(args.build_dir).resolve() / "client" / "d2lora"
    if not d2.exists():
        die(f"{d2} is not built (cmake --build {args.build_dir} --target d2lora)")
    if not Path("/usr/share/wordnet/data.noun").exists():
        die("/usr/share/wordnet is missing: apt-get install wordnet-base")
    if mode != "smoke":
        try:
            import matplotlib  # noqa: F401  (report.py draws the plots)
        except ImportError:
            die("python3-matplotlib is missing (deploy/packages.sh: D2LORA_REPRO_EXTRA): "
                "apt-get install python3-matplotlib")
    out = Path(args.out or ROOT / "bench" / "repro" / "results" / mode).resolve()
    work = out / "work"  # large and ignored by git; the report sits beside it
    work.mkdir(parents=True, exist_ok=True)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    all_cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    t0 = time.time()
    todo = not args.report_only

    data = prepare_data(d2, work, cfg)
    base = pretrain(d2, work, data, cfg, all_cores)

    (work / "base").mkdir(exist_ok=True)
    if todo:
        run_pool([(f"{t}-{s}", lambda c, t=t, s=s: base_one(d2, base, data, t, s, work / "base", c))
                  for t in cfg["tasks"] for s in report.SCORINGS], jobs, "base model")

    def train_item(kind, name, method, lr, seed, train, validation, merge=True, keep_adapter=False):
        """(name, fn(cores)) of one fine-tuning run in work/KIND/NAME."""
        run_dir = work / kind / name
        spec = finetune_spec(f"{kind}-{name}", base, train, validation, method, lr, seed, cfg, run_dir / "out", merge)
        return (name, lambda c: train_one(d2, run_dir, spec, c, keep_adapter))

    sweep = [train_item("sweep", report.sweep_name(m, lr, seed), m, lr, seed, data / "sweep" / "train.jsonl",
                        data / "sweep" / "dev.jsonl", merge=False)
             for seed in cfg["sweep_seeds"] for m in cfg["methods"] for lr in cfg["lrs"]]
    if todo and len(cfg["lrs"]) > 1:
        run_pool(sweep, jobs, "sweep")
    rates = report.choose_rates(work / "sweep", cfg)
    log(f"learning rates: common {rates['common']:g}; best {json.dumps(rates['best'])}")

    def task_run(m, task, seed, lr):
        return train_item("runs", report.run_name(m, task, seed, lr), m, lr, seed, data / task / "train.jsonl",
                          data / task / "validation.jsonl",
                          keep_adapter=m in report.LOW_PRECISION_METHODS and lr == rates["common"])

    runs = [task_run(m, task, seed, lr) for seed in cfg["seeds"] for task in cfg["tasks"] for m in cfg["methods"]
            for lr in report.rates_of(m, rates)]
    if todo:
        run_pool(runs, jobs, "runs")
        merges = [(f"{report.run_name(m, t, s, rates['common'])}-{dt}",
                   lambda c, m=m, t=t, s=s, dt=dt: merge_one(d2, base, work / "runs" / report.run_name(
                       m, t, s, rates["common"]), data / t / "validation.jsonl", dt, c))
                  for m in report.LOW_PRECISION_METHODS if m in cfg["methods"] for t in cfg["tasks"] for s in cfg["seeds"]
                  for dt in cfg["low_precision"]]
        run_pool(merges, jobs, "low-precision merges")
    # The study's time: every invocation that ran something (a resumed study adds up).
    if todo:
        with open(work / "invocations.jsonl", "a") as f:
            f.write(json.dumps({"started": t0, "seconds": time.time() - t0}) + "\n")
    seconds = sum(r["seconds"] for r in read_jsonl(work / "invocations.jsonl")) if (work / "invocations.jsonl").exists() else 0
    report.write(out, work, cfg, mode, rates, seconds, jobs)
    log(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
