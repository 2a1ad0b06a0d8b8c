"""How close `guided run --dry-run`'s time estimate comes to the wall time a study then takes, here.

For a study file: the dry run's estimate (per stage, and the wall time of the whole run as the runner
would schedule it with ``--jobs``), then the study run for real in a new folder by ``guided run`` in a
subprocess, whole or stopped after ``--time-box`` seconds (SIGINT, as Ctrl-C). Compared: the estimated and
the actual wall time to the last stage that finished (for a whole run, to the end of the process), and
each finished stage's estimated against its recorded seconds. Nothing else CPU-heavy may run meanwhile.

Target (issue "times and speeds a user can trust"): within 30% of the measured wall time.

Run: ``python benchmarks/estimates.py configs/study-tiny-digits.toml`` (about a minute), and
``python benchmarks/estimates.py configs/study-vgg16-cifar10-cpu.toml --jobs 2 --time-box 900``.
``--throughput FILE`` makes the dry run estimate from a throughput benchmark's results instead
(`guided run --dry-run --throughput`; a CPU benchmark of the study's networks checks that model where
the study runs), ``--keep DIR`` runs the study into DIR and keeps it, and ``--rescore DIR`` runs nothing:
it scores a new estimate against the study already run in DIR (its records and recorded wall time).
Appends one record per run to ``results/benchmarks/estimates.json`` (a record of the same study, jobs
and time box is replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from guided.pipeline import dry_run, load_study
from guided.storage.io import read_json, write_json
from guided.storage.provenance import git_revision, provenance
from guided.timing import threads
from guided.timing.speed import benchmark_condition, other_load

ROOT = Path(__file__).resolve().parents[1]


def measure(
    study_file: str,
    jobs: int,
    time_box: float | None,
    threads: int | None,
    throughput: str | None = None,
    keep: str | None = None,
) -> dict:
    study = load_study(study_file)
    with tempfile.TemporaryDirectory(prefix="guided-estimates-") as tmp:
        out = Path(keep) if keep else Path(tmp) / "study"
        if out.exists():
            raise SystemExit(f"{out} exists; --keep takes a new folder")
        started = time.perf_counter()
        rows = dry_run(study, out, jobs=jobs, threads=threads, throughput=throughput)
        dry_s = time.perf_counter() - started
        load_before = other_load(1.0)
        cmd = [sys.executable, "-m", "guided", "run", study_file, "--out", str(out), "--jobs", str(jobs)]
        cmd += ["--threads", str(threads)] if threads else []
        began = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=time_box)
            stopped = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait()
            stopped = True
        ended = time.time()
        load_after = other_load(1.0)
        finished = _finished(out, rows, began)
        actual = max((t for _, t in finished.values()), default=0.0) if stopped else ended - began
        return {
            "study": study_file,
            "jobs": jobs,
            "threads": threads,
            "throughput": throughput,
            "time_box_s": time_box,
            "stopped_by_time_box": stopped,
            **_score(rows, finished, actual, whole=not stopped),
            "dry_run_s": round(dry_s, 1),
            "condition": benchmark_condition(load_before, load_after),
            "exit_code": proc.returncode,
        }


def rescore(study_file: str, jobs: int, threads: int | None, throughput: str | None, done: str) -> dict:
    """The dry run's estimate, made now, against a study already run to the end in ``done`` (its stage
    records and its recorded wall time): a new estimate model scored without running the study again."""
    study = load_study(study_file)
    with tempfile.TemporaryDirectory(prefix="guided-estimates-") as tmp:
        rows = dry_run(study, Path(tmp) / "study", jobs=jobs, threads=threads, throughput=throughput)
    wall = read_json(Path(done) / "summary.json")["wall_time"]
    finished = _finished(Path(done), rows, None)
    record = {"study": study_file, "jobs": jobs, "threads": threads, "throughput": throughput, "time_box_s": None}
    return {**record, "rescored": done, **_score(rows, finished, wall["actual_s"], whole=True)}


def _finished(out: Path, rows: list[dict], began: float | None) -> dict[str, tuple[float, float]]:
    """Each finished stage's recorded seconds, and when it finished (seconds after ``began``)."""
    finished = {}
    for r in rows:
        done = out / "stages" / r["stage"] / "done.json"
        if done.is_file():
            finished[r["stage"]] = (read_json(done)["wall_time_s"], os.stat(done).st_mtime - (began or 0.0))
    return finished


def _score(rows: list[dict], finished: dict, actual: float, *, whole: bool) -> dict:
    """Estimated against actual: the wall time (to the end, or ``whole`` false: to the last finished
    stage), each stage's seconds, and the seconds by kind of stage."""
    est = {r["stage"]: r for r in rows}
    if whole:
        estimated = max(r["start"] + r["seconds"] for r in rows if r["seconds"] is not None)
    else:
        estimated = max((est[k]["start"] + est[k]["seconds"] for k in finished), default=0.0)
    errors = [est[k]["seconds"] / max(a, 0.05) - 1 for k, (a, _) in finished.items() if a >= 1.0]
    by_kind: dict[str, list] = {}
    for k, (a, _) in finished.items():
        totals = by_kind.setdefault(est[k]["kind"], [0.0, 0.0, 0])
        totals[0] += est[k]["seconds"]
        totals[1] += a
        totals[2] += 1
    return {
        "stages": len(rows),
        "stages_finished": len(finished),
        "estimated_wall_s": round(estimated, 1),
        "actual_wall_s": round(actual, 1),
        "error": round(estimated / actual - 1, 3) if actual else None,
        "within_30_percent": bool(actual) and abs(estimated / actual - 1) <= 0.30,
        "per_stage_error_median": round(statistics.median(errors), 3) if errors else None,
        "per_stage_abs_error_median": round(statistics.median(abs(e) for e in errors), 3) if errors else None,
        "by_kind": {
            k: {"estimated_s": round(e, 1), "actual_s": round(a, 1), "stages": n} for k, (e, a, n) in by_kind.items()
        },
        "basis": rows[0]["basis"],
    }


def cpu() -> str:
    """The processor's model name and widest vector instruction set (hosts differ by 3x between them)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model}, {isa}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study TOML file")
    parser.add_argument("--jobs", type=int, default=1, help="as guided run --jobs (default 1)")
    parser.add_argument("--threads", type=int, help="as guided run --threads (default: every core)")
    parser.add_argument("--time-box", type=float, help="stop the run after this many seconds (default: let it finish)")
    parser.add_argument("--throughput", metavar="FILE", help="estimate from this throughput benchmark's results")
    parser.add_argument("--keep", metavar="DIR", help="run the study into DIR (new) and keep it there")
    parser.add_argument(
        "--rescore", metavar="DIR", help="run nothing: score a new estimate against the study already run in DIR"
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "estimates.json"))
    args = parser.parse_args()
    threads.configure(args.threads)  # as the guided command does before a dry run
    if args.rescore:
        record = rescore(args.study, args.jobs, args.threads, args.throughput, args.rescore)
    else:
        record = measure(args.study, args.jobs, args.time_box, args.threads, args.throughput, args.keep)
    record.update(
        revision=git_revision(), date=time.strftime("%Y-%m-%d"), cpu=cpu(), host=provenance(torch.device("cpu"))
    )
    path = Path(args.out)
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    same = ("study", "jobs", "time_box_s", "throughput", "rescored")
    runs = [r for r in runs if any(r.get(k) != record.get(k) for k in same)] + [record]
    write_json(path, {"benchmark": "benchmarks/estimates.py", "target": "within 30% of the wall time", "runs": runs})
    print(json.dumps({k: v for k, v in record.items() if k != "host"}, indent=1))


if __name__ == "__main__":
    main()
