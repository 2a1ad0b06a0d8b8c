"""A study whose stage records are kept without their weights (as committed studies are) resumes: finished
stages stay finished, unless a stage still to run reads weights that are missing (fake actions, no training)."""

from __future__ import annotations

from guided.pipeline.runner import Stage, fingerprints, run_stages, statuses
from guided.storage.folders import RunFolder


def _plan(calls: list[str], *, readers: tuple[str, ...] = ("prune",)) -> list[Stage]:
    def train(ctx):
        calls.append(ctx.stage.id)
        folder = RunFolder(ctx.dir)
        if folder.spec.exists():  # as a real run does: a finished run is not trained again
            return {}
        folder.spec.write_text("{}")
        folder.weights.write_bytes(b"weights")
        return {}

    def prune(ctx):
        calls.append(ctx.stage.id)
        assert RunFolder(ctx.dir_of("base")).weights.read_bytes() == b"weights"
        return {}

    def report(ctx):
        calls.append(ctx.stage.id)
        return {}

    pruned = [Stage(name, "prune", {"name": name}, prune, needs=("base",), reads_weights=True) for name in readers]
    every = ("base", *readers)
    return [Stage("base", "train", {}, train), *pruned, Stage("report", "report", {"n": len(readers)}, report, every)]


def _drop_weights(out):
    for f in (out / "stages").rglob("model.pt"):
        f.unlink()


def test_records_without_weights_stay_finished_for_stages_that_read_records(tmp_path):
    calls: list[str] = []
    run_stages(_plan(calls), tmp_path, log=lambda _: None)
    _drop_weights(tmp_path)
    calls.clear()
    stages = _plan(calls)
    assert set(statuses(stages, tmp_path, fingerprints(stages)).values()) == {"done"}
    run_stages(stages, tmp_path, log=lambda _: None)
    assert calls == []
    # a report that changed reads every stage's record, not its weights: only the report runs
    report = Stage("report", "report", {"n": 2}, lambda ctx: calls.append("report") or {}, ("base", "prune"))
    stages = [*_plan(calls)[:-1], report]
    assert statuses(stages, tmp_path, fingerprints(stages))["base"] == "done"
    run_stages(stages, tmp_path, log=lambda _: None)
    assert calls == ["report"]


def test_a_new_reader_of_missing_weights_runs_what_it_reads_again(tmp_path):
    calls: list[str] = []
    run_stages(_plan(calls), tmp_path, log=lambda _: None)
    _drop_weights(tmp_path)
    calls.clear()
    stages = _plan(calls, readers=("prune", "prune-2"))
    states = statuses(stages, tmp_path, fingerprints(stages))
    assert states == {"base": "no-weights", "prune": "done", "prune-2": "todo", "report": "stale"}
    lines: list[str] = []
    run_stages(stages, tmp_path, log=lines.append)
    assert calls == ["base", "prune-2", "report"]
    assert any("base runs again" in line for line in lines)
    assert RunFolder(tmp_path / "stages" / "base").weights.is_file()
