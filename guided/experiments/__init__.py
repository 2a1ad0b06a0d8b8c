"""Experiments: one TOML file, one command, a results folder with tables and provenance.

Each experiment is a function ``run(config, out_dir, *, runs_dir, log) -> dict`` registered in
`EXPERIMENTS`; ``guided experiment NAME CONFIG.toml --out DIR`` runs it. Finished training runs are
skipped and interrupted ones resumed, so an experiment can be stopped and started again.
"""

from guided.experiments.finetune_vs_scratch import run as finetune_vs_scratch

EXPERIMENTS = {"finetune-vs-scratch": finetune_vs_scratch}

__all__ = ["EXPERIMENTS"]
