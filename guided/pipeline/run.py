"""Running a study: `run_study` checks the folder, plans the stages (`guided.pipeline.stages`) and runs the
unfinished ones (`guided.pipeline.runner`); `dry_run` lists them with their status, cost and time."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.pipeline.config import Study
from guided.pipeline.estimate import estimate
from guided.pipeline.executors import _cuda, _visible_gpus, make_executor
from guided.pipeline.runner import fingerprints, run_stages, statuses
from guided.pipeline.stages import Services, check_fits, plan, plan_study
from guided.pipeline.throughput import load_throughput
from guided.storage.folders import StudyFolder
from guided.storage.io import atomic_write_text, read_json, write_json
from guided.storage.locks import LOCK_NAME, folder_lock
from guided.timing.clock import clock

__all__ = ["run_study", "dry_run"]


def run_study(
    study: Study,
    out: str | Path,
    *,
    resume: bool = False,
    source_text: str | None = None,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    threads: int | None = None,
    group_seeds: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``study`` into ``out``; returns every stage's completion record.

    Args:
        study: a validated study (`load_study`).
        out: the study folder. A folder holding another study's records is refused; one holding this
            study's records needs ``resume`` (so that a typo in ``--out`` cannot silently mix studies).
        resume: continue a study started in ``out``: finished stages are skipped, interrupted training
            continues from its checkpoint, stages whose inputs changed are redone.
        source_text: the TOML text, copied to ``out/study.toml``.
        jobs: ``local`` executor: stages run at once in worker processes (1: serially in this process;
            0: one per visible GPU on a CUDA study, else 1). Each worker gets ``threads // jobs`` threads.
        executor: ``local`` (this machine) or ``ray`` (a Ray cluster at ``address``; see
            `guided.pipeline.executors`).
        threads: CPU threads shared by the workers (default: the machine's cores).
        group_seeds: train up to this many seeds of one architecture together (`guided.training.multiseed`;
            0 or 1: each run alone). The records are those of separate runs, to float tolerance.
    """
    if group_seeds < 0:
        raise UserError(f"--group-seeds must be 0 or more, got {group_seeds}")
    out = Path(out)
    _check_folder(out, study, resume)
    services = Services(study, out)
    check_fits(study, services)  # the whole file is checked before anything is created

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    runner, locked = None, False
    try:
        with folder_lock(out, "study folder"):
            locked = True
            _check_folder(out, study, resume)  # again, holding the lock: another run may have begun it since
            began = time.time()
            stages = plan(study, services)  # first: workers then read the latency table it times
            prints = fingerprints(stages)
            todo = {i for i, state in statuses(stages, out, prints).items() if state != "done"}
            expected = None
            if todo:  # no estimate and no workers for a finished study
                expected = _estimate(study, stages, services, out, todo, (jobs, threads, group_seeds), began, log)
                runner = make_executor(executor, study, out, jobs=jobs, threads=threads, address=address)
            write_json(
                StudyFolder(out).study,
                {"name": study.study.name, "config": study.to_dict(), "started": time.strftime("%Y-%m-%d")},
            )
            if source_text is not None:
                atomic_write_text(StudyFolder(out).source, source_text)
            records = run_stages(
                stages, out, services=services, executor=runner, log=log, estimate=expected, group_seeds=group_seeds
            )
    except BaseException:
        if created and locked and not StudyFolder(out).study.is_file():  # failed before the study began
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if runner is not None:
            runner.close()
    log(f"wrote {StudyFolder(out).report} and {StudyFolder(out).report_html}")
    return records


def _estimate(study, stages, services, out, todo, parallel, began, log) -> dict[str, Any]:
    """This run's estimate (`guided.pipeline.estimate`), logged and kept in ``estimate.json`` for the
    report's estimated-against-actual line."""
    est = _calibrate(study, stages, services, todo, parallel, time.time() - began)
    est = {**est, "started_at": began, "todo": len(todo)}
    write_json(StudyFolder(out).estimate, est)
    log(f"{len(todo)} stages to run: about {clock(est['wall_s'])} on this machine ({est['basis']})")
    return est


def _check_folder(out: Path, study: Study, resume: bool) -> None:
    """Refuse a ``--out`` that holds another study, this one without ``--resume``, something that is not a
    study, or that lies inside another study's folder."""
    marker = StudyFolder(out).study
    for parent in out.resolve().parents:
        if StudyFolder(parent).study.is_file():
            raise UserError(f"{out} lies inside the study folder {parent}; give a folder of its own as --out")
    if marker.is_file():
        previous = read_json(marker, "study record")
        if not isinstance(previous, dict) or previous.get("name") != study.study.name:
            name = previous.get("name") if isinstance(previous, dict) else None
            raise UserError(f"{out} holds study {name!r}, not {study.study.name!r}; choose another --out")
        if not resume:
            raise UserError(f"{out} already holds this study; pass --resume to continue it, or choose another --out")
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / "stages").exists():
        raise UserError(f"{out} exists and is not a study folder; choose another --out")


def dry_run(
    study: Study,
    out: str | Path,
    *,
    calibrate: bool = True,
    jobs: int = 1,
    threads: int | None = None,
    group_seeds: int = 0,
    throughput: str | Path | None = None,
) -> list[dict[str, Any]]:
    """What `run_study` would do: per stage, its status, training MACs, and (``calibrate``) its estimated
    seconds and when it would start, from this machine's own measurements (`guided.pipeline.estimate`),
    with ``jobs`` stages at a time sharing ``threads`` and up to ``group_seeds`` seeds trained together.

    With ``throughput`` (a file `benchmarks/gpu_throughput.py` wrote on a device), trainings are estimated
    for that device from its measured rates (`guided.pipeline.throughput`): the device time of a GPU study
    planned where there is no GPU. A CUDA study planned here without one, and without ``throughput``, is
    listed with no times (each row's ``basis`` says why)."""

    bench = load_throughput(throughput) if throughput is not None else None
    out = Path(out)
    kept = out / "latency"  # a started study's latency table: its budgets, so its fingerprints
    started = time.perf_counter()
    stages, services = plan_study(study, out if kept.is_dir() else None)
    planning = time.perf_counter() - started
    prints = fingerprints(stages)
    states = statuses(stages, out, prints)
    est: dict[str, Any] = {"stages": {}, "starts": {}, "basis": None, "device": None}
    if calibrate and bench is None and _needs_absent_gpu(study):
        est["basis"] = (
            f"not estimated: the study trains on {study.study.device!r} and this machine has no CUDA device; "
            "--throughput FILE estimates it from benchmarks/gpu_throughput.py's results on the device"
        )
    elif calibrate:
        todo = {k for k, v in states.items() if v != "done"}
        est = _calibrate(study, stages, services, todo, (jobs, threads, group_seeds), planning, bench)
    return [
        {
            "stage": s.id,
            "kind": s.kind,
            "status": states[s.id],
            "macs": s.macs,
            "seconds": est["stages"].get(s.id),
            "start": est["starts"].get(s.id),
            "basis": est.get("basis"),
            "device": est.get("device"),
        }
        for s in stages
    ]


def _calibrate(study, stages, services, todo, parallel, planning_s: float, throughput=None) -> dict[str, Any]:
    """The estimate of the ``todo`` stages with ``parallel`` = (jobs, threads, group_seeds) as given."""
    jobs, threads, group_seeds = parallel
    return estimate(
        stages,
        services,
        todo=todo,
        jobs=_jobs(study, jobs),
        threads=threads,
        planning_s=planning_s,
        group_seeds=group_seeds,
        throughput=throughput,
    )


def _needs_absent_gpu(study: Study) -> bool:
    """Whether ``study`` names a CUDA device and this machine has none."""
    import torch

    return study.study.device.startswith("cuda") and not torch.cuda.is_available()


def _jobs(study: Study, jobs: int) -> int:
    """The stages that will run at once: ``jobs``, or (0) one per visible GPU on a CUDA study, else 1."""
    if jobs > 0:
        return jobs

    return max(1, len(_visible_gpus())) if _cuda(study) else 1
