"""The folders the toolkit writes, each kind owning its file names: read and write them through these.

* `RunFolder`: a training run (``guided train``, ``guided retrain``, a study's training stage);
* `PrunedFolder`: a pruned model (``guided prune``, a study's prune stage) or a sparsity design;
* `StageFolder`: the records of one study stage (``OUT/stages/<id>/``), and what pattern, design and
  search stages leave there;
* `SearchFolder`: a width search (``guided search``, a study's search stage);
* `StudyFolder`: a study's own files (``guided run --out``).

A file name is spelled here and nowhere else (``tests/test_house.py`` checks), so a reader never has to
guess which module writes ``result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.storage.io import read_json, read_spec, write_json, write_spec
from models import ArchSpec

__all__ = ["RunFolder", "PrunedFolder", "StageFolder", "SearchFolder", "StudyFolder", "SPEC", "WEIGHTS", "MASKS"]

#: Shared by run and pruned folders (and sparsity designs): the architecture, the weights, the masks.
SPEC, WEIGHTS, MASKS = "spec.json", "model.pt", "masks.npz"


class _Folder:
    """A folder of one kind; its properties are the paths of its files."""

    __slots__ = ("path",)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    def read_spec(self) -> ArchSpec:
        return read_spec(self.spec)

    def write_spec(self, spec: ArchSpec) -> None:
        write_spec(self.spec, spec)


class RunFolder(_Folder):
    """A training run: ``spec.json``, ``config.json`` (its resolved configuration), ``init.pt`` (initial
    weights, when kept), ``checkpoint.pt`` and ``metrics.jsonl`` (each epoch), ``model.pt`` and
    ``result.json`` (when it finished)."""

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def init(self) -> Path:
        return self.path / "init.pt"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    def finished(self) -> dict[str, Any] | None:
        """``result.json`` if the run finished, else ``None``."""
        return read_json(self.result, "run result") if self.result.is_file() else None

    def read_result(self) -> dict[str, Any]:
        return read_json(self.result, "run result")

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config, "run configuration")


class PrunedFolder(_Folder):
    """A pruned model: ``spec.json``, inherited weights ``model.pt``, ``layers.csv`` (per layer: original and
    kept), ``masks.npz`` (unstructured pruning only) and, written last, ``prune.json`` (what was done, and
    the source run). A sparsity design (``guided design`` with a sparsity pattern) holds ``spec.json``,
    ``masks.npz`` and ``design.json``."""

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def layers(self) -> Path:
        return self.path / "layers.csv"

    @property
    def masks(self) -> Path:
        return self.path / MASKS

    @property
    def record(self) -> Path:
        return self.path / "prune.json"

    @property
    def design(self) -> Path:
        return self.path / "design.json"

    def complete(self) -> bool:
        """Whether a pruned model was written here (``prune.json`` is written last)."""
        return self.record.exists()

    def masked(self) -> bool:
        return self.masks.exists()

    def read_record(self) -> dict[str, Any]:
        return read_json(self.record, "pruned-model record")

    def source_run(self) -> str | None:
        """The training run this model was pruned from (``None``: fresh weights)."""
        run = (self.read_record().get("source") or {}).get("run")
        return run if isinstance(run, str) else None


class StageFolder(_Folder):
    """One study stage, ``OUT/stages/<id>/``: ``stage.json`` (config, fingerprint and revision, written when it
    starts) and ``done.json`` (its completion record); a training stage is also a `RunFolder`, a prune stage
    a `PrunedFolder`, a search stage a `SearchFolder`; a pattern stage leaves ``pattern.json``, a design
    stage one spec per arm (``<arm>.json``), the speed stage ``speed.json``."""

    @property
    def started(self) -> Path:
        return self.path / "stage.json"

    @property
    def done(self) -> Path:
        return self.path / "done.json"

    @property
    def pattern(self) -> Path:
        return self.path / "pattern.json"

    @property
    def speed(self) -> Path:
        return self.path / "speed.json"

    def arm(self, arm: str) -> Path:
        """A design stage's spec of ``arm``."""
        return self.path / f"{arm}.json"

    def read_started(self) -> dict[str, Any]:
        return read_json(self.started, "study stage")

    def read_done(self) -> dict[str, Any]:
        """The completion record, checked: an object with a ``record`` object whose accuracies are numbers; a
        damaged one is a one-line `UserError` that says how to redo the stage."""
        done = read_json(self.done, "stage record")
        record = done.get("record") if isinstance(done, dict) else None
        accs = {k: v for k, v in (record or {}).items() if k.endswith("_acc")}
        bad = [k for k, v in accs.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v]
        if not isinstance(record, dict) or bad:
            what = f"its {bad[0]} is {accs[bad[0]]!r}, not a number" if bad else "it holds no record object"
            raise UserError(
                f"stage record {self.done} is damaged ({what}); delete {self.path} and rerun with --resume to redo "
                "that stage"
            )
        return done

    def write_started(self, record: dict[str, Any]) -> None:
        write_json(self.started, record)

    def write_done(self, record: dict[str, Any]) -> None:
        write_json(self.done, record)

    def is_stage(self) -> bool:
        return self.started.is_file()


class SearchFolder(_Folder):
    """A width search: ``search-request.json`` (what was asked, written first), ``study.journal`` (Optuna's
    storage by default), ``trials.csv``, ``best.json`` (single objective) or ``pareto-<i>.json``
    (two objectives) and ``search.json`` (its summary)."""

    @property
    def request(self) -> Path:
        return self.path / "search-request.json"

    @property
    def journal(self) -> Path:
        return self.path / "study.journal"

    @property
    def trials(self) -> Path:
        return self.path / "trials.csv"

    @property
    def best(self) -> Path:
        return self.path / "best.json"

    def top(self, rank: int) -> Path:
        """The spec of the ``rank``-th best trial (1: the best) of a single-objective search."""
        return self.path / f"top-{rank}.json"

    def pareto(self, i: int) -> Path:
        return self.path / f"pareto-{i}.json"

    @property
    def summary(self) -> Path:
        return self.path / "search.json"


class StudyFolder(_Folder):
    """A study (``guided run --out``): ``study.json`` (the resolved study), ``study.toml`` (the file it was
    run from), ``estimate.json`` (the time estimate when it started), ``stages/`` (one `StageFolder` each),
    ``latency/`` (its latency table), and the report's ``report.md``, ``report.html``, ``runs.csv`` (every
    training run) and ``summary.json`` (its numbers as data)."""

    @property
    def study(self) -> Path:
        return self.path / "study.json"

    @property
    def source(self) -> Path:
        return self.path / "study.toml"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def runs(self) -> Path:
        return self.path / "runs.csv"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def estimate(self) -> Path:
        return self.path / "estimate.json"

    @property
    def stages(self) -> Path:
        return self.path / "stages"

    @property
    def latency(self) -> Path:
        return self.path / "latency"

    def stage(self, stage_id: str) -> StageFolder:
        return StageFolder(self.stages / stage_id)
