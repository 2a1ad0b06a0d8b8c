"""One operation, one implementation: a command and a study stage given the same inputs write the same
folder (configs included), and a stage runs from its fingerprinted config alone."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from guided.cli import main
from guided.pipeline import parse_study, plan_study
from guided.pipeline.actions import ACTIONS
from guided.pipeline.runner import fingerprints, run_one, status
from guided.storage.folders import PrunedFolder, RunFolder, StageFolder
from tests.studies import tiny_study, write_study

pytestmark = pytest.mark.slow  # one small study (~10 s), then each command once

STUDY = tiny_study(
    {
        "study": {"name": "twins"},
        "data": {"train_subset": 256, "test_subset": 128},
        "train": {"sparsity_l1": 1e-4},
        "design": {"match": ["params"]},
    }
)

#: What differs between two runs of the same computation: how long they took.
TIMES = {"wall_time_s", "train_images_per_s", "provenance"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every command and stage here computes on one thread: weights are compared bit for bit, and float sums
    depend on the thread count, which by default follows the machine's load (`guided.timing.threads`)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUIDED_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twins")
    write_study(root, STUDY)
    assert main(["run", str(root / "study.toml"), "--out", str(root / "out")]) == 0
    return root / "out"


def stage_dir(out: Path, stage_id: str) -> Path:
    return out / "stages" / stage_id


def same_tensors(a: Path, b: Path) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_train_command_writes_what_the_base_stage_writes(study, tmp_path):
    run = tmp_path / "run"
    argv = "train --arch vgg-tiny --dataset digits --train-subset 256 --test-subset 128 --epochs 1 --batch-size 64"
    assert main([*argv.split(), "--sparsity-l1", "1e-4", "--save-init", "--out", str(run)]) == 0
    cli, stage = RunFolder(run), RunFolder(stage_dir(study, "source/base-sparse-s0"))
    assert cli.read_config() == stage.read_config()  # the same configuration, recorded the same way
    assert cli.spec.read_text() == stage.spec.read_text()
    assert same_tensors(cli.weights, stage.weights) and same_tensors(cli.init, stage.init)
    a, b = cli.read_result(), stage.read_result()
    assert a.keys() == b.keys() and {k: v for k, v in a.items() if k not in TIMES} == {
        k: v for k, v in b.items() if k not in TIMES
    }


def test_prune_command_writes_what_the_prune_stage_writes(study, tmp_path):
    base = stage_dir(study, "source/base-sparse-s0")
    out = tmp_path / "pruned"
    assert main(["prune", "--method", "slimming", "--checkpoint", str(base), "--ratio", "0.4", "--out", str(out)]) == 0
    cli, stage = PrunedFolder(out), PrunedFolder(stage_dir(study, "source/prune-slim-s0"))
    assert cli.read_record() == stage.read_record()  # the source run's config included (a study's was {})
    assert cli.read_record()["source"]["config"] == RunFolder(base).read_config()
    assert cli.layers.read_text() == stage.layers.read_text() and cli.spec.read_text() == stage.spec.read_text()
    assert same_tensors(cli.weights, stage.weights)


def test_summarize_and_design_commands_write_what_the_stages_write(study, tmp_path, monkeypatch):
    monkeypatch.chdir(study)  # folders named relative to the study, as its pattern stage names them
    pattern = tmp_path / "pattern.json"
    assert main(["summarize", "stages/source/prune-slim-s0", "--out", str(pattern)]) == 0
    stage_pattern = StageFolder(stage_dir(study, "source/pattern-slim")).pattern
    assert json.loads(pattern.read_text()) == json.loads(stage_pattern.read_text())
    spec = tmp_path / "guided.json"
    argv = ["design", "--pattern", str(pattern), "--arch", "vgg-tiny", "--in-channels", "1", "--input-size", "16"]
    assert main([*argv, "--budget", "params=50%", "--out", str(spec)]) == 0
    assert spec.read_text() == StageFolder(stage_dir(study, "source/design-params-50pct")).arm("guided").read_text()


def test_every_stage_runs_its_kinds_action_from_its_config(study):
    stages, _ = plan_study(parse_study(STUDY), study)
    assert all(s.action is ACTIONS[s.kind] and s.action.__closure__ is None for s in stages)
    for s in stages:  # a training stage's config names the network it trains, no other
        if s.kind == "train":
            trained = RunFolder(stage_dir(study, s.id)).read_spec().to_dict()
            named = s.config["spec"]
            if "stage" in named:
                folder = stage_dir(study, named["stage"])
                read = named["read"]
                path = PrunedFolder(folder).spec if read == "pruned" else StageFolder(folder).arm(read[4:])
                named = json.loads(path.read_text())
            assert named == trained, s.id


def test_changing_what_a_stage_runs_changes_its_fingerprint(study):
    """Whatever a stage runs is in its config: making the guided run train the uniform design cannot be
    mistaken for the finished guided run."""
    stages, _ = plan_study(parse_study(STUDY), study)
    prints = fingerprints(stages)
    guided = next(s for s in stages if s.id == "source/params-50pct-guided-s0")
    assert status(study, guided, prints[guided.id]) == "done"
    uniform = next(s for s in stages if s.id == "source/params-50pct-uniform-s0")
    swapped = dataclasses.replace(guided, config={**guided.config, "spec": uniform.config["spec"]}, needs=uniform.needs)
    replanned = fingerprints([swapped if s.id == guided.id else s for s in stages])
    assert status(study, swapped, replanned[guided.id]) == "stale"


def test_a_stage_replayed_from_its_record_alone_trains_the_same_run(study, tmp_path):
    """The config ``stage.json`` records is enough to run the stage again: nothing else is carried."""
    out = tmp_path / "copy"
    shutil.copytree(study, out)
    stages, services = plan_study(parse_study(STUDY), out)
    planned = next(s for s in stages if s.id == "source/params-50pct-guided-s0")
    record = StageFolder(stage_dir(out, planned.id)).read_started()
    for name in ("done.json", "result.json", "model.pt", "checkpoint.pt", "config.json", "metrics.jsonl"):
        (stage_dir(out, planned.id) / name).unlink()
    replay = dataclasses.replace(planned, config=json.loads(json.dumps(record["config"])))
    run_one(replay, out, record["fingerprint"], services=services, log=lambda _: None)
    a, b = RunFolder(stage_dir(out, planned.id)), RunFolder(stage_dir(study, planned.id))
    assert same_tensors(a.weights, b.weights) and a.read_result()["test_acc"] == b.read_result()["test_acc"]


def test_the_report_reads_speeds_and_measures_nothing(study, tmp_path, monkeypatch):
    """Rendering the report again (here: another machine, which would time differently) changes no number."""
    import guided.pipeline.actions
    import guided.timing.speed

    out = tmp_path / "copy"
    shutil.copytree(study, out)
    before = (out / "runs.csv").read_text()
    for where in (guided.timing.speed, guided.pipeline.actions):  # defined there, called here
        monkeypatch.setattr(where, "inference_throughput", lambda *a, **k: pytest.fail("the report measured"))
    StageFolder(stage_dir(out, "report")).done.unlink()
    assert main(["run", str(study.parent / "study.toml"), "--out", str(out), "--resume"]) == 0
    assert (out / "runs.csv").read_text() == before
    speeds = json.loads(StageFolder(stage_dir(out, "speed")).speed.read_text())["runs"]
    assert speeds["source/params-50pct-guided-s0"]["images_per_s"] > 0
