"""Student t CDF and the one-sided Welch test against closed forms and hand-computed values."""

from __future__ import annotations

import math

import pytest

from golf_fast.export.baseline import parse_baseline
from golf_fast.export.stats import betainc, format_table, mean_std, scores_from_logs, t_cdf, welch_one_sided


@pytest.mark.parametrize("t", [-7.5, -1.3, -0.2, 0.0, 0.4, 1.0, 3.7, 40.0])
def test_t_cdf_closed_forms(t):
    # df = 1: Cauchy; df = 2: 1/2 + t / (2 sqrt(2 + t²)); df = 4: known closed form
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    x = t / math.sqrt(4 + t * t)
    assert t_cdf(t, 4) == pytest.approx(0.5 + 0.75 * x * (1 - x * x / 3), abs=1e-12)


def test_t_cdf_known_values_and_normal_limit():
    assert t_cdf(2.0, 3) == pytest.approx(0.930337, abs=1e-6)        # tables
    assert t_cdf(2.764, 10) == pytest.approx(0.99, abs=2e-5)        # t_{0.99, 10} = 2.764
    assert t_cdf(1.6449, 1e7) == pytest.approx(0.95, abs=2e-5)      # the normal limit
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # I_0.4(2,3) = 0.5248 exactly
    with pytest.raises(ValueError, match="df"):
        t_cdf(1.0, 0)


def test_welch_hand_computed():
    new, base = [2.319, 2.322, 2.324], [2.3415, 2.3420, 2.3410]
    r = welch_one_sided(new, base, 0.005)
    xm, xs = mean_std(new)
    ym, ys = mean_std(base)
    se = math.sqrt(xs ** 2 / 3 + ys ** 2 / 3)
    assert r.t == pytest.approx((ym - xm - 0.005) / se, rel=1e-12)
    df = se ** 4 / ((xs ** 2 / 3) ** 2 / 2 + (ys ** 2 / 3) ** 2 / 2)
    assert r.df == pytest.approx(df, rel=1e-12)
    assert r.p == pytest.approx(1 - t_cdf(r.t, df), rel=1e-12) and r.passes()
    # the same improvement without the 0.005 margin removed would be a different (smaller) p
    assert welch_one_sided(new, base, 0.0).p < r.p
    # an improvement smaller than delta is never significant
    assert welch_one_sided([2.340, 2.3405, 2.3401], base).p > 0.5
    # a single baseline number: one-sample test, df = n − 1
    one = welch_one_sided(new, [2.3415])
    assert one.df == 2 and one.t == pytest.approx((2.3415 - xm - 0.005) / (xs / math.sqrt(3)), rel=1e-12)
    with pytest.raises(ValueError, match="new"):
        welch_one_sided([2.3], base)


def test_baseline_from_numbers_and_logs(tmp_path):
    (tmp_path / "train_seed1.log").write_text("x\nquantized val_loss:2.84 val_bpb:1.10\nquantized_ttt val_loss:2.79180191 val_bpb:1.08079352 eval_time:1\n")
    (tmp_path / "train_seed2.txt").write_text("final val_loss 2.80 val_bpb 1.0810\n")
    (tmp_path / "notes.md").write_text("val_loss:9 val_bpb:9\n")
    rows = scores_from_logs(tmp_path)
    assert [(f, l) for f, l, _ in rows] == [("train_seed1.log", 2.79180191), ("train_seed2.txt", 2.80)]
    assert parse_baseline(str(tmp_path)) == [2.79180191, 2.80]
    assert parse_baseline("2.1, 2.2") == [2.1, 2.2]
    assert parse_baseline("1.0", "val_bpb", bytes_per_token=4.0) == [pytest.approx(4 * math.log(2))]
    with pytest.raises(ValueError, match="baseline"):
        parse_baseline("abc")
    text = format_table([(42, 2.3, 1.06), (0, 2.31, 1.07)], welch_one_sided([2.3, 2.31], [2.32, 2.33]))
    assert "mean" in text and "std" in text and "Welch" in text
