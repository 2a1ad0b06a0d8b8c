"""Design-space populations: the sampler, the analysis against hand computations, the `[population]` table,
and a population added to a finished tiny study (issue #35)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from guided.cli import main
from guided.errors import UserError
from guided.pipeline import dry_run, parse_study
from guided.shapes.design import Budget, parse_budget, pattern_stage_count
from guided.shapes.population import (
    analyse,
    draw_shapes,
    edf,
    good_range,
    percentile,
    spearman,
    spearman_contrast,
    stage_shares,
)
from models import cost, create_spec
from tests.studies import tiny_study, vary, write_study


# ---------------------------------------------------------------------- the sampler
@pytest.mark.parametrize(
    "arch, width, budget",
    [("vgg11", 0.25, "macs=25%"), ("vgg16", 0.25, "params=30%"), ("resnet20", 0.5, "macs=25%")],
)
def test_draws_are_within_one_percent_of_the_budget_and_distinct(arch, width, budget):
    target = create_spec(arch, width_mult=width)
    b = parse_budget(budget, full=target)
    shapes = draw_shapes(target, b, 12, seed=3)
    assert len(shapes) == 12 and [s.index for s in shapes] == list(range(12))
    assert len({s.spec.to_json() for s in shapes}) == 12
    for s in shapes:
        assert abs(b.of(s.spec) - b.value) <= 0.01 * b.value
        assert all(0.25 <= r <= 1.0 for r in s.ratios)
        assert s.shares == stage_shares(s.spec, target)


def test_draws_are_reproducible_from_the_seed_and_more_shapes_keep_the_first():
    target = create_spec("vgg11", width_mult=0.25)
    b = Budget("macs", 0.25 * cost(target).macs)
    first = [s.spec.to_json() for s in draw_shapes(target, b, 6, seed=1)]
    assert first == [s.spec.to_json() for s in draw_shapes(target, b, 6, seed=1)]
    assert first != [s.spec.to_json() for s in draw_shapes(target, b, 6, seed=2)]
    assert [s.spec.to_json() for s in draw_shapes(target, b, 9, seed=1)][:6] == first


def test_the_drawn_ratios_are_log_uniform_in_the_range():
    target = create_spec("vgg11", width_mult=0.25)
    shapes = draw_shapes(target, Budget("macs", 0.3 * cost(target).macs), 60, seed=0, low=0.1, high=1.0)
    logs = np.log([r for s in shapes for r in s.ratios])
    assert logs.min() >= math.log(0.1) and logs.max() <= 0
    # log-uniform on [log 0.1, 0]: mean log -1.15; a uniform draw of the ratios would give about -0.7
    assert abs(logs.mean() - math.log(0.1) / 2) < 0.15


def test_a_range_too_narrow_for_n_distinct_shapes_is_one_clear_error():
    target = create_spec("vgg11", width_mult=0.25)
    with pytest.raises(UserError, match="drew only 1 distinct shapes"):
        draw_shapes(target, Budget("macs", 0.25 * cost(target).macs), 3, low=1.0, high=1.0)


def test_stage_shares_sum_widths_per_design_pattern_stage():
    target = create_spec("vgg11", width_mult=0.25)  # stages [[16], [32], [64, 64], [128, 128], [128, 128]]
    spec = target.replace(stages=[[8], [32], [16, 48], [128, 64], [128, 128]])
    assert stage_shares(spec, target) == (0.5, 1.0, 0.5, 0.75, 1.0)


# ---------------------------------------------------------------------- the analysis, by hand
POP = [0.70, 0.72, 0.74, 0.75, 0.76, 0.78, 0.80, 0.81]


def test_percentiles_count_the_share_below_with_ties_half():
    assert percentile(POP, 0.75) == 100 * (3 + 0.5) / 8
    assert percentile(POP, 0.69) == 0.0 and percentile(POP, 0.9) == 100.0
    assert percentile(POP, 0.77) == 100 * 5 / 8
    xs, ys = edf(POP[::-1])
    assert xs == sorted(POP) and ys == [i / 8 for i in range(1, 9)]


def test_spearman_is_pearson_of_the_ranks_with_fishers_interval():
    x = [0.3, 0.1, 0.4, 0.15, 0.9, 0.26, 0.5, 0.35]
    y = POP
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    got = spearman(x, y)
    assert got["rho"] == pytest.approx(rho) and got["n"] == 8
    se = math.sqrt(1.06 / 5)
    assert got["low"] == pytest.approx(math.tanh(math.atanh(rho) - 1.959964 * se), abs=1e-6)
    assert got["high"] == pytest.approx(math.tanh(math.atanh(rho) + 1.959964 * se), abs=1e-6)
    # the p-value of the t statistic of rho with n - 2 degrees of freedom
    t = rho * math.sqrt(6 / (1 - rho**2))
    assert got["p"] == pytest.approx(2 * stats.t.sf(abs(t), 6))
    assert spearman([1, 1, 1, 1], y[:4])["rho"] is None


def test_the_good_range_is_where_the_best_of_bootstrap_samples_lies():
    x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    peaked = [0.70, 0.72, 0.74, 0.80, 0.78, 0.73, 0.71, 0.69]  # best at x = 0.4, next 0.5
    r = good_range(x, peaked, draws=4000, seed=1)
    assert r["best"] == 0.4 and r["low"] <= 0.4 <= r["high"]
    # by hand: samples of 2 with replacement; the best x is 0.4 unless neither pick is index 3
    picks = np.random.default_rng(1).integers(0, 8, size=(4000, 2))
    best = np.asarray(x)[picks[np.arange(4000), np.argmax(np.asarray(peaked)[picks], axis=1)]]
    assert [r["low"], r["high"]] == list(np.quantile(best, [0.025, 0.975]))
    assert good_range(x[:3], peaked[:3]) is None


def test_analyse_places_arms_and_correlates_stages_and_proxies():
    shares = [[a, 1 - a] for a in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    out = analyse(shares, POP, arms={"uniform": [0.75, 0.77], "guided": [0.79]}, proxies={"p": POP[::-1]})
    assert out["n"] == 8 and out["accuracy"]["median"] == pytest.approx(0.755)
    u = out["arms"]["uniform"]
    assert u["mean"] == pytest.approx(0.76) and u["percentile"] == 100 * 4.5 / 8
    half = stats.t.ppf(0.975, 1) * np.std([0.75, 0.77], ddof=1) / math.sqrt(2)
    assert u["low"] == pytest.approx(0.76 - half) and u["percentile_low"] == 0.0
    assert out["arms"]["guided"]["low"] is None and out["arms"]["guided"]["percentile"] == 100 * 6 / 8
    assert out["stages"][0]["rho"] == pytest.approx(1.0) and out["stages"][1]["rho"] == pytest.approx(-1.0)
    assert out["proxies"]["p"]["rho"] == pytest.approx(-1.0)


def test_the_proxy_contrast_is_the_difference_of_correlations_with_a_paired_bootstrap():
    rng = np.random.default_rng(3)
    acc = rng.normal(size=40)
    sharp, noisy = acc + 0.1 * rng.normal(size=40), acc + 2.0 * rng.normal(size=40)
    d = spearman_contrast(noisy, sharp, acc, draws=2000)
    hand = stats.spearmanr(sharp, acc).statistic - stats.spearmanr(noisy, acc).statistic
    assert d["difference"] == pytest.approx(hand) and d["low"] < hand < d["high"] and d["low"] > 0
    # by hand: the same resamples of the shapes for both evaluators
    picks = np.random.default_rng(0).integers(0, 40, size=(2000, 40))
    diffs = [stats.spearmanr(sharp[i], acc[i]).statistic - stats.spearmanr(noisy[i], acc[i]).statistic for i in picks]
    assert [d["low"], d["high"]] == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])))
    same = spearman_contrast(sharp, sharp, acc)
    assert same["difference"] == 0 and same["low"] == same["high"] == 0
    assert spearman_contrast([1, 1, 1, 1], [1, 2, 3, 4], [1, 2, 3, 4])["low"] is None
    out = analyse([[a] for a in acc], acc, proxies={"search": noisy, "e1": sharp, "same": noisy})
    assert [(c["proxy"], c["against"], c["clearly_better"]) for c in out["contrasts"]] == [
        ("e1", "search", True),
        ("same", "search", False),
    ]


# ---------------------------------------------------------------------- the [population] table
SMALL = tiny_study({"study": {"name": "pop", "seeds": [0, 1]}, "design": {"budgets": ["macs=50%"], "pruned": False}})
E1 = {"name": "e1", "epochs": 1, "train_subset": 100, "validation": 0.25}
POPULATION = {"population": {"budget": "macs=50%", "n": 3, "seed": 0, "proxies": [E1]}}


def test_the_population_table_parses_with_defaults_and_its_proxies():
    study = parse_study(vary(SMALL, {"population": {"budget": "macs=50%"}}))
    q = study.population
    assert (q.n, q.seed, q.ratio_range) == (48, 0, [0.25, 1.0])
    assert [(p.name, p.epochs, p.train_subset) for p in q.proxies] == [("e2-3k", 2, 3000), ("e1-all", 1, None)]
    q = parse_study(vary(SMALL, POPULATION)).population
    assert [(p.name, p.epochs, p.train_subset, p.validation) for p in q.proxies] == [("e1", 1, 100, 0.25)]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n": 0}, "n must lie in 1..1000"),
        ({"ratio_range": [0.5, 0.2]}, "ratio_range must be [low, high]"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"proxies": [{**E1, "epochs": 0}]}, "epochs and train_subset must be at least 1"),
        ({"budget": "flops=50%"}, "budget kind must be one of"),
        ({"proxies": [{"name": "e1"}, E1]}, "proxy names repeat"),
    ],
)
def test_a_bad_population_table_is_refused_naming_the_key(change, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        parse_study(vary(SMALL, POPULATION, {"population": change}))


# ---------------------------------------------------------------------- added to a finished study
def done_records(out: Path) -> dict[str, str]:
    return {str(p.parent.relative_to(out / "stages")): p.read_text() for p in (out / "stages").rglob("done.json")}


@pytest.mark.slow
def test_a_population_added_to_a_finished_study_runs_only_its_own_stages(tmp_path):
    study = write_study(tmp_path, SMALL)
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--threads", "1"]) == 0
    before = done_records(out)
    write_study(tmp_path, vary(SMALL, POPULATION))
    rows = dry_run(parse_study(vary(SMALL, POPULATION)), out, calibrate=False)
    todo = sorted(r["stage"] for r in rows if r["status"] != "done")
    shapes = [f"population/macs-50pct-p{i:03d}" for i in range(3)]
    assert todo == sorted(["report", *shapes, *(f"{s}-e1" for s in shapes)])
    assert main(["run", str(study), "--out", str(out), "--resume", "--threads", "1"]) == 0
    after = done_records(out)
    assert {k: v for k, v in after.items() if k in before and k != "report"} == {
        k: v for k, v in before.items() if k != "report"
    }  # the speed stage included: it does not read the population
    summary = json.loads((out / "summary.json").read_text())
    pop = summary["population"]
    assert pop["n"] == 3 and pop["budget"] == "macs=50%"
    assert set(pop["arms"]) == {"uniform", "guided"}
    assert all(0 <= a["percentile"] <= 100 for a in pop["arms"].values())
    assert pop["proxy"]["name"] == "e1" and pop["proxy"]["n"] == 3 and "spearman" in pop["proxy"]
    assert len(pop["stages"]) == pattern_stage_count(create_spec("vgg-tiny"))
    assert (out / "figures" / "population-edf.png").is_file() and (out / "figures" / "population-stages.png").is_file()
    report = (out / "report.md").read_text()
    assert "## Population: where the arms sit among 3 shapes at macs=50%" in report
    runs = (out / "runs.csv").read_text()
    assert runs.count(",population,") == 3 and runs.count(",population-proxy,") == 3
