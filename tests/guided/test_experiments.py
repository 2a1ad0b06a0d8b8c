"""Experiments: config validation up front, a tiny end-to-end run, resume without redoing work."""

import json
import tomllib
from pathlib import Path

import pytest

from guided.errors import UserError
from guided.experiments import EXPERIMENTS
from guided.experiments.finetune_vs_scratch import parse
from guided.pipeline import parse_study

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))

TINY = {
    "data": {"dataset": "digits", "train_subset": 256, "test_subset": 128},
    "model": {"arch": "vgg-tiny"},
    "train": {"epochs": 1, "batch_size": 64, "seeds": [0, 1]},
    "rows": [
        {"name": "slim", "method": "slimming", "base": "sparse", "ratio": 0.5},
        {"name": "l1", "method": "l1-norm", "ratio": 0.5},
    ],
}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    """Studies (a [study] section) parse as studies, the rest as finetune-vs-scratch experiments; both
    parsers check model names, datasets, methods and modes."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    if "study" in table:
        study = parse_study(table)
        assert study.study.name == path.stem
        assert len(study.study.seeds) >= 2
        return
    data, model, train, rows = parse(table)
    assert data.dataset and model.arch and rows and len(train.seeds) >= 2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["data"].update(datasett="x"), "unknown key 'datasett'"),
        (lambda c: c["train"].update(epochs="ten"), "epochs = 'ten' has the wrong type"),
        (lambda c: c.pop("model"), "no [model] section"),
        (lambda c: c["rows"][0].update(method="l3"), "unknown method 'l3'"),
        (lambda c: c["rows"][1].pop("ratio"), "give ratio or preset"),
        (lambda c: c.update(extra={}), "unknown section"),
        (lambda c: c["model"].update(arch="vgg17"), "unknown model 'vgg17'"),
    ],
)
def test_bad_configs_are_refused_before_any_training(tmp_path, change, message):
    config = json.loads(json.dumps(TINY))
    change(config)
    with pytest.raises((UserError, ValueError), match=message.replace("[", r"\[").replace("]", r"\]")):
        EXPERIMENTS["finetune-vs-scratch"](config, tmp_path / "out", log=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_tiny_experiment_runs_and_resumes_without_redoing_work(tmp_path):
    logs = []
    EXPERIMENTS["finetune-vs-scratch"](TINY, tmp_path, log=logs.append)
    table = (tmp_path / "table.md").read_text()
    assert "| slim |" in table and "Scratch-B" in table and "±" in table
    runs = json.loads((tmp_path / "summary.json").read_text())
    assert runs["seeds"] == [0, 1] and "git" in runs["provenance"]
    trained = [line for line in logs if line.startswith("-- ") and line.endswith("s")]
    assert len(trained) == 2 * (2 + 2 * 3)  # per seed: two bases, two rows x three modes

    again = []
    EXPERIMENTS["finetune-vs-scratch"](TINY, tmp_path, log=again.append)
    assert not [line for line in again if line.startswith("-- ")]
    assert (tmp_path / "table.md").read_text() == table
