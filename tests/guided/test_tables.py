"""Verdicts over seeds: Welch's t-test and the 95% confidence interval of the difference decide."""

import pytest

from guided.tables import compare, difference, interval_cell, mean_std


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
