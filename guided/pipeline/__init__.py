"""Whole studies from one TOML file: base training, pruning, patterns, designs, transfer, search, report.

`run_study` validates the file, plans the stages (`guided.pipeline.stages`), and runs the unfinished
ones (`guided.pipeline.runner`); `dry_run` lists them with their status, cost and estimated time. The
pipeline only orchestrates: every stage is a call into the library the other modules provide.

Example:
    >>> from guided.pipeline import load_study
    >>> study = load_study("configs/study-tiny-digits.toml")  # doctest: +SKIP
    >>> run_study(study, "results/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from guided.pipeline.config import Study, load_study, parse_study
from guided.pipeline.run import dry_run, run_study
from guided.pipeline.runner import Stage
from guided.pipeline.stages import Services, plan_study

__all__ = ["Study", "load_study", "parse_study", "plan_study", "run_study", "dry_run", "Stage", "Services"]
