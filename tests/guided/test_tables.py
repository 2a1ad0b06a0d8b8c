"""Verdicts over seeds: Welch's t-test and the 95% confidence interval of the difference decide."""

import pytest

from guided.reporting.tables import compare, difference, interval_cell, mean_std


def test_a_difference_inside_the_noise_is_no_detectable_difference():
    verdict = compare([0.80, 0.84, 0.78], [0.79, 0.81, 0.80], names=("guided", "uniform"))
    d = difference([0.80, 0.84, 0.78], [0.79, 0.81, 0.80])
    assert d["low"] < 0 < d["high"]
    assert verdict.startswith("no detectable difference between guided and uniform") and "n=3 vs 3" in verdict


def test_an_interval_that_excludes_zero_beats_or_trails():
    assert compare([0.80, 0.82, 0.81], [0.70, 0.71, 0.69], names=("a", "b")).startswith("a beats b: +11.00")
    assert compare([0.70, 0.71, 0.69], [0.80, 0.82, 0.81], names=("a", "b")).startswith("a trails b: -11.00")


def test_one_seed_gives_no_verdict():
    verdict = compare([0.9], [0.5, 0.51], names=("a", "b"))
    assert "no verdict" in verdict and "beats" not in verdict and difference([0.9], [0.5])["low"] is None


def test_the_interval_is_welchs():
    d = difference([0.80, 0.82, 0.81], [0.70, 0.71, 0.69])
    assert (d["low"], d["high"]) == pytest.approx((8.733, 13.267), abs=1e-3)  # scipy, unequal variances
    assert interval_cell(d) == "+11.00 [+8.73, +13.27]"
    assert mean_std([0.5, 0.7]) == "60.00 ± 14.14"


def test_the_detectable_effect_matches_statsmodels_power_for_equal_samples():
    """Equal spreads and seed counts: Welch's test is the pooled t-test, whose power statsmodels solves."""
    from statsmodels.stats.power import TTestIndPower

    from guided.reporting.tables import detectable

    for n, sd in [(2, 0.5), (3, 1.0), (5, 2.0), (10, 0.3)]:
        effect = TTestIndPower().solve_power(nobs1=n, ratio=1.0, alpha=0.05, power=0.8)  # in units of sd
        assert detectable(sd, n, sd, n) == pytest.approx(effect * sd, rel=1e-3)
    assert detectable(1.0, 1, 1.0, 3) is None


def test_the_detectable_effect_has_80_percent_power_by_simulation():
    """Unequal spreads and counts (Welch): at the stated effect, simulated tests reject about 80% of the time."""
    import numpy as np
    from scipy import stats

    from guided.reporting.tables import detectable

    delta = detectable(2.0, 3, 0.5, 5)
    rng = np.random.default_rng(0)
    a = rng.normal(delta, 2.0, size=(20000, 3))
    b = rng.normal(0.0, 0.5, size=(20000, 5))
    rejected = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)


def test_a_null_verdict_says_what_it_could_have_detected():
    d = difference([0.80, 0.84, 0.78], [0.79, 0.81, 0.80])
    words = compare([0.80, 0.84, 0.78], [0.79, 0.81, 0.80], names=("guided", "uniform"))
    assert words.endswith(f"this comparison could only detect {d['mde']:.2f} points or more")
    assert d["mde"] > d["high"] - d["diff"]  # 80% power needs more than the interval's half-width


def test_holm_adjusts_a_family_as_by_hand():
    from guided.reporting.tables import holm

    family = [{"p": p, "alpha": 0.05} for p in (0.04, 0.001, 0.03, 0.2)]
    holm(family)
    # by hand: sorted 0.001, 0.03, 0.04, 0.2 times 4, 3, 2, 1, each at least the one before
    assert [v["p_holm"] for v in family] == pytest.approx([0.09, 0.004, 0.09, 0.2])
    assert [v["survives"] for v in family] == [False, True, False, False]


def test_paired_interval_equals_a_hand_computation_with_scipy():
    from scipy import stats

    from guided.reporting.tables import paired_difference, verdict

    a = {0: 0.771, 1: 0.779, 2: 0.766, 3: 0.775, 4: 0.781}
    b = {0: 0.765, 1: 0.770, 2: 0.763, 3: 0.766, 4: 0.774, 9: 0.5}  # seed 9 has no partner: left out
    d = paired_difference(a, b)
    x = [100 * a[s] for s in range(5)]
    y = [100 * b[s] for s in range(5)]
    diffs = [u - v for u, v in zip(x, y)]
    mean, sem = sum(diffs) / 5, stats.sem(diffs)
    half = stats.t.ppf(0.975, 4) * sem
    assert d["n"] == 5 and d["seeds"] == [0, 1, 2, 3, 4]
    assert d["diff"] == pytest.approx(mean)
    assert (d["low"], d["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert d["p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert d["r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    # the detectable effect: where the noncentral t gives 80% power at the paired test's level
    crit = stats.t.ppf(0.975, 4)
    assert stats.nct.sf(crit, 4, d["mde"] / sem) == pytest.approx(0.8, abs=1e-6)
    acc_a, acc_b = list(a.values()), list(b.values())[:5]
    welch = verdict(acc_a, acc_b, names=("g", "u"), where="w", seeds=(list(a), list(range(5))))
    paired = verdict(acc_a, acc_b, names=("g", "u"), where="w", seeds=(list(a), list(range(5))), pairing="paired")
    assert welch["pairing"] == "welch" and welch["low"] == welch["welch"]["low"]
    assert (
        paired["pairing"] == "paired"
        and paired["low"] == pytest.approx(d["low"])
        and "paired by seed" in paired["text"]
    )
    assert paired["high"] - paired["low"] < welch["high"] - welch["low"]  # correlated seeds: a narrower interval


def test_near_equal_samples_give_numbers_and_no_runtime_warning():
    import warnings

    from guided.reporting.tables import paired_difference

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would print before error lines and into study output
        d = difference([0.5, 0.5, 0.5000001], [0.5, 0.5, 0.5])
        p = paired_difference({0: 0.5, 1: 0.5, 2: 0.5000001}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert d["low"] <= d["diff"] <= d["high"] and p["low"] <= p["diff"] <= p["high"]
