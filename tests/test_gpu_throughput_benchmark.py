"""benchmarks/gpu_throughput.py runs on a CPU at small sizes and writes the file the README cites."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tarfile
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

    # what a dry run estimates a device's time from (`guided run --dry-run --throughput`)
    from guided.pipeline.throughput import load_throughput

    bench = load_throughput(out)
    assert bench.single_mode("auto") == "fp32" and bench.group_mode(3, "auto") == "seeds-2"
    assert bench.rate(rows[0]["macs"], "fp32") == pytest.approx(rows[0]["tflops"] * 1e12)
    assert 0 < bench.sharing(rows[0]["macs"], 2, "auto") <= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--modes", "fp32,turbo"], "unknown mode(s) ['turbo']"),
        (["--modes", "seeds-1"], "unknown mode(s) ['seeds-1']"),
        (["--models", "vgg17:1"], "unknown model 'vgg17'"),
        (["--models", "vgg16:abc"], "NAME:WIDTH"),
        (["--models", "vgg16:0"], "width multiplier must lie in (0, 64)"),
        (["--device", "mps"], "unknown device 'mps'"),
        (["--out", "/dev/full"], "--out /dev/full is not a regular file"),
        (["--out", "/nonexistent/x.json"], "cannot write into /nonexistent"),
    ],
)
def test_bad_arguments_are_one_line_and_refused_before_measuring(argv, message, capsys, monkeypatch):
    bench = _benchmark()
    monkeypatch.setattr(bench, "one_run", lambda *a, **k: pytest.fail("measured before checking its arguments"))
    with pytest.raises(SystemExit) as stop:
        bench.main(["--smoke", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.count("\n") == 1


def test_without_a_known_peak_the_fraction_is_null(tmp_path):
    out = tmp_path / "t.json"
    assert _benchmark().main(["--smoke", "--device", "cpu", "--modes", "fp32", "--out", str(out)]) == 0
    assert all(r["fraction_of_peak"] is None for r in json.loads(out.read_text())["rows"])


@pytest.mark.slow
def test_the_gpu_session_script_benchmarks_then_runs_and_packs_the_study_without_weights(tmp_path):
    """``SMOKE=1`` runs the device session's phases on a CPU: the benchmark, then the tiny study packed into
    one file of records (no weights, no unfinished stage), which a later session restores and resumes."""
    env = {
        **os.environ,
        "SMOKE": "1",
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "DEVDATA": str(tmp_path / "no-data"),
        "STASH": str(tmp_path / "stash"),
        "CACHE": str(tmp_path / "cache"),
    }
    script = str(ROOT / "benchmarks" / "gpu_session.sh")
    for phase in ("bench", "study"):
        subprocess.run(["bash", script, phase], env=env, check=True, capture_output=True, timeout=600)
    assert json.loads((tmp_path / "out" / "gpu_throughput.json").read_text())["rows"]
    with tarfile.open(tmp_path / "out" / "study.tar.gz") as tar:
        names = tar.getnames()
    assert "report.md" in names and "study.json" in names
    assert not [n for n in names if n.endswith((".pt", ".npz", ".lock"))]

    # a later session: a fresh machine restores the file and finds every stage done
    env.update(WORK=str(tmp_path / "work2"), RESTORE=str(tmp_path / "out" / "study.tar.gz"))
    again = subprocess.run(["bash", script, "study"], env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "restored" in again.stdout and "already done" in again.stdout and ", 0 already done" not in again.stdout
