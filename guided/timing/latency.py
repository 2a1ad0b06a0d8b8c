"""Latency as a cost: a per-layer table measured once on a device, and what it predicts for a network.

MACs are what a spec says; time is what a device does with it, and small layers cost more time per MAC
than large ones (launch overheads, cache-unfriendly shapes). `LatencyTable` times forward and backward of
each distinct *unit* a spec has: a conv (or linear) layer with the BatchNorm and ReLU that follow it and,
in VGG, the 2x2 max-pool after a stage's last conv (`units`), at a batch size, median of timed repeats
after warm-up. Timing the unit matters: BatchNorm, ReLU and pooling on large early maps cost as much as
small convs, so a conv-only table called wide-early designs 40% faster than they are. Results are kept
in a JSON cache keyed by device (on a CPU: its instruction set and thread count) and batch size, so a
unit is measured once per device. A network's predicted latency is the sum over its units; residual
additions, the loss and the optimiser are not in the table, which is why `guided cost --latency` prints
the prediction beside a measured end-to-end time.

The table is measured at channel counts that are powers of two and interpolated bilinearly in (input,
output) channels between them, so a width solver that tries hundreds of widths (`guided.shapes.design` at a
``latency=`` budget) reads a few dozen measured shapes per layer position instead of timing each width
it tries; bilinear interpolation is exact wherever time is affine in ``in``, ``out`` and ``in * out``,
which is what a convolution's arithmetic is. `LatencyTable.prepare` times every node a network narrower
than a given one can need, once, before any width is solved.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from guided.storage.io import atomic_write_text
from guided.storage.provenance import device_name
from guided.timing.speed import median_seconds
from models import ArchSpec, build, cost

__all__ = ["LatencyTable", "measure_step", "default_cache", "units", "cpu_name"]


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/guided/latency`` (``~/.cache/guided/latency``): where tables live."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guided" / "latency"


def units(spec: ArchSpec) -> list[dict[str, Any]]:
    """Each conv and linear layer of ``spec`` as the unit the table times: ``name``, ``stage`` and ``shape``
    (kind, in and out channels, kernel, stride, input side, ``"bn"`` when a BatchNorm + ReLU on its output
    follows it else ``""``, and 1 when a 2x2 max-pool follows it else 0). A depthwise conv's kind is
    ``"dwconv"`` and its input channels are those each output channel reads (1).

    Example:
        >>> from models import create_spec
        >>> [u["shape"] for u in units(create_spec("vgg-tiny"))][:2]
        [('conv', 3, 8, 3, 1, 16, 'bn', 1), ('conv', 8, 8, 3, 1, 8, 'bn', 0)]
    """
    rows = cost(spec).layers
    last = {r["stage"]: i for i, r in enumerate(rows) if r["kind"] == "conv"}  # each stage's last conv
    out = []
    for i, r in enumerate(rows):
        if r["kind"] not in ("conv", "linear"):
            continue
        after = rows[i + 1] if i + 1 < len(rows) else None
        norm = "bn" if after is not None and after["kind"] == "bn" and after["in_ch"] == r["out_ch"] else ""
        pool = int(spec.family == "vgg" and last.get(r["stage"]) == i and 0 <= r["stage"] < len(spec.stages) - 1)
        size = r["out_size"] * r["stride"]
        kind, cin = r["kind"], r["in_ch"]
        if r.get("groups", 1) > 1:  # depthwise: one input channel per output channel, timed as such
            kind, cin = "dwconv", r["in_ch"] // r["groups"]
        shape = (kind, cin, r["out_ch"], r["kernel"], r["stride"], size, norm, pool)
        out.append({"name": r["name"], "stage": r["stage"], "shape": shape})
    return out


def cpu_name(threads: int | None = None) -> str:
    """A CPU as a latency table names it: architecture, the instruction set PyTorch computes with (AVX-512
    and AVX2 hosts differ by about 3x) and the thread count, so tables of different hosts never mix."""
    isa = torch.backends.cpu.get_cpu_capability().lower()
    return f"cpu: {platform.machine()} {isa}, {threads or torch.get_num_threads()} threads"


def _key(shape: tuple) -> str:
    return "-".join(str(v) for v in shape)


def _bracket(n: int) -> tuple[int, int, float]:
    """The powers of two around ``n`` and ``n``'s position between them (0 at the lower one).

    Example:
        >>> _bracket(12), _bracket(16)
        ((8, 16, 0.5), (16, 16, 0.0))
    """
    lo = 1 << (max(int(n), 1).bit_length() - 1)
    hi = lo if lo == n else 2 * lo
    return lo, hi, 0.0 if hi == lo else (n - lo) / (hi - lo)


def _nodes(n: int) -> list[int]:
    """Every power of two up to the first one at or above ``n``: the nodes a width up to ``n`` reads."""
    return [1 << i for i in range((max(int(n), 1) - 1).bit_length() + 1)]


class LatencyTable:
    """Seconds of forward + backward per conv/linear shape, on one device at one batch size.

    Shapes are measured at power-of-two channel counts and interpolated between them (module docstring).

    Args:
        device: where layers are timed.
        batch_size: images per timed pass (a study's training batch).
        repeats: timed passes per shape; the median is kept.
        cache: folder of the JSON cache (default `default_cache`); ``None`` keeps the table in memory.
        threads: on a CPU, time with this many threads (default: the process's current count), whatever
            the process uses otherwise; the count is part of the table's name.
    """

    def __init__(
        self,
        device="cpu",
        *,
        batch_size: int = 128,
        repeats: int = 5,
        cache: Path | None = None,
        threads: int | None = None,
    ):
        self.device = torch.device(device)
        self.batch_size, self.repeats = batch_size, repeats
        self.threads = threads if self.device.type == "cpu" else None
        self.device_name = cpu_name(self.threads) if self.device.type == "cpu" else device_name(self.device)
        name = re.sub(r"[^A-Za-z0-9]+", "-", self.device_name).strip("-").lower()
        self.path = None if cache is None else Path(cache) / f"{name}-b{batch_size}.json"
        self.seconds: dict[str, float] = _load_times(self.path) if self.path and self.path.is_file() else {}

    def layer_seconds(self, spec: ArchSpec) -> list[dict[str, Any]]:
        """Each conv and linear layer of ``spec`` (its `units`) with its predicted seconds, measuring nodes not
        yet timed."""
        return [
            {"name": u["name"], "stage": u["stage"], "seconds": self.shape_seconds(u["shape"])} for u in units(spec)
        ]

    def predict(self, spec: ArchSpec) -> float:
        """Predicted seconds of one training step (forward + backward) of ``spec``'s units."""
        return sum(r["seconds"] for r in self.layer_seconds(spec))

    def shape_seconds(self, shape: tuple) -> float:
        """One layer shape's seconds, interpolated bilinearly between power-of-two channel counts."""
        kind, cin, cout, *rest = shape
        (i0, i1, u), (o0, o1, v) = _bracket(cin), _bracket(cout)
        corner = {(i, o): self._node((kind, i, o, *rest)) for i in {i0, i1} for o in {o0, o1}}
        low = (1 - v) * corner[i0, o0] + v * corner[i0, o1]
        high = (1 - v) * corner[i1, o0] + v * corner[i1, o1]
        return (1 - u) * low + u * high

    def prepare(self, spec: ArchSpec, *, headroom: float = 1.0, log=None) -> int:
        """Time, now, every node a network at most ``headroom`` times as wide as ``spec`` (per layer
        position) can read, so that later predictions measure nothing. Returns how many nodes were timed."""
        widest: dict[tuple, list[int]] = {}
        for u in units(spec):
            kind, cin, cout, *rest = u["shape"]
            w = widest.setdefault((kind, *rest), [1, 1])
            w[0], w[1] = max(w[0], math.ceil(cin * headroom)), max(w[1], math.ceil(cout * headroom))
        todo = [
            (kind, i, o, *rest)
            for (kind, *rest), (cin, cout) in widest.items()
            for i in _nodes(cin)
            for o in _nodes(cout)
            if _key((kind, i, o, *rest)) not in self.seconds
        ]
        for n, shape in enumerate(todo, 1):
            self.seconds[_key(shape)] = self._measure(shape)
            if log and (n % 50 == 0 or n == len(todo)):
                log(f"latency table: {n}/{len(todo)} layer shapes timed on {self.device_name}")
        self._save(bool(todo))
        return len(todo)

    def _node(self, shape: tuple) -> float:
        key = _key(shape)
        if key not in self.seconds:
            self.seconds[key] = self._measure(shape)
            self._save(True)
        return self.seconds[key]

    def _save(self, changed: bool) -> None:
        if changed and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.seconds, indent=1, sort_keys=True))

    @contextmanager
    def _pinned(self):
        """The table's thread count, for the time of a measurement."""
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _measure(self, shape: tuple) -> float:
        kind, cin, cout, k, stride, size, norm, pool = shape
        if kind in ("conv", "dwconv"):
            groups = cout // cin if kind == "dwconv" else 1
            parts = [nn.Conv2d(cin * groups, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)]
            parts += [nn.BatchNorm2d(cout), nn.ReLU()] if norm else []
            x = torch.randn(self.batch_size, cin * groups, size, size, device=self.device)
        else:
            parts = [nn.Linear(cin, cout)] + ([nn.BatchNorm1d(cout), nn.ReLU()] if norm else [])
            x = torch.randn(self.batch_size, cin, device=self.device)
        layer = nn.Sequential(*parts, *([nn.MaxPool2d(2)] if pool else [])).to(self.device).train()
        x.requires_grad_(True)

        def step() -> None:
            layer(x).sum().backward()

        with self._pinned():
            return median_seconds(step, self.device, repeats=self.repeats)


def _load_times(path: Path) -> dict[str, float]:
    """A cached table's times; an unreadable file or entries that are not positive finite seconds are dropped
    with a one-line notice (those shapes are timed again), never used."""
    import sys

    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        print(f"note: latency table {path} is unreadable ({type(exc).__name__}); timing again", file=sys.stderr)
        return {}
    if not isinstance(table, dict):
        print(f"note: latency table {path} is not a table of times; timing again", file=sys.stderr)
        return {}
    good = {
        k: float(v)
        for k, v in table.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf
    }
    if len(good) < len(table):
        print(
            f"note: latency table {path} holds {len(table) - len(good)} time(s) that are not positive seconds; "
            "timing those shapes again",
            file=sys.stderr,
        )
    return good


def measure_step(spec: ArchSpec, device="cpu", *, batch_size: int = 128, repeats: int = 5) -> float:
    """Measured seconds of one forward + backward pass of the whole network (train mode, random input)."""
    device = torch.device(device)
    model = build(spec, seed=0).to(device).train()
    x = torch.randn(batch_size, spec.in_channels, spec.input_size, spec.input_size, device=device)

    def step() -> None:
        model(x).sum().backward()

    return median_seconds(step, device, repeats=repeats)
