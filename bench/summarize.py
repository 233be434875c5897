#!/usr/bin/env python3
"""The headline figures of a bench/run.sh run, against issue 8's targets.

    bench/summarize.py OUT_DIR NAME...

Reads OUT_DIR/NAME.json for each bench that ran, prints one table, and writes
OUT_DIR/bench.json (every bench's JSON under its name, plus the headline rows).
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
        yield ("training step D2-LoRA / LoRA", tag, r["d2lora_over_lora"], "<= 1.10 at seq 512")
        yield ("training step DoRA / LoRA", tag, r["dora_over_lora"], "")
        if r.get("d2lora_over_lora_peak_mib") is not None:
            yield ("peak memory D2-LoRA / LoRA", tag, r["d2lora_over_lora_peak_mib"], "<= 1.10")
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
    yield ("2 Gloo ranks / 1 rank on all cores", "", j["two_ranks_over_one_rank_all"], "")
    yield ("all-reduce share of a 2-rank step", "", j["variants"]["two_ranks"]["allreduce_share"], "")
    yield ("all cores: passive / spinning thread waits", "", j["passive_over_spin"], "")


def rows_coordinator(j):
    s = j.get("submit", {})
    yield ("coordinator submissions/s", f"{j['config'].get('workers')} workers", s.get("per_second"), "")
    yield ("submit latency p99, ms", "", s.get("latency_ms", {}).get("p99"), "")
    for r in j.get("scheduling", []):
        lat = r.get("to_lease_ms", {})
        yield (f"scheduling latency, world size {r['world_size']}, p50/p99 ms", "",
               f"{lat.get('p50', 0):.0f} / {lat.get('p99', 0):.0f}", "")
    yield ("every acknowledged job accounted for", "", j.get("accounting", {}).get("ok"), "true")


def rows_coordinator_load(j):
    rpcs = j.get("all_rpcs", {}).get("all", {})
    lat = rpcs.get("latency_ms", {})
    yield ("coordinator load: client RPC/s achieved", f"{j['config'].get('target_rps'):.0f}/s offered",
           j.get("client_rps"), "")
    yield ("coordinator load: RPC/s in all (with workers)", "", j.get("total_rps"), "")
    yield ("coordinator load: p50 / p99 ms, every RPC", "", f"{lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f}",
           "p99 < 50")
    yield ("coordinator load: errors", "", j.get("errors"), "0")
    yield ("coordinator load: store consistent", "", j.get("accounting", {}).get("ok"), "true")


def rows_adapter(j):
    for b in j.get("benchmarks", []):
        if "d2lora_over_lora" in b:
            yield ("one layer D2-LoRA / LoRA (adapter_bench)", b.get("name", ""), b["d2lora_over_lora"], "")


ROWS = {"train_step": rows_train_step, "eval": rows_eval, "dp": rows_dp, "coordinator": rows_coordinator,
        "coordinator_load": rows_coordinator_load, "adapter": rows_adapter}


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
                                 "target": target})
        except (KeyError, TypeError) as e:
            headline.append({"bench": name, "figure": f"(could not read {name}.json: {e!r})", "setting": "",
                             "value": None, "target": ""})
    merged["headline"] = headline
    tmp = os.path.join(out, "bench.json.tmp")
    with open(tmp, "w") as f:
        json.dump(merged, f, indent=2)
    os.replace(tmp, os.path.join(out, "bench.json"))
    print()
    print(f"{'figure':<50} {'setting':<22} {'value':>12}  target")
    for h in headline:
        print(f"{h['figure']:<50} {h['setting']:<22} {fmt(h['value']):>12}  {h['target']}")
    print(f"\nwritten: {os.path.join(out, 'bench.json')}")


if __name__ == "__main__":
    main()
