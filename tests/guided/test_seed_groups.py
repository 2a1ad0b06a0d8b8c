"""How the runner bundles stages of one seed group (fake actions: no training here)."""

from __future__ import annotations

import json

from guided.pipeline.runner import Stage, fingerprints, run_stages, units
from guided.storage.folders import StageFolder


def _stages(calls: list) -> list[Stage]:
    def alone(ctx):
        calls.append((ctx.stage.id,))
        return {"alone": True}

    def together(ctxs):
        calls.append(tuple(c.stage.id for c in ctxs))
        return [{"together": len(ctxs)} for _ in ctxs]

    def train(name: str, seed: int, group: str) -> Stage:
        return Stage(f"{name}-s{seed}", "train", {"seed": seed}, alone, group=group, group_action=together)

    return [
        Stage("design", "design", {}, alone),
        train("uniform", 0, "u"),
        train("guided", 0, "g"),
        train("uniform", 1, "u"),
        train("guided", 1, "g"),
        train("uniform", 2, "u"),
        Stage("report", "report", {}, alone, needs=("design",)),
    ]


def test_units_bundle_one_group_up_to_k_in_plan_order():
    stages = _stages([])
    assert [[s.id for s in u] for u in units(stages)] == [[s.id] for s in stages]
    assert [[s.id for s in u] for u in units(stages, group_seeds=2)] == [
        ["design"],
        ["uniform-s0", "uniform-s1"],
        ["guided-s0", "guided-s1"],
        ["uniform-s2"],
        ["report"],
    ]


def test_a_group_runs_once_and_each_stage_gets_its_own_records(tmp_path):
    calls: list = []
    stages = _stages(calls)
    run_stages(stages, tmp_path, group_seeds=3, log=lambda _: None)
    assert ("uniform-s0", "uniform-s1", "uniform-s2") in calls and ("guided-s0", "guided-s1") in calls
    assert ("uniform-s1",) not in calls
    done = json.loads(StageFolder(tmp_path / "stages" / "uniform-s1").done.read_text())
    assert done["record"] == {"together": 3} and done["fingerprint"] == fingerprints(stages)["uniform-s1"]
    assert StageFolder(tmp_path / "stages" / "uniform-s1").read_started()["revision"]


def test_finished_stages_of_a_group_are_not_run_again(tmp_path):
    calls: list = []
    stages = _stages(calls)
    run_stages(stages[:2], tmp_path, log=lambda _: None)  # uniform-s0 alone, before any grouping
    calls.clear()
    run_stages(stages, tmp_path, group_seeds=3, log=lambda _: None)
    assert ("uniform-s1", "uniform-s2") in calls and not any("uniform-s0" in c for c in calls)


def test_a_group_stopped_midway_starts_again_together(tmp_path):
    calls: list = []
    stages = _stages(calls)

    def killed(ctxs):
        raise KeyboardInterrupt

    first = [stages[1], stages[3]]
    try:
        run_stages([Stage(s.id, s.kind, s.config, s.action, group=s.group, group_action=killed) for s in first],
                   tmp_path, group_seeds=2, log=lambda _: None)  # fmt: skip
    except KeyboardInterrupt:
        pass
    run_stages(stages, tmp_path, group_seeds=3, log=lambda _: None)
    assert ("uniform-s0", "uniform-s1", "uniform-s2") in calls  # begun, no checkpoint: grouped again
