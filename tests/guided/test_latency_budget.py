"""Latency budgets: the interpolated per-layer table, ``latency=`` budgets, designs and pruning at them,
and a study whose processes all solve widths against one table kept in the study folder."""

from __future__ import annotations

import pytest

from guided.errors import UserError
from guided.pipeline import parse_study, plan_study
from guided.pipeline.runner import fingerprints
from guided.shapes.design import Budget, design, parse_budget
from guided.shapes.patterns import Pattern
from guided.timing.latency import LatencyTable
from models import create_spec
from tests.studies import tiny_study, vary


def affine(shape: tuple) -> float:
    """A made-up device: time affine in in, out and in * out (per layer position), as arithmetic is."""
    kind, cin, cout, k, stride, size, norm, pool = shape
    return 1e-4 + 1e-6 * cin + 2e-6 * cout + 3e-8 * cin * cout * k * k * size * size / stride


class Timed(LatencyTable):
    """A table whose "measurements" are `affine`, counted."""

    def __init__(self, **kw):
        super().__init__("cpu", **kw)
        self.timed: list[tuple] = []

    def _measure(self, shape: tuple) -> float:
        self.timed.append(shape)
        return affine(shape)


def test_table_times_powers_of_two_only_and_interpolates_exactly_between_them():
    table = Timed()
    for cin, cout in [(3, 16), (12, 40), (100, 7), (64, 64)]:
        shape = ("conv", cin, cout, 3, 1, 16, "bn", 0)
        assert table.shape_seconds(shape) == pytest.approx(affine(shape), rel=1e-9)
    assert all(s[1] & (s[1] - 1) == 0 and s[2] & (s[2] - 1) == 0 for s in table.timed)  # powers of two


def test_prepare_times_every_node_once_and_then_nothing_more():
    spec = create_spec("vgg11", width_mult=0.25)
    table = Timed()
    count = table.prepare(spec, headroom=2)
    assert count == len(table.timed) > 0
    wider = create_spec("vgg11", width_mult=0.5)  # twice as wide: inside the headroom
    table.predict(wider)
    table.predict(create_spec("vgg11", width_mult=0.1))
    assert len(table.timed) == count and table.prepare(spec, headroom=2) == 0


def test_table_is_cached_under_its_thread_count(tmp_path):
    table = Timed(cache=tmp_path, threads=1)
    table.predict(create_spec("vgg-tiny"))
    assert table.device_name.endswith("1 threads") and len(list(tmp_path.glob("*-1-threads-b128.json"))) == 1
    again = Timed(cache=tmp_path, threads=1)
    again.predict(create_spec("vgg-tiny"))
    assert again.timed == [] and again.seconds == table.seconds


@pytest.mark.parametrize(
    "text, seconds",
    [("latency=20ms", 0.02), ("latency=0.5s", 0.5), ("LATENCY = 7.5 ms", 0.0075)],
)
def test_parse_latency_budgets(text, seconds):
    table = Timed()
    budget = parse_budget(text, table=table)
    assert budget.kind == "latency" and budget.value == pytest.approx(seconds) and budget.table is table
    assert str(budget) == f"latency={1000 * seconds:.2f} ms"
    assert budget.to_dict() == {
        "kind": "latency",
        "value": budget.value,
        "device": table.device_name,
        "batch_size": 128,
    }
    assert Budget("macs", 5e6).to_dict() == {"kind": "macs", "value": 5e6}  # unchanged for counted costs


@pytest.mark.parametrize("text", ["latency=20", "latency=fast", "latency=-3ms", "latency=120%"])
def test_bad_latency_budgets_say_what_to_write(text):
    with pytest.raises(UserError, match="latency|percentage|positive"):
        parse_budget(text, full=create_spec("vgg-tiny"), table=Timed())


def test_latency_share_is_of_the_full_model_prediction():
    full, table = create_spec("vgg11", width_mult=0.25), Timed()
    assert parse_budget("latency=30%", full=full, table=table).value == pytest.approx(0.3 * table.predict(full))


@pytest.mark.parametrize("pattern", [None, "late-wide"])
def test_designs_meet_a_latency_budget(pattern):
    target, table = create_spec("vgg16", width_mult=0.25), Timed()
    table.prepare(target, headroom=2)
    budget = parse_budget("latency=30%", full=target, table=table)
    stages = [{"stage": i, "keep_ratio_mean": r} for i, r in enumerate([0.2, 0.3, 0.5, 0.9, 1.0])]
    spec = design(target, budget, pattern=Pattern("channels", tuple(stages)) if pattern else None)
    assert abs(table.predict(spec) - budget.value) / budget.value <= 0.01


def test_pruning_to_a_latency_budget_fits_it():
    from guided.pruning import prune, ratio_for_budget
    from models import build

    model, table = build(create_spec("vgg11", width_mult=0.25), seed=0).eval(), Timed()
    budget = parse_budget("latency=40%", full=model.spec, table=table)
    ratio = ratio_for_budget(model, "slimming", budget)
    assert table.predict(prune(model, "slimming", ratio=ratio).model.spec) <= budget.value


def test_a_latency_budget_without_a_table_says_so():
    with pytest.raises(UserError, match="needs a latency table"):
        Budget("latency", 0.01).of(create_spec("vgg-tiny"))


def test_masks_refuse_a_latency_budget():
    from guided.shapes.design import design_sparsity

    with pytest.raises(UserError, match="params or macs"):
        design_sparsity(create_spec("vgg-tiny"), parse_budget("latency=1ms", table=Timed()))


SLIM = {"name": "slim", "method": "slimming", "base": "sparse", "ratio": 0.4}
STUDY = tiny_study(
    {
        "study": {"name": "lat"},
        "data": {"train_subset": 100, "test_subset": 50},
        "train": {"batch_size": 32},
        "prune": [SLIM, {**SLIM, "name": "slim-mac", "cost": "macs"}],
        "design": {
            "pattern": ["slim", "slim-mac"],
            "budgets": ["macs=50%", "latency=50%"],
            "per_layer": ["slim-mac"],
            "pruned": ["slim-mac"],
        },
        "transfer": [{"name": "wide", "arch": "vgg-tiny", "width_mult": 1.5, "budgets": ["macs=50%"]}],
    }
)


@pytest.fixture
def fake_device(monkeypatch):
    monkeypatch.setattr(LatencyTable, "_measure", lambda self, shape: affine(shape))


def test_a_study_times_its_latency_table_once_into_its_folder(tmp_path, fake_device):
    study = parse_study(STUDY)
    stages, _ = plan_study(study, tmp_path)
    assert len(list((tmp_path / "latency").glob("cpu-*-1-threads-b32.json"))) == 1
    again, _ = plan_study(study, tmp_path)  # another process of the study: the same budgets, the same stages
    assert fingerprints(again) == fingerprints(stages)
    budgets = {s.config["budget"]["kind"]: s.config["budget"] for s in stages if s.id == "source/uniform-latency-50pct"}
    assert budgets["latency"]["batch_size"] == 32 and budgets["latency"]["device"].endswith("1 threads")


def test_per_layer_and_pruned_arms_follow_the_patterns_named(tmp_path, fake_device):
    study = parse_study(STUDY)
    ids = {s.id for s in plan_study(study, tmp_path)[0]}
    assert "source/macs-50pct-guided-slim-mac-per-layer-s0" in ids
    assert "source/macs-50pct-guided-slim-per-layer-s0" not in ids
    assert "source/pruned-slim-mac-to-latency-50pct-s0" in ids and "source/pruned-slim-to-macs-50pct-s0" not in ids
    assert "wide/macs-50pct-transferred-slim-mac-per-layer-s0" in ids
    assert not any(i.startswith("wide/") and "latency" in i for i in ids)  # the transfer's own budgets


@pytest.mark.parametrize(
    "change, message",
    [
        ({"design": {"per_layer": ["slimy"]}}, "per_layer"),
        ({"design": {"pruned": ["slimy"]}}, "pruned"),
        ({"transfer": [{**STUDY["transfer"][0], "budgets": ["params=50%"]}]}, "budgets"),
    ],
)
def test_bad_design_and_transfer_choices_are_refused(change, message):
    with pytest.raises(UserError, match=message):
        parse_study(vary(STUDY, change))


def test_a_dry_run_of_a_started_study_reads_its_table(tmp_path, fake_device, monkeypatch):
    from guided.pipeline import dry_run

    study = parse_study(STUDY)
    out = tmp_path / "study"
    plan_study(study, out)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(LatencyTable, "_measure", lambda self, shape: pytest.fail("a dry run timed a layer"))
    rows = dry_run(study, out, calibrate=False)
    assert rows and not (tmp_path / "cache").exists()


def test_cpu_tables_name_their_instruction_set_and_time_whole_units():
    import torch

    from guided.timing.latency import units

    assert torch.backends.cpu.get_cpu_capability().lower() in Timed(threads=1).device_name
    shapes = [u["shape"] for u in units(create_spec("vgg11", width_mult=0.25))]
    convs = [s for s in shapes if s[0] == "conv"]
    assert all(s[6] == "bn" for s in convs) and sum(s[7] for s in convs) == 4  # a max-pool after stages 1-4
    assert [s[6] for s in shapes if s[0] == "linear"] == ["bn", ""]  # Linear-BN-ReLU, then the classifier


def test_a_study_ranks_channels_by_latency_with_the_table_its_budgets_use(tmp_path, fake_device, monkeypatch):
    """``[[prune]] cost = "latency"`` and ``latency=`` budgets read one table: the study folder's."""
    from guided.pipeline.runner import run_one

    study = vary(STUDY, {"prune": [*STUDY["prune"], {**SLIM, "name": "slim-lat", "cost": "latency"}]})
    out = tmp_path / "study"
    stages, services = plan_study(parse_study(study), out)
    by_id = {s.id: s for s in stages}
    prune = by_id["source/prune-slim-lat-s0"]
    budget = by_id["source/uniform-latency-50pct"].config["budget"]
    assert prune.config["latency_batch"] == budget["batch_size"]
    read = []
    original = LatencyTable.layer_seconds
    monkeypatch.setattr(
        LatencyTable, "layer_seconds", lambda self, spec: read.append(self.path) or original(self, spec)
    )
    prints = fingerprints(stages)
    for stage in (by_id["source/base-sparse-s0"], prune):
        run_one(stage, out, prints[stage.id], services=services, log=lambda _: None)
    assert read and set(read) == {services.budget_from(budget).table.path}
    assert read[0].parent == out / "latency"
