"""How fast a study runs serially, with local worker processes, and on a Ray cluster; and how two
concurrent trainings share a machine with and without the thread split.

All on this machine, in one run, one after the other (nothing else CPU-heavy may run meanwhile):

1. a small-network study (offline digits, VGG-11 x0.25 at 16 pixels, 2 seeds: bases, slimming, pattern,
   designs at two budgets, everything trained from scratch; no search) run serially with all cores,
   with ``--jobs 2``, and with ``--executor ray`` on a local Ray cluster of as many CPUs as cores; and the
   same study at 32 pixels (4x the compute per image) serially and with ``--jobs 2``. Splitting a machine
   into single-thread workers pays as much as one process fails to use its second thread: a small
   network trains 1.3x faster on 2 threads than on 1 here, the 32-pixel one 1.7x;
2. two ``guided train`` processes started together (VGG-16 x0.25 on digits at 32 pixels), once with the
   default thread budget (each sees the other and takes half the cores) and once forced to all cores each
   (``GUIDED_THREADS``), against one process alone: total training images/s over the epochs both ran.

Targets on a 2-core machine: ``--jobs 2`` at least 1.4x faster than serial; two concurrent trainings with
split threads at least 0.9x the throughput of one alone. Writes ``results/benchmarks/study_speed.json``
and prints a Markdown table for the README.

Run: ``python benchmarks/study_speed.py`` (about 10 minutes on 2 cores; needs the ``ray`` extra for the
Ray row, skipped without it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guided.storage.io import write_json
from guided.storage.provenance import provenance
from guided.timing.speed import benchmark_condition, other_load
from guided.timing.threads import cores

ROOT = Path(__file__).resolve().parents[1]
GUIDED = [sys.executable, "-m", "guided"]

STUDY = """
[study]
name = "study-speed"
seeds = [0, 1]
device = "cpu"

[data]
dataset = "digits"
image_size = {size}

[model]
arch = "vgg11"
width_mult = 0.25

[train]
epochs = 4
batch_size = 64

[[prune]]
name = "slim"
method = "slimming"
base = "sparse"
ratio = 0.5
retrain = ["scratch-e"]

[design]
pattern = "slim"
budgets = ["params=30%", "params=10%"]
"""

TRAIN = ["train", "--arch", "vgg16", "--width-mult", "0.25", "--dataset", "digits", "--image-size", "32"]
TRAIN += ["--epochs", "4", "--batch-size", "64"]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def run_study(work: Path, name: str, *extra: str, size: int = 16) -> float:
    study = work / f"study-{size}.toml"
    study.write_text(STUDY.format(size=size))
    seconds = timed([*GUIDED, "run", str(study), "--out", str(work / name), *extra])
    print(f"study {name}: {seconds:.1f} s", flush=True)
    return seconds


def ray_study(work: Path) -> float | None:
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        print("no ray: skipping the Ray row (pip install -e '.[ray]')")
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(ray), "start", "--head", "--num-cpus", str(cores()), "--include-dashboard", "false"]
    subprocess.run([*start, "--port", str(port), "--disable-usage-stats"], check=True, capture_output=True, env=env)
    try:
        return run_study(work, "ray", "--executor", "ray", "--address", f"127.0.0.1:{port}", "--threads", "1")
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env)


def training_rate(run: Path) -> float:
    """Median training images/s over a run's epochs (from its metrics, start-up excluded)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["images_per_s"] for r in rows)


def concurrent_trainings(work: Path, env_extra: dict[str, str] | None, name: str) -> float:
    """Total training images/s of two `guided train` processes started together."""
    env = {**os.environ, **(env_extra or {})}
    outs = [work / f"{name}-{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [*GUIDED, *TRAIN, "--out", str(o)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        for o in outs
    ]
    for p in procs:
        assert p.wait() == 0
    total = sum(training_rate(o) for o in outs)
    print(f"two trainings, {name}: {total:.0f} img/s together", flush=True)
    return total


def main() -> int:
    load_before = other_load(1.0)  # the machine before: recorded with the numbers
    work = Path(tempfile.mkdtemp(prefix="guided-study-speed-"))
    try:
        subprocess.run([*GUIDED, *TRAIN, "--epochs", "1", "--out", str(work / "warm")], check=True, capture_output=True)
        serial = run_study(work, "serial")
        jobs2 = run_study(work, "jobs2", "--jobs", "2")
        ray = ray_study(work)
        serial32 = run_study(work, "serial-32px", size=32)
        jobs2_32 = run_study(work, "jobs2-32px", "--jobs", "2", size=32)
        timed([*GUIDED, *TRAIN, "--out", str(work / "alone")])
        alone = training_rate(work / "alone")
        print(f"one training alone: {alone:.0f} img/s", flush=True)
        split = concurrent_trainings(work, None, "split")
        unsplit = concurrent_trainings(work, {"GUIDED_THREADS": str(cores())}, "unsplit")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "what": "study wall time serial vs --jobs 2 vs Ray; two concurrent trainings vs one alone",
        "cores": cores(),
        "study_seconds": {"serial": round(serial, 1), "jobs2": round(jobs2, 1), "ray": ray and round(ray, 1)},
        "speedup": {"jobs2": round(serial / jobs2, 2), "ray": ray and round(serial / ray, 2)},
        "study_32px_seconds": {"serial": round(serial32, 1), "jobs2": round(jobs2_32, 1)},
        "speedup_32px": {"jobs2": round(serial32 / jobs2_32, 2)},
        "training_images_per_s": {"alone": round(alone), "two_split": round(split), "two_unsplit": round(unsplit)},
        "throughput_vs_alone": {"two_split": round(split / alone, 2), "two_unsplit": round(unsplit / alone, 2)},
        "targets": {"jobs2_speedup": 1.4, "two_split_vs_alone": 0.9},
        "met": {"jobs2_speedup": serial / jobs2 >= 1.4, "two_split_vs_alone": split / alone >= 0.9},
        "study": STUDY.format(size=16),
        "train_command": "guided " + " ".join(TRAIN),
        "provenance": {**provenance(), "cpu_flags": _cpu_flags()},
        "condition": benchmark_condition(load_before, other_load(1.0)),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(ROOT / "results" / "benchmarks" / "study_speed.json", result)
    print(
        "| study | serial | --jobs 2 | Ray (local) |\n| --- | --- | --- | --- |\n"
        f"| VGG-11 x0.25, 16 px | {serial:.0f} s | {jobs2:.0f} s ({serial / jobs2:.2f}x) | "
        f"{f'{ray:.0f} s ({serial / ray:.2f}x)' if ray else '-'} |\n"
        f"| VGG-11 x0.25, 32 px | {serial32:.0f} s | {jobs2_32:.0f} s ({serial32 / jobs2_32:.2f}x) | - |\n\n"
        "| trainings | images/s | vs one alone |\n| --- | --- | --- |\n"
        f"| one alone | {alone:.0f} | 1.00x |\n| two, split threads | {split:.0f} | {split / alone:.2f}x |\n"
        f"| two, all cores each | {unsplit:.0f} | {unsplit / alone:.2f}x |"
    )
    return 0


def _cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "?"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in wanted if f in flags.split())


if __name__ == "__main__":
    sys.exit(main())
