"""Pieces every experiment uses: typed config sections, resumable training runs, mean ± std tables."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from guided.data import ImageData, load_dataset, subsample
from guided.errors import UserError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "PruneRow",
    "section",
    "load_data",
    "finished",
    "timed",
    "mean_std",
    "markdown_table",
]


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: which dataset and how much of it."""

    dataset: str
    data_root: str = "./data"
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: a registered architecture and its width multiplier (and VGG head)."""

    arch: str
    width_mult: float = 1.0
    head: str | None = None


@dataclass(frozen=True)
class PruneRow:
    """One pruning method and setting (an experiment's ``[[rows]]``, a study's ``[[prune]]``)."""

    name: str
    method: str
    base: str = "plain"
    ratio: float | list[float] | None = None
    preset: str | None = None
    allocation: str | None = None
    samples: int = 512

    def check(self, where: str) -> None:
        """Refuse an unknown method or base, naming ``where`` the row is."""
        from guided.pruning import PRUNERS

        if self.method not in PRUNERS:
            raise UserError(f"{where}: unknown method {self.method!r}; choose one of {', '.join(sorted(PRUNERS))}")
        if self.base not in ("plain", "sparse"):
            raise UserError(f"{where}: base must be 'plain' or 'sparse', got {self.base!r}")
        if isinstance(self.ratio, list):
            if not all(0 <= r < 1 for r in self.ratio) or not any(self.ratio):
                raise UserError(f"{where}: stage ratios must lie in [0, 1) and not all be 0, got {self.ratio}")
        elif self.ratio is not None and not 0 < self.ratio < 1:
            raise UserError(f"{where}: ratio must lie in (0, 1) (the fraction removed), got {self.ratio}")
        if self.samples < 1:
            raise UserError(f"{where}: samples must be at least 1, got {self.samples}")


def section(cls, table: dict[str, Any], name: str):
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types by name."""
    if not isinstance(table, dict):
        raise UserError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise UserError(f"[{name}] has unknown key {key!r}; known keys: {', '.join(known)}")
        expected = known[key].type
        if not _type_ok(value, expected):
            raise UserError(f"[{name}] {key} = {value!r} has the wrong type (expected {expected})")
    missing = [f.name for f in fields(cls) if f.name not in table and _required(f)]
    if missing:
        raise UserError(f"[{name}] is missing {', '.join(missing)}")
    return cls(**table)


def _required(f) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _type_ok(value: Any, expected: str) -> bool:
    checks = {"str": str, "int": int, "float": (int, float), "bool": bool}
    options = [t.strip() for t in str(expected).split("|")]
    for t in options:
        if t == "None" and value is None:
            return True
        if t.startswith("list"):
            inner = t[t.index("[") + 1 : -1]
            if isinstance(value, list) and all(_type_ok(v, inner) for v in value):
                return True
        if t in checks and isinstance(value, checks[t]) and not (t != "bool" and isinstance(value, bool)):
            return True
    return False


def load_data(cfg: DataConfig, seed: int = 0) -> ImageData:
    """The configured dataset, subsampled with a fixed seed (the same images for every run)."""
    from pathlib import Path as _P

    name = cfg.dataset
    if name.startswith("imagefolder:"):
        name = "imagefolder:" + str(_P(name.split(":", 1)[1]).expanduser())
    data = load_dataset(name, root=cfg.data_root, size=cfg.image_size)
    return subsample(data, train=cfg.train_subset, test=cfg.test_subset, seed=seed)


def finished(run_dir: Path) -> dict | None:
    """The run's result.json if it finished, else None."""
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def timed(log: Callable[[str], None], what: str):
    """Context manager logging how long a step took."""

    class _T:
        def __enter__(self):
            self.t = time.perf_counter()
            log(f"-- {what}")
            return self

        def __exit__(self, *exc):
            if exc[0] is None:
                log(f"-- {what}: {time.perf_counter() - self.t:.0f}s")

    return _T()


def mean_std(values: list[float], *, percent: bool = True, digits: int = 2) -> str:
    """``mean ± std`` (sample std; just the value for one run), in percent by default."""
    if not values:
        return "-"
    s = pd.Series(values, dtype=float) * (100 if percent else 1)
    if len(s) == 1:
        return f"{s.iloc[0]:.{digits}f}"
    return f"{s.mean():.{digits}f} ± {s.std():.{digits}f}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)
