"""A new executor or search sampler is one definition and one registration line, made here from a test
module: the runner, ``guided run --executor`` and ``guided search --sampler`` take it (fake stages)."""

from __future__ import annotations

import concurrent.futures as cf

import optuna
import pytest

from guided.cli import main
from guided.pipeline.executors import EXECUTORS, make_executor, register_executor
from guided.pipeline.runner import Stage, fingerprints, run_group, run_stages
from guided.shapes.design import Budget
from guided.training.data import load_dataset, subsample, validation_split
from guided.training.recipes import get_recipe
from models import create_spec
from search import run_search
from search.study import SAMPLERS, open_storage, register_sampler


class ThreadExecutor:
    """Stages in a thread pool of this process: the whole executor contract in a dozen lines."""

    def __init__(self, stages, out, jobs):
        self.slots, self.stages, self.out = jobs, {s.id: s for s in stages}, out
        self.prints, self.pool = fingerprints(stages), cf.ThreadPoolExecutor(jobs)

    def submit(self, stage_ids):
        units = [self.stages[i] for i in stage_ids]
        return self.pool.submit(run_group, units, self.out, self.prints, log=lambda _: None)

    def wait(self, handles):
        done = next(cf.as_completed(handles))
        done.result()
        return done, {"wall_time_s": 0.0, "worker": "thread"}

    def close(self):
        self.pool.shutdown()


def _stages(calls):
    def work(ctx):
        calls.append(ctx.stage.id)
        return {"id": ctx.stage.id}

    first = [Stage(f"train-{i}", "train", {"i": i}, work) for i in range(3)]
    return [*first, Stage("report", "report", {}, work, needs=tuple(s.id for s in first))]


@pytest.fixture
def registered():
    """Names registered by a test, unregistered after it."""
    names: list[tuple[dict, str]] = []
    yield names
    for registry, name in names:
        registry.pop(name, None)


def test_a_registered_executor_runs_a_study_and_the_cli_offers_it(tmp_path, registered, capsys):
    calls: list[str] = []
    stages = _stages(calls)
    registered.append((EXECUTORS, "threads"))
    register_executor("threads", "a thread pool in this process")(
        lambda study, out, *, jobs, threads, address: ThreadExecutor(stages, out, jobs)
    )
    runner = make_executor("threads", None, tmp_path, jobs=2, threads=None, address=None)
    records = run_stages(stages, tmp_path, executor=runner, log=lambda _: None)
    runner.close()
    assert sorted(calls[:3]) == ["train-0", "train-1", "train-2"] and calls[3] == "report"
    assert records["report"] == {"id": "report"}
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "threads: a thread pool in this process" in " ".join(capsys.readouterr().out.split())


def test_a_registered_sampler_drives_a_search_and_the_cli_offers_it(tmp_path, registered, capsys):
    made: list[int] = []
    registered.append((SAMPLERS, "tpe-eager"))

    @register_sampler("tpe-eager")
    def tpe_eager(seed: int):  # TPE that models the trials from the second one on
        made.append(seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=1)

    data = validation_split(subsample(load_dataset("digits"), train=200, seed=0), 0.25, seed=0)
    recipe = get_recipe("quick").override(epochs=1, batch_size=64)
    target = create_spec("vgg-tiny", in_channels=1)
    budget = Budget("params", 4000)
    run_search(target, budget, data, recipe, trials=2, out_dir=tmp_path, sampler="tpe-eager", log=lambda *_: None)
    assert made, "the registered sampler was never made"
    study = optuna.load_study(study_name="guided-search", storage=open_storage(None, tmp_path))
    assert len(study.trials) == 2
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "tpe-eager" in capsys.readouterr().out
