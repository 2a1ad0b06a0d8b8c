"""Estimating a GPU study's device time from a throughput benchmark, on a machine without that GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from guided.cli import main
from guided.errors import UserError
from guided.pipeline import dry_run, parse_study, plan_study
from guided.pipeline.estimate import simulate
from guided.pipeline.runner import Stage
from guided.pipeline.throughput import Throughput, load_throughput
from models import cost
from tests.studies import tiny_study, write_study

CUDA_STUDY = tiny_study(
    {
        "study": {"name": "tiny-gpu", "seeds": [0, 1], "device": "cuda", "precision": "bf16"},
        "train": {"epochs": 2},
        "prune": [{"name": "slim", "method": "slimming", "base": "plain", "ratio": 0.4}],
    }
)

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="plans a CUDA study where there is no GPU")


def _row(mode: str, macs: float, tflops: float, warmup_s: float = 2.0) -> dict:
    return {
        "mode": mode,
        "macs": macs,
        "images_per_s": tflops * 1e12 / (6 * macs),
        "tflops": tflops,
        "warmup_s": warmup_s,
    }


def _bench(*rows: dict) -> dict:
    return {"device": "cuda: Test GPU", "batch_size": 128, "precision_single_runs": "bf16", "rows": list(rows)}


BENCH = _bench(
    _row("bf16", 1e5, 0.01),
    _row("bf16", 1e7, 1.0),
    _row("fp32", 1e5, 0.005),
    _row("seeds-2", 1e5, 0.03),
    _row("seeds-4", 1e5, 0.05),
    _row("jobs-2", 1e5, 0.016),
)


def test_rates_interpolate_in_log_log_hold_above_and_follow_the_slope_below():
    t = Throughput(BENCH)
    assert t.rate(1e6, "bf16") == pytest.approx(0.1e12)  # halfway in log MACs: the geometric mean of the rates
    assert t.rate(1e9, "bf16") == pytest.approx(1e12)  # above the largest: its rate
    assert t.rate(1e3, "bf16") == pytest.approx(1e8)  # below the smallest: 100x fewer MACs, 100x slower
    with pytest.raises(UserError, match="no 'compile' rows"):
        t.rate(1e6, "compile")


def test_rates_come_from_the_same_architecture_and_extrapolate_below_the_smallest():
    from models import create_spec

    vgg, resnet = create_spec("vgg16", width_mult=0.25), create_spec("resnet56")
    t = Throughput(
        _bench(
            {**_row("bf16", 2e7, 1.0), "model": "vgg16 x0.25"},
            {**_row("bf16", 3e8, 8.0), "model": "vgg16 x1"},
            {**_row("bf16", 1.2e8, 2.0), "model": "resnet56 x1"},
        )
    )
    # a VGG-16 between its two measured widths ignores the deeper ResNet-56 measured in between
    assert t.rate(1.2e8, "bf16", vgg) == pytest.approx(1e12 * 8 ** (math.log(6) / math.log(15)))
    assert t.rate(1.2e8, "bf16", resnet) == pytest.approx(2e12)  # its own, measured
    assert t.rate(1e8, "bf16", create_spec("vgg19")) == t.rate(1e8, "bf16", vgg)  # no VGG-19: the family
    # below the smallest VGG-16: along the slope of the two smallest, in log-log
    assert t.rate(2e6, "bf16", vgg) == pytest.approx(1e12 * 8 ** (math.log(0.1) / math.log(15)))


def test_modes_take_the_largest_measured_group_and_job_count_at_most_asked():
    t = Throughput(BENCH)
    assert t.single_mode("bf16") == "bf16" and t.single_mode("fp32") == "fp32" and t.single_mode("auto") == "bf16"
    assert [t.group_mode(k, "bf16") for k in (1, 2, 3, 5, 16)] == ["bf16", "seeds-2", "seeds-2", "seeds-4", "seeds-4"]
    assert t.sharing(1e5, 1, "bf16") == 1.0
    assert t.sharing(1e5, 2, "bf16") == pytest.approx(0.8)  # 2 together do 1.6x one alone: 80% each
    assert t.sharing(1e5, 4, "bf16") == pytest.approx(0.4)  # no jobs-4 row: jobs-2's aggregate, over 4
    lone = Throughput(_bench(_row("bf16", 1e5, 0.01)))
    assert lone.sharing(1e5, 3, "bf16") == pytest.approx(1 / 3)  # nothing measured: the device split evenly


def test_a_training_costs_its_flops_over_the_rate_plus_the_fixed_warmup():
    t = Throughput(BENCH)
    spec = _spec()
    macs = cost(spec).macs
    work = {"kind": "train", "spec": spec, "train": 1000, "test": 500, "epochs": 3, "batch": 128}
    flops = 3 * (6 * 1000 + 2 * 500) * macs
    fixed = 2.0 - 3 * 128 / BENCH["rows"][0]["images_per_s"]
    alone = t.training_seconds([work], precision="bf16")
    assert alone == pytest.approx(flops / t.rate(macs, "bf16") + fixed)
    pair = t.training_seconds([work, work], precision="bf16")
    assert pair == pytest.approx(2 * flops / t.rate(macs, "seeds-2") + fixed)
    search = {**work, "kind": "search", "trials": 5}
    assert t.training_seconds([search], precision="bf16") == pytest.approx(5 * alone)


def test_files_that_are_not_benchmark_results_are_refused(tmp_path):
    good = {"mode": "bf16", "macs": 1e5, "images_per_s": 1, "tflops": 1}
    for bad in (
        {"rows": []},
        {"rows": [{**good, "macs": 0}]},
        [1, 2],
        {"rows": [{**good, "tflops": True}]},  # JSON's true is not a number
        {"rows": [{**good, "macs": "1e5"}]},
        {"rows": [{**good, "mode": 3}]},
        {"rows": [{**good, "warmup_s": -1}]},
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError, match="not a throughput benchmark's results"):
            load_throughput(path)
    for text, message in [
        ('{"rows": [{"mode": "bf16", "macs": Infinity, "images_per_s": 1, "tflops": 1}]}', "not a throughput"),
        ('{"rows": [{"mode": "bf16", "macs": ' + "9" * 5000 + ', "images_per_s": 1, "tflops": 1}]}', "not valid JSON"),
        (json.dumps({"batch_size": -128, "rows": [good]}), "batch_size must be a whole number"),
    ]:
        path.write_text(text)
        with pytest.raises(UserError, match=message):
            load_throughput(path)
    for special, message in [(tmp_path, "is a folder"), (Path("/dev/zero"), "is not a regular file")]:
        with pytest.raises(UserError, match=message):
            load_throughput(special)


def test_a_device_string_with_terminal_escapes_is_printed_without_them():
    t = Throughput({**BENCH, "device": "cuda: \x1b[2J\x1b]0;owned\x07GPU"})
    assert "\x1b" not in t.device and "\x07" not in t.device and t.device.endswith("GPU")
    assert "\x1b" not in t.basis(2, 1, "bf16")


def test_simulate_runs_up_to_k_seeds_of_a_group_as_one_unit():
    stages = [
        Stage(f"{arm}-s{seed}", "train", {"seed": seed}, None, group=arm)
        for seed in range(3)
        for arm in ("uniform", "guided")
    ]
    seconds = {s.id: 10.0 for s in stages}
    alone = simulate(stages, seconds, slots=1)
    assert alone.wall == 60.0
    grouped = simulate(stages, seconds, slots=1, group_seeds=2, unit_seconds=lambda unit: 10.0 + 2 * len(unit))
    # units: uniform s0+s1, guided s0+s1, uniform s2, guided s2
    assert grouped.wall == pytest.approx(14 + 14 + 12 + 12)
    assert grouped.starts["uniform-s0"] == grouped.starts["uniform-s1"] == 0.0
    assert grouped.seconds["uniform-s0"] == pytest.approx(7.0) and grouped.seconds["uniform-s2"] == 12.0


@no_gpu
def test_a_cuda_study_planned_without_a_gpu_is_listed_and_timed_only_from_a_benchmark(tmp_path, capsys):
    study = parse_study(CUDA_STUDY)
    rows = dry_run(study, tmp_path / "new")
    assert rows and all(r["seconds"] is None for r in rows) and "--throughput" in rows[0]["basis"]

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    alone = {r["stage"]: r for r in dry_run(study, tmp_path / "new", throughput=bench)}
    grouped = {r["stage"]: r for r in dry_run(study, tmp_path / "new", throughput=bench, group_seeds=2)}
    assert all(r["seconds"] > 0 for r in alone.values()) and alone["report"]["device"] == "cuda: Test GPU"
    assert "seed groups at the seeds-2 rate" in grouped["report"]["basis"]
    groups: dict[str, list[str]] = {}
    for s in plan_study(study)[0]:
        if s.group:
            groups.setdefault(s.group, []).append(s.id)
    pairs = [ids for ids in groups.values() if len(ids) == 2]  # each seed's pruned network trains alone
    assert len(pairs) >= 2
    for first, second in pairs:  # seeds 0 and 1 start together, each taking half the group's time
        assert grouped[first]["start"] == grouped[second]["start"]
        assert grouped[first]["seconds"] < alone[first]["seconds"]  # seeds-2 does 3x a run alone's FLOP/s

    assert main(["run", str(write_study(tmp_path, CUDA_STUDY)), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "time not estimated: the study trains on 'cuda'" in capsys.readouterr().out
    argv = [
        "run",
        str(write_study(tmp_path, CUDA_STUDY)),
        "--out",
        str(tmp_path / "o"),
        "--dry-run",
        "--throughput",
        str(bench),
    ]
    assert main(argv) == 0
    assert "of wall time on cuda: Test GPU (" in capsys.readouterr().out


def test_throughput_without_a_dry_run_is_refused(tmp_path, capsys):
    argv = ["run", str(write_study(tmp_path, CUDA_STUDY)), "--throughput", str(tmp_path / "b.json")]
    assert main(argv) == 2
    assert "--throughput only estimates" in capsys.readouterr().err


def _spec():
    from models import create_spec

    return create_spec("vgg-tiny", num_classes=10, in_channels=1, input_size=16)
