"""`Pattern`: validated when built, one JSON form, one reader on every path."""

from __future__ import annotations

import json

import pytest

from guided.cli import main
from guided.errors import UserError
from guided.shapes.patterns import Pattern, channel_summary, sparsity_summary

RUNS = [
    [
        {"layer": "a", "stage": 0, "original": 16, "kept": 14},
        {"layer": "b", "stage": 1, "original": 16, "kept": 4},
    ],
    [
        {"layer": "a", "stage": 0, "original": 16, "kept": 16},
        {"layer": "b", "stage": 1, "original": 16, "kept": 2},
    ],
]
SPARSE = {
    "stages": [{"stage": 0, "density": 0.5}, {"stage": 1, "density": 0.2}],
    "kernel": {0: [[0.4] * 3] * 3, 1: [[0.1] * 3] * 3},
    "layers": [{"layer": "a", "stage": 0, "density": 0.5}, {"layer": "b", "stage": 1, "density": 0.2}],
    "density": 0.4,
}


@pytest.mark.parametrize(
    "pattern",
    [
        Pattern.from_dict({"kind": "channels", **channel_summary(RUNS), "cost": "macs", "sources": [{"method": "x"}]}),
        Pattern.from_dict({"kind": "sparsity", **sparsity_summary([SPARSE, SPARSE])}),
    ],
    ids=["channels", "sparsity"],
)
def test_a_pattern_round_trips_through_json(pattern, tmp_path):
    assert Pattern.from_dict(json.loads(json.dumps(pattern.to_dict()))) == pattern
    pattern.write(tmp_path / "p.json")
    assert Pattern.read(tmp_path / "p.json") == pattern


BAD = {
    "not-a-table": ([1, 2, 3], "holds a list, not a pattern"),
    "zero-ratio": (
        {"kind": "channels", "stages": [{"stage": 0, "keep_ratio_mean": 0.0}], "layers": []},
        "keep_ratio of 0",
    ),
    "stages-out-of-order": (
        {"kind": "channels", "stages": [{"stage": 1, "keep_ratio_mean": 0.5}], "layers": []},
        "numbered 0, 1, 2",
    ),
    "unknown-kind": ({"kind": "colours", "stages": [], "layers": []}, "kind 'colours' is unknown"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_pattern_is_refused_alike_on_every_path(name, tmp_path, capsys):
    data, message = BAD[name]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        Pattern.read(path)
    if isinstance(data, dict):
        with pytest.raises(UserError, match=message):
            Pattern(data["kind"], tuple(data["stages"]), tuple(data["layers"]))  # built in code, checked alike
    paths = [
        ["design", "--pattern", str(path), "--arch", "vgg-tiny", "--budget", "params=5k", "--out", str(tmp_path / "g")],
        ["plot", "widths", str(path), "--out", str(tmp_path / "w.png")],
        ["plot", "profile", str(path), "--out", str(tmp_path / "p.png")],
        ["plot", "sparsity", str(path), "--out", str(tmp_path / "s.png")],
    ]
    for argv in paths:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and str(path) in err and len(err.splitlines()) == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # nothing written
