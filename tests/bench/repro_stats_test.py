#!/usr/bin/python3
"""bench/repro/stats.py: the distributions against known values, Holm, TOST,
and the two-way variance against a simulation of the design it models."""

import math
import random
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "repro"))
import stats  # noqa: E402


class Distributions(unittest.TestCase):
    def test_t_against_tables(self):
        # Two-sided p of t = 2.0 on 5 df, t = 2.262 on 9 df; quantiles from tables.
        self.assertAlmostEqual(2 * (1 - stats.t_cdf(2.0, 5)), 0.10194, places=4)
        self.assertAlmostEqual(2 * (1 - stats.t_cdf(2.262157, 9)), 0.05, places=5)
        self.assertAlmostEqual(stats.t_ppf(0.975, 10), 2.228139, places=5)
        self.assertAlmostEqual(stats.t_ppf(0.975, float("inf")), 1.959964, places=5)
        self.assertAlmostEqual(stats.t_ppf(0.8, 30), 0.853767, places=5)
        self.assertAlmostEqual(stats.t_cdf(-1.5, 3.5) + stats.t_cdf(1.5, 3.5), 1.0, places=12)

    def test_mde(self):
        # Normal limit: (1.96 + 0.8416) * se.
        self.assertAlmostEqual(stats.mde(1.0, float("inf")), 2.8016, places=3)
        self.assertGreater(stats.mde(1.0, 4), stats.mde(1.0, 40))


class Corrections(unittest.TestCase):
    def test_holm(self):
        self.assertEqual([round(p, 10) for p in stats.holm([0.01, 0.04, 0.03, 0.005])], [0.03, 0.06, 0.06, 0.02])
        self.assertEqual(stats.holm([0.5, 0.9]), [1.0, 1.0])

    def test_tost(self):
        est = {"mean": 0.001, "se": 0.004, "df": 200}
        self.assertLess(stats.equivalence(est, 0.02)["p"], 0.05)   # well inside +-2 pp
        self.assertGreater(stats.equivalence(est, 0.005)["p"], 0.05)  # the interval crosses the margin
        # Non-significance is no equivalence: a wide interval around 0 fails TOST.
        wide = {"mean": 0.0, "se": 0.02, "df": 200}
        self.assertGreater(stats.superiority(wide)["p"], 0.5)
        self.assertGreater(stats.equivalence(wide, 0.02)["p"], 0.05)


class TwoWayVariance(unittest.TestCase):
    def simulate(self, S, Q, sd_run, sd_q, p_flip, rng):
        runs = [rng.gauss(0, sd_run) for _ in range(S)]
        qs = [rng.gauss(0, sd_q) for _ in range(Q)]
        x = []
        for s in range(S):
            row = []
            for q in range(Q):
                # A difference in {-1, 0, 1} whose mean shifts with the run and the question.
                shift = runs[s] + qs[q]
                u = rng.random()
                row.append(1 if u < p_flip / 2 + shift else (-1 if u > 1 - p_flip / 2 + shift else 0))
            x.append(row)
        return x

    def test_standard_error_matches_the_spread_of_estimates(self):
        rng = random.Random(7)
        for S, sd_run in ((3, 0.03), (5, 0.0)):
            means, ses = [], []
            for _ in range(300):
                x = self.simulate(S, 200, sd_run, 0.05, 0.3, rng)
                m, v, df, _ = stats.two_way(x)
                means.append(m)
                ses.append(v)
            spread = math.sqrt(sum((m - sum(means) / len(means)) ** 2 for m in means) / (len(means) - 1))
            mean_se = math.sqrt(sum(ses) / len(ses))
            # The estimated variance agrees with the real spread's within 15% (on
            # average: with 3 runs one estimate is noisy); ignoring the run term
            # (questions only) would be far too small when runs vary.
            self.assertLess(abs(mean_se / spread - 1), 0.15, (S, sd_run, mean_se, spread))
            if sd_run > 0:
                q_only = sum(math.sqrt(stats.two_way([[sum(r[q] for r in x) / S for q in range(200)]])[1])
                             for x in [self.simulate(S, 200, sd_run, 0.05, 0.3, rng) for _ in range(30)]) / 30
                self.assertLess(q_only, 0.75 * spread)

    def test_planning_from_a_pilot_predicts_the_bigger_design(self):
        # planned() on the pilot's own size gives the pilot's own variance; with
        # no run-to-run variation (a pilot of 2 runs cannot estimate it well,
        # which PLAN.md says), the components predict the variance a design of
        # 3 runs x 1,000 questions then shows.
        rng = random.Random(11)
        pilot = self.simulate(2, 400, 0.0, 0.05, 0.3, rng)
        m, v, df, parts = stats.two_way(pilot)
        comp = stats.variance_components(parts, 2, 400)
        self.assertAlmostEqual(stats.planned(comp, 2, 400)[0], v, places=12)
        means = [stats.two_way(self.simulate(3, 1000, 0.0, 0.05, 0.3, rng))[0] for _ in range(200)]
        mu = sum(means) / len(means)
        empirical = sum((x - mu) ** 2 for x in means) / (len(means) - 1)
        predicted = stats.planned(comp, 3, 1000)[0]
        self.assertLess(abs(predicted / empirical - 1), 0.25, (predicted, empirical))

    def test_paired_combines_tasks(self):
        a = {"t1": [[1, 1, 0, 1], [1, 0, 1, 1]], "t2": [[0, 0, 1, 0], [0, 1, 1, 0]]}
        b = {"t1": [[0, 1, 0, 1], [1, 0, 0, 1]], "t2": [[0, 0, 1, 0], [0, 1, 0, 0]]}
        est = stats.paired(stats.differences(a, b))
        self.assertAlmostEqual(est["mean"], 0.5 * (2 / 8) + 0.5 * (1 / 8))
        self.assertEqual(est["tasks"]["t1"]["seeds"], 2)
        with self.assertRaises(ValueError):
            stats.differences({"t": [[1, 0]]}, {"t": [[1, 0], [0, 1]]})

    def test_paired_runs(self):
        est = stats.paired_runs([1.0, 2.0, 3.0], [0.5, 1.0, 1.5], log=True)
        self.assertAlmostEqual(est["mean"], math.log(2))
        self.assertEqual(est["se"], 0.0)


if __name__ == "__main__":
    unittest.main()
