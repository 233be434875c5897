#!/usr/bin/env python3
"""bench/summarize.py: goals judged, missed goals listed, on hand-written bench JSON."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import summarize  # noqa: E402


class JudgeTest(unittest.TestCase):
    def test_operators_and_exact_values(self):
        self.assertTrue(summarize.judge(1.05, "<= 1.10"))
        self.assertFalse(summarize.judge(1.2, "<= 1.10"))
        self.assertTrue(summarize.judge(99.9, "< 100"))
        self.assertFalse(summarize.judge(100, "< 100"))
        self.assertTrue(summarize.judge(0.6, ">= 0.50 (base)"))
        self.assertFalse(summarize.judge(366.3, ">= 1000"))
        self.assertTrue(summarize.judge(True, "true"))
        self.assertFalse(summarize.judge(False, "true"))
        self.assertTrue(summarize.judge(0, "0"))
        self.assertFalse(summarize.judge(3, "0"))

    def test_no_goal_is_not_judged(self):
        self.assertIsNone(summarize.judge(5, ""))
        self.assertIsNone(summarize.judge(1.28, "paper 1.91"))
        self.assertIsNone(summarize.judge(None, "< 100"))


class TableTest(unittest.TestCase):
    def test_missed_goals_are_listed(self):
        coordinator = {
            "config": {"workers": 100, "worker_lease_poll_ms": 10000},
            "submit": {"per_second": 100.0, "latency_ms": {"p99": 90.0}},
            "scheduling": [{"world_size": 1, "to_lease_ms": {"p50": 20.0, "p99": 60.0}},
                           {"world_size": 4, "to_lease_ms": {"p50": 80.0, "p99": 150.0}}],
            "accounting": {"ok": True},
        }
        with tempfile.TemporaryDirectory() as out:
            with open(os.path.join(out, "coordinator.json"), "w") as f:
                json.dump(coordinator, f)
            text = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "summarize.py"), out, "coordinator"],
                                  check=True, capture_output=True, text=True).stdout
            with open(os.path.join(out, "bench.json")) as f:
                merged = json.load(f)
        self.assertIn("goals: 2 of 3 met, missed:", text)
        self.assertIn("submit -> last lease, world size 4, p99 ms (lease long poll 10000 ms): 150.0, goal < 100", text)
        verdicts = {h["figure"]: h["met"] for h in merged["headline"]}
        self.assertTrue(verdicts["submit -> last lease, world size 1, p99 ms"])
        self.assertFalse(verdicts["submit -> last lease, world size 4, p99 ms"])
        self.assertIsNone(verdicts["submit -> last lease, world size 1, p50 ms"])

    def test_memory_plan_rows_judge_each_run(self):
        rows = list(summarize.rows_memory_plan({"results": [
            {"preset": "tiny", "seq": 128, "method": "lora", "measured_over_predicted": 0.9},
            {"preset": "base", "seq": 512, "method": "d2lora", "measured_over_predicted": 1.2}]}))
        self.assertEqual([r[1] for r in rows], ["tiny seq 128 lora", "base seq 512 d2lora"])
        self.assertEqual([summarize.judge(r[2], r[3]) for r in rows], [True, False])

    def test_memory_plan_rows_judge_d2lora_over_lora_where_both_ran(self):
        rows = list(summarize.rows_memory_plan({"results": [
            {"preset": "small", "seq": 128, "method": "d2lora", "measured_over_predicted": 1.0, "measured_bytes": 396},
            {"preset": "small", "seq": 128, "method": "lora", "measured_over_predicted": 1.0, "measured_bytes": 360},
            {"preset": "base", "seq": 512, "method": "d2lora", "measured_over_predicted": 1.0, "measured_bytes": 500},
            {"preset": "base", "seq": 512, "method": "lora", "measured_over_predicted": 1.0, "measured_bytes": 400},
            {"preset": "tiny", "seq": 128, "method": "d2lora", "measured_over_predicted": 1.0, "measured_bytes": 1}]}))
        ratios = [r for r in rows if r[0].startswith("whole-run")]
        self.assertEqual([r[1] for r in ratios], ["small seq 128", "base seq 512"])  # tiny has no LoRA run
        self.assertAlmostEqual(ratios[0][2], 1.1)
        self.assertEqual([summarize.judge(r[2], r[3]) for r in ratios], [True, False])


if __name__ == "__main__":
    unittest.main()
