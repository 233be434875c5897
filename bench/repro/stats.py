"""Statistics of the fidelity study (bench/repro/PLAN.md), standard library only.

A comparison of two methods A and B is paired over questions and seeds: on
task t, seed s, question q, x = correct_A - correct_B (in {-1, 0, 1}). Within
a task the design is two-way crossed: every seed's run answers every question.
The estimate is the mean of x; its variance comes from the two-way random
effects model x_sq = mu + run_s + question_q + e_sq, estimated from the ANOVA
mean squares:

    Var(mean) = sigma_run^2 / S + sigma_q^2 / Q + sigma_e^2 / (S Q)
              = (MS_run + MS_q - MS_res) / (S Q)

so both the sampling of questions and the run-to-run (seed) variation count;
sigma_run^2 is taken as 0 when MS_run < MS_res (then the variance is MS_q / (S Q),
the classical paired-over-questions one, never less).
Tasks are combined with equal weights; the degrees of freedom come from
Satterthwaite's formula, and tests use Student's t. With one seed the run term
cannot be estimated and the variance is the questions' alone (said so in the
result).
"""

import math

Z_975 = 1.959963984540054


# --- Student's t (regularised incomplete beta, Lentz's continued fraction) --

def _betacf(a, b, x):
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom (df may be fractional; inf: the normal)."""
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p, df):
    """The p-quantile of Student's t (bisection on t_cdf)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --- the paired estimate -----------------------------------------------------

def two_way(x):
    """x: S lists (one per seed's run) of Q differences on the same questions.
    Returns (mean, variance of the mean, df, parts)."""
    S, Q = len(x), len(x[0])
    if any(len(row) != Q for row in x):
        raise ValueError("every run must answer the same questions")
    if Q < 2:
        raise ValueError("at least two questions are needed")
    grand = sum(map(sum, x)) / (S * Q)
    run_means = [sum(row) / Q for row in x]
    q_means = [sum(x[s][q] for s in range(S)) / S for q in range(Q)]
    ms_q = S * sum((m - grand) ** 2 for m in q_means) / (Q - 1)
    if S == 1:
        var = ms_q / Q
        return grand, var, Q - 1, {"ms_run": None, "ms_question": ms_q, "ms_residual": None}
    ms_run = Q * sum((m - grand) ** 2 for m in run_means) / (S - 1)
    ss_res = 0.0
    for s in range(S):
        rs = run_means[s]
        row = x[s]
        ss_res += sum((row[q] - rs - q_means[q] + grand) ** 2 for q in range(Q))
    ms_res = ss_res / ((S - 1) * (Q - 1))
    # The run term only adds: with a few runs its mean square has a few degrees
    # of freedom and can fall below the residual's by chance, and subtracting
    # would then report less than the questions' own variance.
    if ms_run > ms_res:
        combo = ms_run + ms_q - ms_res
        terms = [(ms_run, S - 1), (ms_q, Q - 1), (ms_res, (S - 1) * (Q - 1))]
    else:
        combo = ms_q
        terms = [(ms_q, Q - 1)]
    # Satterthwaite: df of a linear combination of mean squares.
    denom = sum(ms * ms / d for ms, d in terms)
    df = combo * combo / denom if denom > 0 else float("inf")
    return grand, combo / (S * Q), df, {"ms_run": ms_run, "ms_question": ms_q, "ms_residual": ms_res}


def variance_components(parts, S, Q):
    """sigma^2 of run, question and residual from two_way's mean squares."""
    e = parts["ms_residual"]
    return {"run": max(0.0, (parts["ms_run"] - e) / Q), "question": max(0.0, (parts["ms_question"] - e) / S),
            "residual": e}


def planned(components, S, Q):
    """The variance of the mean and its Satterthwaite df for a design of S runs
    by Q questions with these variance components (planning a study from a pilot)."""
    c = components
    ms_run, ms_q, ms_res = c["residual"] + Q * c["run"], c["residual"] + S * c["question"], c["residual"]
    if c["run"] > 0:  # as two_way: the run term only when it adds
        combo = ms_run + ms_q - ms_res
        terms = [(ms_run, S - 1), (ms_q, Q - 1), (ms_res, (S - 1) * (Q - 1))]
    else:
        combo, terms = ms_q, [(ms_q, Q - 1)]
    denom = sum(ms * ms / d for ms, d in terms if d > 0)
    return combo / (S * Q), (combo * combo / denom if denom > 0 else float("inf"))


def paired(tasks):
    """tasks: {task: S x Q differences}. Equal-weight mean over tasks, its
    standard error and Satterthwaite df."""
    if not tasks:
        raise ValueError("no tasks")
    w = 1.0 / len(tasks)
    mean, var, df_den = 0.0, 0.0, 0.0
    per_task = {}
    for name, x in sorted(tasks.items()):
        m, v, df, parts = two_way(x)
        per_task[name] = {"mean": m, "se": math.sqrt(v), "df": df, "seeds": len(x), "questions": len(x[0])}
        mean += w * m
        var += w * w * v
        df_den += (w * w * v) ** 2 / df if df > 0 else 0.0
    df = var * var / df_den if df_den > 0 else float("inf")
    return {"mean": mean, "se": math.sqrt(var), "df": df, "tasks": per_task}


def differences(correct_a, correct_b):
    """{task: S x Q of 0/1} twice -> {task: S x Q of a - b} (same seeds, same questions)."""
    out = {}
    for task, a in correct_a.items():
        b = correct_b[task]
        if len(a) != len(b):
            raise ValueError(f"{task}: {len(a)} runs against {len(b)}")
        out[task] = [[ai - bi for ai, bi in zip(ra, rb)] for ra, rb in zip(a, b)]
    return out


# --- tests -------------------------------------------------------------------

def superiority(est):
    """Two-sided test of mean != 0: adds t, p and the 95% interval."""
    se, df = est["se"], est["df"]
    t = est["mean"] / se if se > 0 else (0.0 if est["mean"] == 0 else math.copysign(float("inf"), est["mean"]))
    p = 2.0 * (1.0 - t_cdf(abs(t), df)) if math.isfinite(t) else 0.0
    h = t_ppf(0.975, df) * se
    return dict(est, t=t, p=p, ci95=[est["mean"] - h, est["mean"] + h])


def equivalence(est, margin):
    """TOST: equivalent within +-margin when both one-sided tests reject at
    alpha (p = the larger one-sided p); adds the 90% interval."""
    se, df, m = est["se"], est["df"], est["mean"]
    if se == 0:
        p = 0.0 if abs(m) < margin else 1.0
    else:
        p_low = 1.0 - t_cdf((m + margin) / se, df)   # H0: mean <= -margin
        p_high = t_cdf((m - margin) / se, df)        # H0: mean >= +margin
        p = max(p_low, p_high)
    h = t_ppf(0.95, df) * se
    return dict(est, p=p, margin=margin, ci90=[m - h, m + h])


def holm(pvalues):
    """Holm's step-down adjustment; returns adjusted p-values in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mde(se, df, alpha=0.05, power=0.8):
    """The smallest true difference a two-sided test at alpha detects with
    `power`: (t_{1-alpha/2} + t_{power}) * se."""
    return (t_ppf(1 - alpha / 2, df) + t_ppf(power, df)) * se


def paired_runs(values_a, values_b, log=False):
    """Per-run figures (volatility) paired by (task, seed): a paired t-test of
    a - b (or of log(a / b) when log). Returns an estimate for superiority()."""
    d = [(math.log(a / b) if log else a - b) for a, b in zip(values_a, values_b)]
    n = len(d)
    if n < 2:
        raise ValueError("at least two pairs are needed")
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1)
    return {"mean": mean, "se": math.sqrt(var / n), "df": n - 1, "pairs": n}
