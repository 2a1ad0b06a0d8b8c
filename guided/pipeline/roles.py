"""The study's vocabulary, spelled once: what each stage is for (`Role`, a stage's ``tags["role"]`` and the
``role`` column of ``runs.csv``) and the width searches' arms (`SearchArm`). Every planner, action, report
and power analysis reads these; `tests/test_house.py` refuses a role or search-arm name spelled elsewhere.

Example:
    >>> Role.SEARCH_BEST == "search-best", arm_label(Role.SEARCH_BEST, "cold"), arm_label(Role.SCRATCH, "guided")
    (True, 'search-cold', 'guided')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Role",
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
