"""Device time from a throughput benchmark: how long a study's trainings would take on a device this
machine does not have (a GPU), from what `benchmarks/gpu_throughput.py` measured there.

The benchmark times training steps per mode for a few CIFAR-shaped networks (VGG-16 x0.25, VGG-16 x1,
ResNet-56) and converts images/s to achieved FLOP/s (6 x MACs per training image). On a GPU that rate
depends on how much work each image is (small networks leave it waiting on kernel launches) and on how
many layers carry it. So a training's rate is read off the rates of the measured networks of its own
architecture (its family at its depth; else its family; else all) against their MACs per image: linearly
in log-log between them, held at the largest above them, and below the smallest along the two smallest's
slope (never faster than the smallest), in the mode the run will use:

* a run alone: ``bf16`` where the study trains in bf16 (``precision = "bf16"``, or ``auto`` where the
  benchmark's single runs were bf16), else ``fp32``;
* K seeds trained together (``guided run --group-seeds``): the ``seeds-K'`` rows, K' the largest measured
  at most K (a run alone's rate below the smallest);
* N stages at once (``--jobs N``): each unit's rate times the sharing factor of the ``jobs-N'`` rows (N'
  the largest measured at most N): their aggregate over N runs alone. Sharing one GPU, N runs together
  do what ``jobs-N'`` measured and no more; every slot is taken as busy, so a study's tail, with fewer
  runs left, is estimated slow. The factor was measured on runs alone and is applied to seed groups too:
  an assumption the basis line names.

A training's seconds are its FLOPs, ``epochs x (6 x training images + 2 x test images) x MACs per
image`` (times K for a group), over that rate, plus a fixed cost per run: the benchmark's warm-up time
beyond its 3 batches of work (cuDNN autotuning, the allocator, the first launches). Not counted: each
epoch's checkpoint (a run alone writes one; a seed group none) and the data's loading.

Example:
    >>> rows = [{"mode": "bf16", "macs": 1e7, "images_per_s": 1e4, "tflops": 0.6, "warmup_s": 1.0},
    ...         {"mode": "bf16", "macs": 1e9, "images_per_s": 1e3, "tflops": 6.0, "warmup_s": 1.0}]
    >>> t = Throughput({"device": "cuda: X", "batch_size": 128, "rows": rows})
    >>> round(t.rate(1e8, "bf16") / 1e12, 2)  # TFLOP/s halfway (in log MACs) between the two networks
    1.9
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.storage.io import read_json
from models import ArchSpec, SpecError, cost, create_spec

__all__ = ["Throughput", "load_throughput"]

#: The benchmark's warm-up epoch: this many batches, timed with the run's fixed costs.
WARMUP_BATCHES = 3


def load_throughput(path: str | Path) -> Throughput:
    """A throughput benchmark's results (``results/benchmarks/gpu_throughput.json``), checked."""

    return Throughput(read_json(Path(path), "throughput benchmark"), source=str(path))


class Throughput:
    """Training rates measured on one device, per mode, for estimating stages there."""

    def __init__(self, record: Any, *, source: str = "the benchmark"):
        rows = record.get("rows") if isinstance(record, dict) else None
        if not isinstance(rows, list) or not rows or not all(_valid(r) for r in rows):
            raise UserError(
                f"{source} is not a throughput benchmark's results (rows with mode, macs, images_per_s and "
                "tflops); write one with benchmarks/gpu_throughput.py on the device"
            )
        batch = record.get("batch_size")
        if batch is not None and not (_number(batch) and batch == int(batch) and batch >= 1):
            raise UserError(f"{source}: batch_size must be a whole number of images, 1 or more, got {batch!r}")
        self.device = _printable(str(record.get("device", "unknown device")))
        self.source = source
        self.batch_size = batch
        self.single_precision = record.get("precision_single_runs", "bf16")
        self.rows = rows

    # ------------------------------------------------------------------ rates
    def modes(self) -> set[str]:
        return {r["mode"] for r in self.rows}

    def rate(self, macs: float, mode: str, spec: ArchSpec | None = None) -> float:
        """Achieved FLOP/s of a network of ``macs`` MACs per image in ``mode``, from the measured networks:
        those of ``spec``'s architecture where there are some (`_closest`), else all."""
        rows = [r for r in self.rows if r["mode"] == mode]
        if not rows:
            raise UserError(f"{self.source} has no {mode!r} rows; rerun benchmarks/gpu_throughput.py with that mode")
        rows = _closest(rows, spec)
        points = sorted((r["macs"], r["tflops"] * 1e12) for r in rows)
        if macs >= points[-1][0]:
            return points[-1][1]
        if macs <= points[0][0]:  # below the smallest: the two smallest's slope, never faster than the smallest
            if len(points) == 1 or points[1][0] == points[0][0]:
                return points[0][1]
            (m0, r0), (m1, r1) = points[0], points[1]
            return min(r0, math.exp(math.log(r0) + math.log(macs / m0) * math.log(r1 / r0) / math.log(m1 / m0)))
        for (m0, r0), (m1, r1) in zip(points, points[1:]):
            if m0 <= macs <= m1:
                w = math.log(macs / m0) / math.log(m1 / m0) if m1 > m0 else 0.0
                return math.exp(math.log(r0) + w * math.log(r1 / r0))
        raise AssertionError("unreachable")

    def single_mode(self, precision: str) -> str:
        """The mode a run alone trains in: ``bf16`` or ``fp32`` (``precision`` as the study sets it)."""
        want = self.single_precision if precision == "auto" else precision
        return "bf16" if want == "bf16" and "bf16" in self.modes() else "fp32"

    def group_mode(self, k: int, precision: str) -> str:
        """The mode K seeds trained together run in: the largest measured ``seeds-K'`` with K' <= K."""
        measured = [n for n in _counts(self.modes(), "seeds-") if n <= k]
        return f"seeds-{max(measured)}" if k > 1 and measured else self.single_mode(precision)

    def sharing(self, macs: float, slots: int, precision: str, spec: ArchSpec | None = None) -> float:
        """The share of its alone rate each of ``slots`` busy slots gets, for a network of ``macs`` MACs
        per image (1 for one slot; without a ``jobs-`` measurement, the GPU split evenly)."""
        measured = [n for n in _counts(self.modes(), "jobs-") if n <= slots]
        if slots <= 1:
            return 1.0
        if not measured:
            return 1.0 / slots
        together = self.rate(macs, f"jobs-{max(measured)}", spec)
        return min(1.0, together / self.rate(macs, self.single_mode(precision), spec) / slots)

    def fixed_seconds(self, macs: float, precision: str, spec: ArchSpec | None = None) -> float:
        """A run's fixed cost: its warm-up beyond the work of its warm-up batches (nearest network)."""
        single = self.single_mode(precision)
        rows = _closest([r for r in self.rows if r["mode"] == single and "warmup_s" in r], spec)
        if not rows or not self.batch_size:
            return 0.0
        row = min(rows, key=lambda r: abs(math.log(r["macs"] / macs)))
        return max(0.0, row["warmup_s"] - WARMUP_BATCHES * self.batch_size / row["images_per_s"])

    # ------------------------------------------------------------------ stages
    def training_seconds(self, works: Sequence[dict[str, Any]], *, precision: str, slots: int = 1) -> float:
        """Seconds of trainings that run as one unit: one run, or (several) one seed group; a ``search``
        work is its trials, one after another."""
        work = works[0]
        spec = work["spec"]
        macs = float(cost(spec).macs)
        mode = self.group_mode(len(works), precision)
        flops = sum(w["epochs"] * (6 * w["train"] + 2 * w["test"]) * macs for w in works)
        trials = work.get("trials", 1) if work.get("kind") == "search" else 1
        rate = self.rate(macs, mode, spec) * self.sharing(macs, slots, precision, spec)
        return trials * (flops / rate + self.fixed_seconds(macs, precision, spec))

    def speed_seconds(self, work: dict[str, Any], *, precision: str) -> float:
        """The speed stage: per architecture, 7 forward passes at batch 256 and the quiet-machine checks."""
        single = self.single_mode(precision)
        return sum(0.3 + 7 * 2 * 256 * cost(s).macs / self.rate(cost(s).macs, single, s) for s in work["specs"])

    def basis(self, slots: int, group_seeds: int, precision: str) -> str:
        """What the estimate rests on, in one line."""
        parts = [f"from {self.source} ({self.device})", f"{self.single_mode(precision)} runs"]
        if group_seeds > 1:
            parts.append(f"seed groups at the {self.group_mode(group_seeds, precision)} rate")
        if slots > 1:
            jobs = [n for n in _counts(self.modes(), "jobs-") if n <= slots]
            shared = f"the jobs-{max(jobs)} rate shared" if jobs else "no jobs- rows: the device split evenly"
            parts.append(f"{slots} at a time ({shared}" + (", measured on runs alone)" if group_seeds > 1 else ")"))
        return ", ".join(parts)


def _number(x: Any) -> bool:
    """A finite real number (JSON's ``true`` is not one)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _valid(row: Any) -> bool:
    keys = ("mode", "macs", "images_per_s", "tflops")
    return (
        isinstance(row, dict)
        and all(k in row for k in keys)
        and isinstance(row["mode"], str)
        and all(_number(row[k]) and row[k] > 0 for k in keys[1:])
        and ("warmup_s" not in row or (_number(row["warmup_s"]) and row["warmup_s"] >= 0))
    )


def _printable(text: str) -> str:
    """``text`` without control characters (a device string printed raw could drive the terminal)."""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _closest(rows: list[dict[str, Any]], spec: ArchSpec | None) -> list[dict[str, Any]]:
    """The rows measured on ``spec``'s architecture (its family at its depth: as many width entries), else
    on its family, else all: a rate depends on depth as well as on MACs."""
    if spec is None:
        return rows
    same = [r for r in rows if _shape(r) == (spec.family, len(spec.widths()))]
    kin = [r for r in rows if _shape(r)[0] == spec.family]
    return same or kin or rows


def _shape(row: dict[str, Any]) -> tuple[str | None, int]:
    """A row's family and depth (width entries), from the model it names (``"NAME xWIDTH"``)."""
    return _model_shape(str(row.get("model", "")).split(" ")[0])


@functools.cache
def _model_shape(name: str) -> tuple[str | None, int]:
    """A registered model's family and depth, built once per name (every stage's estimate asks)."""
    try:
        spec = create_spec(name)
    except SpecError:  # a model this version does not know: matches nothing
        return None, 0
    return spec.family, len(spec.widths())


def _counts(modes: set[str], prefix: str) -> list[int]:
    """The N of every ``prefix-N`` mode."""
    return [int(m[len(prefix) :]) for m in modes if m.startswith(prefix) and m[len(prefix) :].isdigit()]
