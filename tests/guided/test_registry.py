"""The method registry is the one plug-in point: one registration reaches the CLI, study validation, the
contract tests and (for built-in methods) the guide's method table (docs/guide.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from guided.cli import main
from guided.pipeline import parse_study
from guided.pruning import PRUNERS, Method, register_pruner
from tests.guided.test_pruning import check_method_contract, contract_cases
from tests.studies import tiny_study

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"

STUDY = tiny_study(
    {
        "study": {"name": "toy", "seeds": [0, 1]},
        "prune": [{"name": "toy", "method": "toy-first", "ratio": 0.5}],
        "design": {"pattern": "toy", "budgets": ["params=50%"]},
    }
)


@pytest.fixture
def toy():
    """A toy channel criterion: every layer keeps its first channels."""

    def score(ctx, groups):
        return {g.key: torch.arange(g.width, 0, -1, dtype=torch.float) for g in groups}

    register_pruner(Method("toy-first", "keeps each layer's first channels", ("conv", "select"), "layer", score=score))
    yield "toy-first"
    del PRUNERS["toy-first"]


def test_a_registered_criterion_reaches_the_cli_validation_and_contracts(toy, capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    squeezed = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    assert "toy-first:keepseachlayer'sfirstchannels" in squeezed and ",toy-first}" in squeezed
    study = parse_study(STUDY)  # accepted as a method, and as a channel pattern for designs
    assert study.prune[0].unit == "channels"
    cases = [name for method, name in contract_cases() if method == toy]
    assert "vgg-tiny" in cases and "resnet-tiny" in cases
    for name in cases:
        check_method_contract(toy, name)


def test_an_unregistered_method_is_refused_by_validation():
    with pytest.raises(ValueError, match="unknown method 'toy-first'"):
        parse_study(STUDY)


def test_the_readme_method_table_lists_exactly_the_registry():
    section = GUIDE.read_text().split("## Structured pruning", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.M)
    assert sorted(listed) == sorted(PRUNERS)
