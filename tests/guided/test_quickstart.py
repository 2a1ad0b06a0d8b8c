"""The quick start end to end on digits (shortened), and its resumption."""

import json
from pathlib import Path

import pytest

from guided.cli import main
from guided.quickstart import quickstart
from guided.storage.io import read_spec
from models import cost, create_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_writes_report_plots_and_html_then_resumes(tmp_path):
    logs = []
    report = quickstart(tmp_path, log=logs.append, train={"epochs": 1})
    text = report.read_text()
    for heading in ("## Full-width models", "## Design patterns", "## Guided versus uniform", "## Provenance"):
        assert heading in text
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == text.count("](figures/") >= 4
    assert page.count("<table>") == sum(line.startswith("| --- |") for line in text.splitlines())
    for name in ("widths-source-params-30pct", "profile", "accuracy-source", "accuracy-vgg16"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 5000
        assert (tmp_path / "figures" / f"{name}.svg").exists()
    pattern = json.loads((tmp_path / "patterns" / "source-slimming.json").read_text())
    assert len(pattern["stages"]) == 5 and pattern["runs"] == 2
    for arch, arms in (("vgg11", ("uniform", "guided")), ("vgg16", ("uniform", "transferred"))):
        full = create_spec(arch, width_mult=0.25, head="slim", input_size=16, in_channels=1)
        budget = 0.3 * cost(full).params  # each target's budget: 30% of its own full-width model
        prefix = "source" if arch == "vgg11" else arch
        macs_budget = 0.3 * cost(full).macs
        for arm in arms:
            params = cost(read_spec(tmp_path / "designs" / f"{prefix}-params-30pct-{arm}.json")).params
            assert abs(params - budget) <= 0.01 * budget, (arch, arm)
            macs = cost(read_spec(tmp_path / "designs" / f"{prefix}-macs-30pct-{arm}.json")).macs
            assert abs(macs - macs_budget) <= 0.01 * macs_budget, (arch, arm)
        if arch == "vgg11":  # pruned to the budget: at most it, whole channels below it
            for pruned in (tmp_path / "designs").glob("source-params-30pct-pruned-s*.json"):
                assert 0.95 * budget <= cost(read_spec(pruned)).params <= budget
    trained = [line for line in logs if "] train " in line]
    assert len(trained) == 22  # 2 bases; 3 source designs and 2 vgg16 designs x 2 seeds x 2 cost kinds

    again = []
    quickstart(tmp_path, log=again.append, train={"epochs": 1})
    assert not [line for line in again if "] train " in line]
    assert (tmp_path / "report.md").read_text() == text


def test_quickstart_help(capsys):
    try:
        main(["quickstart", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "guided-quickstart" in capsys.readouterr().out


def test_the_config_copy_is_the_packaged_study():
    from guided.quickstart import quickstart_text

    assert (ROOT / "configs" / "quickstart.toml").read_text() == quickstart_text()
