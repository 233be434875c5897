"""Reads the study's finished runs and writes results.json, report.md and PNG
plots (bench/repro/repro.py calls it; `repro.py --report-only` reruns it)."""

import json
import math
import statistics
from pathlib import Path

# The paper's claims at 7-8B scale (DESIGN section 1).
PAPER = {"vs_lora_pp": 2.2, "vs_lora_2r_pp": 1.6, "volatility_drop": 0.36, "merge_gap_pp": 0.03}
SCORINGS = ("mean", "sum", "byte", "letter")  # eval's multiple-choice scorings
SCORING = ("mean log-likelihood per token of each choice given the question (eval.scoring: mean); "
           "the highest-scoring choice is the answer")


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def summary_of(run_dir):
    p = Path(run_dir) / "out" / "summary.json"
    return json.loads(p.read_text()) if p.exists() else None


def accuracy(summary):
    """The final validation accuracy under the spec's scoring (the training form)."""
    ev = summary.get("eval") or {}
    acc = ev.get("accuracy")
    return acc.get(ev.get("scoring", "mean")) if isinstance(acc, dict) else acc


def sweep_volatility(summary):
    return (summary.get("volatility") or {}).get("volatility")


def collect_sweep(sweep_dir, cfg, value=accuracy):
    """method -> lr -> value(summary) of the finished sweep runs: by default the
    dev accuracy (all tasks' dev questions); sweep_volatility for every method
    at the same rates."""
    out = {}
    for m in cfg["methods"]:
        for lr in cfg["lrs"]:
            s = summary_of(Path(sweep_dir) / f"{m}-lr{lr:g}")
            v = value(s) if s else None
            if v is not None:
                out.setdefault(m, {})[f"{lr:g}"] = v
    return out


def best_lr(sweep, method, cfg):
    """The rate with the best dev accuracy (the smaller on ties)."""
    if len(cfg["lrs"]) == 1:
        return cfg["lrs"][0]
    scores = []
    for lr in cfg["lrs"]:
        acc = sweep.get(method, {}).get(f"{lr:g}")
        if acc is None:
            raise RuntimeError(f"sweep of {method} at lr {lr:g} is unfinished")
        scores.append((acc, -lr, lr))
    return max(scores)[2]


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def step_losses(run_dir):
    """(step, loss) of each optimizer step, from metrics.jsonl."""
    rows = read_jsonl(Path(run_dir) / "out" / "metrics.jsonl")
    seen = {}
    for r in rows:
        if r.get("event") == "step" and r.get("loss") is not None:
            seen[r["step"]] = r["loss"]
    return sorted(seen.items())


def run_record(d, method, task, seed, lr):
    """One finished run's figures, or None if it has not finished."""
    s = summary_of(d)
    if not s:
        return None
    mc = s.get("merge_check") or {}
    return {
        "method": method, "task": task, "seed": seed, "lr": lr,
        "accuracy": accuracy(s),
        "accuracy_by_scoring": (s.get("eval") or {}).get("accuracy"),
        "accuracy_merged": mc.get("accuracy_merged"),
        "merge_gap_pp": mc.get("accuracy_gap_pp"),
        "max_logit_diff": mc.get("max_logit_diff"),
        "volatility": (s.get("volatility") or {}).get("volatility"),
        "spikes": (s.get("volatility") or {}).get("spikes"),
        "train_seconds": s.get("train_seconds"),
        "steps": s.get("steps"),
        "skipped_steps": s.get("skipped_steps"),
        "trainable_parameters": (s.get("parameters") or {}).get("trainable"),
        "dir": str(d),
    }


def collect_runs(work, cfg, best):
    runs = [run_record(Path(work) / "runs" / f"{m}-{task}-s{seed}", m, task, seed, best[m])
            for seed in cfg["seeds"] for task in cfg["tasks"] for m in cfg["methods"]]
    return [r for r in runs if r]


# The control: LoRA r at D2-LoRA r's rate (repro.py runs it when the sweep
# gave the two different rates), so the comparison can be made at one rate.
CONTROL = "lora_r_at_d2lora_rate"


def collect_controls(work, cfg, best):
    if "d2lora_r" not in best:
        return []
    runs = [run_record(Path(work) / "controls" / f"lora_r-{task}-s{seed}", CONTROL, task, seed, best["d2lora_r"])
            for seed in cfg["seeds"] for task in cfg["tasks"]]
    return [r for r in runs if r]


def paired(runs, a, b, key, cfg):
    """Mean and standard error of a-b over matching (task, seed) pairs."""
    idx = {(r["method"], r["task"], r["seed"]): r for r in runs}
    diffs = []
    for task in cfg["tasks"]:
        for seed in cfg["seeds"]:
            ra, rb = idx.get((a, task, seed)), idx.get((b, task, seed))
            if ra and rb and ra[key] is not None and rb[key] is not None:
                diffs.append(ra[key] - rb[key])
    if not diffs:
        return None
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return {"mean": statistics.mean(diffs), "se": sd / math.sqrt(len(diffs)), "n": len(diffs)}


def verdict(d, paper=None, scale=1.0, unit=" pp"):
    """held: same sign as the paper and beyond 2 standard errors; with the
    paper's figure (in the units of d's mean times `scale`), also whether the
    effect is as large as the paper's."""
    if d is None:
        return "not measured"
    m, se = d["mean"], d["se"]
    if d["n"] > 1 and m > 2 * se:
        if paper is not None and (m + 2 * se) * scale < paper:
            return f"held in direction, smaller than the paper's {paper:g}{unit}"
        return "held"
    if d["n"] > 1 and m < -2 * se:
        return "reversed"
    if abs(m) < se / 2:
        return "no difference (within noise)"
    return "direction held, within noise" if m > 0 else "did not hold (within noise)"


def aggregate(runs, cfg, best):
    table = {}
    for m in cfg["methods"]:
        row = {}
        for task in cfg["tasks"] + ["average"]:
            if task == "average":
                # per seed: the mean over tasks; then mean and std over seeds
                per_seed = []
                for seed in cfg["seeds"]:
                    accs = [r["accuracy"] for r in runs if r["method"] == m and r["seed"] == seed]
                    if len(accs) == len(cfg["tasks"]) and None not in accs:
                        per_seed.append(statistics.mean(accs))
                row[task] = mean_std(per_seed)
            else:
                row[task] = mean_std([r["accuracy"] for r in runs if r["method"] == m and r["task"] == task])
        sel = [r for r in runs if r["method"] == m]
        row["volatility"] = mean_std([r["volatility"] for r in sel])
        row["by_scoring"] = {k: mean_std([r["accuracy_by_scoring"].get(k) for r in sel
                                          if isinstance(r["accuracy_by_scoring"], dict)])[0] for k in SCORINGS}
        row["merge_gap_pp"] = mean_std([abs(r["merge_gap_pp"]) for r in sel if r["merge_gap_pp"] is not None])
        row["max_logit_diff"] = max((r["max_logit_diff"] or 0 for r in sel), default=None)
        row["train_seconds"] = mean_std([r["train_seconds"] for r in sel])
        row["lr"] = best[m]
        row["trainable_parameters"] = sel[0]["trainable_parameters"] if sel else None
        table[m] = row
    return table


def pct(ms):
    m, s = ms if ms else (None, None)
    if m is None:
        return "–"
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def plots(out, work, runs, cfg):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(no plots: python3-matplotlib is not installed)"]
    made = []
    fig, axes = plt.subplots(1, len(cfg["tasks"]), figsize=(5 * len(cfg["tasks"]), 4), squeeze=False)
    for ax, task in zip(axes[0], cfg["tasks"]):
        for m in cfg["methods"]:
            curves = [step_losses(r["dir"]) for r in runs if r["method"] == m and r["task"] == task]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = [c[0] for c in curves[0][:n]]
            ys = [statistics.mean(c[i][1] for c in curves) for i in range(n)]
            w = max(1, n // 30)  # moving average for legibility; volatility uses the raw losses
            ys = [statistics.mean(ys[max(0, i - w + 1):i + 1]) for i in range(n)]
            ax.plot(xs, ys, label=m, linewidth=1.5 if m in ("lora_r", "d2lora_r") else 0.8)
        ax.set_title(f"{task}: training loss (mean over seeds)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=90)
    plt.close(fig)
    made.append("loss_curves.png")

    pre = [r for r in read_jsonl(Path(work) / "pretrain" / "out" / "metrics.jsonl")
           if r.get("event") == "eval" and r.get("perplexity") is not None]
    if pre:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["step"] for r in pre], [r["perplexity"] for r in pre], marker="o")
        ax.set_yscale("log")
        ax.set_title("pretraining: validation perplexity")
        ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(out / "pretrain_perplexity.png", dpi=90)
        plt.close(fig)
        made.append("pretrain_perplexity.png")
    return made


def pretrain_info(work):
    rows = read_jsonl(Path(work) / "pretrain" / "out" / "metrics.jsonl")
    evals = [r for r in rows if r.get("event") == "eval" and r.get("perplexity") is not None]
    s = json.loads((Path(work) / "pretrain" / "out" / "summary.json").read_text())
    info = {"steps": s.get("steps"), "train_seconds": s.get("train_seconds"),
            "parameters": (s.get("parameters") or {}).get("total"),
            "perplexity": [(r["step"], r["perplexity"]) for r in evals]}
    if len(evals) >= 3:
        # Flattening: the relative drop over the last fifth of the evaluations.
        k = max(1, len(evals) // 5)
        a, b = evals[-1 - k]["perplexity"], evals[-1]["perplexity"]
        info["last_fifth_drop"] = (a - b) / a
    return info


def write(out, work, cfg, mode, best, sweep, seconds, jobs):
    out = Path(out)
    runs = collect_runs(work, cfg, best)
    controls = collect_controls(work, cfg, best)
    table = aggregate(runs, cfg, best)
    m = cfg["methods"]
    claims = {}
    to_pp = lambda d: {kk: (v * 100 if kk in ("mean", "se") else v) for kk, v in d.items()} if d else d
    if "d2lora_r" in m and "lora_r" in m:
        claims["vs_lora_pp"] = paired(runs, "d2lora_r", "lora_r", "accuracy", cfg)
        claims["volatility_lora_minus_d2"] = paired(runs, "lora_r", "d2lora_r", "volatility", cfg)
        claims["time_ratio_vs_lora"] = None
        t_d2, t_lora = table["d2lora_r"]["train_seconds"][0], table["lora_r"]["train_seconds"][0]
        if t_d2 and t_lora:
            claims["time_ratio_vs_lora"] = t_d2 / t_lora
    if controls:
        claims["vs_lora_same_rate_pp"] = to_pp(paired(runs + controls, "d2lora_r", CONTROL, "accuracy", cfg))
        claims["volatility_same_rate"] = paired(runs + controls, CONTROL, "d2lora_r", "volatility", cfg)
        claims["control_volatility"] = mean_std([r["volatility"] for r in controls])[0]
    if "d2lora_r" in m and "lora_2r" in m:
        claims["vs_lora_2r_pp"] = paired(runs, "d2lora_r", "lora_2r", "accuracy", cfg)
    if "d2lora_r" in m and "dora_r" in m:
        claims["vs_dora_pp"] = paired(runs, "d2lora_r", "dora_r", "accuracy", cfg)
    for k in ("vs_lora_pp", "vs_lora_2r_pp", "vs_dora_pp"):
        claims[k] = to_pp(claims.get(k))
    if "d2lora_r" in m:
        abl = [a for a in m if a.startswith("d2lora_") and a != "d2lora_r"]
        claims["ablations"] = {a: to_pp(paired(runs, "d2lora_r", a, "accuracy", cfg)) for a in abl}
        claims["ablation_volatility"] = {a: paired(runs, a, "d2lora_r", "volatility", cfg) for a in abl}
    pre = pretrain_info(work)
    results = {"mode": mode, "config": cfg, "learning_rates": best, "sweep_dev_accuracy": sweep,
               "sweep_volatility": collect_sweep(Path(work) / "sweep", cfg, sweep_volatility),
               "pretrain": pre, "table": table, "claims": claims, "runs": runs, "controls": controls,
               "seconds": seconds, "parallel_trainings": jobs, "scoring": SCORING}
    made = plots(out, work, runs, cfg)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "report.md").write_text(markdown(results, made))


def markdown(r, made):
    cfg, t, c = r["config"], r["table"], r["claims"]
    lines = [f"# D2-LoRA fidelity study ({r['mode']})", "",
             f"Base: `{cfg['preset']}` preset ({r['pretrain']['parameters']:,} parameters), pretrained with "
             f"`method: full` for {r['pretrain']['steps']} steps on WordNet glosses. "
             f"Tasks: WordNet {', '.join(cfg['tasks'])}, 4 choices, no word shared between train and validation. "
             f"Adapters at r = 8 on all linear layers, {cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}, "
             f"seeds {cfg['seeds']}. "
             f"Scoring: {r['scoring']}. Whole study: {r['seconds'] / 60:.0f} min, "
             f"{r['parallel_trainings']} one-thread trainings at a time.", ""]
    ppl = r["pretrain"]["perplexity"]
    if ppl:
        drop = r["pretrain"].get("last_fifth_drop")
        lines += [f"Pretraining validation perplexity: {ppl[0][1]:.0f} (step {ppl[0][0]}) → {ppl[-1][1]:.1f} "
                  f"(step {ppl[-1][0]})" + (f"; {100 * drop:.1f}% drop over the last fifth of its evaluations."
                                            if drop is not None else "."), ""]
    head = "| method | lr | " + " | ".join(cfg["tasks"]) + " | average | volatility | merge gap (abs.), pp | train s |"
    lines += ["## Accuracy (%, mean ± std over seeds)", "", head, "|" + "---|" * (len(cfg["tasks"]) + 6)]
    for m, row in t.items():
        vol, gap, sec = row["volatility"], row["merge_gap_pp"], row["train_seconds"]
        lines.append(f"| {m} | {row['lr']:g} | " + " | ".join(pct(row[k]) for k in cfg["tasks"]) +
                     f" | {pct(row['average'])} | " +
                     (f"{vol[0]:.3f} ± {vol[1]:.3f}" if vol[0] is not None else "–") + " | " +
                     (f"{gap[0]:.2f}" if gap[0] is not None else "–") + " | " +
                     (f"{sec[0]:.0f}" if sec[0] is not None else "–") + " |")
    lines += ["", "Volatility: the whole run's standard deviation of the step-to-step changes of the training "
              "loss (`summary.json` `volatility`, as DESIGN and the README define it), mean ± std over runs. "
              "Merge gap: the merged model's accuracy minus the unmerged (training-form) model's on the "
              "same questions, in absolute value. Train s: training seconds per run (one thread; two runs side by side, "
              "each pinned to a core, so not a controlled timing: `bench/train_step_bench` measures the overhead "
              "interleaved).", ""]
    lines += ["## The paper's claims at this scale", "",
              "| claim (paper, 7-8B) | here (paired over task × seed, ± standard error) | verdict |",
              "|---|---|---|"]

    def pp(k):
        d = c.get(k)
        return f"{d['mean']:+.2f} ± {d['se']:.2f} pp (n = {d['n']})" if d else "–"
    lines.append(f"| D2-LoRA − LoRA r: +{PAPER['vs_lora_pp']} pp | {pp('vs_lora_pp')} | "
                 f"{verdict(c.get('vs_lora_pp'), PAPER['vs_lora_pp'])} |")
    if c.get("vs_lora_same_rate_pp"):
        lines.append(f"| (control) D2-LoRA − LoRA r, both at lr {r['learning_rates']['d2lora_r']:g} | "
                     f"{pp('vs_lora_same_rate_pp')} | {verdict(c['vs_lora_same_rate_pp'], PAPER['vs_lora_pp'])} |")
    lines.append(f"| D2-LoRA − LoRA 2r: +{PAPER['vs_lora_2r_pp']} pp | {pp('vs_lora_2r_pp')} | "
                 f"{verdict(c.get('vs_lora_2r_pp'), PAPER['vs_lora_2r_pp'])} |")
    lines.append(f"| D2-LoRA ≥ DoRA | {pp('vs_dora_pp')} | {verdict_dora(c.get('vs_dora_pp'))} |")
    def volatility_row(label, d, lora_volatility):
        """d: LoRA's volatility minus D2-LoRA's, paired; shown relative to LoRA's."""
        if d and lora_volatility:
            rel = d["mean"] / lora_volatility
            lines.append(f"| {label} | {100 * abs(rel):.0f}% {'lower' if rel >= 0 else 'higher'} "
                         f"(± {100 * d['se'] / lora_volatility:.0f}%) | "
                         f"{verdict(d, 100 * PAPER['volatility_drop'], 100 / lora_volatility, '%')} |")
    volatility_row("volatility 36% lower than LoRA", c.get("volatility_lora_minus_d2"),
                   t.get("lora_r", {}).get("volatility", (None,))[0])
    volatility_row(f"(control) volatility, both at lr {r['learning_rates'].get('d2lora_r', 0):g}",
                   c.get("volatility_same_rate"), c.get("control_volatility"))
    gap = t.get("d2lora_r", {}).get("merge_gap_pp")
    if gap and gap[0] is not None:
        lines.append(f"| merge gap ~0.03 pp | mean absolute gap {gap[0]:.3f} pp, largest logit difference "
                     f"{t['d2lora_r']['max_logit_diff']:.1e} | {'held' if gap[0] <= 0.1 else 'did not hold'} |")
    if c.get("time_ratio_vs_lora"):
        lines.append(f"| (overhead) | D2-LoRA / LoRA training time {c['time_ratio_vs_lora']:.2f}× | |")
    ablations = {k: v for k, v in c.get("ablations", {}).items() if v}
    if ablations:
        lines += ["", "Ablations, each against D2-LoRA r (the full method minus the ablation, paired over "
                  "task × seed; positive: the removed part helped):", "",
                  "| ablation | its lr (full: " + f"{r['learning_rates']['d2lora_r']:g}" +
                  ") | accuracy, pp | volatility, ablation − full |", "|---|---|---|---|"]
        for k, d in ablations.items():
            v = c.get("ablation_volatility", {}).get(k)
            lines.append(f"| {k} | {r['learning_rates'][k]:g} | {d['mean']:+.2f} ± {d['se']:.2f} (n = {d['n']}) | " +
                         (f"{v['mean']:+.3f} ± {v['se']:.3f}" if v else "–") + " |")
    lines += ["", "\"held\": the paper's sign and more than two standard errors from zero; "
              "\"within noise\": less than two standard errors.", ""]
    if len(cfg["lrs"]) > 1:
        lines += [f"## Learning-rate sweep (dev accuracy %, seed 1; trained on {cfg['sweep_train']} questions "
                  f"of each task mixed, scored on the {cfg['dev']} dev questions of each)", "",
                  "| method | " + " | ".join(f"{lr:g}" for lr in cfg["lrs"]) + " | chosen |",
                  "|---|" + "---|" * (len(cfg["lrs"]) + 1)]
        for m in cfg["methods"]:
            cells = []
            for lr in cfg["lrs"]:
                acc = r["sweep_dev_accuracy"].get(m, {}).get(f"{lr:g}")
                cells.append(f"{100 * acc:.1f}" if acc is not None else "–")
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {r['learning_rates'][m]:g} |")
        lines += ["", "Training volatility of the same sweep runs: every method at the same rates (the table "
                  "above compares each at its own rate):", "",
                  "| method | " + " | ".join(f"{lr:g}" for lr in cfg["lrs"]) + " |",
                  "|---|" + "---|" * len(cfg["lrs"])]
        for m in cfg["methods"]:
            vols = r["sweep_volatility"].get(m, {})
            lines.append(f"| {m} | " + " | ".join(f"{vols[f'{lr:g}']:.3f}" if f"{lr:g}" in vols else "–"
                                                  for lr in cfg["lrs"]) + " |")
        lines.append("")
    lines += ["## Accuracy by scoring function (%, mean over tasks and seeds)", "",
              "The same final evaluation scored four ways (DESIGN lists the scoring function among the "
              "ablations): `mean` log-likelihood per choice token (the one above), `sum`, per `byte`, and "
              "`letter` (the likelihood of the choice's letter after all choices are listed).", "",
              "| method | " + " | ".join(SCORINGS) + " |", "|---|" + "---|" * len(SCORINGS)]
    for m, row in t.items():
        lines.append(f"| {m} | " + " | ".join(f"{100 * row['by_scoring'][k]:.1f}" if row["by_scoring"].get(k)
                                              is not None else "–" for k in SCORINGS) + " |")
    lines.append("")
    lines += [f"![{p}]({p})" for p in made if p.endswith(".png")] + [p for p in made if not p.endswith(".png")]
    return "\n".join(lines) + "\n"


def verdict_dora(d):
    if d is None:
        return "not measured"
    if d["n"] > 1 and d["mean"] < -2 * d["se"]:
        return "did not hold (DoRA better)"
    return "held (better)" if d["n"] > 1 and d["mean"] > 2 * d["se"] else "held (matches, within noise)"
