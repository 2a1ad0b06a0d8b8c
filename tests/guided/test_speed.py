"""Measured speed: `guided.speed.inference_throughput` and `guided cost --measure`."""

from __future__ import annotations

import json

from guided.cli import main
from guided.speed import inference_throughput
from models import create_spec


def test_throughput_is_batch_over_the_median_pass_and_says_how_it_was_measured():
    r = inference_throughput(create_spec("vgg-tiny"), batch_size=16, repeats=3, warmup=1)
    assert r["images_per_s"] == 16 / r["median_s"] and r["median_s"] > 0
    assert r["repeats"] == 3 and r["batch_size"] == 16 and r["device"].startswith("cpu")


def test_a_network_with_four_times_the_macs_is_slower():
    small = inference_throughput(create_spec("vgg11", width_mult=0.125), batch_size=64, repeats=3)
    large = inference_throughput(create_spec("vgg11", width_mult=0.5), batch_size=64, repeats=3)
    assert large["images_per_s"] < small["images_per_s"]


def test_cost_measure_prints_throughput(capsys):
    assert main(["cost", "--arch", "vgg-tiny", "--measure", "--batch-size", "8"]) == 0
    assert "inference " in capsys.readouterr().out
    assert main(["cost", "--arch", "vgg-tiny", "--measure", "--batch-size", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inference"]["images_per_s"] > 0 and out["inference"]["batch_size"] == 8
