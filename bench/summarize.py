#!/usr/bin/env python3
"""The headline figures of a bench/run.sh run, each against its goal.

    bench/summarize.py OUT_DIR NAME...

Reads OUT_DIR/NAME.json for each bench that ran, prints one table, and writes
OUT_DIR/bench.json (every bench's JSON under its name, plus the headline rows).
A goal written "< X", "<= X", ">= X", "> X" or an exact value ("true", "0") is
judged: the table says met or MISSED for each, and lists the missed goals at
the end (figures without such a goal are informational).
"""
import json
import os
import sys


def load(out, name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rows_train_step(j):
    for r in j.get("ratios", []):
        tag = f"{r['preset']} seq {r['seq']}"
        yield ("training step D2-LoRA / LoRA", tag, r["d2lora_over_lora"], "<= 1.10")
        yield ("training step DoRA / LoRA", tag, r["dora_over_lora"], "")
        if r.get("d2lora_over_lora_peak_mib") is not None:
            yield ("memory one step adds D2-LoRA / LoRA", tag, r["d2lora_over_lora_peak_mib"], "<= 1.10")
    peak = j.get("gemm_peak", {}).get("peak_flops_per_s")
    if peak:
        yield ("GEMM peak, GFLOP/s", j["setup"]["dtype"], peak / 1e9, "measured")
    for r in j.get("results", []):
        if r.get("method") in ("lora", "d2lora", "full") and not r.get("activation_checkpointing"):
            yield (f"MFU {r['variant']}", f"{r['preset']} seq {r['seq']}", r["mfu"],
                   ">= 0.50 (base)" if r["preset"] == "base" else "")
    for r in j.get("activation_checkpointing", []):
        tag = f"{r.get('preset')} seq {r.get('seq')}"
        for k, v in r.items():
            if k.endswith("ratio") and isinstance(v, (int, float)):
                yield (f"activation checkpointing {k.replace('_', ' ')}", tag, v, "")


def rows_eval(j):
    t = j.get("throughput", {})
    for m, r in t.get("methods", {}).items():
        yield (f"eval {m} merged / base", f"{t.get('preset')} {t.get('batch')}x{t.get('seq')}",
               r["merged_over_base"], ">= 0.97")
        yield (f"eval {m} merged / unmerged", "", r["merged_over_unmerged"], "paper 1.91")
        yield (f"eval {m} max |logit diff| merged vs unmerged", "", r["max_abs_logit_diff_merged_vs_unmerged"], "")
    mc = j.get("mc_scoring")
    if mc:
        yield ("multiple choice: shared prompt / per choice", f"{mc['items']} items", mc["shared_over_per_choice"], "")


def rows_dp(j):
    yield ("2 Gloo ranks / 1 rank on 1 core", "small, batch 16", j["two_ranks_over_one_rank_1core"], "2.0 ideal")
    yield ("2-rank scaling efficiency (the above / 2)", "", j["scaling_efficiency"], ">= 0.85")
    yield ("2 Gloo ranks / 1 rank on all cores", "", j["two_ranks_over_one_rank_all"], "")
    yield ("all-reduce share of a 2-rank step", "", j["variants"]["two_ranks"]["allreduce_share"], "")
    yield ("all cores: passive / spinning thread waits", "", j["passive_over_spin"], "")


def rows_coordinator(j):
    s = j.get("submit", {})
    yield ("coordinator submissions/s", f"{j['config'].get('workers')} workers", s.get("per_second"), "")
    yield ("submit latency p99, ms", "", s.get("latency_ms", {}).get("p99"), "")
    poll = j["config"].get("worker_lease_poll_ms")
    setting = "leases at heartbeats" if poll == 0 else f"lease long poll {poll} ms" if poll else ""
    for r in j.get("scheduling", []):
        lat = r.get("to_lease_ms", {})
        yield (f"submit -> last lease, world size {r['world_size']}, p50 ms", setting, lat.get("p50"), "")
        yield (f"submit -> last lease, world size {r['world_size']}, p99 ms", setting, lat.get("p99"),
               "< 100" if r["world_size"] in (1, 4) else "")
    yield ("every acknowledged job accounted for", "", j.get("accounting", {}).get("ok"), "true")


def rows_coordinator_load(j):
    rpcs = j.get("all_rpcs", {}).get("all", {})
    lat = rpcs.get("latency_ms", {})
    offered = j["config"].get("target_rps")
    yield ("coordinator load: client RPC/s achieved", f"{offered:.0f}/s offered", j.get("client_rps"),
           f">= {offered:.0f}")
    yield ("coordinator load: RPC/s in all (with workers)", "", j.get("total_rps"), "")
    yield ("coordinator load: p50 ms, every RPC", "", lat.get("p50"), "")
    yield ("coordinator load: p99 ms, every RPC", "", lat.get("p99"), "< 50")
    yield ("coordinator load: errors", "", j.get("errors"), "0")
    yield ("coordinator load: store consistent", "", j.get("accounting", {}).get("ok"), "true")


def rows_adapter(j):
    for b in j.get("benchmarks", []):
        if "d2lora_over_lora" in b:
            yield ("one layer D2-LoRA / LoRA (adapter_bench)", b.get("name", ""), b["d2lora_over_lora"], "")


def rows_memory_plan(j):
    measured = {}
    for r in j.get("results", []):
        yield ("memory plan |measured / predicted - 1|", f"{r['preset']} seq {r['seq']} {r['method']}",
               abs(r["measured_over_predicted"] - 1), "<= 0.15")
        if r.get("measured_bytes"):
            measured[(r["preset"], r["seq"], r["method"])] = r["measured_bytes"]
    for (preset, seq, method), d2 in measured.items():
        lora = measured.get((preset, seq, "lora"))
        if method == "d2lora" and lora:
            yield ("whole-run peak memory D2-LoRA / LoRA", f"{preset} seq {seq}", d2 / lora, "<= 1.10")


def rows_allocator(j):
    r = j.get("system_over_tcmalloc") or {}
    if r:
        yield ("glibc malloc / tcmalloc, peak memory", "small seq 512 lora", r["peak_bytes"], "")
        yield ("glibc malloc / tcmalloc, training seconds", "", r["train_seconds"], "")


ROWS = {"memory_plan": rows_memory_plan, "allocator": rows_allocator, "train_step": rows_train_step, "eval": rows_eval, "dp": rows_dp, "coordinator": rows_coordinator,
        "coordinator_load": rows_coordinator_load, "adapter": rows_adapter}


def judge(value, target):
    """True (met), False (missed) or None (no goal this script can check)."""
    t = target.strip()
    if not t or value is None:
        return None
    if isinstance(value, bool) or t in ("true", "false"):
        return str(value).lower() == t if t in ("true", "false") else None
    for op in ("<=", ">=", "<", ">"):
        if t.startswith(op):
            try:
                bound = float(t[len(op):].split()[0])
                v = float(value)
            except (ValueError, IndexError, TypeError):
                return None
            return {"<=": v <= bound, ">=": v >= bound, "<": v < bound, ">": v > bound}[op]
    try:
        return float(value) == float(t)
    except (ValueError, TypeError):
        return None


def fmt(v):
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def main():
    out, names = sys.argv[1], sys.argv[2:]
    merged, headline = {}, []
    for name in names:
        j = load(out, name)
        if j is None:
            continue
        merged[name] = j
        try:
            for figure, setting, value, target in ROWS[name](j):
                headline.append({"bench": name, "figure": figure, "setting": setting, "value": value,
                                 "target": target, "met": judge(value, target)})
        except (KeyError, TypeError) as e:
            headline.append({"bench": name, "figure": f"(could not read {name}.json: {e!r})", "setting": "",
                             "value": None, "target": "", "met": None})
    merged["headline"] = headline
    tmp = os.path.join(out, "bench.json.tmp")
    with open(tmp, "w") as f:
        json.dump(merged, f, indent=2)
    os.replace(tmp, os.path.join(out, "bench.json"))
    print()
    print(f"{'figure':<50} {'setting':<24} {'value':>12}  {'goal':<10} verdict")
    for h in headline:
        verdict = {True: "met", False: "MISSED", None: ""}[h["met"]]
        print(f"{h['figure']:<50} {h['setting']:<24} {fmt(h['value']):>12}  {h['target']:<10} {verdict}")
    missed = [h for h in headline if h["met"] is False]
    judged = sum(1 for h in headline if h["met"] is not None)
    print(f"\ngoals: {judged - len(missed)} of {judged} met" + (", missed:" if missed else ""))
    for h in missed:
        print(f"  {h['figure']} ({h['setting']}): {fmt(h['value'])}, goal {h['target']}")
    print(f"\nwritten: {os.path.join(out, 'bench.json')}")


if __name__ == "__main__":
    main()
