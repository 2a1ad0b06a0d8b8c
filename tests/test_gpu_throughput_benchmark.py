"""benchmarks/gpu_throughput.py runs on a CPU at small sizes and writes the file the README cites."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("gpu_throughput", ROOT / "benchmarks" / "gpu_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_measures_every_mode_and_counts_flops_from_macs(tmp_path):
    out = tmp_path / "gpu_throughput.json"
    argv = ["--smoke", "--device", "cpu", "--modes", "fp32,seeds-2,jobs-2", "--peak-tflops", "2.0", "--out", str(out)]
    assert _benchmark().main(argv) == 0
    result = json.loads(out.read_text())
    assert result["device"].startswith("cpu") and result["peak_bf16_tflops"] == 2.0
    assert result["provenance"]["git"] and result["matmul_tflops"] > 0
    rows = result["rows"]
    assert {(r["model"], r["mode"]) for r in rows} == {
        (m, mode) for m in ("vgg16 x0.0625", "resnet20 x0.25") for mode in ("fp32", "seeds-2", "jobs-2")
    }
    for r in rows:
        assert r["images_per_s"] > 0
        assert r["tflops"] == pytest.approx(r["images_per_s"] * 6 * r["macs"] / 1e12, rel=1e-2, abs=1e-4)
        assert r["fraction_of_peak"] == pytest.approx(r["tflops"] / 2.0, rel=1e-2, abs=1e-5)
    assert all(len(r["per_process"]) == 2 for r in rows if r["mode"] == "jobs-2")


def test_without_a_known_peak_the_fraction_is_null(tmp_path):
    out = tmp_path / "t.json"
    assert _benchmark().main(["--smoke", "--device", "cpu", "--modes", "fp32", "--out", str(out)]) == 0
    assert all(r["fraction_of_peak"] is None for r in json.loads(out.read_text())["rows"])
