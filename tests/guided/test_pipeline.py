"""`guided run`: a tiny study end to end, kill and resume by stage records, validation up front, dry run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from guided.cli import main
from guided.errors import UserError
from guided.pipeline import dry_run, parse_study, plan_study
from guided.pipeline.runner import fingerprints
from tests.studies import BASE, tiny_study, vary
from tests.studies import write_study as write_file

pytestmark = pytest.mark.slow  # one tiny study (~14 s), then resumes, kills and dry runs of it

ROOT = Path(__file__).resolve().parents[2]

TINY = tiny_study(
    {
        "study": {"seeds": [0, 1]},
        "train": {"epochs": 2},
        "prune": [{**BASE["prune"][0], "retrain": ["finetune", "scratch-e"]}],
        "design": {"match": ["params", "macs"]},
        "transfer": [{"name": "wide", "arch": "vgg-tiny", "width_mult": 1.5}],
        "search": {"budget": "macs=50%", "trials": 3, "epochs": 1, "validation": 0.25, "train_subset": 200},
    }
)


def write_study(tmp_path: Path, study: dict = TINY) -> Path:
    return write_file(tmp_path, study)


def records(out: Path) -> dict[str, str]:
    """Every finished stage's completion record, as text (it holds the time the stage finished)."""
    return {str(p.parent.relative_to(out / "stages")): p.read_text() for p in (out / "stages").rglob("done.json")}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Path:
    """The tiny study run once, uninterrupted, through the command line, with one thread (the numerics of
    every run it is compared with: results depend on the threads per process)."""
    tmp = tmp_path_factory.mktemp("study")
    assert main(["run", str(write_study(tmp)), "--out", str(tmp / "out"), "--threads", "1"]) == 0
    return tmp / "out"


def assert_same_tables(a: Path, b: Path) -> None:
    """Every table of two study folders is equal, clock times and measured speeds (and whether the machine was
    quiet when they were measured) aside."""
    names = sorted(p.name for p in (a / "tables").glob("*.csv"))
    assert names == sorted(p.name for p in (b / "tables").glob("*.csv"))
    for name in names:
        x, y = pd.read_csv(a / "tables" / name), pd.read_csv(b / "tables" / name)
        when = [c for c in x.columns if c.startswith("datetime") or c in ("duration", "timing") or "img/s" in c]
        pd.testing.assert_frame_equal(x.drop(columns=when), y.drop(columns=when), obj=name)
    designs = sorted((a / "designs").glob("*.json"))
    assert [p.read_text() for p in designs] == [(b / "designs" / p.name).read_text() for p in designs]


def test_tiny_study_runs_every_stage_and_writes_the_report(finished_study):
    out = finished_study
    study = parse_study(TINY)
    stages, _ = plan_study(study)
    assert set(records(out)) == {s.id for s in stages}
    kinds = {s.kind for s in stages}
    assert kinds == {"train", "retrain", "prune", "pattern", "design", "search", "speed", "report"}
    report = (out / "report.md").read_text()
    for heading in ("Full-width models", "Fine-tuning versus", "Design patterns", "Guided versus uniform", "search"):
        assert heading in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == report.count("](figures/")
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["revisions"]) == 1 and sum(summary["revisions"].values()) == len(stages)
    assert summary["datasets"]["digits"]["train"] == 400 and len(summary["datasets"]["digits"]["sha256"]) == 64
    assert "Warning" not in report and "(95% CI, Welch, n=2 vs 2)" in report
    for table in ("bases", "retraining", "patterns", "designs-source-params-50pct", "designs-wide-params-50pct"):
        assert (out / "tables" / f"{table}.csv").stat().st_size > 0
    designs = {p.name for p in (out / "designs").glob("*.json")}
    expected = {"source-params-50pct-guided.json", "wide-params-50pct-transferred.json", "search-seeded-best.json"}
    assert expected <= designs
    # the seeded search evaluated the guided design first, then the uniform one
    trials = json.loads((out / "stages/search/seeded/done.json").read_text())["record"]["trials"]
    assert [t["seed_design"] for t in trials[:2]] == [0, 1]


def test_the_run_estimated_its_time_and_the_report_compares_it_with_the_actual(finished_study):
    estimate = json.loads((finished_study / "estimate.json").read_text())
    stages, _ = plan_study(parse_study(TINY))
    assert set(estimate["stages"]) == {s.id for s in stages} and all(v > 0 for v in estimate["stages"].values())
    assert 0 < estimate["starts"]["report"] < estimate["wall_s"]
    wall = json.loads((finished_study / "summary.json").read_text())["wall_time"]
    assert wall["estimated_s"] == pytest.approx(estimate["starts"]["report"], abs=0.1) and wall["actual_s"] > 0
    assert "Wall time: this run of" in (finished_study / "report.md").read_text()


def test_a_dry_run_estimates_each_stage_and_the_run_with_jobs(tmp_path):
    study = parse_study(TINY)
    serial = dry_run(study, tmp_path / "new", jobs=1, threads=2)
    parallel = dry_run(study, tmp_path / "new", jobs=2, threads=2)
    for rows in (serial, parallel):
        assert all(r["seconds"] is not None and r["seconds"] > 0 for r in rows)
        assert all(r["start"] >= 0 for r in rows)
    by_id = {r["stage"]: r for r in serial}
    for s in plan_study(study)[0]:  # nothing starts before what it reads has ended
        for need in s.needs:
            assert by_id[s.id]["start"] >= by_id[need]["start"] + by_id[need]["seconds"] - 0.01  # rounded to ms
    assert "1 stage(s) at a time" in serial[0]["basis"] and "2 stage(s) at a time" in parallel[0]["basis"]
    train = [r for r in serial if r["kind"] == "train"]
    assert max(r["seconds"] for r in train) > min(r["seconds"] for r in train)  # architectures differ


def test_progress_lines_say_elapsed_and_left():
    from guided.pipeline.runner import Progress

    progress = Progress({"stages": {"a": 10.0, "b": 20.0}, "started_at": 0.0}, slots=2)
    line = progress.line()
    assert "elapsed" in line and "about 15s left" in line
    progress.finished("a")
    assert "about 10s left" in progress.line()
    assert Progress(None).line() == ""


def test_each_arm_has_one_colour_in_every_figure_of_the_report(finished_study):
    from guided.pipeline.roles import SEARCH_COLOURS
    from guided.reporting.plots import ARM_COLOURS

    fixed = {**ARM_COLOURS, **SEARCH_COLOURS}
    drawn = json.loads((finished_study / "figures" / "colours.json").read_text())
    assert {"search", "accuracy-source", "accuracy-wide"} <= set(drawn)
    assert any(name.startswith("widths-") for name in drawn)
    seen: dict[str, str] = {}
    for figure, colours in drawn.items():
        for label, colour in colours.items():
            assert seen.setdefault(label, colour) == colour, f"{label} is {colour} in {figure}, {seen[label]} before"
    for arm in ("uniform", "guided", "pruned", "transferred", "search-cold", "search-seeded", "search-random"):
        assert seen[arm] == fixed[arm]
    assert len(set(seen.values())) == len(seen), "two arms share a colour"


def test_every_arm_meets_each_budget_on_params_and_on_macs(finished_study):
    from guided.storage.io import read_spec
    from models import cost

    for dom in ("source", "wide"):
        full = cost(read_spec(finished_study / f"stages/{dom}/base-sparse-s0/spec.json"))
        for kind in ("params", "macs"):
            target = 0.5 * getattr(full, kind)
            paths = sorted((finished_study / "designs").glob(f"{dom}-{kind}-50pct-*.json"))
            if dom == "source" and kind == "macs":
                paths += sorted((finished_study / "designs").glob("search-*-best.json"))
            arms = {p.stem.removeprefix(f"{dom}-{kind}-50pct-") for p in paths}
            assert {"uniform", "guided", "pruned-s0", "pruned-s1"} <= arms, arms
            assert dom == "source" or "transferred" in arms
            for path in paths:
                value = getattr(cost(read_spec(path)), kind)
                if "pruned" in path.name:  # pruning removes whole channels: at most the budget, close below it
                    assert 0.9 * target <= value <= target, path.name
                else:
                    assert abs(value - target) <= 0.01 * target, (path.name, value, target)


def test_report_compares_at_equal_params_and_at_equal_macs_with_intervals(finished_study):
    report = (finished_study / "report.md").read_text()
    for dom in ("source", "wide"):
        for kind in ("params", "macs"):
            table = pd.read_csv(finished_study / "tables" / f"designs-{dom}-{kind}-50pct.csv")
            assert {"vs uniform (95% CI)", "inference (img/s)", "training (img/s)"} <= set(table.columns)
            assert table["vs uniform (95% CI)"].str.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]").all()
            assert (table["inference (img/s)"].str.replace(",", "").astype(float) > 0).all()
            assert f"### {dom}, budget {kind}=50%" in report
        assert (finished_study / "figures" / f"accuracy-{dom}.png").stat().st_size > 0
    searched = pd.read_csv(finished_study / "tables" / "designs-source-macs-50pct.csv")["network"].tolist()
    assert {"search-cold", "search-seeded", "search-random"} <= set(searched)
    assert "source, macs=50%: " in report and "source, params=50%: " in report


def test_verdicts_carry_their_detectable_effect_and_holm_adjusted_p(finished_study):
    """Each verdict of summary.json, recomputed by hand from runs.csv (scipy's Welch test, the noncentral-t
    detectable effect) and adjusted over the report's family with statsmodels' Holm."""
    from statsmodels.stats.multitest import multipletests

    from guided.reporting.tables import difference

    verdicts = json.loads((finished_study / "summary.json").read_text())["verdicts"]
    assert verdicts and all({"text", "mde", "p", "p_holm", "survives", "sd"} <= set(v) for v in verdicts)
    runs = pd.read_csv(finished_study / "runs.csv")
    at = runs[(runs["domain"] == "source") & (runs["budget"] == "params=50%") & (runs["role"] == "scratch")]
    d = difference(at[at["arm"] == "guided"]["test_acc"].tolist(), at[at["arm"] == "uniform"]["test_acc"].tolist())
    v = next(v for v in verdicts if v["where"] == "source, params=50%" and v["arms"] == ["guided", "uniform"])
    assert (v["diff"], v["p"], v["mde"]) == pytest.approx((d["diff"], d["p"], d["mde"]))
    tested = [v for v in verdicts if v["p"] is not None]
    assert [v["p_holm"] for v in tested] == pytest.approx(
        list(multipletests([v["p"] for v in tested], method="holm")[1])
    )
    report = (finished_study / "report.md").read_text()
    assert report.count("Holm-adjusted p") == len(tested) and "\x00" not in report
    table = pd.read_csv(finished_study / "tables" / "designs-source-params-50pct.csv")
    assert "detectable (points)" in table.columns


def test_search_arms_report_their_trials_and_the_defaults_let_them_complete(finished_study):
    table = pd.read_csv(finished_study / "tables" / "search.csv")
    assert table["search"].tolist() == ["cold", "seeded", "random"]
    counts = table["trials (complete / stopped)"].str.split(" / ", expand=True).astype(int)
    assert (counts.sum(axis=1) == 3).all()
    assert (counts[0] >= 3 / 2).all()  # the default trial stopper lets at least half complete
    assert "Warning: only" not in (finished_study / "report.md").read_text()


def test_the_best_trials_are_retrained_and_the_proxy_correlation_reported(finished_study):
    """Each arm's best 3 trials are retrained (the best with every seed); the report gives Spearman's rank
    correlation between trial score and retrained accuracy, as scipy computes it from the records."""
    from scipy import stats

    runs = pd.read_csv(finished_study / "runs.csv")
    top = runs[runs["role"] == "search-top"]
    assert sorted(zip(top["arm"], top["rank"])) == sorted((a, j) for a in ("cold", "random", "seeded") for j in (2, 3))
    proxy = json.loads((finished_study / "summary.json").read_text())["proxy"]
    assert proxy["n"] == 9  # on digits after one epoch every trial scores alike: the report says so
    report = (finished_study / "report.md").read_text()
    if proxy["rho"] is None:
        assert len({s for s, _ in proxy["pairs"]}) == 1 or len({a for _, a in proxy["pairs"]}) == 1
        assert "all alike, so there is no ranking to compare" in report
    else:
        assert proxy["rho"] == pytest.approx(stats.spearmanr(*zip(*proxy["pairs"])).statistic)
        assert f"is {proxy['rho']:+.2f} (p = " in report


def test_the_proxy_correlation_is_spearmans_over_the_retrained_trials():
    from scipy import stats

    from guided.pipeline.report import proxy_correlation

    records = {
        "cold": {"top": [{"rank": 1, "value": 0.6}, {"rank": 2, "value": 0.5}]},
        "random": {"top": [{"rank": 1, "value": 0.55}, {"rank": 2, "value": 0.4}]},
    }
    rows = [
        ("cold", 1, 0, 0.71),
        ("cold", 1, 1, 0.10),
        ("cold", 2, 0, 0.69),
        ("random", 1, 0, 0.70),
        ("random", 2, 0, 0.60),
        ("uniform", None, 0, 0.99),
    ]
    runs = pd.DataFrame(rows, columns=["arm", "rank", "seed", "test_acc"])
    runs["role"] = ["search-best", "search-best", "search-top", "search-best", "search-top", "scratch"]
    proxy = proxy_correlation(records, runs)
    expected = stats.spearmanr([0.6, 0.5, 0.55, 0.4], [0.71, 0.69, 0.70, 0.60])  # first seed's runs only
    assert proxy["n"] == 4 and (proxy["rho"], proxy["p"]) == pytest.approx((expected.statistic, expected.pvalue))


def test_rerunning_needs_resume_and_then_does_nothing(finished_study, capsys):
    study = str(finished_study.parent / "study.toml")
    before = records(finished_study)
    assert main(["run", study, "--out", str(finished_study)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", study, "--out", str(finished_study), "--resume"]) == 0
    assert records(finished_study) == before


def test_killed_study_resumes_without_redoing_finished_stages(tmp_path, finished_study):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "guided", "run", str(write_study(tmp_path)), "--out", str(out), "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while len(records(out)) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the study finished before it could be killed"
    finished_before = records(out)
    assert 6 <= len(finished_before) < len(records(finished_study))

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = records(out)
    assert {k: after[k] for k in finished_before} == finished_before  # finished stages were not redone
    assert set(after) == set(records(finished_study))
    assert_same_tables(finished_study, out)


def test_two_local_workers_give_the_serial_results(tmp_path, finished_study, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_study(tmp_path)), "--out", str(out), "--jobs", "2", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "on worker 1/2" in printed and "on worker 2/2" in printed  # progress says which worker ran what
    assert set(records(out)) == set(records(finished_study))
    assert_same_tables(finished_study, out)


def test_seed_groups_in_workers_give_the_serial_results_to_float_tolerance(tmp_path, finished_study, capsys):
    out = tmp_path / "out"
    argv = ["run", str(write_study(tmp_path)), "--out", str(out), "--jobs", "2", "--threads", "2", "--group-seeds", "2"]
    assert main(argv) == 0
    assert "with 1 more seed(s)" in capsys.readouterr().out
    assert set(records(out)) == set(records(finished_study))
    alone, grouped = (pd.read_csv(f / "runs.csv").set_index("stage") for f in (finished_study, out))
    together = grouped[grouped["group_size"] == 2].index
    # the from-scratch designs, transfers and searched bests of both seeds; not the sparse bases (a hook)
    assert any("uniform" in s for s in together) and not any("base" in s for s in together)
    assert (grouped["test_acc"] - alone["test_acc"]).abs().max() <= 0.03  # 6 of 200 test images


def test_dry_run_lists_status_and_editing_a_section_redoes_only_what_reads_it(finished_study, tmp_path):
    study = parse_study(TINY)
    rows = dry_run(study, finished_study, calibrate=False)
    assert {r["status"] for r in rows} == {"done"}
    assert all(r["macs"] > 0 for r in rows if r["kind"] == "train")

    edited = parse_study(vary(TINY, {"search": {"trials": 4}}))
    changed = {r["stage"] for r in dry_run(edited, finished_study, calibrate=False) if r["status"] != "done"}
    arms = ("cold", "seeded", "random")
    assert changed == {f"search/{arm}" for arm in arms} | {"speed", "report"} | {
        f"search/{arm}-best-s{seed}" for arm in arms for seed in (0, 1)
    } | {f"search/{arm}-top{j}-s0" for arm in arms for j in (2, 3)}
    fresh = dry_run(study, tmp_path / "nothing-here", calibrate=False)
    assert {r["status"] for r in fresh} == {"todo"}


def test_adding_a_seed_trains_only_the_new_seed(finished_study, tmp_path, capsys):
    """With the pattern seeds fixed, a third seed redoes nothing of the first two: its own runs, then the
    speed stage and the report."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_study, out)
    before = records(out)
    more = vary(TINY, {"study": {"seeds": [0, 1, 2], "pattern_seeds": [0, 1], "detect": 5.0}})
    rows = dry_run(parse_study(more), out, calibrate=False)
    todo = {r["stage"] for r in rows if r["status"] != "done"}
    assert todo and all(s.endswith("-s2") for s in todo - {"speed", "report"}) and {"speed", "report"} <= todo
    assert main(["run", str(write_study(tmp_path, more)), "--out", str(out), "--resume", "--threads", "1"]) == 0
    after = records(out)
    assert {k: v for k, v in after.items() if k in before and k not in ("speed", "report")} == {
        k: v for k, v in before.items() if k not in ("speed", "report")
    }
    capsys.readouterr()
    assert main(["run", str(tmp_path / "study.toml"), "--out", str(out), "--dry-run", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "source, params=50%, guided: " in printed and "with 3 seeds" in printed and "points needs" in printed


def test_the_detectable_effect_per_comparison_comes_from_the_seeds_and_their_spread(finished_study):
    from guided.pipeline.power import power_plan
    from guided.reporting.tables import detectable

    study = parse_study(TINY)
    stages, _ = plan_study(study)
    rows = {(r["domain"], r["budget"], r["arm"]): r for r in power_plan(study, stages, finished_study)}
    runs = pd.read_csv(finished_study / "runs.csv")
    at = runs[(runs["domain"] == "source") & (runs["budget"] == "params=50%") & (runs["role"] == "scratch")]
    sd = {arm: 100 * at[at["arm"] == arm]["test_acc"].std() for arm in ("guided", "uniform")}
    row = rows["source", "params=50%", "guided"]
    assert row["sd"] == pytest.approx((sd["guided"], sd["uniform"]))
    assert row["mde"] == pytest.approx(detectable(sd["guided"], 2, sd["uniform"], 2))
    fresh = power_plan(study, stages, finished_study.parent / "nothing")  # no finished seeds, no reference
    assert all(r["mde"] is None and "sigma_from" in r["sd_from"] for r in fresh)
    reference = finished_study.parent / "reference"
    reference.mkdir(exist_ok=True)
    rows = [
        ("source", "macs=50%", arm, acc, "scratch")
        for arm, accs in (("a", (0.5, 0.52)), ("b", (0.6, 0.66)))
        for acc in accs
    ]
    pd.DataFrame(rows, columns=["domain", "budget", "arm", "test_acc", "role"]).to_csv(reference / "runs.csv")
    planned = parse_study(vary(TINY, {"study": {"sigma_from": str(reference)}}))
    pooled = ((2**2 / 2 + 6**2 / 2) / 2) ** 0.5  # each arm's variance (points), averaged
    fresh = power_plan(planned, stages, finished_study.parent / "nothing")
    assert all(r["sd"] == pytest.approx((pooled, pooled)) and str(reference) in r["sd_from"] for r in fresh)


def test_fingerprints_depend_on_what_a_stage_reads():
    study = parse_study(TINY)
    stages, _ = plan_study(study)
    a = fingerprints(stages)
    other, _ = plan_study(parse_study(vary(TINY, {"prune": [{**TINY["prune"][0], "ratio": 0.3}]})))
    b = fingerprints(other)
    assert a["source/base-sparse-s0"] == b["source/base-sparse-s0"]
    assert a["source/prune-slim-s0"] != b["source/prune-slim-s0"]
    assert a["source/params-50pct-guided-s1"] != b["source/params-50pct-guided-s1"]  # downstream of the pattern
    assert a["source/params-50pct-uniform-s1"] == b["source/params-50pct-uniform-s1"]  # reads no pattern


def test_a_per_layer_arm_added_to_a_study_plans_only_its_own_design_and_runs():
    """The per-layer arms have their own design stage, so turning them on redoes none of the guided runs."""
    before = fingerprints(plan_study(parse_study(TINY))[0])
    after = fingerprints(plan_study(parse_study(vary(TINY, {"design": {"per_layer": True}})))[0])
    changed = {k for k in before if after[k] != before[k]}
    assert changed <= {"speed", "report"}
    new = set(after) - set(before)
    designs = {f"{d}/design-{b}-per-layer" for d in ("source", "wide") for b in ("params-50pct", "macs-50pct")}
    assert designs <= new and all(s in designs or "-per-layer-s" in s for s in new)
    assert any(s.startswith("wide/") and "transferred" in s for s in new)  # the transfer's arms too


def test_fine_tuning_epochs_and_rate_come_from_the_train_section():
    stages, _ = plan_study(parse_study(vary(TINY, {"train": {"finetune_epochs": 1, "finetune_lr": 0.003}})))
    recipe = next(s for s in stages if s.id == "source/slim-finetune-s0").config["recipe"]
    assert recipe["finetune_epochs"] == 1 and recipe["finetune_lr"] == 0.003
    plain, _ = plan_study(parse_study(TINY))  # absent: the named recipe's values
    assert next(s for s in plain if s.id == "source/slim-finetune-s0").config["recipe"]["finetune_epochs"] == 4


def test_base_seeds_train_fewer_bases_and_every_seed_trains_every_arm():
    study = vary(
        TINY, {"study": {"seeds": [0, 1, 2], "base_seeds": [0, 2]}, "design": {"match": ["macs"], "pruned": True}}
    )
    stages, _ = plan_study(parse_study(study))
    by_id = {s.id: s for s in stages}
    bases = {s.id for s in stages if s.tags.role == "base" and s.tags.domain == "source"}
    assert bases == {"source/base-sparse-s0", "source/base-sparse-s2"}
    assert not any(s.startswith(("source/prune-slim-s1", "source/slim-finetune-s1")) for s in by_id)
    assert set(by_id["source/pattern-slim"].needs) == {"source/prune-slim-s0", "source/prune-slim-s2"}
    for seed in (0, 1, 2):  # every arm trains every seed; seed 1 (the second) prunes the second base
        assert {"uniform", "guided", "pruned"} <= {
            s.tags.arm for s in stages if s.tags.role == "scratch" and s.tags.seed == seed
        }
    assert by_id["source/prune-to-macs-50pct-s1"].needs == ("source/base-sparse-s2",)
    assert by_id["source/prune-to-macs-50pct-s2"].needs == ("source/base-sparse-s2",)


SLIM = TINY["prune"][0]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"width": 2}}, "[model] has unknown key 'width'"),
        ({"train": {"epochs": "two"}}, "[train] epochs = 'two' has the wrong type"),
        ({"model": None}, "no [model] section"),
        ({"prune": [{**SLIM, "method": "slimmer"}]}, "unknown method 'slimmer'"),
        ({"design": {"pattern": "l1"}}, "pattern = 'l1' names no [[prune]] entry"),
        ({"prune": [{**SLIM, "retrain": ["scratch-c"]}]}, "unknown retrain mode"),
        ({"design": {"budgets": ["flops=50%"]}}, "budget kind must be one of params, macs, latency"),
        ({"design": {"match": ["flops"]}}, "[design] match must list distinct cost kinds"),
        ({"search": {"budget": "macs=40%"}}, "must be one of the [design] budgets (params=50%, macs=50%)"),
        (
            {"search": {"train_subset": None, "arms": ["cold", "grid"]}},
            "[search] arms must be among cold, seeded, random",
        ),
        ({"data": {"dataset": "cifar11"}}, "dataset 'cifar11' is unknown"),
        ({"transfer": None, "transfers": TINY["transfer"][0]}, "unknown section(s) ['transfers']"),
        ({"study": {"base_seeds": [2]}}, "base_seeds = [2] must be some of the seeds [0, 1]"),
        ({"study": {"base_seeds": [1], "pattern_seeds": [0]}}, "of the base seeds [1]"),
        ({"transfer": [{"name": "wide", "arch": "resnet-tiny"}]}, "give stage_map"),
    ],
)
def test_invalid_study_is_refused_up_front_naming_the_key(tmp_path, capsys, change, message):
    path = write_study(tmp_path, vary(TINY, change))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    "damage, message",
    [
        ("[1, 2]", "holds no record object"),
        ('{"fingerprint": "x"}', "holds no record object"),
        ('{"fingerprint": "x", "record": {"test_acc": "high"}}', "its test_acc is 'high', not a number"),
    ],
)
def test_a_damaged_stage_record_is_one_line_saying_how_to_redo_it(finished_study, tmp_path, capsys, damage, message):
    out = tmp_path / "copy"
    shutil.copytree(finished_study, out)
    done = out / "stages" / "source" / "params-50pct-uniform-s0" / "done.json"
    done.write_text(damage)
    path = write_study(tmp_path)
    assert main(["run", str(path), "--out", str(out), "--resume", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "rerun with --resume" in err and err.count("\n") == 1


def test_a_folder_of_another_study_is_refused(finished_study, tmp_path):
    path = write_study(tmp_path, vary(TINY, {"study": {"name": "other"}}))
    with pytest.raises(UserError, match="holds study 'tiny'"):
        from guided.pipeline import load_study, run_study

        run_study(load_study(path), finished_study, resume=True, log=lambda _: None)


def test_shipped_tiny_study_matches_the_documented_command():
    text = (ROOT / "configs" / "study-tiny-digits.toml").read_text()
    assert "guided run configs/study-tiny-digits.toml" in text
    parse_study(tomllib.loads(text))


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster with 2 CPUs and no dashboard, stopped afterwards."""
    import shutil
    import socket

    if shutil.which("ray") is None and not (Path(sys.executable).parent / "ray").exists():
        if os.environ.get("CI"):
            pytest.fail("CI must run the Ray test, but Ray is not installed (pip install -e '.[dev]' installs it)")
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    ray = str(Path(sys.executable).parent / "ray") if (Path(sys.executable).parent / "ray").exists() else "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [ray, "start", "--head", "--num-cpus", "2", "--include-dashboard", "false", "--port", str(port)]
    subprocess.run([*start, "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_ray_study_survives_a_killed_worker(ray_cluster, tmp_path, finished_study):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "guided", "run", str(write_study(tmp_path)), "--out", str(out), "--threads", "1"]
    cmd += ["--executor", "ray", "--address", ray_cluster]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        killed, deadline = None, time.time() + 240
        while killed is None and time.time() < deadline and proc.poll() is None:
            training = [  # a training stage started after a few stages finished, with an epoch checkpointed
                p.parent.name
                for p in (out / "stages").rglob("checkpoint.pt")
                if not (p.parent / "done.json").exists() and len(records(out)) >= 4
            ]
            workers = subprocess.run(["pgrep", "-f", "ray::_ray_task"], capture_output=True, text=True).stdout.split()
            if training and workers:
                finished_before = records(out)
                os.kill(int(workers[0]), signal.SIGKILL)
                killed = training[0]
            time.sleep(0.02)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no Ray worker was caught inside a training stage"
    assert proc.returncode == 0, output[-3000:]
    after = records(out)
    assert {k: after[k] for k in finished_before} == finished_before  # finished stages were not redone
    assert set(after) == set(records(finished_study))  # every stage recorded, once (one done.json each)
    assert_same_tables(finished_study, out)


def test_the_report_warns_when_stages_ran_on_different_revisions(tmp_path, finished_study):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_study, out)
    started = out / "stages" / "source" / "base-sparse-s0" / "stage.json"
    started.write_text(json.dumps({**json.loads(started.read_text()), "revision": "0123abc+dirty.456def"}))
    (out / "stages" / "report" / "done.json").unlink()  # only the report runs again
    assert main(["run", str(write_study(tmp_path)), "--out", str(out), "--resume", "--threads", "1"]) == 0
    report = (out / "report.md").read_text()
    assert "**Warning: the stages ran on 2 different code revisions**" in report
    assert "`0123abc+dirty.456def` (1 stages)" in report
