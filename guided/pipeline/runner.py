"""Stages, their records, and the resumable loop that runs them.

A `Stage` is one unit of work (one training run, one pruning, one pattern, one set of designs, one
search, the report) with a resolved config and the stages it reads. Its folder is
``OUT/stages/<id>/``: ``stage.json`` (config, input fingerprint, and the code revision it started on) is
written when it starts and ``done.json`` (its completion record) when it finishes. A stage is finished
when ``done.json`` exists
and records the same fingerprint as now; the fingerprint hashes the stage's config and the
fingerprints of the stages it reads, so editing one section of a study redoes exactly the stages
downstream of it. A started but unfinished stage continues (training resumes from its checkpoint) when
its fingerprint is unchanged, and starts over when it changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.folders import StageFolder
from guided.io import remove_inside

__all__ = ["Stage", "StageContext", "Progress", "fingerprints", "status", "run_one", "run_stages", "STATUS"]

#: What `status` reports: finished; started with the same inputs (continues); started with other inputs
#: (starts over); not started.
STATUS = ("done", "partial", "stale", "todo")


@dataclass(frozen=True)
class Stage:
    """One unit of a study.

    Attributes:
        id: a path below ``OUT/stages`` (``source/base-sparse-s0``).
        kind: ``train``, ``prune``, ``pattern``, ``design``, ``search``, ``report``.
        config: everything that determines the outputs, as JSON-able data.
        action: does the work in ``ctx.dir``; returns a small JSON-able record for ``done.json``.
        needs: ids of the stages it reads.
        macs: estimated multiply-accumulates of its training (0 for stages that do not train).
        tags: what the report groups by (domain, role, seed, arm, budget, ...); not part of the inputs.
        work: what it computes, for time estimates only (`guided.pipeline.estimate`): ``kind`` (``train``,
            ``search``, ``prune``, ``report``; other stages are light) and its sizes; not part of the inputs.
    """

    id: str
    kind: str
    config: dict[str, Any]
    action: Callable[[StageContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    macs: float = 0.0
    tags: dict[str, Any] = field(default_factory=dict)
    work: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What an action sees: its folder, the study's folders and shared services."""

    out: Path
    stage: Stage
    services: Any = None
    log: Callable[[str], None] = print

    @property
    def dir(self) -> Path:
        """This stage's folder."""
        return self.dir_of(self.stage.id)

    def dir_of(self, stage_id: str) -> Path:
        """Another stage's folder."""
        return self.out / "stages" / stage_id

    def record(self, stage_id: str) -> dict[str, Any]:
        """Another (finished) stage's completion record."""
        return StageFolder(self.dir_of(stage_id)).read_done()["record"]


def fingerprints(stages: Sequence[Stage]) -> dict[str, str]:
    """Each stage's input fingerprint: its kind, config and the fingerprints of what it reads."""
    prints: dict[str, str] = {}
    for s in stages:
        missing = [n for n in s.needs if n not in prints]
        if missing:
            raise ValueError(f"stage {s.id} reads {missing}, which do not come before it")
        text = json.dumps({"kind": s.kind, "config": s.config, "needs": [prints[n] for n in s.needs]}, sort_keys=True)
        prints[s.id] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return prints


def status(out: Path, stage: Stage, fingerprint: str) -> str:
    """One of `STATUS` for ``stage`` in the study folder ``out``."""
    folder = StageFolder(out / "stages" / stage.id)
    if folder.done.is_file() and folder.read_done().get("fingerprint") == fingerprint:
        return "done"
    if folder.is_stage():
        return "partial" if folder.read_started().get("fingerprint") == fingerprint else "stale"
    return "stale" if folder.path.exists() else "todo"


def run_one(stage: Stage, out: Path, fingerprint: str, *, services: Any = None, log=print) -> dict[str, Any]:
    """Run one stage into its folder and write its ``done.json``; returns the completion record.

    A stage already done with this fingerprint is not run again (a retried task that had finished is
    recorded once); one started with other inputs starts over; one started with the same inputs
    continues (its training resumes from the last epoch checkpoint).
    """
    state = status(out, stage, fingerprint)
    folder = out / "stages" / stage.id
    if state == "done":
        return StageFolder(folder).read_done()
    if state == "stale":
        remove_inside(folder, out / "stages")  # refuses any folder outside the study's stages
    folder.mkdir(parents=True, exist_ok=True)
    from guided.provenance import git_revision

    record = {"id": stage.id, "kind": stage.kind, "fingerprint": fingerprint, "config": stage.config}
    started_at = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "revision": git_revision()}
    StageFolder(folder).write_started({**record, **started_at})
    started = time.perf_counter()
    try:
        record = stage.action(StageContext(out, stage, services, log))
    except UserError as exc:
        raise UserError(f"stage {stage.id}: {exc}") from None
    done = {
        "id": stage.id,
        "fingerprint": fingerprint,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "record": record,
    }
    StageFolder(folder).write_done(done)
    return done


def run_stages(
    stages: Sequence[Stage],
    out: Path,
    *,
    services: Any = None,
    executor: Any = None,
    log: Callable[[str], None] = print,
    estimate: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every unfinished stage, each after the stages it reads; returns each stage's completion record.

    Serially in this process by default; with an ``executor`` (`guided.pipeline.executors`), every stage
    whose inputs are finished is handed to it, as many at once as it has slots. A stage whose inputs
    changed since it last ran is redone from scratch, and so (through the fingerprints) is everything
    that reads it. With an ``estimate`` (`guided.pipeline.estimate`), progress lines say the time elapsed
    and about how much is left.
    """
    prints = fingerprints(stages)
    todo = [s for s in stages if status(out, s, prints[s.id]) != "done"]
    log(f"{len(stages)} stages, {len(stages) - len(todo)} already done")
    progress = Progress(estimate, slots=getattr(executor, "slots", 1))
    if executor is None:
        for n, s in enumerate(todo, 1):
            log(
                f"[{n}/{len(todo)}] {s.kind} {s.id}"
                + (" (continuing)" if status(out, s, prints[s.id]) == "partial" else "")
                + progress.line()
            )
            done = run_one(s, out, prints[s.id], services=services, log=log)
            progress.finished(s.id)
            log(f"      done in {done['wall_time_s']:.0f}s")
    else:
        _schedule(todo, out, executor, log, progress)
    return {s.id: StageFolder(out / "stages" / s.id).read_done()["record"] for s in stages}


class Progress:
    """Elapsed time and the time left, from a run's estimate corrected by how it has gone so far: the
    estimated seconds of the unfinished stages, times (actual / estimated) of the finished ones, spread
    over the slots that run at once."""

    def __init__(self, estimate: dict[str, Any] | None, *, slots: int = 1):
        self.seconds = dict((estimate or {}).get("stages", {}))
        self.slots, self.started, self.done = max(1, slots), time.time(), 0.0
        self.began = (estimate or {}).get("started_at", self.started)

    def finished(self, stage_id: str) -> None:
        self.done += self.seconds.pop(stage_id, 0.0)

    def line(self) -> str:
        """``  (elapsed 1m02s, about 3m10s left)``, or nothing without an estimate."""
        from guided.clock import clock

        if not self.seconds and not self.done:
            return ""
        elapsed = time.time() - self.began
        ran = time.time() - self.started
        pace = min(3.0, max(1 / 3, ran * self.slots / self.done)) if self.done > 1 and ran > 1 else 1.0
        left = pace * sum(self.seconds.values()) / self.slots
        return f"  (elapsed {clock(elapsed)}, about {clock(left)} left)"


def _schedule(todo: list[Stage], out: Path, executor: Any, log: Callable[[str], None], progress=None) -> None:
    """Keep the executor's slots busy with ready stages, in plan order, until every stage is done."""
    progress = progress or Progress(None)
    pending, running, finished = list(todo), {}, set()
    waiting_on = {s.id for s in todo}  # what the other stages need is done already
    count = 0
    while pending or running:
        ready = [s for s in pending if not (set(s.needs) & waiting_on - finished)]
        for s in ready[: max(0, executor.slots - len(running))]:
            pending.remove(s)
            running[executor.submit(s.id)] = s
            log(f"      start {s.kind} {s.id}")
        if not running:
            raise RuntimeError(f"stages {[s.id for s in pending]} wait on stages that never run")
        handle, result = executor.wait(list(running))
        s = running.pop(handle)
        count += 1
        progress.finished(s.id)
        log(
            f"[{count}/{len(todo)}] {s.kind} {s.id}: done in {result['wall_time_s']:.0f}s on {result['worker']}"
            + progress.line()
        )
        finished.add(s.id)
