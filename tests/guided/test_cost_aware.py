"""Cost-aware allocation: of equally important channels, a MAC-aware global threshold removes the dear ones."""

from __future__ import annotations

import pytest
import torch

from guided.cli import main
from guided.errors import UserError
from guided.pruning import prune, ratio_for_budget
from guided.shapes.design import Budget
from models import build, cost, create_spec


@pytest.fixture
def equal_scores():
    """VGG-11: a stage-1 channel (32x32 feature maps) costs many times the MACs of a stage-5 one (2x2),
    and every BatchNorm scale is 1, so Network Slimming finds every channel equally important."""
    model = build(create_spec("vgg11", width_mult=0.25), seed=0).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    return model


def kept(result, stage):
    rows = [r for r in result.rows if r["stage"] == stage]
    return sum(r["kept"] for r in rows) / sum(r["original"] for r in rows)


def test_the_mac_aware_threshold_removes_the_expensive_channels_first(equal_scores):
    from models.charge import channel_charges

    charges = channel_charges(equal_scores.spec, "macs")
    assert charges[(0, 0)] > 8 * charges[(4, 0)]  # the premise: stage 1 is many times dearer per channel
    agnostic = prune(equal_scores, "slimming", ratio=0.3)
    aware = prune(equal_scores, "slimming", ratio=0.3, cost="macs")
    assert kept(agnostic, 0) == pytest.approx(kept(agnostic, 4), abs=0.05)  # ties: the same share everywhere
    assert kept(aware, 0) < 0.5 < kept(aware, 4) == 1.0  # the dear stage pays, the cheap one is untouched
    assert aware.info["macs_after"] < agnostic.info["macs_after"] and aware.info["cost"] == "macs"


def test_prune_to_a_mac_budget_with_mac_aware_ranking_keeps_more_channels(equal_scores):
    budget = Budget("macs", 0.25 * cost(equal_scores.spec).macs)
    results = {}
    for how in (None, "macs"):
        r = ratio_for_budget(equal_scores, "slimming", budget, cost=how)
        results[how] = prune(equal_scores, "slimming", ratio=r, cost=how)
        assert results[how].info["macs_after"] <= budget.value
    channels = {how: sum(row["kept"] for row in res.rows) for how, res in results.items()}
    assert channels["macs"] > channels[None]  # the same MACs buy more (cheap) channels


def test_cost_needs_a_global_allocation(equal_scores):
    with pytest.raises(UserError, match="needs a global allocation"):
        prune(equal_scores, "l1-norm", ratio=0.3, cost="macs")  # l1-norm allocates per layer by default
    assert prune(equal_scores, "l1-norm", ratio=0.3, allocation="global", cost="macs").info["cost"] == "macs"
    with pytest.raises(UserError, match="unknown cost"):
        prune(equal_scores, "slimming", ratio=0.3, cost="flops")


def test_cli_prune_with_cost(tmp_path, capsys):
    out = tmp_path / "p"
    args = ["prune", "--method", "slimming", "--arch", "vgg11", "--width-mult", "0.25", "--ratio", "0.3"]
    assert main([*args, "--cost", "macs", "--out", str(out)]) == 0
    assert '"cost": "macs"' in (out / "prune.json").read_text()
    assert main([*args, "--cost", "macs", "--allocation", "layer", "--out", str(tmp_path / "q")]) == 2
    assert "needs a global allocation" in capsys.readouterr().err


def test_a_pattern_knows_the_cost_it_was_discovered_under(tmp_path, capsys):
    args = ["prune", "--method", "slimming", "--arch", "vgg11", "--width-mult", "0.25", "--ratio", "0.3"]
    assert main([*args, "--cost", "macs", "--out", str(tmp_path / "mac")]) == 0
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["summarize", str(tmp_path / "mac"), "--out", str(tmp_path / "pattern.json")]) == 0
    assert "importance per unit of macs" in capsys.readouterr().out
    assert '"cost": "macs"' in (tmp_path / "pattern.json").read_text()
    assert main(["summarize", str(tmp_path / "mac"), str(tmp_path / "plain")]) == 2
    assert "ranked channels under different costs" in capsys.readouterr().err


def test_prune_says_when_cost_outweighs_the_scores(equal_scores, tmp_path, capsys):
    aware = prune(equal_scores, "slimming", ratio=0.3, cost="macs")
    assert aware.info["spread"]["score"] == 1.0 < 2 < aware.info["spread"]["charge"]  # equal scores, unequal costs
    assert "spread" not in prune(equal_scores, "slimming", ratio=0.3).info  # importance alone: nothing to weigh
    args = ["prune", "--method", "slimming", "--arch", "vgg11", "--width-mult", "0.25", "--ratio", "0.3"]
    assert main([*args, "--cost", "macs", "--out", str(tmp_path / "mac")]) == 0  # a fresh network: every |gamma| 1
    assert "follows cost more than importance" in capsys.readouterr().out
