"""Where a study's stages run: worker processes on this machine, or tasks on a Ray cluster.

An executor (`Executor`) has ``slots`` (how many stages may run at once), ``submit(stage_ids) -> handle``
(one stage, or one seed group to run together) and ``wait(handles) -> (handle, result)`` (the next
finished one; its result holds ``wall_time_s`` and ``worker``), and ``close()``.
`guided.pipeline.runner.run_stages` keeps the slots busy with the stages whose inputs are finished. A
worker plans the study itself (from the pickled `Study`, deterministically) and runs a stage by id through
`guided.pipeline.runner.run_one`, which writes the stage's records into the study folder: the records on
disk stay the single source of truth, whoever ran the stage.

`EXECUTORS` maps each ``guided run --executor`` name to its factory; a new backend (say Slurm) is one
module with a class of these four members and a factory registered with `register_executor`, which the
command line then offers.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from guided.errors import UserError
from guided.pipeline.runner import fingerprints, run_group
from guided.pipeline.stages import plan_study
from guided.timing import threads as thread_budget
from guided.timing.threads import cores

__all__ = ["Executor", "EXECUTORS", "register_executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor(Protocol):
    """What `guided.pipeline.runner.run_stages` asks of an executor."""

    slots: int  # how many units may run at once

    def submit(self, stage_ids: tuple[str, ...]) -> Hashable:
        """Start one stage, or one seed group together, by id; returns a handle."""

    def wait(self, handles: list[Hashable]) -> tuple[Hashable, dict[str, Any]]:
        """Block until one of ``handles`` finishes: its handle and ``{"wall_time_s", "worker"}``."""

    def close(self) -> None:
        """Release the workers."""


@dataclass(frozen=True)
class ExecutorKind:
    """One ``--executor`` choice: ``factory(study, out, *, jobs, threads, address)`` gives the `Executor`
    (or ``None``: run serially in this process); ``help`` is its line in ``guided run --help``."""

    factory: Callable[..., Executor | None]
    help: str


#: ``--executor`` name -> its kind, in the order the command line lists them.
EXECUTORS: dict[str, ExecutorKind] = {}


Factory = Callable[..., Executor | None]


def register_executor(name: str, help: str) -> Callable[[Factory], Factory]:
    """Register an executor factory under ``name`` (a decorator); ``guided run --executor`` offers it."""

    def register(factory: Factory) -> Factory:
        EXECUTORS[name] = ExecutorKind(factory, help)
        return factory

    return register


_WORKER: dict[str, Any] = {}  # per worker process: the planned study (stages, fingerprints, services)


def _plan_in_worker(study, out: str, threads: int | None, share: int, name: str) -> None:
    """Plan the study once per worker process and set its thread budget."""

    thread_budget.configure(threads, share=share)
    stages, services = plan_study(study, Path(out))
    _WORKER.update(key=(out, study), stages={s.id: s for s in stages}, prints=fingerprints(stages))
    _WORKER.update(out=Path(out), services=services, name=name)


def _run_stage(stage_ids: tuple[str, ...]) -> dict[str, Any]:
    """Run planned stages in this worker: one, or one seed group together (`run_group`); returns the wall
    time and who ran them."""

    name = _WORKER["name"]

    def log(line: str) -> None:
        print(f"[{name}] {line.strip()}", flush=True)

    stages = [_WORKER["stages"][i] for i in stage_ids]
    log(f"{stages[0].kind} {' + '.join(stage_ids)}")
    started = time.perf_counter()
    run_group(stages, _WORKER["out"], _WORKER["prints"], services=_WORKER["services"], log=log)
    return {"wall_time_s": round(time.perf_counter() - started, 1), "worker": name}


# ---------------------------------------------------------------------- local processes
def _init_local(study, out: str, threads: int | None, share: int, slots, devices) -> None:
    """Worker start-up: die with the parent, take a slot number (and a GPU), plan the study."""
    _die_with_parent()
    slot = slots.get()
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices[slot % len(devices)])
    _plan_in_worker(study, out, threads, share, f"worker {slot + 1}/{share}")


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (no orphan writes to a study folder)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalExecutor:
    """``jobs`` worker processes on this machine, each with ``threads // jobs`` CPU threads (or one GPU)."""

    def __init__(self, study, out: Path, *, jobs: int, threads: int | None = None, devices: list[int] | None = None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")  # fresh interpreters: no forked OpenMP or CUDA state
        _quiet_resource_tracker()
        slots = ctx.Queue()
        for i in range(jobs):
            slots.put(i)
        per_worker = max(1, threads // jobs) if threads else None
        self.slots = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_init_local,
            initargs=(study, str(out), per_worker, jobs, slots, devices or []),
        )
        for _ in range(jobs):  # start every worker now: they import and plan while the caller waits
            self._pool.submit(os.getpid)

    def submit(self, stage_ids: tuple[str, ...]):
        return self._pool.submit(_run_stage, stage_ids)

    def wait(self, handles: list) -> tuple[Any, dict[str, Any]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_for
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_for(handles, return_when=FIRST_COMPLETED)
        handle = next(iter(done))
        try:
            return handle, handle.result()
        except BrokenProcessPool:
            raise UserError(
                "a worker process died (killed, or out of memory); finished stages are kept: rerun with --resume"
            ) from None

    def close(self) -> None:
        """Stop the workers: idle ones after a finished study; busy ones too when the study stopped early
        (an error, Ctrl-C, SIGTERM to this process alone), so that no worker trains on after the runner has
        said it stopped. A stage cut mid-epoch resumes from its last checkpoint with ``--resume``."""
        workers = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=10)


def _quiet_resource_tracker() -> None:
    """A killed worker cannot release the queue's semaphores, and multiprocessing's resource tracker (started
    with this environment) then prints a warning with a code line at exit; the one-line error already said
    what happened, so that warning is silenced."""
    quiet = "ignore:resource_tracker:UserWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet


# ---------------------------------------------------------------------- Ray
def _ray_task(study, out: str, stage_ids: tuple[str, ...], threads: int | None) -> dict[str, Any]:
    """One stage (or seed group) as a Ray task: plan the study once per Ray worker process, then run it."""
    import socket

    if _WORKER.get("key") != (out, study):  # studies are frozen dataclasses: compared by value
        _plan_in_worker(study, out, threads, 1, f"ray {socket.gethostname()}:{os.getpid()}")
    return _run_stage(stage_ids)


def _sees(out: str, token: str) -> bool:
    return (Path(out) / ".guided-ray-probe").is_file() and (Path(out) / ".guided-ray-probe").read_text() == token


class RayExecutor:
    """Each stage a Ray task (``num_gpus=1`` for training on a CUDA study, else ``num_cpus``), retried when
    its worker dies. The study folder must be on a file system every node shares."""

    def __init__(self, study, out: Path, *, address: str | None, threads: int | None = None, gpu: bool = False):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
        self._ray, self._study, self._out = ray, ray.put(study), str(out)
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, int(ray.cluster_resources().get("GPU", 0))) if gpu else cpus
        self._threads = threads or 1
        resources = {"num_gpus": 1} if gpu else {"num_cpus": self._threads}
        self._task = ray.remote(max_retries=3, retry_exceptions=False, **resources)(_ray_task)
        self._check_shared_folder()

    def _check_shared_folder(self) -> None:
        import uuid

        token = uuid.uuid4().hex
        probe = Path(self._out) / ".guided-ray-probe"
        probe.write_text(token)
        try:
            seen = self._ray.get(self._ray.remote(num_cpus=0)(_sees).remote(self._out, token))
        finally:
            probe.unlink(missing_ok=True)
        if not seen:
            raise UserError(
                f"Ray workers cannot see the study folder {self._out}; put it on a file system every node mounts "
                "at the same path (NFS, a cluster file system) and give that path as --out"
            )

    def submit(self, stage_ids: tuple[str, ...]):
        return self._task.remote(self._study, self._out, stage_ids, self._threads)

    def wait(self, handles: list) -> tuple[Any, dict[str, Any]]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        try:
            return ready[0], self._ray.get(ready[0])
        except self._ray.exceptions.RayError as exc:
            raise UserError(
                f"a Ray task failed after its retries ({type(exc).__name__}); rerun with --resume"
            ) from None

    def close(self) -> None:
        pass


def make_executor(kind: str, study, out: Path, *, jobs: int, threads: int | None, address: str | None):
    """The executor ``guided run --executor KIND --jobs N`` asks for (``None``: serial, in this process)."""
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[kind].factory(study, out, jobs=jobs, threads=threads, address=address)


@register_executor("local", "worker processes on this machine")
def _local(study, out: Path, *, jobs: int, threads: int | None, address: str | None) -> Executor | None:
    devices = _visible_gpus() if _cuda(study) else []
    if jobs == 0:  # default: one stage per GPU on a CUDA study, else serial
        jobs = max(1, len(devices))
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if jobs == 1:
        return None
    return LocalExecutor(study, out, jobs=jobs, threads=threads or _cores(), devices=devices)


@register_executor(
    "ray",
    "one Ray task per stage on a cluster (pip install 'guided[ray]'; --out must be on a file system every node shares)",
)
def _ray(study, out: Path, *, jobs: int, threads: int | None, address: str | None) -> Executor:
    return RayExecutor(study, out, address=address, threads=threads, gpu=_cuda(study))


def _cuda(study) -> bool:
    import torch

    device = study.study.device
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _visible_gpus() -> list[int]:
    import torch

    return list(range(torch.cuda.device_count()))


def _cores() -> int:
    return cores()
