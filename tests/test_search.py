"""Width search: the space stays on budget, seeds come first, a tiny search runs end to end, storage errors."""

import json

import optuna
import pytest

from guided.cli import main
from guided.errors import UserError
from guided.shapes.design import Budget, design
from guided.shapes.patterns import Pattern
from guided.training.data import load_dataset, subsample, validation_split
from guided.training.recipes import get_recipe
from models import cost, create_spec
from search import WidthSpace, mask_url, open_storage, run_search
from search.plots import history_data


@pytest.mark.parametrize("per_layer", [False, True])
def test_the_space_never_proposes_an_over_budget_spec(per_layer):
    budget = Budget("params", 1.5e5)
    space = WidthSpace(create_spec("vgg16", width_mult=0.25), budget, per_layer=per_layer)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        spec = space.suggest(trial)
        assert abs(cost(spec).params - budget.value) / budget.value <= 0.01
        assert trial.user_attrs["params"] == cost(spec).params
        study.tell(trial, 0.0)


@pytest.mark.parametrize("arch, stages", [("vgg16", 5), ("mobilenetv2", 8)])  # MobileNetV2's last conv: a stage
def test_seed_designs_round_trip_through_the_space(arch, stages):
    target = create_spec(arch, width_mult=0.25)
    budget = Budget("params", 0.4 * cost(target).params)
    uniform = design(target, budget)
    space = WidthSpace(target, budget)
    assert space.names == [f"r{s}" for s in range(stages)]
    params = space.params_of(uniform)
    assert all(v == pytest.approx(1.0, abs=0.12) for v in params.values())  # one multiplier, up to rounding
    again = space.spec(params)
    assert abs(cost(again).params - budget.value) <= 0.01 * budget.value
    assert all(abs(a - b) <= max(2, 0.15 * b) for a, b in zip(again.widths(), uniform.widths()))
    with pytest.raises(UserError, match="does not have the stages"):
        space.params_of(create_spec("resnet20"))


@pytest.fixture(scope="module")
def tiny_data():
    data = subsample(load_dataset("digits"), train=600, seed=0)
    return validation_split(data, 0.2, seed=0)


@pytest.mark.slow
def test_tiny_search_runs_seeds_first_and_writes_a_spec_cost_accepts(tmp_path, tiny_data, capsys):
    target = create_spec("vgg-tiny", in_channels=1)
    budget = Budget("params", 4000)
    seeds = [
        design(target, budget),
        design(
            target,
            budget,
            pattern=Pattern(
                "channels", tuple({"stage": s, "keep_ratio_mean": r} for s, r in enumerate([1, 1, 0.8, 0.5, 0.3]))
            ),
        ),
    ]
    summary = run_search(
        target,
        budget,
        tiny_data,
        get_recipe("quick").override(epochs=1, batch_size=64),
        trials=4,
        out_dir=tmp_path,
        seed_designs=seeds,
        pruner="none",
        log=lambda *_: None,
    )
    study = optuna.load_study(study_name="guided-search", storage=open_storage(None, tmp_path))
    first = sorted(study.trials, key=lambda t: t.number)[:2]
    assert [t.user_attrs.get("seed_design") for t in first] == [0, 1]
    assert summary["trials"]["complete"] == 4
    assert (tmp_path / "trials.csv").exists() and (tmp_path / "history.png").exists()
    assert main(["cost", "--spec", str(tmp_path / "best.json"), "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["params"] - 4000) <= 40
    # resuming the same study with a higher target adds only the missing trials
    run_search(
        target,
        budget,
        tiny_data,
        get_recipe("quick").override(epochs=1, batch_size=64),
        trials=5,
        out_dir=tmp_path,
        seed_designs=seeds,
        pruner="none",
        log=lambda *_: None,
    )
    assert len(optuna.load_study(study_name="guided-search", storage=open_storage(None, tmp_path)).trials) == 5


def test_history_data_tracks_the_best():
    def row(n, v, seeded=False, state="complete"):
        return {"number": n, "value": v, "seed_design": 0 if seeded else None, "state": state}

    history = [row(1, 0.5), row(0, 0.7, True), row(3, None, state="pruned"), row(2, 0.9)]
    data = history_data(history)
    assert data["number"] == [0, 1, 2]  # completed trials only, in order
    assert data["best"] == [0.7, 0.7, 0.9] and data["seed_design"] == [True, False, False]


def test_wrong_storage_url_is_one_line_without_the_password(tmp_path, capsys):
    code = main(
        [
            "search",
            "--arch",
            "vgg-tiny",
            "--dataset",
            "digits",
            "--budget",
            "params=4000",
            "--trials",
            "2",
            "--storage",
            "postgresql://bob:s3cret-pw@127.0.0.1:9/nodb",
            "--out",
            str(tmp_path),
        ]
    )
    warning, error = capsys.readouterr().err.splitlines()  # the typed password is warned about, then refused
    assert code == 2 and "visible to other users" in warning
    assert "s3cret-pw" not in warning + error and "postgresql://bob:***@127.0.0.1:9/nodb" in error


def test_mask_url():
    assert mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_trial_stoppers_never_stop_the_first_five_trials_and_random_is_a_sampler():
    import inspect

    from search.study import _create_study

    assert inspect.signature(run_search).parameters["pruner"].default == "none"
    study = _create_study(False, "median", "tpe", 4, 0, None, "median")
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    assert isinstance(study.sampler.inner, optuna.samplers.TPESampler)
    random_sampler = _create_study(False, "none", "random", 4, 0, None, "r").sampler.inner
    assert isinstance(random_sampler, optuna.samplers.RandomSampler)

    def objective(trial):  # every later trial is worse than all before: the median stops it once it may
        for step in range(1, 5):
            trial.report(1.0 / (trial.number + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 1.0 / (trial.number + 1)

    study.optimize(objective, n_trials=10)
    states = [t.state for t in sorted(study.trials, key=lambda t: t.number)]
    assert states[:5] == [optuna.trial.TrialState.COMPLETE] * 5
    assert optuna.trial.TrialState.PRUNED in states[5:]  # it does stop trials after its start-up


def test_a_search_that_barely_completed_is_flagged():
    from guided.pipeline.report import search_warnings

    def trials(complete, stopped):
        return {"trials": [{"value": 0.5}] * complete + [{"value": None}] * stopped}

    warnings = search_warnings({"cold": trials(2, 10), "random": trials(6, 6), "seeded": trials(12, 0)})
    assert len(warnings) == 1 and "only 2 of 12 trials of the cold search completed" in warnings[0]


def test_each_search_arm_draws_its_own_trials():
    """Search arms are studies of other names: their samplers draw other first trials (they used to share the
    first draws, so two arms could retrain the same architecture); the same name draws the same again."""
    import optuna

    from search.study import per_trial_seed

    def first_draw(name: str, make=optuna.samplers.RandomSampler) -> float:
        study = optuna.create_study(study_name=name, sampler=per_trial_seed(make, 0))
        return study.ask().suggest_float("r0", 0.1, 1.0)

    draws = [first_draw(f"search-{arm}") for arm in ("cold", "seeded", "random")]
    assert len(set(draws)) == 3 and first_draw("search-cold") == draws[0]
    assert first_draw("search-cold", optuna.samplers.TPESampler) != first_draw(
        "search-random", optuna.samplers.TPESampler
    )
