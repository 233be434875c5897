"""Reads the fidelity study's finished runs and writes results.json,
predictions.json.gz, report.md and PNG plots (bench/repro/repro.py calls it;
`repro.py --report-only` reruns it). The analysis is the one bench/repro/PLAN.md
fixes: accuracy paired over questions and seeds (stats.py), Holm's correction
within each family of claims, equivalence only by TOST with a stated margin."""

import gzip
import json
import math
import statistics
from pathlib import Path

import stats

SCORINGS = ("mean", "sum", "byte", "letter")  # eval's multiple-choice scorings
PRIMARY = "mean"  # PLAN.md: the one the claims use
SCORING_TEXT = ("mean log-likelihood per token of each choice given the question (eval.scoring: mean); "
                "the highest-scoring choice is the answer")
HEADLINE = ["lora_r", "lora_2r", "dora_r", "d2lora_r"]
LOW_PRECISION_METHODS = ["lora_r", "d2lora_r"]
ALPHA = 0.05
POWER = 0.8
EQUIVALENCE_MARGIN = 0.02  # PLAN.md: "matches" means within +-2 pp (TOST)
MERGE_MARGIN = {"fp32": 0.0025, "bf16": 0.01, "fp16": 0.01}  # PLAN.md: merge gap margins (TOST)
# The paper's figures at 7-8B (DESIGN section 1).
PAPER = {"vs_lora": 0.022, "vs_lora_2r": 0.016, "volatility_ratio": 0.64, "merge_gap_fp32": 0.0003,
         "merge_gap_low": 0.007}


def sweep_name(method, lr, seed):
    return f"{method}-lr{lr:g}-s{seed}"


def run_name(method, task, seed, lr):
    return f"{method}-{task}-s{seed}-lr{lr:g}"


def read_json(path):
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def accuracy(summary, scoring=PRIMARY):
    acc = (summary.get("eval") or {}).get("accuracy")
    return acc.get(scoring) if isinstance(acc, dict) else acc


# --- learning rates ----------------------------------------------------------

def sweep_table(sweep_dir, cfg, value=accuracy):
    """method -> "lr" -> [value per sweep seed] of the finished sweep runs."""
    out = {}
    for m in cfg["methods"]:
        for lr in cfg["lrs"]:
            vals = []
            for seed in cfg["sweep_seeds"]:
                s = read_json(Path(sweep_dir) / sweep_name(m, lr, seed) / "out" / "summary.json")
                v = value(s) if s else None
                if v is not None:
                    vals.append(v)
            out.setdefault(m, {})[f"{lr:g}"] = vals
    return out


def choose_rates(sweep_dir, cfg):
    """PLAN.md's rule: each method's best rate has the highest dev accuracy
    averaged over the sweep seeds; the common rate has the highest dev accuracy
    averaged over every method and seed; ties go to the smaller rate."""
    lrs = cfg["lrs"]
    if len(lrs) == 1:
        return {"best": {m: lrs[0] for m in cfg["methods"]}, "common": lrs[0], "dev": {}}
    dev = sweep_table(sweep_dir, cfg)
    best = {}
    for m in cfg["methods"]:
        scores = []
        for lr in lrs:
            vals = dev[m][f"{lr:g}"]
            if len(vals) != len(cfg["sweep_seeds"]):
                raise RuntimeError(f"the sweep of {m} at lr {lr:g} is unfinished")
            scores.append((statistics.mean(vals), -lr, lr))
        best[m] = max(scores)[2]
    common = max((statistics.mean(v for m in cfg["methods"] for v in dev[m][f"{lr:g}"]), -lr, lr)
                 for lr in lrs)[2]
    return {"best": best, "common": common, "dev": dev}


def rates_of(method, rates):
    """The rates a method runs at: the common one; the headline methods also at their own best."""
    out = [rates["common"]]
    if method in HEADLINE and rates["best"][method] != rates["common"]:
        out.append(rates["best"][method])
    return out


# --- collecting ----------------------------------------------------------------

def collect(work, cfg, rates):
    """Every finished run's figures and per-question answers."""
    work = Path(work)
    labels, base = {}, {}
    for task in cfg["tasks"]:
        for s in SCORINGS:
            r = read_json(work / "base" / f"{task}-{s}.json")
            if r:
                labels[task] = r["labels"]
                base.setdefault(task, {})[s] = r["predictions"]
    runs = {}
    for m in cfg["methods"]:
        for task in cfg["tasks"]:
            for seed in cfg["seeds"]:
                for lr in rates_of(m, rates):
                    d = work / "runs" / run_name(m, task, seed, lr)
                    s = read_json(d / "out" / "summary.json")
                    p = read_json(d / "out" / "predictions.json")
                    if not s or not p:
                        continue
                    if task in labels and p["labels"] != labels[task]:
                        raise RuntimeError(f"{d}: its questions are not the base model's")
                    labels.setdefault(task, p["labels"])
                    mc = s.get("merge_check") or {}
                    low = {}
                    for dt in cfg["low_precision"]:
                        r = read_json(d / f"merged-{dt}.json")
                        if r:
                            low[dt] = {"predictions": r["predictions"], "max_logit_diff":
                                       r["merge_gate"].get("max_logit_diff"), "passed": r["merge_gate"].get("passed")}
                    runs[(m, task, seed, lr)] = {
                        "training_form": p["training_form"],
                        "merged": (p.get("merged") or {}).get(PRIMARY),
                        "low_precision": low,
                        "accuracy": {k: accuracy(s, k) for k in SCORINGS},
                        "max_logit_diff": mc.get("max_logit_diff"),
                        "volatility": (s.get("volatility") or {}).get("volatility"),
                        "train_seconds": s.get("train_seconds"),
                        "trainable_parameters": (s.get("parameters") or {}).get("trainable"),
                        "dir": str(d),
                    }
    return labels, base, runs


def correct(pred, labels):
    return [1 if p == l else 0 for p, l in zip(pred, labels)]


# --- comparisons -----------------------------------------------------------------

def matrices(cfg, labels, pick):
    """{task: S x Q correctness} from pick(task, seed) -> predictions (None: missing)."""
    out = {}
    for task in cfg["tasks"]:
        rows = []
        for seed in cfg["seeds"]:
            p = pick(task, seed)
            if p is None:
                return None
            rows.append(correct(p, labels[task]))
        out[task] = rows
    return out


def run_pick(runs, method, lr, form="training_form", scoring=PRIMARY):
    def pick(task, seed):
        r = runs.get((method, task, seed, lr))
        if r is None:
            return None
        if form == "training_form":
            return r["training_form"].get(scoring)
        if form == "merged":
            return r["merged"]
        lp = r["low_precision"].get(form)
        return lp["predictions"] if lp else None
    return pick


def compare(cfg, labels, pick_a, pick_b):
    a, b = matrices(cfg, labels, pick_a), matrices(cfg, labels, pick_b)
    if a is None or b is None:
        return None
    est = stats.paired(stats.differences(a, b))
    est["mde"] = stats.mde(est["se"], est["df"], ALPHA, POWER)
    return est


def superiority_verdict(c, paper):
    """Held: Holm-adjusted p < alpha with the paper's sign. Failed: the opposite
    sign significantly, or a 95% interval that excludes the paper's effect.
    Otherwise not decided at this scale."""
    hi = c["ci95"][1]
    if c["p_holm"] < ALPHA and (c["mean"] > 0) == (paper > 0):
        return "held" + (f", smaller than the paper's {fmt_pp(paper)}" if hi < paper else "")
    if c["p_holm"] < ALPHA:
        return "failed: the opposite sign"
    if hi < paper:
        return f"failed: the paper's {fmt_pp(paper)} is outside the 95% interval"
    return "not decided at this scale"


def equivalence_verdict(c):
    if c["p_holm"] < ALPHA:
        return f"held: equivalent within ±{fmt_pp(c['margin'], sign=False)}"
    if c.get("p_superiority", 1) < ALPHA:
        return "failed: they differ"
    return "not decided at this scale"


def fmt_pp(x, sign=True):
    return f"{100 * x:+.2f} pp" if sign else f"{100 * x:.2f} pp"


def claims(cfg, labels, runs, rates):
    """The two families of PLAN.md, each Holm-corrected."""
    common = rates["common"]
    best = rates["best"]
    fam = []
    missing = []  # claims a failed run left without every (task, seed): PLAN.md section 6

    def sup(key, text, a, la, b, lb, paper):
        c = compare(cfg, labels, run_pick(runs, a, la), run_pick(runs, b, lb))
        if c:
            fam.append(dict(stats.superiority(c), key=key, claim=text, kind="superiority", paper=paper,
                            a=a, b=b, lr_a=la, lr_b=lb))
        else:
            missing.append(text)

    def eqv(key, text, pick_a, pick_b, margin, paper=None):
        c = compare(cfg, labels, pick_a, pick_b)
        if not c:
            missing.append(text)
        else:
            two_sided = stats.superiority(c)
            c = stats.equivalence(c, margin)
            c["p_superiority"], c["ci95"] = two_sided["p"], two_sided["ci95"]
            fam.append(dict(c, key=key, claim=text, kind="equivalence", paper=paper))

    m = cfg["methods"]
    if {"d2lora_r", "lora_r"} <= set(m):
        sup("vs_lora", "D2-LoRA r − LoRA r (common rate)", "d2lora_r", common, "lora_r", common, PAPER["vs_lora"])
    if {"d2lora_r", "lora_2r"} <= set(m):
        sup("vs_lora_2r", "D2-LoRA r − LoRA 2r (common rate)", "d2lora_r", common, "lora_2r", common,
            PAPER["vs_lora_2r"])
    if {"d2lora_r", "dora_r"} <= set(m):
        eqv("vs_dora", "D2-LoRA r matches DoRA r (common rate)", run_pick(runs, "d2lora_r", common),
            run_pick(runs, "dora_r", common), EQUIVALENCE_MARGIN)
    if {"d2lora_r", "lora_r"} <= set(m):
        sup("vs_lora_best", "D2-LoRA r − LoRA r (each at its best rate)", "d2lora_r", best["d2lora_r"], "lora_r",
            best["lora_r"], PAPER["vs_lora"])
    if {"d2lora_r", "lora_2r"} <= set(m):
        sup("vs_lora_2r_best", "D2-LoRA r − LoRA 2r (each at its best rate)", "d2lora_r", best["d2lora_r"],
            "lora_2r", best["lora_2r"], PAPER["vs_lora_2r"])
    if {"d2lora_r", "dora_r"} <= set(m):
        eqv("vs_dora_best", "D2-LoRA r matches DoRA r (each at its best rate)", run_pick(runs, "d2lora_r",
            best["d2lora_r"]), run_pick(runs, "dora_r", best["dora_r"]), EQUIVALENCE_MARGIN)
    vol = volatility_claim(cfg, runs, common)
    if vol:
        fam.append(vol)
    for dt in ["fp32"] + list(cfg["low_precision"]):
        form = "merged" if dt == "fp32" else dt
        if "d2lora_r" in m:
            eqv(f"merge_{dt}", f"D2-LoRA r merged in {dt} answers as the training form", run_pick(
                runs, "d2lora_r", common, form), run_pick(runs, "d2lora_r", common), MERGE_MARGIN[dt],
                PAPER["merge_gap_fp32" if dt == "fp32" else "merge_gap_low"])
    adjust(fam)

    abl = []
    if "d2lora_r" in m:
        for a in m:
            if a.startswith("d2lora_") and a != "d2lora_r":
                c = compare(cfg, labels, run_pick(runs, "d2lora_r", common), run_pick(runs, a, common))
                if c:
                    abl.append(dict(stats.superiority(c), key=a, claim=f"D2-LoRA r − {a}", kind="ablation"))
                else:
                    missing.append(f"D2-LoRA r − {a}")
    adjust(abl)
    return fam, abl, missing


def volatility_claim(cfg, runs, lr):
    a, b = [], []
    for task in cfg["tasks"]:
        for seed in cfg["seeds"]:
            ra, rb = runs.get(("d2lora_r", task, seed, lr)), runs.get(("lora_r", task, seed, lr))
            if ra and rb and ra["volatility"] and rb["volatility"]:
                a.append(ra["volatility"])
                b.append(rb["volatility"])
    if len(a) < 2:
        return None
    c = stats.superiority(stats.paired_runs(a, b, log=True))
    c["mde"] = stats.mde(c["se"], c["df"], ALPHA, POWER)
    return dict(c, key="volatility", claim="D2-LoRA r / LoRA r training volatility (common rate)",
                kind="ratio", paper=PAPER["volatility_ratio"])


def adjust(family):
    if not family:
        return
    for c, p in zip(family, stats.holm([c["p"] for c in family])):
        c["p_holm"] = p
        if c["kind"] == "superiority":
            c["verdict"] = superiority_verdict(c, c["paper"])
        elif c["kind"] == "equivalence":
            c["verdict"] = equivalence_verdict(c)
        elif c["kind"] == "ratio":
            ratio = math.exp(c["mean"])
            paper_log = math.log(c["paper"])
            lo, hi = c["ci95"]
            if c["p_holm"] < ALPHA and c["mean"] < 0:
                c["verdict"] = "held" + (f", smaller than the paper's {100 * (1 - c['paper']):.0f}% drop"
                                         if lo > paper_log else "")
            elif c["p_holm"] < ALPHA:
                c["verdict"] = "failed: higher than LoRA's"
            elif lo > paper_log:
                c["verdict"] = f"failed: the paper's {100 * (1 - c['paper']):.0f}% drop is outside the 95% interval"
            else:
                c["verdict"] = "not decided at this scale"
            c["ratio"] = ratio
        else:  # ablation: two-sided, the full method better or worse
            if c["p_holm"] < ALPHA:
                c["verdict"] = "the full method is better" if c["mean"] > 0 else "the ablation is better"
            else:
                c["verdict"] = f"no difference detected (MDE {100 * c['mde']:.1f} pp)"


# --- tables ------------------------------------------------------------------------

def row_table(cfg, labels, base, runs, lr_of, methods=None):
    """method -> task -> {scoring: [accuracy per seed]} at the rate lr_of(method)."""
    table = {"base": {t: {s: [statistics.mean(correct(base[t][s], labels[t]))] for s in SCORINGS if s in base.get(t, {})}
                      for t in cfg["tasks"] if t in base}}
    for m in methods or cfg["methods"]:
        row = {}
        for t in cfg["tasks"]:
            cell = {s: [] for s in SCORINGS}
            for seed in cfg["seeds"]:
                r = runs.get((m, t, seed, lr_of(m)))
                if r:
                    for s in SCORINGS:
                        if r["accuracy"].get(s) is not None:
                            cell[s].append(r["accuracy"][s])
            row[t] = cell
        table[m] = row
    return table


def merge_table(cfg, labels, runs, rates):
    """Merged minus training form, per precision: the gap (pp, paired) and the
    largest logit difference over every run that has the figure."""
    out = {}
    common = rates["common"]
    for dt in ["fp32"] + list(cfg["low_precision"]):
        form = "merged" if dt == "fp32" else dt
        row = {}
        for m in cfg["methods"]:
            c = compare(cfg, labels, run_pick(runs, m, common, form), run_pick(runs, m, common))
            c = stats.superiority(c) if c else None
            if dt == "fp32":
                diffs = [r["max_logit_diff"] for k, r in runs.items() if k[0] == m and r["max_logit_diff"] is not None]
            else:
                diffs = [r["low_precision"][dt]["max_logit_diff"] for k, r in runs.items()
                         if k[0] == m and dt in r["low_precision"]]
            if c or diffs:
                row[m] = {"gap": c, "max_logit_diff": max(diffs) if diffs else None, "runs": len(diffs)}
        out[dt] = row
    all_fp32 = [r["max_logit_diff"] for r in runs.values() if r["max_logit_diff"] is not None]
    out["fp32_all_runs_max_logit_diff"] = max(all_fp32) if all_fp32 else None
    return out


def pretrain_info(work):
    rows = read_jsonl(Path(work) / "pretrain" / "out" / "metrics.jsonl")
    evals = [r for r in rows if r.get("event") == "eval" and r.get("perplexity") is not None]
    s = read_json(Path(work) / "pretrain" / "out" / "summary.json") or {}
    return {"steps": s.get("steps"), "train_seconds": s.get("train_seconds"),
            "parameters": (s.get("parameters") or {}).get("total"),
            "perplexity": [(r["step"], r["perplexity"]) for r in evals]}


def archive(out, labels, base, runs):
    """predictions.json.gz: every answer the analysis used (labels, base model,
    each run's training form under every scoring, merged, low precision)."""
    doc = {"labels": labels, "base": base, "runs": {}}
    for (m, t, seed, lr), r in sorted(runs.items(), key=lambda kv: str(kv[0])):
        doc["runs"][run_name(m, t, seed, lr)] = {
            "training_form": r["training_form"], "merged": r["merged"],
            **{f"merged_{dt}": v["predictions"] for dt, v in r["low_precision"].items()}}
    # mtime 0: the same answers give the same bytes (a rewritten report changes no file it need not).
    with open(out / "predictions.json.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps(doc, separators=(",", ":")).encode())


# --- writing ------------------------------------------------------------------------

def write(out, work, cfg, mode, rates, seconds, jobs):
    out = Path(out)
    labels, base, runs = collect(work, cfg, rates)
    family, ablations, missing = claims(cfg, labels, runs, rates)
    common = row_table(cfg, labels, base, runs, lambda m: rates["common"])
    # Only the headline methods run at their own best rate (PLAN.md §4).
    best_rows = row_table(cfg, labels, base, runs, lambda m: rates["best"][m],
                          [m for m in HEADLINE if m in cfg["methods"]])
    results = {
        "mode": mode, "config": cfg, "seconds": seconds, "parallel_trainings": jobs, "scoring": SCORING_TEXT,
        "alpha": ALPHA, "power": POWER, "learning_rates": {"common": rates["common"], "best": rates["best"]},
        "sweep_dev_accuracy": rates.get("dev", {}),
        "sweep_volatility": sweep_table(Path(work) / "sweep", cfg,
                                        lambda s: (s.get("volatility") or {}).get("volatility"))
        if len(cfg["lrs"]) > 1 else {},
        "pretrain": pretrain_info(work),
        "questions": {t: len(v) for t, v in labels.items()},
        "rows_common_rate": common, "rows_best_rate": best_rows,
        "claims": family, "ablations": ablations, "claims_not_measured": missing,
        "vs_base": vs_base(cfg, labels, base, runs, rates["common"]),
        "merge": merge_table(cfg, labels, runs, rates),
        "runs": {run_name(*k): {kk: v for kk, v in r.items() if kk not in ("training_form", "merged", "low_precision")}
                 for k, r in runs.items()},
    }
    results["failed_runs"] = {p.parent.name: p.read_text().strip() for p in sorted(Path(work).glob("*/*/FAILED"))}
    archive(out, labels, base, runs)
    made = plots(out, work, cfg, runs, rates, family, ablations)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "report.md").write_text(markdown(results, made))


def vs_base(cfg, labels, base, runs, lr):
    """Each method minus the base model (zero-shot), paired: did fine-tuning learn?"""
    out = {}
    for m in cfg["methods"]:
        def base_pick(task, seed):
            return base.get(task, {}).get(PRIMARY)
        c = compare(cfg, labels, run_pick(runs, m, lr), base_pick)
        if c:
            out[m] = stats.superiority(c)
    return out


def pct(vals, spread=True):
    """Mean of `vals` in %, with their standard deviation when there are several and `spread`."""
    if not vals:
        return "–"
    m = statistics.mean(vals)
    return f"{100 * m:.1f}" + (f" ± {100 * statistics.stdev(vals):.1f}" if spread and len(vals) > 1 else "")


def task_mean(row, tasks, scoring):
    """Mean over tasks of each seed's accuracy: [per seed]."""
    per = [row.get(t, {}).get(scoring) or [] for t in tasks]
    n = min((len(p) for p in per), default=0)
    return [statistics.mean(p[i] for p in per) for i in range(n)]


def ci_text(c, scale=100, unit=" pp"):
    lo, hi = c["ci95"]
    return f"{scale * c['mean']:+.2f}{unit} [{scale * lo:+.2f}, {scale * hi:+.2f}]"


def p_text(p):
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(r, made):
    cfg = r["config"]
    tasks = cfg["tasks"]
    lr = r["learning_rates"]
    pre = r["pretrain"]
    L = [f"# D2-LoRA fidelity study, second edition ({r['mode']})", ""]
    if r["mode"] != "full":
        L += [f"**A `--{r['mode']}` run: the pipeline at a smaller size, not the study PLAN.md fixes; its figures "
              "decide nothing.**", ""]
    L += [
         f"Analysis fixed in [`PLAN.md`](../../PLAN.md) before the full run. Base: `{cfg['preset']}` preset "
         f"({pre['parameters']:,} parameters), pretrained with `method: full` for {pre['steps']} steps on WordNet "
         f"glosses. Tasks: WordNet {', '.join(tasks)} "
         f"({', '.join(format(r['questions'].get(t, 0), ',') for t in tasks)} validation questions), 4 choices, no word "
         f"shared between training and validation. Adapters at r = {cfg['rank']} on all linear layers, alpha = "
         f"{cfg['alpha_per_r']}r, {cfg['epochs']} epochs, seeds {cfg['seeds']}. Scoring: {r['scoring']}. Whole "
         f"study: {r['seconds'] / 60:.0f} min, {r['parallel_trainings']} one-thread processes at a time.", ""]
    if pre["perplexity"]:
        p = pre["perplexity"]
        L += [f"Pretraining validation perplexity: {p[0][1]:.1f} (step {p[0][0]}) → {p[-1][1]:.1f} (step {p[-1][0]}).",
              ""]
    L += [f"Learning rates: the common rate is {lr['common']:g}; each method's best: " +
          ", ".join(f"{m} {v:g}" for m, v in lr["best"].items()) + ".", ""]

    L += ["## The paper's claims", "",
          "Differences in accuracy points, paired over questions and seeds (two-way random effects: "
          "question and run; tasks weighted equally), 95% interval, p two-sided (equivalence: TOST), "
          f"Holm-adjusted across this table; MDE: the smallest true difference this design detects with "
          f"{100 * r['power']:.0f}% power at α = {r['alpha']}.", "",
          "| claim | paper | here [95% CI] | p | p (Holm) | MDE | verdict |", "|---|---|---|---|---|---|---|"]
    for c in r["claims"]:
        if c["kind"] == "ratio":
            lo, hi = c["ci95"]
            here = f"× {math.exp(c['mean']):.3f} [{math.exp(lo):.3f}, {math.exp(hi):.3f}] (n = {c['pairs']} runs)"
            paper = f"× {c['paper']:.2f}"
            mde = f"× {math.exp(-c['mde']):.3f}"
        else:
            here = ci_text(c)
            paper = (fmt_pp(c["paper"]) if c.get("paper") is not None else "–")
            if c["kind"] == "equivalence":
                paper = ("matches" if c.get("paper") is None else f"gap {fmt_pp(c['paper'], sign=False)}")
                here += f"; margin ±{100 * c['margin']:.2f}"
            mde = f"{100 * c['mde']:.2f} pp"
        L.append(f"| {c['claim']} | {paper} | {here} | {p_text(c['p'])} | {p_text(c['p_holm'])} | {mde} | "
                 f"{c['verdict']} |")
    L += ["", "Verdicts (PLAN.md): *held*: Holm-adjusted p < 0.05 in the paper's direction (for \"matches\" and "
          "the merge gaps: the TOST at the stated margin); *failed*: significant in the other direction, or the "
          "paper's effect outside the 95% interval; *not decided*: neither.", ""]

    L += ["## Ablations (each against D2-LoRA r at the common rate; Holm across this table)", "",
          "| ablation | D2-LoRA r − ablation [95% CI] | p | p (Holm) | MDE | verdict |", "|---|---|---|---|---|---|"]
    for c in r["ablations"]:
        L.append(f"| {c['key']} | {ci_text(c)} | {p_text(c['p'])} | {p_text(c['p_holm'])} | "
                 f"{100 * c['mde']:.2f} pp | {c['verdict']} |")
    L.append("")

    for title, key in (("the common rate", "rows_common_rate"), ("each method's best rate", "rows_best_rate")):
        rows = r[key]
        L += [f"## Accuracy at {title} (%, `{PRIMARY}` scoring, mean ± std over seeds)", "",
              f"Base: the pretrained model, zero-shot, on the same questions.", "",
              "| method | " + " | ".join(tasks) + " | average | vs base (pp, paired) |", "|---|" + "---|" * (len(tasks) + 2)]
        for m, row in rows.items():
            vb = r["vs_base"].get(m) if key == "rows_common_rate" else None
            L.append(f"| {m} | " + " | ".join(pct(row.get(t, {}).get(PRIMARY)) for t in tasks) +
                     f" | {pct(task_mean(row, tasks, PRIMARY))} | " + (ci_text(vb) if vb else "–") + " |")
        L.append("")

    rows = r["rows_common_rate"]
    L += ["## Accuracy by scoring function (%, common rate, mean over tasks and seeds)", "",
          "| method | " + " | ".join(SCORINGS) + " |", "|---|" + "---|" * len(SCORINGS)]
    for m, row in rows.items():
        L.append(f"| {m} | " + " | ".join(pct(task_mean(row, tasks, s), spread=False) for s in SCORINGS) + " |")
    L.append("")

    mg = r["merge"]
    L += ["## Merge gap (merged minus training form, paired; common rate)", "",
          "Low precision: the merged weights rounded to bf16 or fp16 (`d2lora merge --dtype`), evaluated in fp32 "
          "arithmetic on this CPU. Largest logit difference: the merge gate's, over every run with the figure.", "",
          "| precision | method | gap [95% CI] | largest logit difference | runs |", "|---|---|---|---|---|"]
    for dt in ["fp32"] + list(cfg["low_precision"]):
        for m, v in mg.get(dt, {}).items():
            gap = ci_text(v["gap"]) if v.get("gap") else "–"
            mld = f"{v['max_logit_diff']:.2e}" if v.get("max_logit_diff") is not None else "–"
            L.append(f"| {dt} | {m} | {gap} | {mld} | {v['runs']} |")
    if mg.get("fp32_all_runs_max_logit_diff") is not None:
        L += ["", f"fp32, every run of every method: largest logit difference {mg['fp32_all_runs_max_logit_diff']:.2e}."]
    L.append("")

    if r["sweep_dev_accuracy"]:
        L += [f"## Learning-rate sweep (dev accuracy %, mean over seeds {cfg['sweep_seeds']}; trained on "
              f"{cfg['sweep_train']} questions of each task mixed, scored on {cfg['dev']} dev questions of each)", "",
              "| method | " + " | ".join(f"{x:g}" for x in cfg["lrs"]) + " | best |", "|---|" + "---|" * (len(cfg["lrs"]) + 1)]
        for m, by in r["sweep_dev_accuracy"].items():
            L.append(f"| {m} | " + " | ".join(pct(by.get(f"{x:g}"), spread=False) for x in cfg["lrs"]) +
                     f" | {lr['best'][m]:g} |")
        means = [statistics.mean(v for by in r["sweep_dev_accuracy"].values() for v in by.get(f"{x:g}", []))
                 for x in cfg["lrs"]]
        L.append("| (all methods) | " + " | ".join(f"{100 * v:.1f}" for v in means) + f" | {lr['common']:g} (common) |")
        L += ["", "Training volatility of the sweep runs (mean over seeds), every method at every rate:", "",
              "| method | " + " | ".join(f"{x:g}" for x in cfg["lrs"]) + " |", "|---|" + "---|" * len(cfg["lrs"])]
        for m, by in r["sweep_volatility"].items():
            L.append(f"| {m} | " + " | ".join(f"{statistics.mean(by[f'{x:g}']):.3f}" if by.get(f"{x:g}") else "–"
                                              for x in cfg["lrs"]) + " |")
        L.append("")

    vols = {}
    secs = {}
    for name, run in r["runs"].items():
        m = name.split("-")[0]
        if name.endswith(f"lr{lr['common']:g}"):
            if run.get("volatility") is not None:
                vols.setdefault(m, []).append(run["volatility"])
            if run.get("train_seconds"):
                secs.setdefault(m, []).append(run["train_seconds"])
    L += ["## Volatility and time (common rate)", "",
          "Volatility: the standard deviation of the step-to-step changes of the training loss over the whole run "
          "(`summary.json` `volatility`). Train s: seconds per run, one thread, two runs side by side (not a "
          "controlled timing: `bench/train_step_bench` measures the overhead).", "",
          "| method | volatility | train s | trainable parameters |", "|---|---|---|---|"]
    for m in cfg["methods"]:
        params = next((run.get("trainable_parameters") for n, run in r["runs"].items() if n.split("-")[0] == m), None)
        v = f"{statistics.mean(vols[m]):.3f}" if vols.get(m) else "–"
        t = f"{statistics.mean(secs[m]):.0f}" if secs.get(m) else "–"
        L.append(f"| {m} | {v} | {t} | " + (f"{params:,}" if params else "–") + " |")
    L.append("")
    if r.get("claims_not_measured"):
        L += ["## Claims not measured (a run they need failed twice; PLAN.md §6)", ""] + \
             [f"- {c}" for c in r["claims_not_measured"]] + [""]
    if r.get("failed_runs"):
        L += ["## Runs left out (failed twice; PLAN.md §6)", ""] + [f"- `{k}`: {v.splitlines()[-1] if v else ''}"
                                                                  for k, v in r["failed_runs"].items()] + [""]
    L += [f"![{p}]({p})" for p in made if p.endswith(".png")] + [p for p in made if not p.endswith(".png")]
    return "\n".join(L) + "\n"


# --- plots ----------------------------------------------------------------------------

def step_losses(run_dir):
    rows = read_jsonl(Path(run_dir) / "out" / "metrics.jsonl")
    seen = {}
    for row in rows:
        if row.get("event") == "step" and row.get("loss") is not None:
            seen[row["step"]] = row["loss"]
    return sorted(seen.items())


def plots(out, work, cfg, runs, rates, family, ablations):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(no plots: python3-matplotlib is not installed)"]
    made = []
    fig, axes = plt.subplots(1, len(cfg["tasks"]), figsize=(5 * len(cfg["tasks"]), 4), squeeze=False)
    for ax, task in zip(axes[0], cfg["tasks"]):
        for m in [x for x in HEADLINE if x in cfg["methods"]]:
            curves = [step_losses(r["dir"]) for k, r in runs.items()
                      if k[0] == m and k[1] == task and k[3] == rates["common"]]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = [c[0] for c in curves[0][:n]]
            ys = [statistics.mean(c[i][1] for c in curves) for i in range(n)]
            w = max(1, n // 30)
            ys = [statistics.mean(ys[max(0, i - w + 1):i + 1]) for i in range(n)]
            ax.plot(xs, ys, label=m, linewidth=1.2)
        ax.set_title(f"{task}: training loss (mean over seeds)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
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

    rows = [c for c in family if c["kind"] in ("superiority", "equivalence") and not c["key"].startswith("merge")]
    rows += ablations
    if rows:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
        for i, c in enumerate(rows):
            lo, hi = c["ci95"]
            ax.plot([100 * lo, 100 * hi], [i, i], color="C0")
            ax.plot([100 * c["mean"]], [i], "o", color="C0")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([c["claim"] for c in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("accuracy difference, pp (95% interval)")
        fig.tight_layout()
        fig.savefig(out / "claims.png", dpi=90)
        plt.close(fig)
        made.append("claims.png")
    return made
