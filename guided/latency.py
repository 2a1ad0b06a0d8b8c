"""Latency as a cost: a per-layer table measured once on a device, and what it predicts for a network.

MACs are what a spec says; time is what a device does with it, and small layers cost more time per MAC
than large ones (launch overheads, cache-unfriendly shapes). `LatencyTable` times forward and backward of
each distinct conv and linear shape a spec has (at a batch size, median of timed repeats after warm-up)
and keeps the results in a JSON cache keyed by device and batch size, so a shape is measured once per
device. A network's predicted latency is the sum over its conv and linear layers; BatchNorm, activations,
pooling and the optimiser are not in the table, which is why `guided cost --latency` prints the
prediction beside a measured end-to-end time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from guided.io import atomic_write_text
from guided.provenance import device_name
from guided.speed import median_seconds
from models import ArchSpec, build, cost

__all__ = ["LatencyTable", "measure_step", "default_cache"]


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/guided/latency`` (``~/.cache/guided/latency``): where tables live."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guided" / "latency"


def _shape(row: dict[str, Any]) -> tuple:
    """What decides a layer's time: kind, channels, kernel, stride, input side."""
    return (row["kind"], row["in_ch"], row["out_ch"], row["kernel"], row["stride"], row["out_size"] * row["stride"])


def _key(shape: tuple) -> str:
    return "-".join(str(v) for v in shape)


class LatencyTable:
    """Seconds of forward + backward per conv/linear shape, on one device at one batch size.

    Args:
        device: where layers are timed.
        batch_size: images per timed pass (a study's training batch).
        repeats: timed passes per shape; the median is kept.
        cache: folder of the JSON cache (default `default_cache`); ``None`` keeps the table in memory.
    """

    def __init__(self, device="cpu", *, batch_size: int = 128, repeats: int = 5, cache: Path | None = None):
        self.device = torch.device(device)
        self.batch_size, self.repeats = batch_size, repeats
        name = re.sub(r"[^A-Za-z0-9]+", "-", device_name(self.device)).strip("-").lower()
        self.path = None if cache is None else Path(cache) / f"{name}-b{batch_size}.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path and self.path.is_file() else {}

    def layer_seconds(self, spec: ArchSpec) -> list[dict[str, Any]]:
        """Each conv and linear layer of ``spec`` with its table latency, measuring shapes not yet in it."""
        rows = [r for r in cost(spec).layers if r["kind"] in ("conv", "linear")]
        missing = {_key(_shape(r)): _shape(r) for r in rows if _key(_shape(r)) not in self.seconds}
        for key, shape in missing.items():
            self.seconds[key] = self._measure(shape)
        if missing and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.seconds, indent=1, sort_keys=True))
        return [{"name": r["name"], "stage": r["stage"], "seconds": self.seconds[_key(_shape(r))]} for r in rows]

    def predict(self, spec: ArchSpec) -> float:
        """Predicted seconds of one training step (forward + backward) of ``spec``'s conv and linear layers."""
        return sum(r["seconds"] for r in self.layer_seconds(spec))

    def _measure(self, shape: tuple) -> float:
        kind, cin, cout, k, stride, size = shape
        if kind == "conv":
            layer = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
            x = torch.randn(self.batch_size, cin, size, size, device=self.device)
        else:
            layer = nn.Linear(cin, cout)
            x = torch.randn(self.batch_size, cin, device=self.device)
        layer = layer.to(self.device)
        x.requires_grad_(True)

        def step() -> None:
            layer(x).sum().backward()

        return median_seconds(step, self.device, repeats=self.repeats)


def measure_step(spec: ArchSpec, device="cpu", *, batch_size: int = 128, repeats: int = 5) -> float:
    """Measured seconds of one forward + backward pass of the whole network (train mode, random input)."""
    device = torch.device(device)
    model = build(spec, seed=0).to(device).train()
    x = torch.randn(batch_size, spec.in_channels, spec.input_size, spec.input_size, device=device)

    def step() -> None:
        model(x).sum().backward()

    return median_seconds(step, device, repeats=repeats)
