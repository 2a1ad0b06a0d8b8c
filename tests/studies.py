"""Tiny studies for tests: one base study (the digits set, ``vgg-tiny``, a CPU, one seed, one epoch, Network
Slimming designs at half the parameters) that each test changes where it differs, so a test says only what
its study is about.

Example:
    >>> s = tiny_study({"study": {"seeds": [0, 1]}, "search": {"trials": 2}}, {"design": None})
    >>> s["study"]["seeds"], s["search"], "design" in s, s["prune"][0]["method"]
    ([0, 1], {'trials': 2}, False, 'slimming')
    >>> import tomllib
    >>> tomllib.loads(toml_text(s)) == s
    True
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomli_w

__all__ = ["BASE", "entry", "tiny_study", "toml_text", "vary", "write_study"]

BASE: dict[str, Any] = {
    "study": {"name": "tiny", "seeds": [0], "device": "cpu"},
    "data": {"dataset": "digits", "train_subset": 400, "test_subset": 200},
    "model": {"arch": "vgg-tiny"},
    "train": {"epochs": 1, "batch_size": 64},
    "prune": [{"name": "slim", "method": "slimming", "base": "sparse", "ratio": 0.4}],
    "design": {"pattern": "slim", "budgets": ["50%"]},
}


def tiny_study(*changes: dict[str, Any]) -> dict[str, Any]:
    """`BASE` with each of ``changes`` applied in turn (`vary`)."""
    return vary(BASE, *changes)


def vary(study: dict[str, Any], *changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``study`` with each of ``changes`` applied in turn: a table's keys are updated (a key set to
    None is removed), a table set to None is left out, and a list of tables (``prune``, ``transfer``)
    replaces the list. ``vary(TINY, {...})`` varies a test module's study, tables it lacks staying out.

    Example:
        >>> vary({"model": {"arch": "vgg-tiny"}}, {"model": {"width_mult": 2}}, {"design": None})
        {'model': {'arch': 'vgg-tiny', 'width_mult': 2}}
    """
    study = copy.deepcopy(study)
    for change in changes:
        for table, value in copy.deepcopy(change).items():
            if value is None:
                study.pop(table, None)
            elif isinstance(value, dict):
                merged = {**study.get(table, {}), **value}
                study[table] = {k: v for k, v in merged.items() if v is not None}
            else:
                study[table] = value
    return study


def entry(table: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of one table (a ``[[prune]]`` entry, say) with ``changes``; a key changed to None is removed.

    Example:
        >>> entry({"name": "l1", "ratio": 0.5}, ratio=None, preset="vgg16-a")
        {'name': 'l1', 'preset': 'vgg16-a'}
    """
    return {k: v for k, v in {**table, **changes}.items() if v is not None}


def toml_text(study: dict[str, Any]) -> str:
    """The study as a TOML file's text, tables in their order in ``study``."""
    return tomli_w.dumps(study)


def write_study(folder: Path, study: dict[str, Any], name: str = "study.toml") -> Path:
    """Write the study into ``folder``; returns the file."""
    path = Path(folder) / name
    path.write_text(toml_text(study))
    return path
