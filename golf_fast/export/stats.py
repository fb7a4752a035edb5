"""Multi-seed statistics: mean, std and the one-sided Welch t-test of the challenge's rule.

A new record must beat the current one by at least ``delta`` = 0.005 nats (val_loss, nats per
token) at p < 0.01. With the new runs' scores ``x`` (n values) and the baseline's ``y`` (m):

    H0: mean(y) − mean(x) ≤ delta        H1: mean(y) − mean(x) > delta
    t  = (ȳ − x̄ − delta) / sqrt(s_x²/n + s_y²/m)
    df = (s_x²/n + s_y²/m)² / ((s_x²/n)²/(n−1) + (s_y²/m)²/(m−1))      (Welch–Satterthwaite)
    p  = 1 − F_t(t; df)

``s`` is the sample standard deviation (n − 1). A baseline of one number (m = 1) is treated as
a known constant (one-sample t-test, df = n − 1). The Student t CDF is computed from the
regularized incomplete beta function ``I_x(a, b)`` by its continued fraction (Lentz), using
``math.lgamma`` only: ``F_t(t; ν) = 1 − ½·I_{ν/(ν+t²)}(ν/2, ½)`` for t ≥ 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

CHALLENGE_DELTA_NATS = 0.005
CHALLENGE_ALPHA = 0.01


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
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
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` for a, b > 0 and 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a, b: expected > 0, got {a}, {b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: expected in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student t cumulative distribution function ``P(T ≤ t)`` with ``df`` > 0 degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df: expected > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for one value)."""
    xs = [float(v) for v in xs]
    if not xs:
        raise ValueError("xs: expected at least one value")
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in xs) / (len(xs) - 1))


@dataclass(frozen=True)
class WelchResult:
    """The one-sided test of ``mean(baseline) − mean(new) > delta``."""

    new_mean: float
    new_std: float
    n: int
    base_mean: float
    base_std: float
    m: int
    delta: float
    improvement: float
    t: float
    df: float
    p: float

    def passes(self, alpha: float = CHALLENGE_ALPHA) -> bool:
        return self.p < alpha


def welch_one_sided(new: Sequence[float], baseline: Sequence[float], delta: float = CHALLENGE_DELTA_NATS) -> WelchResult:
    """One-sided Welch t-test that ``new`` (lower is better) beats ``baseline`` by more than ``delta``."""
    new, baseline = [float(v) for v in new], [float(v) for v in baseline]
    if len(new) < 2:
        raise ValueError(f"new: expected at least 2 values (seeds), got {len(new)}")
    if not baseline:
        raise ValueError("baseline: expected at least one value")
    if not all(math.isfinite(v) for v in new + baseline):
        raise ValueError("new, baseline: expected finite values")
    xm, xs = mean_std(new)
    ym, ys = mean_std(baseline)
    n, m = len(new), len(baseline)
    vx = xs * xs / n
    vy = ys * ys / m if m > 1 else 0.0
    diff = ym - xm
    se = math.sqrt(vx + vy)
    if se == 0.0:
        t = math.inf if diff > delta else -math.inf
        df = float(n - 1 + max(m - 1, 0))
    else:
        t = (diff - delta) / se
        df = (vx + vy) ** 2 / (vx * vx / (n - 1) + (vy * vy / (m - 1) if m > 1 else 0.0))
    p = 1.0 - t_cdf(t, df)
    return WelchResult(xm, xs, n, ym, ys, m, delta, diff, t, df, p)


_SCORE = re.compile(r"val_loss[:=\s]+\s*([0-9.]+)[,\s]+val_bpb[:=\s]+\s*([0-9.]+)")


def scores_from_logs(folder: Path) -> list[tuple[str, float, float]]:
    """(file, val_loss, val_bpb) of each log in ``folder``: the last ``val_loss … val_bpb …`` line
    of each ``*.log``/``*.txt`` file (the records print their final score last)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: no directory at {str(folder)!r}")
    out = []
    for f in sorted(folder.iterdir()):
        if f.suffix not in (".log", ".txt") or not f.is_file():
            continue
        last: Optional[tuple[float, float]] = None
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            mt = _SCORE.search(line)
            if mt:
                last = (float(mt.group(1)), float(mt.group(2)))
        if last is not None:
            out.append((f.name, last[0], last[1]))
    if not out:
        raise ValueError(f"folder: no log in {str(folder)!r} has a 'val_loss … val_bpb …' line")
    return out


def format_table(rows: Sequence[tuple[int, float, float]], test: Optional[WelchResult] = None) -> str:
    """Per-seed (seed, val_loss, val_bpb), mean and std, and the test when given."""
    lines = [f"{'seed':>6}  {'val_loss':>10}  {'val_bpb':>10}"]
    for seed, loss, bpb in rows:
        lines.append(f"{seed:>6}  {loss:>10.6f}  {bpb:>10.6f}")
    if rows:
        lm, ls = mean_std([r[1] for r in rows])
        bm, bs = mean_std([r[2] for r in rows])
        lines.append(f"{'mean':>6}  {lm:>10.6f}  {bm:>10.6f}")
        lines.append(f"{'std':>6}  {ls:>10.6f}  {bs:>10.6f}")
    if test is not None:
        lines.append(f"baseline val_loss {test.base_mean:.6f} (n={test.m}, std {test.base_std:.6f}); improvement "
                     f"{test.improvement:+.6f} nats, required > {test.delta} nats")
        lines.append(f"one-sided Welch t = {test.t:.3f}, df = {test.df:.2f}, p = {test.p:.3g} "
                     f"({'passes' if test.passes() else 'does not pass'} p < {CHALLENGE_ALPHA})")
    return "\n".join(lines)
