"""Stages, their records, and the resumable loop that runs them.

A `Stage` is one unit of work (one training run, one pruning, one pattern, one set of designs, one
search, the report) with a resolved config and the stages it reads. Its folder is
``OUT/stages/<id>/``: ``stage.json`` (config, input fingerprint, and the code revision it started on) is
written when it starts and ``done.json`` (its completion record) when it finishes. A stage is finished
when ``done.json`` exists
and records the same fingerprint as now; the fingerprint hashes the stage's config and the
fingerprints of the stages it reads, so editing one section of a study redoes exactly the stages
downstream of it. A started but unfinished stage continues (training resumes from its checkpoint) when
its fingerprint is unchanged, and starts over when it changed. A committed study keeps its records but
not its weights: a finished stage whose weights a stage still to run reads, but whose folder lacks them, runs
again (`statuses`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided.errors import UserError, memory_error
from guided.pipeline.roles import Tags
from guided.storage.folders import RunFolder, StageFolder, StudyFolder
from guided.storage.io import remove_inside
from guided.storage.provenance import git_revision
from guided.timing.clock import clock

__all__ = [
    "Stage",
    "StageContext",
    "Progress",
    "fingerprints",
    "status",
    "statuses",
    "run_one",
    "run_group",
    "units",
    "schedule",
    "run_stages",
    "STATUS",
]

#: What `status` reports: finished; started with the same inputs (continues); started with other inputs
#: (starts over); not started. `statuses` adds ``no-weights``: finished, but a stage still to run reads
#: weights its folder lacks (a committed study's records keep none), so it runs again.
STATUS = ("done", "partial", "stale", "todo", "no-weights")


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
        tags: what the report groups by (`Tags`: domain, role, seed, arm, budget, ...); not part of the inputs.
        work: what it computes, for time estimates only (`guided.pipeline.estimate`): ``kind`` (``train``,
            ``search``, ``prune``, ``report``; other stages are light) and its sizes; not part of the inputs.
        group: stages with the same non-empty key differ only in their seeds and may run together as one
            seed group (``run_stages(group_seeds=...)``); not part of the inputs.
        group_action: runs such stages together: one context each, one record each.
        after: stages it runs after without reading them (the speed stage waits for trainings it does not
            time, so that it runs alone): order only, not part of the inputs.
        reads_weights: it reads the weights of the stages it needs (a pruning reads its base's, a
            retraining its pruned model's), not only their records and architectures (`statuses`).
    """

    id: str
    kind: str
    config: dict[str, Any]
    action: Callable[[StageContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    macs: float = 0.0
    tags: Tags = field(default_factory=Tags)
    work: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    group_action: Callable[[list[StageContext]], list[dict[str, Any]]] | None = None
    after: tuple[str, ...] = ()
    reads_weights: bool = False

    @property
    def waits_on(self) -> tuple[str, ...]:
        """What must finish before it starts: the stages it reads, then those it only runs after."""
        return self.needs + self.after


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
        return StudyFolder(self.out).stages / stage_id

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
    folder = StudyFolder(out).stage(stage.id)
    if folder.done.is_file() and folder.read_done().get("fingerprint") == fingerprint:
        return "done"
    if folder.is_stage():
        return "partial" if folder.read_started().get("fingerprint") == fingerprint else "stale"
    return "stale" if folder.path.exists() else "todo"


def statuses(stages: Sequence[Stage], out: Path, prints: dict[str, str]) -> dict[str, str]:
    """Each stage's `status`, with ``no-weights`` for a finished stage that must run again because a stage
    still to run reads its weights (`Stage.reads_weights`) and its folder has an architecture
    (``spec.json``) but no weights (``model.pt``). Readers come after what they read, so one pass from the
    end also reaches what a redone stage reads."""
    states = {s.id: status(out, s, prints[s.id]) for s in stages}
    for s in reversed(stages):
        if states[s.id] == "done" or not s.reads_weights:
            continue
        for n in s.needs:
            folder = RunFolder(StudyFolder(out).stages / n)
            if states[n] == "done" and folder.spec.is_file() and not folder.weights.is_file():
                states[n] = "no-weights"
    return states


def run_one(stage: Stage, out: Path, fingerprint: str, *, services: Any = None, log=print) -> dict[str, Any]:
    """Run one stage into its folder and write its ``done.json``; returns the completion record.

    A stage already done with this fingerprint is not run again (a retried task that had finished is
    recorded once); one started with other inputs starts over; one started with the same inputs
    continues (its training resumes from the last epoch checkpoint).
    """
    if status(out, stage, fingerprint) == "done":
        return StudyFolder(out).stage(stage.id).read_done()
    _start(stage, out, fingerprint)
    started = time.perf_counter()
    try:
        record = stage.action(StageContext(out, stage, services, log))
    except (UserError, MemoryError, RuntimeError) as exc:
        raise _one_line(exc, f"stage {stage.id}") from None
    return _finish(stage, out, fingerprint, record, time.perf_counter() - started)


def _one_line(exc: BaseException, where: str) -> BaseException:
    """A stage's user error or out-of-memory error as one `UserError` naming ``where``; any other error as it
    is (a bug keeps its traceback)."""
    error = exc if isinstance(exc, UserError) else memory_error(exc)
    return exc if error is None else UserError(f"{where}: {error}")


def run_group(
    stages: Sequence[Stage], out: Path, prints: dict[str, str], *, services: Any = None, log=print
) -> list[dict[str, Any]]:
    """Run stages of one seed group (same `Stage.group`) together; returns their completion records.

    Stages already done are not run again, and one started alone with the same inputs continues alone
    (its training resumes from its checkpoint); the rest (a group stopped midway included: groups keep no
    checkpoints) start together, and each gets its own records as if it had run alone. Each stage's wall
    time is its share of the group's (the group's over K).
    """
    if len(stages) == 1:
        return [run_one(stages[0], out, prints[stages[0].id], services=services, log=log)]
    if len({s.group for s in stages}) != 1 or not stages[0].group or stages[0].group_action is None:
        raise ValueError(f"stages {[s.id for s in stages]} are not one seed group")
    together = []
    for s in stages:
        state = status(out, s, prints[s.id])
        if state == "done" or (state == "partial" and RunFolder(StudyFolder(out).stages / s.id).checkpoint.exists()):
            run_one(s, out, prints[s.id], services=services, log=log)
        else:  # not begun, or begun in a group that was stopped (groups keep no checkpoints)
            together.append(s)
    if len(together) == 1:
        run_one(together[0], out, prints[together[0].id], services=services, log=log)
    elif together:
        for s in together:
            _start(s, out, prints[s.id])
        started = time.perf_counter()
        try:
            records = together[0].group_action([StageContext(out, s, services, log) for s in together])
        except (UserError, MemoryError, RuntimeError) as exc:
            raise _one_line(exc, f"stages {', '.join(s.id for s in together)}") from None
        share = (time.perf_counter() - started) / len(together)
        for s, record in zip(together, records):
            _finish(s, out, prints[s.id], record, share)
    return [StudyFolder(out).stage(s.id).read_done() for s in stages]


def _start(stage: Stage, out: Path, fingerprint: str) -> None:
    """Clear a stale folder and write the stage's started record (config, fingerprint, code revision)."""

    folder = StudyFolder(out).stages / stage.id
    if status(out, stage, fingerprint) == "stale":
        remove_inside(folder, StudyFolder(out).stages)  # refuses any folder outside the study's stages
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": stage.id, "kind": stage.kind, "fingerprint": fingerprint, "config": stage.config}
    started_at = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "revision": git_revision()}
    StageFolder(folder).write_started({**record, **started_at})


def _finish(stage: Stage, out: Path, fingerprint: str, record: dict[str, Any], seconds: float) -> dict[str, Any]:
    done = {
        "id": stage.id,
        "fingerprint": fingerprint,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": round(seconds, 1),
        "record": record,
    }
    StudyFolder(out).stage(stage.id).write_done(done)
    return done


def units(ready: Sequence[Stage], *, group_seeds: int = 0) -> list[tuple[Stage, ...]]:
    """What to run next, in plan order: each stage alone, or (``group_seeds`` K above 1) stages of one
    seed group up to K together, placed where the first of them stands."""
    if group_seeds < 2:
        return [(s,) for s in ready]
    result: list[tuple[Stage, ...]] = []
    taken: set[str] = set()
    for s in ready:
        if s.id in taken:
            continue
        unit = [x for x in ready if s.group and x.group == s.group and x.id not in taken][:group_seeds] or [s]
        taken.update(x.id for x in unit)
        result.append(tuple(unit))
    return result


def run_stages(
    stages: Sequence[Stage],
    out: Path,
    *,
    services: Any = None,
    executor: Any = None,
    log: Callable[[str], None] = print,
    estimate: dict[str, Any] | None = None,
    group_seeds: int = 0,
) -> dict[str, dict[str, Any]]:
    """Run every unfinished stage, each after the stages it reads; returns each stage's completion record.

    Serially in this process by default; with an ``executor`` (`guided.pipeline.executors`), every stage
    whose inputs are finished is handed to it, as many at once as it has slots. A stage whose inputs
    changed since it last ran is redone from scratch, and so (through the fingerprints) is everything
    that reads it. With an ``estimate`` (`guided.pipeline.estimate`), progress lines say the time elapsed
    and about how much is left. With ``group_seeds`` K above 1, up to K ready stages of one seed group
    (`Stage.group`) run together as one unit (`run_group`).
    """
    prints = fingerprints(stages)
    states = statuses(stages, out, prints)
    for stage_id in (i for i, state in states.items() if state == "no-weights"):
        log(f"{stage_id} runs again: a stage to run reads its weights, which its folder lacks")
        remove_inside(StudyFolder(out).stages / stage_id, StudyFolder(out).stages)  # from scratch
    todo = [s for s in stages if states[s.id] != "done"]
    log(f"{len(stages)} stages, {len(stages) - len(todo)} already done")
    progress = Progress(estimate, slots=getattr(executor, "slots", 1))
    if executor is None:
        _serially(todo, out, prints, services, log, progress, group_seeds)
    else:
        _schedule(todo, out, executor, log, progress, group_seeds)
    return {s.id: StudyFolder(out).stage(s.id).read_done()["record"] for s in stages}


def schedule(
    todo: Sequence[Stage],
    *,
    slots: int,
    start: Callable[[tuple[Stage, ...]], Any],
    finish: Callable[[list[Any]], Any],
    group_seeds: int = 0,
) -> None:
    """The one scheduling loop, shared by the serial runner, the executors' runner and the estimate's
    simulation (`guided.pipeline.estimate.simulate`): while a slot is free, ``start(unit)`` (returning a
    key) the next ready unit in plan order (a stage whose inputs are finished or not in ``todo``; or up to
    ``group_seeds`` of one seed group: `units`); then ``finish(keys)`` says which running unit ended next.

    Example:
        >>> a, b = Stage("a", "x", {}, None), Stage("b", "x", {}, None, needs=("a",))
        >>> order = []
        >>> schedule([b, a], slots=2, start=lambda u: order.append(u[0].id) or u[0].id, finish=lambda keys: keys[0])
        >>> order
        ['a', 'b']
    """
    pending, running, finished = list(todo), {}, set()
    ids = {s.id for s in todo}
    while pending or running:
        ready = [s for s in pending if all(x in finished or x not in ids for x in s.waits_on)]
        for unit in units(ready, group_seeds=group_seeds)[: max(0, slots - len(running))]:
            for s in unit:
                pending.remove(s)
            running[start(unit)] = unit
        if not running:
            raise RuntimeError(f"stages {[s.id for s in pending]} wait on stages that never run")
        finished.update(s.id for s in running.pop(finish(list(running))))


def _serially(todo, out, prints, services, log, progress, group_seeds) -> None:
    """Run the stages one unit at a time in this process."""
    count = 0

    def start(unit: tuple[Stage, ...]) -> int:
        nonlocal count
        count += len(unit)
        partial = " (continuing)" if status(out, unit[0], prints[unit[0].id]) == "partial" else ""
        log(f"[{count}/{len(todo)}] {unit[0].kind} {_named(unit)}{partial}" + progress.line())
        started = time.perf_counter()
        run_group(unit, out, prints, services=services, log=log)
        for s in unit:
            progress.finished(s.id)
        log(f"      done in {time.perf_counter() - started:.0f}s")
        return count

    schedule(todo, slots=1, start=start, finish=lambda keys: keys[0], group_seeds=group_seeds)


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

        if not self.seconds and not self.done:
            return ""
        elapsed = time.time() - self.began
        ran = time.time() - self.started
        pace = min(3.0, max(1 / 3, ran * self.slots / self.done)) if self.done > 1 and ran > 1 else 1.0
        left = pace * sum(self.seconds.values()) / self.slots
        return f"  (elapsed {clock(elapsed)}, about {clock(left)} left)"


def _schedule(
    todo: list[Stage], out: Path, executor: Any, log: Callable[[str], None], progress=None, group_seeds: int = 0
) -> None:
    """Keep the executor's slots busy with ready stages (or seed groups of them), in plan order, until
    every stage is done."""
    progress = progress or Progress(None)
    running: dict[Any, tuple[Stage, ...]] = {}
    count = 0

    def start(unit: tuple[Stage, ...]) -> Any:
        handle = executor.submit(tuple(s.id for s in unit))
        running[handle] = unit
        log(f"      start {unit[0].kind} {_named(unit)}")
        return handle

    def finish(handles: list[Any]) -> Any:
        nonlocal count
        handle, result = executor.wait(handles)
        unit = running.pop(handle)
        count += len(unit)
        for s in unit:
            progress.finished(s.id)
        log(
            f"[{count}/{len(todo)}] {unit[0].kind} {_named(unit)}: done in {result['wall_time_s']:.0f}s on "
            f"{result['worker']}" + progress.line()
        )
        return handle

    schedule(todo, slots=executor.slots, start=start, finish=finish, group_seeds=group_seeds)


def _named(unit: Sequence[Stage]) -> str:
    """``source/uniform-s0`` or ``source/uniform-s0 with 2 more seeds``."""
    return unit[0].id + (f" with {len(unit) - 1} more seed(s)" if len(unit) > 1 else "")
