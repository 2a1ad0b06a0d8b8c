"""The study's vocabulary, spelled once: what each stage is for (`Role`, a stage's ``tags.role`` and the
``role`` column of ``runs.csv``), what the report groups a stage by (`Tags`) and the width searches' arms
(`SearchArm`). Every planner, action, report
and power analysis reads these; `tests/test_house.py` refuses a role or search-arm name spelled elsewhere.

Example:
    >>> Role.SEARCH_BEST == "search-best", arm_label(Role.SEARCH_BEST, "cold"), arm_label(Role.SCRATCH, "guided")
    (True, 'search-cold', 'guided')
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum

__all__ = [
    "Role",
    "Tags",
    "ARM_ROLES",
    "POPULATION_ROLES",
    "SEARCH_ROLES",
    "SearchArm",
    "SEARCH_ARMS",
    "SEARCH_COLOURS",
    "arm_label",
]


class Role(StrEnum):
    """What a stage is for. A member is its own string (``Role.SCRATCH == "scratch"``), so tags, JSON
    records and ``runs.csv`` keep the plain names they always had."""

    BASE = "base"  # a full-width model trained for pruning
    PRUNE = "prune"  # a base pruned by a [[prune]] method
    RETRAIN = "retrain"  # a pruned model fine-tuned or trained again (Scratch-E, Scratch-B, lottery)
    PATTERN = "pattern"  # the seeds' pruned folders summarised
    DESIGN = "design"  # guided and uniform designs at the budgets
    SCRATCH = "scratch"  # a design arm trained from scratch at a budget
    PRUNE_BUDGET = "prune-budget"  # a base pruned down to a budget (the "pruned" arm's architecture)
    SEARCH = "search"  # one width search
    SEARCH_BEST = "search-best"  # a search's best trial retrained with every seed
    SEARCH_TOP = "search-top"  # a search's next best trials retrained once (the proxy's rank correlation)
    POPULATION = "population"  # one shape of a population, trained in the study's protocol
    POPULATION_PROXY = "population-proxy"  # one shape scored by a cheap evaluator
    SPEED = "speed"  # inference timings of the compared architectures
    REPORT = "report"


@dataclass(frozen=True, kw_only=True)
class Tags:
    """What the report groups a stage's run by, one typed record per stage (`guided.pipeline.runner.Stage`);
    not part of the stage's inputs. A field that does not apply to a stage is None; `row` gives the others,
    in this order, as the stage's columns of ``runs.csv``.

    Example:
        >>> t = Tags(domain="source", role=Role.SCRATCH, budget="macs=25%", arm="uniform", seed=0)
        >>> t.row()["arm"], t.but(seed=1).seed, t.proxy
        ('uniform', 1, None)
    """

    domain: str | None = None  # the study's source or a transfer target
    role: Role | None = None
    kind: str | None = None  # a base's training: plain or sparse
    prune: str | None = None  # the [[prune]] row a pruning, retraining or pattern belongs to
    mode: str | None = None  # a retraining's mode (finetune, scratch-e, ...)
    unit: str | None = None  # what a pattern's method prunes (channels, blocks, weights)
    budget: str | None = None  # the budget text as the study gives it
    arm: str | None = None  # a design arm (uniform, guided, ...) or a search arm's name
    seed: int | None = None
    rank: int | None = None  # a search's retrained trial: 1 for the best
    shape: int | None = None  # a population shape's index
    proxy: str | None = None  # a population proxy's name

    def row(self) -> dict[str, object]:
        """The fields that apply (not None), in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def but(self, **changes) -> Tags:
        """A copy with ``changes``."""
        return replace(self, **changes)


#: The roles whose runs are the arms of a design verdict: designs trained from scratch, searches' bests.
ARM_ROLES = (Role.SCRATCH, Role.SEARCH_BEST)

#: The roles of a population's stages.
POPULATION_ROLES = (Role.POPULATION, Role.POPULATION_PROXY)


@dataclass(frozen=True)
class SearchArm:
    """One ``[search] arms`` entry: the sampler it searches with (`search.study.SAMPLERS`), whether it
    starts from the study's guided and uniform designs, and its colour in every figure (Paul Tol's palette,
    with `guided.reporting.plots.ARM_COLOURS`)."""

    name: str
    sampler: str
    seeded: bool
    colour: str

    @property
    def label(self) -> str:
        """Its best's arm name in verdicts, tables and figures (and its Optuna study's name)."""
        return f"search-{self.name}"


#: The search arms, by name: TPE from scratch, TPE seeded with the designs, random sampling (the control).
SEARCH_ARMS = {
    a.name: a
    for a in (
        SearchArm("cold", "tpe", False, "#66CCEE"),
        SearchArm("seeded", "tpe", True, "#AA3377"),
        SearchArm("random", "random", False, "#BBBBBB"),
    )
}

#: Each search arm's label -> its colour (`guided.reporting.plots.arm_colours`'s ``fixed``).
SEARCH_COLOURS = {a.label: a.colour for a in SEARCH_ARMS.values()}


#: The roles of a search and its retrained trials, whose ``arm`` tag names a `SearchArm`.
SEARCH_ROLES = (Role.SEARCH, Role.SEARCH_BEST, Role.SEARCH_TOP)


def arm_label(role: str, arm: str) -> str:
    """The name a stage's arm goes by in verdicts and figures: a design's as it is, a search's (and its
    retrained trials') as its `SearchArm.label`."""
    return SEARCH_ARMS[arm].label if role in SEARCH_ROLES else arm
