"""Plot data functions return the numbers drawn; drawing writes real PNG/SVG files; `guided plot` wires them."""

import json

import pytest

from guided.cli import main
from guided.reporting.plots import (
    accuracy_cost_data,
    accuracy_cost_legend,
    cost_note,
    draw_accuracy_cost,
    draw_profiles,
    draw_width_bars,
    profile_data,
    width_bars_data,
)
from guided.shapes.design import Budget, design
from guided.shapes.patterns import Pattern, channel_summary
from guided.storage.io import write_spec
from models import create_spec

RUNS = [
    [
        {"layer": "a", "stage": 0, "original": 8, "kept": 8},
        {"layer": "b", "stage": 0, "original": 8, "kept": 6},
        {"layer": "c", "stage": 1, "original": 16, "kept": 4},
    ],
    [
        {"layer": "a", "stage": 0, "original": 8, "kept": 8},
        {"layer": "b", "stage": 0, "original": 8, "kept": 8},
        {"layer": "c", "stage": 1, "original": 16, "kept": 2},
    ],
]


def pattern(**changes):
    return Pattern.from_dict({"kind": "channels", **channel_summary(RUNS), **changes})


def test_channel_summary_by_hand():
    p = pattern().to_dict()
    assert p["stages"][0]["keep_ratio_mean"] == pytest.approx((14 / 16 + 16 / 16) / 2)
    assert p["stages"][1]["keep_ratio_mean"] == pytest.approx((4 / 16 + 2 / 16) / 2)
    assert p["layers"][1]["keep_ratio_mean"] == pytest.approx(0.875)


def test_width_bars_data_are_per_layer_means():
    spec = create_spec("vgg11").replace(stages=((6, 10), (12,)))
    data = width_bars_data(pattern(), {"guided": spec})
    assert data["series"]["pruned"]["mean"] == pytest.approx([15 / 2, 3.0])
    assert data["series"]["guided"]["mean"] == [8.0, 12.0]
    with pytest.raises(ValueError, match="stages"):
        width_bars_data(pattern(), {"bad": create_spec("resnet20")})


def test_profile_and_accuracy_data():
    prof = profile_data({"slim": pattern()})
    assert prof["slim"]["ratio"] == pytest.approx([1.0, 0.875, 0.1875]) and prof["slim"]["stage"] == [0, 0, 1]
    rows = [
        {"label": "u", "params": 1000, "macs": 10, "test_acc": 0.8},
        {"label": "u", "params": 1005, "macs": 10, "test_acc": 0.9},
        {"label": "u", "params": 3000, "macs": 30, "test_acc": 0.9},
    ]
    data = accuracy_cost_data(rows)["u"]
    assert data["runs"] == [2, 1] and data["error"] == pytest.approx([15.0, 10.0])
    assert data["error_std"][0] == pytest.approx(7.0711, rel=1e-3)


def test_accuracy_cost_lines_never_join_budget_kinds_and_the_legend_says_what_marks_mean():
    rows = [
        {"label": arm, "group": group, "params": p, "macs": m, "test_acc": acc}
        for arm in ("uniform", "guided")
        for group, p, m, acc in [
            ("params=25%", 1e5, 2e6, 0.7),
            ("params=50%", 2e5, 4e6, 0.8),
            ("macs=25%", 1.4e5, 1e6, 0.72),
            ("macs=50%", 2.6e5, 2e6, 0.81),
        ]
    ]
    data = accuracy_cost_data(rows)
    for ser in data.values():
        assert ser["kinds"] == ["params", "macs", "params", "macs"]  # by params: 1e5, 1.4e5, 2e5, 2.6e5
        for kind, points in ser["lines"].items():
            assert {ser["kinds"][j] for j in points} == {kind}  # a line stays within one cost kind
        assert sorted(j for points in ser["lines"].values() for j in points) == [0, 1, 2, 3]
    legend = accuracy_cost_legend(list(data["uniform"]["lines"]))
    assert "bars: sample std over seeds" in legend and "circled: Pareto front" in legend
    assert accuracy_cost_data([{"label": "u", "params": 1e5, "macs": 1e6, "test_acc": 0.8}])["u"]["lines"] == {}


def test_legends_say_how_a_pattern_ranked_channels():
    assert cost_note(pattern(cost="macs").cost) == " (score per MAC)"
    assert cost_note(pattern(cost="latency").cost) == " (score per ms of latency)"
    assert cost_note(pattern().cost) == cost_note(None) == ""


@pytest.mark.slow
def test_svg_legends_name_the_cost(tmp_path):
    _, svg = draw_profiles({"slim": pattern(cost="macs")}, tmp_path / "p.png")
    assert "score per MAC" in svg.read_text()


@pytest.mark.slow
def test_drawing_writes_png_and_svg(tmp_path):
    spec = create_spec("vgg11").replace(stages=((6, 10), (12,)))
    for draw, args in [
        (draw_width_bars, (pattern(), {"g": spec})),
        (draw_profiles, ({"slim": pattern()},)),
        (draw_accuracy_cost, ([{"label": "u", "params": 1e5, "macs": 1e6, "test_acc": 0.8}],)),
    ]:
        png, svg = draw(*args, tmp_path / f"{draw.__name__}.png")
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
        assert svg.read_text().lstrip().startswith("<?xml")


def test_plot_command(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps({**pattern().to_dict(), "sources": [{"method": "slimming"}]}))
    target = create_spec("vgg11", width_mult=0.25).replace(stages=((16, 16), (32,)))
    write_spec(tmp_path / "g.json", design(target, Budget("params", 1e4), pattern=pattern()))
    assert (
        main(
            [
                "plot",
                "widths",
                str(tmp_path / "p.json"),
                "--design",
                f"guided={tmp_path / 'g.json'}",
                "--out",
                str(tmp_path / "w.png"),
            ]
        )
        == 0
    )
    assert main(["plot", "profile", str(tmp_path / "p.json"), "--out", str(tmp_path / "pr.png")]) == 0
    (tmp_path / "runs.csv").write_text("label,params,macs,test_acc\nu,1000,10,0.5\n")
    assert main(["plot", "accuracy", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "a.png")]) == 0
    assert all((tmp_path / f).stat().st_size > 0 for f in ("w.png", "w.svg", "pr.png", "a.png"))
    (tmp_path / "bad.csv").write_text("label,params\nu,1\n")
    capsys.readouterr()
    assert main(["plot", "accuracy", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b.png")]) == 2
    assert "missing ['macs', 'test_acc']" in capsys.readouterr().err


def test_design_command_then_cost_meets_the_budget(tmp_path, capsys):
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "kind": "channels",
                "stages": [{"stage": s, "keep_ratio_mean": r} for s, r in enumerate([1, 0.9, 0.8, 0.3, 0.15])],
                "layers": [],
            }
        )
    )
    out = tmp_path / "g.json"
    assert (
        main(
            [
                "design",
                "--pattern",
                str(tmp_path / "p.json"),
                "--arch",
                "vgg19",
                "--num-classes",
                "100",
                "--budget",
                "params=0.3M",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["cost", "--spec", str(out), "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["params"] - 3e5) / 3e5 <= 0.01
    assert main(["design", "--arch", "vgg19", "--budget", "params=0.3M", "--out", str(out)]) == 2
    assert "--pattern PATTERN.json" in capsys.readouterr().err
