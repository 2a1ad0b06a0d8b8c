"""Stages, their records, and the resumable loop that runs them.

A `Stage` is one unit of work (one training run, one pruning, one pattern, one set of designs, one
search, the report) with a resolved config and the stages it reads. Its folder is
``OUT/stages/<id>/``: ``stage.json`` (config and input fingerprint) is written when it starts and
``done.json`` (its completion record) when it finishes. A stage is finished when ``done.json`` exists
and records the same fingerprint as now; the fingerprint hashes the stage's config and the
fingerprints of the stages it reads, so editing one section of a study redoes exactly the stages
downstream of it. A started but unfinished stage continues (training resumes from its checkpoint) when
its fingerprint is unchanged, and starts over when it changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.io import read_json, write_json

__all__ = ["Stage", "StageContext", "fingerprints", "status", "run_stages", "STATUS"]

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
    """

    id: str
    kind: str
    config: dict[str, Any]
    action: Callable[[StageContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    macs: float = 0.0
    tags: dict[str, Any] = field(default_factory=dict)


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
        return read_json(self.dir_of(stage_id) / "done.json")["record"]


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
    folder = out / "stages" / stage.id
    done, started = folder / "done.json", folder / "stage.json"
    if done.is_file() and read_json(done).get("fingerprint") == fingerprint:
        return "done"
    if started.is_file():
        return "partial" if read_json(started).get("fingerprint") == fingerprint else "stale"
    return "stale" if folder.exists() else "todo"


def run_stages(
    stages: Sequence[Stage],
    out: Path,
    *,
    services: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run every unfinished stage in order; returns each stage's completion record.

    A stage whose inputs changed since it last ran is redone from scratch, and so (through the
    fingerprints) is everything that reads it.
    """
    prints = fingerprints(stages)
    records: dict[str, dict[str, Any]] = {}
    todo = [s for s in stages if status(out, s, prints[s.id]) != "done"]
    log(f"{len(stages)} stages, {len(stages) - len(todo)} already done")
    for n, s in enumerate(todo, 1):
        state = status(out, s, prints[s.id])
        folder = out / "stages" / s.id
        if state == "stale":
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "stage.json", {"id": s.id, "kind": s.kind, "fingerprint": prints[s.id], "config": s.config})
        log(f"[{n}/{len(todo)}] {s.kind} {s.id}" + (" (continuing)" if state == "partial" else ""))
        started = time.perf_counter()
        ctx = StageContext(out, s, services, log)
        try:
            record = s.action(ctx)
        except UserError as exc:
            raise UserError(f"stage {s.id}: {exc}") from None
        seconds = round(time.perf_counter() - started, 1)
        write_json(
            folder / "done.json",
            {
                "id": s.id,
                "fingerprint": prints[s.id],
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "wall_time_s": seconds,
                "record": record,
            },
        )
        log(f"      done in {seconds:.0f}s")
    for s in stages:
        records[s.id] = read_json(out / "stages" / s.id / "done.json")["record"]
    return records
