"""Measured speed: `guided.timing.speed.inference_throughput` and `guided cost --measure`."""

from __future__ import annotations

import json

import pytest

from guided.cli import main
from guided.errors import UserError
from guided.timing.speed import inference_throughput
from models import create_spec


def test_throughput_is_batch_over_the_median_pass_and_says_how_it_was_measured():
    r = inference_throughput(create_spec("vgg-tiny"), batch_size=16, repeats=3, warmup=1)
    assert r["images_per_s"] == 16 / r["median_s"] and r["median_s"] > 0
    assert r["repeats"] == 3 and r["batch_size"] == 16 and r["device"].startswith("cpu")


def test_a_network_with_sixteen_times_the_macs_is_slower():
    # alternated and compared at their best, so that load which comes and goes cannot order them
    specs = {"small": create_spec("vgg11", width_mult=0.125), "large": create_spec("vgg11", width_mult=0.5)}
    best = {name: 0.0 for name in specs}
    for _ in range(3):
        for name, spec in specs.items():
            rate = inference_throughput(spec, batch_size=64, repeats=3, wait_s=0)["images_per_s"]
            best[name] = max(best[name], rate)
    assert best["large"] < best["small"]


def test_cost_measure_prints_throughput(capsys):
    assert main(["cost", "--arch", "vgg-tiny", "--measure", "--batch-size", "8"]) == 0
    assert "inference " in capsys.readouterr().out
    assert main(["cost", "--arch", "vgg-tiny", "--measure", "--batch-size", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inference"]["images_per_s"] > 0 and out["inference"]["batch_size"] == 8


def test_latency_table_predicts_a_step_and_caches_each_shape(tmp_path):
    from guided.timing.latency import LatencyTable, measure_step

    spec = create_spec("vgg-tiny")
    table = LatencyTable("cpu", batch_size=8, repeats=2, cache=tmp_path)
    rows = table.layer_seconds(spec)
    assert rows and all(r["seconds"] > 0 for r in rows)
    cached = LatencyTable("cpu", batch_size=8, cache=tmp_path)  # a new table reads the cache: nothing to time
    assert cached.seconds == table.seconds and cached.predict(spec) == table.predict(spec)
    assert measure_step(spec, "cpu", batch_size=8, repeats=2) > 0


def test_cost_latency_prints_predicted_and_measured(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["cost", "--arch", "vgg-tiny", "--latency", "--batch-size", "8", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)["latency"]
    assert lat["predicted_s"] > 0 and lat["measured_s"] > 0 and lat["batch_size"] == 8
    assert list((tmp_path / "guided" / "latency").glob("cpu-*-b8.json"))
    assert main(["cost", "--arch", "vgg-tiny", "--latency", "--batch-size", "8"]) == 0
    assert "predicted" in capsys.readouterr().out


def test_latency_aware_pruning_reads_the_callers_table(tmp_path):
    from guided.operations import latency_table
    from guided.pruning import prune
    from models import build

    model = build(create_spec("vgg-tiny"), seed=0).eval()
    with pytest.raises(UserError, match="latency table"):
        prune(model, "slimming", ratio=0.3, cost="latency")
    table = latency_table("cpu", batch_size=8, folder=tmp_path)
    result = prune(model, "slimming", ratio=0.3, cost="latency", latency=table)
    assert result.info["cost"] == "latency" and list(tmp_path.glob("*.json"))


def test_all_cores_lends_the_whole_machine_to_a_block_and_gives_it_back(monkeypatch):
    import torch

    from guided.timing import threads

    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert threads.configure(share=2) == 1  # a worker of `--jobs 2`: half the cores
    with threads.all_cores() as n:  # e.g. the report stage's timings, which run alone
        assert n == 2 == torch.get_num_threads()
    assert torch.get_num_threads() == 1


def test_a_timing_beside_a_cpu_burning_process_says_so():
    """One process spinning on a core: the timing waits (here: not at all), measures again, and records the
    load it saw and a note instead of returning a bare number."""
    import subprocess
    import sys
    import time

    from guided.timing.speed import condition_note, other_load

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        while (other_load() or 0) < 0.8 and time.monotonic() < deadline:
            pass  # until the burner is scheduled
        r = inference_throughput(create_spec("vgg-tiny"), batch_size=16, repeats=3, wait_s=0)
    finally:
        burner.kill()
        burner.wait()
    assert r["condition"]["clean"] is False and r["condition"]["attempts"] == 2
    assert r["condition"]["other_load_cores"] > 0.5
    assert condition_note(r["condition"]).startswith("contended: other processes kept")


def test_a_quiet_machine_gives_a_clean_condition_and_no_note():
    from guided.timing.speed import condition_note, timed_cleanly

    times, condition = timed_cleanly(lambda: [0.010, 0.011, 0.010], wait_s=0)
    assert times == [0.010, 0.011, 0.010]
    if condition["other_load_cores"] is not None and condition["other_load_cores"] <= 0.5:
        assert condition["clean"] and condition_note(condition) == ""
    _, noisy = timed_cleanly(lambda: [0.010, 0.030], wait_s=0)
    assert not noisy["clean"] and "spread 3.00x" in condition_note(noisy)
