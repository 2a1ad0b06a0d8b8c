"""`guided run` takes every registered pruning method: weight masks with lottery tickets, SSS blocks on a
gated base; impossible combinations are refused before anything runs; the shipped studies are valid."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from guided.cli import main
from guided.errors import UserError
from guided.pipeline import parse_study, plan_study
from tests.studies import entry, tiny_study, vary, write_study

pytestmark = pytest.mark.slow  # two tiny studies (~10 s)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))

HEAD = {
    "study": {"name": "methods", "seeds": [0, 1]},
    "data": {"train_subset": 256, "test_subset": 128},
    "train": {"epochs": 2},
    "design": None,
}
MAG50 = {
    "name": "mag50",
    "method": "magnitude",
    "ratio": 0.5,
    "retrain": ["finetune", "scratch-e", "scratch-b", "lottery"],
}
L1 = {"name": "l1", "method": "l1-norm", "ratio": 0.5, "retrain": ["scratch-e"]}
WEIGHTS = tiny_study(HEAD, {"prune": [MAG50, L1]})

SSS = {"name": "sss", "method": "sss", "base": "gated", "ratio": 0.5, "retrain": ["finetune", "scratch-e"]}
BLOCKS = tiny_study(HEAD, {"model": {"arch": "resnet-tiny"}, "train": {"sparsity_gates": 0.05}, "prune": [SSS]})


def run(tmp_path: Path, study: dict) -> Path:
    assert main(["run", str(write_study(tmp_path, study)), "--out", str(tmp_path / "out")]) == 0
    return tmp_path / "out"


def test_weight_masks_lottery_tickets_and_sparsity_patterns(tmp_path):
    out = run(tmp_path, WEIGHTS)
    table = pd.read_csv(out / "tables" / "retraining.csv")
    mag = table[table["pruning"] == "mag50"].iloc[0]
    assert {"fine-tuned", "Scratch-B", "lottery", "MACs after", "Scratch-B epochs"} <= set(table.columns)
    assert "±" in mag["lottery"] and int(mag["Scratch-B epochs"]) > 1  # non-zero MACs set the budget
    assert mag["params after"] != table[table["pruning"] == "l1"].iloc[0]["params after"]
    sparsity = pd.read_csv(out / "tables" / "sparsity.csv")
    assert list(sparsity.columns) == ["stage", "source-mag50"]
    report = (out / "report.md").read_text()
    assert "## Sparsity patterns" in report and "figures/sparsity-source-mag50.png" in report
    assert "## Design patterns" in report  # the l1 entry's channel pattern
    assert "1 more epochs at lr" not in report and "fine-tuned*: the inherited weights trained" in report
    # every retraining contrast has its interval, and a verdict line in the report
    contrasts = ["Scratch-B − fine-tuned (95% CI)", "lottery − Scratch-E (95% CI)"]
    assert all(mag[c].count("[") == 1 for c in contrasts)
    assert "- source, mag50: " in report and "lottery" in report.split("- source, mag50: ", 1)[1]


def test_a_mac_aware_prune_entry_records_its_cost_in_the_pattern(tmp_path):
    out = run(tmp_path, vary(WEIGHTS, {"prune": [MAG50, {**L1, "allocation": "global", "cost": "macs"}]}))
    summary = json.loads((out / "stages" / "source" / "pattern-l1" / "pattern.json").read_text())
    assert summary["cost"] == "macs" and {s["cost"] for s in summary["sources"]} == {"macs"}
    prune_record = json.loads((out / "stages" / "source" / "prune-l1-s0" / "prune.json").read_text())
    assert prune_record["cost"] == "macs" and prune_record["allocation"] == "global"
    assert "channels ranked per unit of macs" in (out / "report.md").read_text()


SLIM = {"name": "slim", "method": "slimming", "base": "sparse", "ratio": 0.4}
TWO_PATTERNS = tiny_study(
    HEAD,
    {
        "prune": [SLIM, {**SLIM, "name": "slim-mac", "cost": "macs"}],
        "design": {"pattern": ["slim", "slim-mac"], "budgets": ["macs=50%"]},
    },
)


def test_designs_from_two_patterns_are_compared_side_by_side(tmp_path):
    out = run(tmp_path, TWO_PATTERNS)
    table = pd.read_csv(out / "tables" / "designs-source-macs-50pct.csv")
    arms = {"uniform", "guided-slim", "guided-slim-mac", "pruned-slim", "pruned-slim-mac"}
    assert set(table["network"]) == arms
    designs = {p.name for p in (out / "designs").glob("source-macs-50pct-*.json")}
    assert {"source-macs-50pct-guided-slim-mac.json", "source-macs-50pct-pruned-slim-mac-s1.json"} <= designs
    pattern = json.loads((out / "patterns" / "source-slim-mac.json").read_text())
    assert pattern["cost"] == "macs" and json.loads((out / "patterns" / "source-slim.json").read_text())["cost"] is None
    report = (out / "report.md").read_text()
    assert "source, macs=50%: " in report and "guided-slim-mac" in report


def test_sss_on_a_gated_base_removes_blocks(tmp_path):
    out = run(tmp_path, BLOCKS)
    study = parse_study(BLOCKS)
    ids = {s.id for s in plan_study(study)[0]}
    assert "source/base-gated-s0" in ids and not any("pattern" in i for i in ids)  # blocks make no pattern
    spec = (out / "stages" / "source" / "base-gated-s0" / "spec.json").read_text()
    assert '"gated": true' in spec
    table = pd.read_csv(out / "tables" / "retraining.csv")
    assert table["pruning"].tolist() == ["sss"] and "±" in table.iloc[0]["Scratch-E"]


@pytest.mark.parametrize(
    "study, change, message",
    [
        (WEIGHTS, {"prune": [MAG50, {**L1, "retrain": ["lottery"]}]}, "lottery retraining restarts masked weights"),
        (WEIGHTS, {"prune": [{**MAG50, "ratio": -0.4}, L1]}, "ratio must lie in (0, 1)"),
        (WEIGHTS, {"prune": [entry(MAG50, ratio=None, preset="vgg16-a"), L1]}, "takes one ratio"),
        (WEIGHTS, {"prune": [MAG50, {**L1, "base": "gated"}]}, "a gated base is for block methods"),
        (BLOCKS, {"prune": [{**SSS, "base": "plain"}]}, "sss needs base = 'gated'"),
        (WEIGHTS, {"prune": [MAG50, {**L1, "cost": "macs"}]}, "needs a channel method with a global allocation"),
        (WEIGHTS, {"prune": [MAG50, {**L1, "allocation": "global", "cost": "flops"}]}, "cost must be one of"),
        (WEIGHTS, {"prune": [{**MAG50, "cost": "macs"}, L1]}, "not magnitude"),
        (BLOCKS, {"model": {"arch": "vgg-tiny"}}, "gated bases are residual networks"),
        (WEIGHTS, {"design": {"pattern": "mag50", "budgets": ["params=50%"]}}, "does not prune channels"),
    ],
)
def test_impossible_entries_are_refused_before_anything_runs(tmp_path, capsys, study, change, message):
    path = write_study(tmp_path, vary(study, change))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_study(vary(study, change))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_studies_are_valid(path):
    """Every config is a study named after its file, with at least two seeds."""
    study = parse_study(tomllib.loads(path.read_text()))
    assert study.study.name == path.stem
    assert len(study.study.seeds) >= 2


MOBILENET = tiny_study(
    HEAD,
    {
        "model": {"arch": "mobilenetv2-tiny"},
        "train": {"sparsity_l1": 1e-4},
        "prune": [{**SLIM, "name": "slimming"}],
        "design": {"pattern": "slimming", "budgets": ["macs=50%"], "per_layer": True, "pruned": True},
        "transfer": [{"name": "wide", "arch": "mobilenetv2-tiny", "width_mult": 1.5}],
        "search": {
            "budget": "macs=50%",
            "trials": 2,
            "epochs": 1,
            "validation": 0.2,
            "arms": ["seeded"],
            "retrain_top": 1,
        },
    },
)


def test_a_mobilenetv2_study_prunes_designs_and_searches_its_hidden_widths(tmp_path):
    out = run(tmp_path, MOBILENET)
    stages = json.loads((out / "patterns" / "source-slimming.json").read_text())["stages"]
    assert len(stages) == 4  # the tiny variant's three bottleneck sequences, then its last 1x1 conv alone
    assert stages[0]["keep_ratio_mean"] == 1.0 and stages[2]["keep_ratio_mean"] < 1.0  # the stem is tied
    runs = pd.read_csv(out / "runs.csv")
    designed = runs[runs["role"] == "scratch"]
    source = designed[designed["domain"] == "source"]
    assert set(source["arm"]) == {"uniform", "guided", "guided-per-layer", "pruned"}
    assert set(runs.loc[runs["role"] == "search-best", "arm"]) == {"seeded"}
    full = runs.loc[runs["role"] == "base", "macs"].iloc[0]
    assert (source["macs"] <= 0.51 * full).all() and (source["macs"] >= 0.45 * full).all()
    transferred = designed[designed["domain"] == "wide"]
    assert set(transferred["arm"]) >= {"uniform", "transferred"}
