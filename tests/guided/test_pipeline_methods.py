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

pytestmark = pytest.mark.slow  # two tiny studies (~10 s)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))

HEAD = """
[study]
name = "methods"
seeds = [0, 1]
device = "cpu"

[data]
dataset = "digits"
train_subset = 256
test_subset = 128

[model]
arch = "{arch}"

[train]
epochs = 2
batch_size = 64
"""

WEIGHTS = (
    HEAD.format(arch="vgg-tiny")
    + """
[[prune]]
name = "mag50"
method = "magnitude"
ratio = 0.5
retrain = ["finetune", "scratch-e", "scratch-b", "lottery"]

[[prune]]
name = "l1"
method = "l1-norm"
ratio = 0.5
retrain = ["scratch-e"]
"""
)

BLOCKS = (
    HEAD.format(arch="resnet-tiny")
    + """
sparsity_gates = 0.05

[[prune]]
name = "sss"
method = "sss"
base = "gated"
ratio = 0.5
retrain = ["finetune", "scratch-e"]
"""
)


def run(tmp_path: Path, text: str) -> Path:
    (tmp_path / "study.toml").write_text(text)
    assert main(["run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")]) == 0
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
    out = run(tmp_path, WEIGHTS.replace('name = "l1"', 'name = "l1"\nallocation = "global"\ncost = "macs"'))
    summary = json.loads((out / "stages" / "source" / "pattern-l1" / "pattern.json").read_text())
    assert summary["cost"] == "macs" and {s["cost"] for s in summary["sources"]} == {"macs"}
    prune_record = json.loads((out / "stages" / "source" / "prune-l1-s0" / "prune.json").read_text())
    assert prune_record["cost"] == "macs" and prune_record["allocation"] == "global"
    assert "channels ranked per unit of macs" in (out / "report.md").read_text()


TWO_PATTERNS = (
    HEAD.format(arch="vgg-tiny")
    + """
[[prune]]
name = "slim"
method = "slimming"
base = "sparse"
ratio = 0.4

[[prune]]
name = "slim-mac"
method = "slimming"
base = "sparse"
ratio = 0.4
cost = "macs"

[design]
pattern = ["slim", "slim-mac"]
budgets = ["macs=50%"]
"""
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
    study = parse_study(tomllib.loads(BLOCKS))
    ids = {s.id for s in plan_study(study)[0]}
    assert "source/base-gated-s0" in ids and not any("pattern" in i for i in ids)  # blocks make no pattern
    spec = (out / "stages" / "source" / "base-gated-s0" / "spec.json").read_text()
    assert '"gated": true' in spec
    table = pd.read_csv(out / "tables" / "retraining.csv")
    assert table["pruning"].tolist() == ["sss"] and "±" in table.iloc[0]["Scratch-E"]


@pytest.mark.parametrize(
    "text, old, new, message",
    [
        (WEIGHTS, 'retrain = ["scratch-e"]', 'retrain = ["lottery"]', "lottery retraining restarts masked weights"),
        (WEIGHTS, 'ratio = 0.5\nretrain = ["f', 'ratio = -0.4\nretrain = ["f', "ratio must lie in (0, 1)"),
        (WEIGHTS, 'method = "magnitude"\nratio = 0.5', 'method = "magnitude"\npreset = "vgg16-a"', "takes one ratio"),
        (WEIGHTS, 'name = "l1"', 'name = "l1"\nbase = "gated"', "a gated base is for block methods"),
        (BLOCKS, 'base = "gated"', 'base = "plain"', "sss needs base = 'gated'"),
        (WEIGHTS, 'name = "l1"', 'name = "l1"\ncost = "macs"', "needs a channel method with a global allocation"),
        (WEIGHTS, 'name = "l1"', 'name = "l1"\nallocation = "global"\ncost = "flops"', "cost must be one of"),
        (WEIGHTS, 'name = "mag50"', 'name = "mag50"\ncost = "macs"', "not magnitude"),
        (BLOCKS.replace("resnet-tiny", "vgg-tiny"), "[study]", "[study]", "gated bases are residual networks"),
        (
            WEIGHTS + '\n[design]\npattern = "mag50"\nbudgets = ["params=50%"]\n',
            "[study]",
            "[study]",
            "does not prune channels",
        ),
    ],
)
def test_impossible_entries_are_refused_before_anything_runs(tmp_path, capsys, text, old, new, message):
    assert old in text
    (tmp_path / "study.toml").write_text(text.replace(old, new, 1))
    assert main(["run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_study(tomllib.loads(text.replace(old, new, 1)))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_studies_are_valid(path):
    """Every config is a study named after its file, with at least two seeds."""
    study = parse_study(tomllib.loads(path.read_text()))
    assert study.study.name == path.stem
    assert len(study.study.seeds) >= 2


MOBILENET = (
    HEAD.format(arch="mobilenetv2-tiny")
    + """
sparsity_l1 = 1e-4

[[prune]]
name = "slimming"
method = "slimming"
base = "sparse"
ratio = 0.4

[design]
pattern = "slimming"
budgets = ["macs=50%"]
per_layer = true
pruned = true

[[transfer]]
name = "wide"
arch = "mobilenetv2-tiny"
width_mult = 1.5

[search]
budget = "macs=50%"
trials = 2
epochs = 1
validation = 0.2
arms = ["seeded"]
retrain_top = 1
"""
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
