"""Seeds by power: what each comparison of a planned study can detect, and how many seeds a target needs.

A comparison is a designed (or pruned, or searched) arm against uniform at one budget of one domain. Its
detectable effect (`guided.reporting.tables.detectable`: 80% power, two-sided Welch test at 5%) follows from the
seed-to-seed standard deviation of test accuracy and the seed counts. The standard deviation comes from
the study's own finished runs where an arm has two or more (each arm's own), else from the runs of the
reference study ``[study] sigma_from`` names (pooled over its arms and budgets), else it is unknown.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.pipeline.config import MAX_SEEDS, Study
from guided.pipeline.roles import ARM_ROLES, arm_label
from guided.pipeline.runner import Stage
from guided.reporting.tables import detectable
from guided.storage.folders import StageFolder, StudyFolder
from guided.storage.io import read_csv_table

__all__ = ["power_plan", "seeds_needed"]


def power_plan(study: Study, stages: list[Stage], out: Path) -> list[dict[str, Any]]:
    """Per comparison: ``domain``, ``budget``, ``arm``, ``seeds``, ``sd`` (points, both arms), ``sd_from``,
    ``mde`` (points) and, with ``[study] detect``, ``seeds_needed`` (``None``: more than the most a study
    takes)."""
    own = _own_spreads(stages, out)
    pooled, source = _reference(study.study.sigma_from)
    n = len(study.study.seeds)
    rows = []
    for domain, budget, arm in _comparisons(stages):
        mine, theirs = own.get((domain, budget, arm)), own.get((domain, budget, "uniform"))
        if mine is not None and theirs is not None:
            sd, sd_from = (mine, theirs), "this study's finished runs"
        elif pooled is not None:
            sd, sd_from = (pooled, pooled), source
        else:
            sd, sd_from = None, "unknown: no finished seeds yet; name a finished study as [study] sigma_from"
        row = {"domain": domain, "budget": budget, "arm": arm, "seeds": n, "sd": sd, "sd_from": sd_from}
        row["mde"] = detectable(sd[0], n, sd[1], n) if sd else None
        if study.study.detect is not None and sd:
            row["seeds_needed"] = seeds_needed(study.study.detect, *sd)
        rows.append(row)
    return rows


def seeds_needed(target: float, sd_a: float, sd_b: float) -> int | None:
    """The fewest seeds per arm whose detectable effect is at most ``target`` points (``None``: more than
    `MAX_SEEDS`).

    Example:
        >>> seeds_needed(3.1, 1.0, 1.0), seeds_needed(0.01, 1.0, 1.0)
        (3, None)
    """
    for n in range(2, MAX_SEEDS + 1):
        if detectable(sd_a, n, sd_b, n) <= target:
            return n
    return None


def _comparisons(stages: list[Stage]) -> list[tuple[str, str, str]]:
    """(domain, budget, arm) of every from-scratch arm the plan compares with uniform, in plan order."""
    seen = {}
    for s in stages:
        t = s.tags
        if t.role in ARM_ROLES and t.arm != "uniform":
            arm = arm_label(t.role, t.arm)
            seen[t.domain, t.budget, arm] = None
    return list(seen)


def _own_spreads(stages: list[Stage], out: Path) -> dict[tuple[str, str, str], float]:
    """Each arm's standard deviation over its finished seeds (points), where it has two or more."""
    accs: dict[tuple[str, str, str], list[float]] = {}
    for s in stages:
        t, done = s.tags, StageFolder(out / "stages" / s.id).done
        if t.role in ARM_ROLES and done.is_file():
            arm = arm_label(t.role, t.arm)
            accs.setdefault((t.domain, t.budget, arm), []).append(
                100 * StageFolder(done.parent).read_done()["record"]["test_acc"]
            )
    return {k: _sd(v) for k, v in accs.items() if len(v) > 1}


def _reference(folder: str | None) -> tuple[float | None, str]:
    """The pooled seed-to-seed standard deviation (points) of a finished study's from-scratch arms."""
    if folder is None:
        return None, ""

    path = StudyFolder(Path(folder).expanduser()).runs
    if not os.path.lexists(path):
        raise UserError(f"[study] sigma_from = {folder!r} has no runs.csv; name a finished study's folder")
    columns = ("domain", "budget", "arm", "role", "test_acc")
    runs = read_csv_table(path, "[study] sigma_from runs table", columns, ("test_acc",))
    runs = runs[runs["role"].isin(ARM_ROLES)]
    variances = [
        _sd(100 * group["test_acc"]) ** 2 for _, group in runs.groupby(["domain", "budget", "arm"]) if len(group) > 1
    ]
    if not variances:
        raise UserError(f"{path} has no arm trained with two or more seeds; it cannot give a spread")
    return math.sqrt(sum(variances) / len(variances)), f"the runs of {folder} (pooled over its arms)"


def _sd(values) -> float:
    import numpy as np

    return float(np.std(np.asarray(values, dtype=float), ddof=1))
