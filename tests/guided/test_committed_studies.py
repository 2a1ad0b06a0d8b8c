"""The committed studies' stage records still match what the code at HEAD would plan: every recorded stage's
fingerprint (its kind, config and inputs) is the one `guided run --resume` computes now, so the study resumes
without redoing a stage, and its results are what the code at HEAD produces. A study still running over
several sessions (stages of its ``study.toml`` without records) has a stale report until they finish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guided.pipeline.config import load_study
from guided.pipeline.runner import fingerprints
from guided.pipeline.stages import Services, plan
from guided.training.data import DataConfig, DataShape

RESULTS = Path(__file__).resolve().parents[2] / "results"
STUDIES = sorted(p.parent.parent for p in RESULTS.glob("*/stages/source"))


def _recorded_shape(folder: Path) -> DataShape:
    """The source dataset's sizes as the study recorded them (`summary.json` counts, a base's spec): the
    plan needs no dataset on disk."""
    summary = json.loads((folder / "summary.json").read_text())
    (counts,) = summary["datasets"].values()
    spec = json.loads(next((folder / "stages" / "source").glob("base-*/spec.json")).read_text())
    return DataShape(spec["num_classes"], spec["input_size"], spec["in_channels"], counts["train"], counts["test"])


def _recorded(folder: Path) -> dict[str, str]:
    stages = folder / "stages"
    done = stages.rglob("done.json")
    return {p.parent.relative_to(stages).as_posix(): json.loads(p.read_text())["fingerprint"] for p in done}


def test_there_are_committed_stage_records():
    assert len(STUDIES) >= 2, "results/*/stages/ should hold the full-data studies' records"


@pytest.mark.parametrize("folder", STUDIES, ids=lambda p: p.name)
def test_committed_stage_fingerprints_are_unchanged(folder, monkeypatch):
    shape = _recorded_shape(folder)
    monkeypatch.setattr(DataConfig, "shape", lambda self: shape)
    study = load_study(folder / "study.toml")
    prints = fingerprints(plan(study, Services(study, None)))
    recorded = _recorded(folder)
    assert recorded, folder
    unfinished = set(prints) - set(recorded)  # a study run over several sessions: its report comes last
    changed = sorted(k for k, v in recorded.items() if prints.get(k) != v and not (k == "report" and unfinished))
    assert not changed, f"{folder.name}: the code at HEAD plans these stages differently: {changed}"
