#!/usr/bin/python3
"""The method-fidelity study (issue 10): the paper's claims, tested at a scale
this machine can train.

  bench/repro/repro.py --quick            # under 15 min on 2 cores: tiny runs, 1 seed, no sweep
  bench/repro/repro.py --full             # the study: about two hours on 2 cores
  bench/repro/repro.py --smoke            # a minute: checks the pipeline only

Stages (each resumable: a finished run keeps its summary.json and is not run
again; an unfinished one is started over):
  1. data      WordNet 3.0 (Debian: wordnet-base) through `d2lora prepare-wordnet`:
               three 4-choice tasks (definition, hypernym, antonym), train and
               validation split by word; a dev split (by answer word) carved
               from train for choosing learning rates; a gloss corpus.
  2. pretrain  `init-model` + `train` with method: full on the glosses, with
               the validation perplexity logged along the way.
  3. sweep     every method at each learning rate (seed 1), trained on a mix
               of the tasks' training questions and scored on their dev
               questions; the best dev accuracy picks the method's rate.
  4. runs      every method x task x seed at its rate, 2 epochs, evaluated on
               validation (training form), merged and checked in the job;
               then, if the sweep gave LoRA r and D2-LoRA r different rates,
               LoRA r again at D2-LoRA's (the control).
  5. report    results.json, report.md and PNG plots (matplotlib).

Every training is `d2lora train` on one rank with one thread; --jobs of them
run at once, each pinned to its own core when the process may use enough.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (bench/repro/report.py)

TASKS = ["definition", "hypernym", "antonym"]

# Method name -> spec keys. "Ablations" are D2-LoRA with one part removed.
METHODS = {
    "lora_r": {"method": "lora", "adapter": {"r": "R"}},
    "lora_2r": {"method": "lora", "adapter": {"r": "2R"}},
    "dora_r": {"method": "dora", "adapter": {"r": "R"}},
    "d2lora_r": {"method": "d2lora", "adapter": {"r": "R"}},
    # tau fixed at 0: the negative branch adds nothing and gets no gradient.
    "d2lora_no_negative": {"method": "d2lora", "adapter": {"r": "R", "tau_init": 0.0}},
    "d2lora_no_projection": {"method": "d2lora", "adapter": {"r": "R", "projection_strength": 0.0}},
    # The paper fixes tau (0.5) and adds dW after the projection: both are the
    # defaults, so their ablations are a learnable tau and W* alone.
    "d2lora_learnable_tau": {"method": "d2lora", "adapter": {"r": "R", "tau_learnable": True}},
    "d2lora_no_residual": {"method": "d2lora", "adapter": {"r": "R", "residual": False}},
    "d2lora_detached_norm": {"method": "d2lora", "adapter": {"r": "R", "norm_grad": "detached"}},
}

# Scale of each mode. Questions are ~50 tokens; a training step is one
# micro-batch of 16 (30% faster on one thread than two of 8). sweep_train: the
# questions per task in the learning-rate sweep's mixed training set.
MODES = {
    "smoke": dict(preset="tiny", max_train=96, max_val=64, dev=16, sweep_train=16, seq=96, pre_steps=10,
                  pre_batch=8, pre_lr=5e-3, pre_eval_every=5, epochs=1, max_steps=4, batch=8, micro=8,
                  lrs=[5e-3, 1e-2], seeds=[1], methods=["lora_r", "d2lora_r"], tasks=["definition"]),
    # quick: no sweep (one rate for every method), one seed, 256 questions per task.
    "quick": dict(preset="tiny", max_train=256, max_val=200, dev=64, sweep_train=0, seq=96, pre_steps=150,
                  pre_batch=16, pre_lr=5e-3, pre_eval_every=25, epochs=2, max_steps=0, batch=16, micro=16,
                  lrs=[5e-3], seeds=[1], methods=list(METHODS), tasks=TASKS),
    # full: sized to finish in about two hours on 2 cores (README: the fidelity study).
    "full": dict(preset="small", max_train=1000, max_val=500, dev=150, sweep_train=250, seq=128, pre_steps=400,
                 pre_batch=32, pre_lr=3e-3, pre_eval_every=40, epochs=2, max_steps=0, batch=16, micro=16,
                 lrs=[1e-3, 3e-3, 1e-2], seeds=[1, 2, 3], methods=list(METHODS), tasks=TASKS),
}
RANK = 8
ALPHA_PER_R = 2  # alpha = 2r, as in the quickstart and the paper's set-up


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
    # pools alike (worker/engine/runtime.h), so no OMP_NUM_THREADS is needed.
    with open(logfile, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
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


def answer_bucket(q):
    word = q["choices"][q["label"]]
    return int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % 1000


def prepare_data(d2, out, cfg):
    data = out / "data"
    if (data / "done").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    # 0.3 of words in validation: the antonym task has ~7k questions in all
    # and needs >= 500 validation ones.
    run([d2, "prepare-wordnet", "--out", str(data / "wordnet"), "--tasks", ",".join(TASKS), "--seed", "1",
         "--val-fraction", "0.3", "--max-train", str(cfg["max_train"] + cfg["dev"] * 2),
         "--max-val", str(cfg["max_val"])], data / "prepare.log")
    for task in TASKS:
        train = read_jsonl(data / "wordnet" / task / "train.jsonl")
        # dev: questions whose answer word falls in a hash bucket, so no dev
        # answer is a train answer.
        dev = [q for q in train if answer_bucket(q) < 150][: cfg["dev"]]
        dev_answers = {q["choices"][q["label"]] for q in dev}
        rest = [q for q in train if answer_bucket(q) >= 150 and q["choices"][q["label"]] not in dev_answers]
        (data / task).mkdir()
        write_jsonl(data / task / "train.jsonl", rest[: cfg["max_train"]])
        write_jsonl(data / task / "dev.jsonl", dev)
        shutil.copy(data / "wordnet" / task / "validation.jsonl", data / task / "validation.jsonl")
    # The sweep trains one run per method and rate on a mix of the tasks'
    # training questions and scores it on all their dev questions.
    (data / "sweep").mkdir()
    parts = [read_jsonl(data / task / "train.jsonl")[: cfg["sweep_train"]] for task in cfg["tasks"]]
    write_jsonl(data / "sweep" / "train.jsonl", [q for group in zip(*parts) for q in group])
    write_jsonl(data / "sweep" / "dev.jsonl",
                [q for task in cfg["tasks"] for q in read_jsonl(data / task / "dev.jsonl")])
    # Gloss corpus for pretraining: four glosses per record, 1% for validation.
    glosses = [r["text"] for r in read_jsonl(data / "wordnet" / "corpus.jsonl")]
    packs = ["\n".join(glosses[i:i + 4]) for i in range(0, len(glosses), 4)]
    write_jsonl(data / "corpus-train.jsonl", [{"text": t} for i, t in enumerate(packs) if i % 100 != 0])
    write_jsonl(data / "corpus-val.jsonl", [{"text": t} for i, t in enumerate(packs) if i % 100 == 0][:300])
    counts = {t: {s: sum(1 for _ in open(data / t / f"{s}.jsonl")) for s in ("train", "dev", "validation")}
              for t in TASKS}
    (data / "counts.json").write_text(json.dumps(counts, indent=1))
    (data / "done").touch()
    log(f"data: {json.dumps(counts)}")
    return data


def spec_yaml(spec):
    # JSON is YAML: the spec parser reads both.
    return json.dumps(spec, indent=1)


def pretrain(d2, out, data, cfg, cores):
    base = out / "pretrain"
    if (base / "out" / "summary.json").exists():
        return base / "out" / "merged"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    run([d2, "init-model", "--preset", cfg["preset"], "--out", str(base / "init"), "--seed", "1",
         "--corpus", str(data / "wordnet" / "corpus.jsonl")], base / "init.log")
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
    (base / "spec.yaml").write_text(spec_yaml(spec))
    log(f"pretrain: {cfg['preset']} preset, {cfg['pre_steps']} steps of {cfg['pre_batch']} records")
    t0 = time.time()
    run([str(d2), "train", "--config", str(base / "spec.yaml"), "--quiet"], base / "train.log", cores=cores)
    log(f"pretrain: done in {time.time() - t0:.0f} s")
    merged = base / "out" / "merged"
    return merged if merged.exists() else base / "out" / "model"


def finetune_spec(name, model, train, validation, method, lr, seed, cfg, out_dir, merge=True):
    m = METHODS[method]
    adapter = {"alpha": ALPHA_PER_R * RANK, "target_modules": ["all-linear"]}
    for k, v in m["adapter"].items():
        adapter[k] = {"R": RANK, "2R": 2 * RANK}.get(v, v) if isinstance(v, str) else v
    if adapter["r"] == 2 * RANK:
        adapter["alpha"] = ALPHA_PER_R * 2 * RANK
    return {
        "name": name, "model": str(model), "method": m["method"], "adapter": adapter,
        "data": {"train": str(train), "validation": str(validation),
                 "format": "multiple_choice", "max_seq_len": cfg["seq"]},
        "train": {"epochs": cfg["epochs"] if not cfg["max_steps"] else 0, "max_steps": cfg["max_steps"],
                  "batch_size": cfg["batch"], "micro_batch_size": cfg["micro"], "lr": lr, "warmup_steps": 10,
                  "seed": seed, "checkpoint_every": 0, "keep_checkpoints": 1},
        "eval": {"every": 0, "scoring": "mean"},
        "metrics": {"volatility_window": 50},
        "output": {"dir": str(out_dir), "merge": merge},
        "resources": {"world_size": 1, "threads": 1},
    }


def run_one(d2, run_dir, spec, cores):
    """One fine-tuning run; returns its summary (cached when finished before)."""
    summary = run_dir / "out" / "summary.json"
    if summary.exists():
        return json.loads(summary.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text(spec_yaml(spec))
    run([str(d2), "train", "--config", str(run_dir / "spec.yaml"), "--quiet"], run_dir / "train.log", cores=cores)
    # Keep the study small on disk: the adapter and merged model are not reread.
    for d in ("merged", "adapter", "checkpoints"):
        shutil.rmtree(run_dir / "out" / d, ignore_errors=True)
    return json.loads(summary.read_text())


def core_slots(jobs):
    """--jobs groups of cores from this process's affinity (one core each if possible)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < jobs:
        return [None] * jobs
    return [str(cores[i]) for i in range(jobs)]


def run_grid(d2, items, jobs, what):
    """items: (run_dir, spec). Runs them --jobs at a time; returns summaries in order."""
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
                i, (run_dir, spec) = queue.pop(0)
                slot = free.pop()
                pending[pool.submit(run_one, d2, run_dir, spec, slots[slot])] = (i, slot, run_dir)
            finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                i, slot, run_dir = pending.pop(fut)
                free.append(slot)
                results[i] = fut.result()  # raises with the log's tail on failure
                done += 1
                acc = report.accuracy(results[i])
                log(f"{what}: {done}/{len(items)} {run_dir.name} accuracy {acc} "
                    f"({time.time() - t0:.0f} s so far)")
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
    cfg = MODES[mode]
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

    data = prepare_data(d2, work, cfg)
    base = pretrain(d2, work, data, cfg, all_cores)

    sweep_items = [(work / "sweep" / f"{meth}-lr{lr:g}",
                    finetune_spec(f"sweep-{meth}-lr{lr:g}", base, data / "sweep" / "train.jsonl",
                                  data / "sweep" / "dev.jsonl", meth, lr, 1, cfg,
                                  work / "sweep" / f"{meth}-lr{lr:g}" / "out", merge=False))
                   for meth in cfg["methods"] for lr in cfg["lrs"]]
    if len(cfg["lrs"]) > 1 and not args.report_only:
        run_grid(d2, sweep_items, jobs, "sweep")
    sweep = report.collect_sweep(work / "sweep", cfg)
    best_lr = {m: report.best_lr(sweep, m, cfg) for m in cfg["methods"]}
    log(f"learning rates: {best_lr}")

    def task_run(kind, meth, task, seed, lr):
        """(run_dir, spec) of one method on one task's train set, scored on its validation set."""
        run_dir = work / kind / f"{meth}-{task}-s{seed}"
        return run_dir, finetune_spec(f"{kind}-{meth}-{task}-s{seed}", base, data / task / "train.jsonl",
                                      data / task / "validation.jsonl", meth, lr, seed, cfg, run_dir / "out")

    items = [task_run("runs", meth, task, seed, best_lr[meth])
             for seed in cfg["seeds"] for task in cfg["tasks"] for meth in cfg["methods"]]
    if not args.report_only:
        run_grid(d2, items, jobs, "runs")
    # The control: when the sweep gave LoRA r and D2-LoRA r different rates,
    # LoRA r again at D2-LoRA's, so the headline comparison can be made at one rate.
    if {"lora_r", "d2lora_r"} <= set(cfg["methods"]) and best_lr["lora_r"] != best_lr["d2lora_r"]:
        controls = [task_run("controls", "lora_r", task, seed, best_lr["d2lora_r"])
                    for seed in cfg["seeds"] for task in cfg["tasks"]]
        if not args.report_only:
            run_grid(d2, controls, jobs, "controls")
    seconds = time.time() - t0
    if args.report_only and (out / "results.json").exists():
        seconds = json.loads((out / "results.json").read_text()).get("seconds", seconds)  # the study's, not this rerun's
    report.write(out, work, cfg, mode, best_lr, sweep, seconds, jobs)
    log(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
