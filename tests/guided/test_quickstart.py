"""The quick start end to end on digits (shortened), and its resumption."""

import json

from guided.cli import main
from guided.io import read_spec
from guided.quickstart import quickstart
from models import cost


def test_quickstart_writes_report_plots_and_html_then_resumes(tmp_path):
    logs = []
    settings = {"epochs": 1, "seeds": [0, 1]}
    report = quickstart(tmp_path, log=logs.append, settings=settings)
    text = report.read_text()
    for heading in ("## The pattern pruning found", "## Designs at", "## Trained from scratch", "## Provenance"):
        assert heading in text
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and page.count("<table>") == 3
    for name in ("widths", "profile", "accuracy"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000 and (tmp_path / f"{name}.svg").exists()
    pattern = json.loads((tmp_path / "pattern.json").read_text())
    assert len(pattern["stages"]) == 5 and pattern["runs"] == 2
    budget = 0.3 * cost(read_spec(tmp_path / "runs" / "base-s0" / "spec.json")).params
    for design in (tmp_path / "designs").glob("*.json"):
        assert abs(cost(read_spec(design)).params - budget) / budget <= 0.01
    assert sum(line.strip().startswith("training ") for line in logs) == 10

    again = []
    quickstart(tmp_path, log=again.append, settings=settings)
    assert not any(line.strip().startswith("training ") for line in again)


def test_quickstart_help(capsys):
    try:
        main(["quickstart", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "results/quickstart" in capsys.readouterr().out
