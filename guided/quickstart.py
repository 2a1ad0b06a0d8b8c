"""The offline quick start: pruning as architecture discovery, end to end, in about a minute on a CPU.

It is an ordinary study (`guided/studies/quickstart.toml`, also ``configs/quickstart.toml``) run by the
pipeline into ``./guided-quickstart`` (ignored by git; the committed reference run is in
``results/quickstart``): on scikit-learn's handwritten digits (always offline), a small VGG
trained with the Network Slimming penalty for two seeds, pruned, summarised into a per-stage pattern,
guided / uniform / pruned networks at one budget trained from scratch, the pattern transferred to a
deeper VGG, and a report (Markdown and a self-contained HTML page) with tables and plots. Run again, it
skips finished stages.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from guided.pipeline import parse_study, run_study
from guided.storage.folders import StudyFolder

__all__ = ["quickstart", "quickstart_text"]


def quickstart_text() -> str:
    """The quick start's study TOML (shipped inside the package)."""
    return resources.files("guided").joinpath("studies/quickstart.toml").read_text()


def quickstart(
    out_dir: str | Path = "guided-quickstart",
    *,
    log: Callable[[str], None] = print,
    train: dict[str, Any] | None = None,
) -> Path:
    """Run the quick start study into ``out_dir``; returns the path of ``report.md``.

    Args:
        out_dir: the study folder (stage records and training runs in ``out_dir/stages``).
        log: progress lines.
        train: overrides of the study's ``[train]`` section (tests train fewer epochs).
    """
    import tomllib

    text = quickstart_text()
    table = tomllib.loads(text)
    table["train"].update(train or {})
    run_study(parse_study(table), out_dir, resume=True, source_text=text, log=log)
    return StudyFolder(Path(out_dir)).report
