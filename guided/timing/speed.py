"""Measured speed: what an architecture costs on the device it runs on, beside its parameters and MACs.

Parameters and MACs are proxies; a user pays in time. `inference_throughput` times forward passes of a
freshly built model on random input (the weights do not change the time of a dense network): a few
warm-up passes, then the median of timed passes, with the device synchronised around each on CUDA.
Training throughput comes from the runs themselves (``train_images_per_s`` in each ``result.json``).

A timing is only as good as the machine was quiet. `other_load` measures the cores other processes keep
busy (from ``/proc/stat``, this process's own threads subtracted); `timed_cleanly` waits for a busy
machine to calm down, checks the load after and the spread of the repeats, measures again once if either
is off, and returns the measurement with its ``condition``, so that a contended number is never a bare one.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from guided.storage.provenance import device_name
from models import ArchSpec, build

__all__ = [
    "inference_throughput",
    "median_seconds",
    "timed_passes",
    "other_load",
    "timed_cleanly",
    "condition_note",
    "benchmark_condition",
    "BUSY_CORES",
    "STAGE_WAIT_S",
    "MAX_SPREAD",
]

#: Other processes keeping more than this many cores busy make a timing contended.
BUSY_CORES = 0.5
#: The most a study's speed stage waits, in all its timings, for other processes to leave the cores; then it
#: times anyway and marks the timings contended (a busy machine is not worth minutes of waiting).
STAGE_WAIT_S = 5.0
#: Timed repeats whose slowest is more than this times the fastest make a timing noisy.
MAX_SPREAD = 1.5


def inference_throughput(
    spec: ArchSpec,
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 256,
    repeats: int = 5,
    warmup: int = 2,
    precision: str = "fp32",
    wait_s: float = 30.0,
) -> dict[str, Any]:
    """Images per second of ``spec``'s forward pass in eval mode at ``batch_size``, with the machine's
    ``condition`` during the timing (see `timed_cleanly`).

    Args:
        spec: the architecture to time.
        device: where to run it.
        batch_size: images per pass (256 by default, as the report uses).
        repeats: timed passes; the median is reported.
        warmup: untimed passes first (allocations, kernel selection, caches).
        precision: ``fp32`` or ``bf16`` (autocast), as the study trains.
        wait_s: how long to wait for a busy machine to become quiet before timing anyway.

    Example:
        >>> from models import create_spec
        >>> r = inference_throughput(create_spec("vgg-tiny"), batch_size=4, repeats=2)
        >>> r["images_per_s"] > 0, r["repeats"]
        (True, 2)
    """
    device = torch.device(device)
    model = build(spec, seed=0).to(device).eval()
    x = torch.randn(batch_size, spec.in_channels, spec.input_size, spec.input_size, device=device)

    def measure() -> list[float]:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        with torch.inference_mode(), autocast:
            return timed_passes(lambda: model(x), device, repeats=repeats, warmup=warmup)

    times, condition = timed_cleanly(measure, wait_s=wait_s)
    median = statistics.median(times)
    return {
        "images_per_s": batch_size / median,
        "median_s": median,
        "batch_size": batch_size,
        "repeats": repeats,
        "precision": precision,
        "device": device_name(device),
        "condition": condition,
    }


def median_seconds(step, device: torch.device, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``step()`` over ``repeats`` timed calls after ``warmup`` untimed ones, with the
    device synchronised around each call (CUDA runs asynchronously)."""
    return statistics.median(timed_passes(step, device, repeats=repeats, warmup=warmup))


def timed_passes(step, device: torch.device, *, repeats: int = 5, warmup: int = 2) -> list[float]:
    """The wall times of ``repeats`` timed calls of ``step()`` after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (Linux ``/proc/stat``)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_jiffies() -> int:
    """This process's CPU time so far (all its threads), in clock ticks."""
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def other_load(window: float = 0.15) -> float | None:
    """Cores kept busy by other processes during ``window`` seconds (this process sleeps, and its own
    threads' time is subtracted); ``None`` where ``/proc`` is not there (not Linux)."""
    try:
        busy0, total0 = _cpu_jiffies()
        own0 = _own_jiffies()
        time.sleep(window)
        busy1, total1 = _cpu_jiffies()
        own1 = _own_jiffies()
    except (OSError, ValueError, IndexError):
        return None
    import os

    cores = os.cpu_count() or 1
    elapsed = (total1 - total0) / cores  # ticks per core in the window
    if elapsed <= 0:
        return 0.0
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / elapsed)


def timed_cleanly(measure, *, wait_s: float = 30.0, attempts: int = 2) -> tuple[list[float], dict[str, Any]]:
    """Run ``measure() -> list of seconds`` on a quiet machine, or say that it was not.

    Before each attempt, waits (up to ``wait_s`` in all) while other processes keep more than `BUSY_CORES`
    cores busy; after it, checks the load again and the spread (slowest / fastest) of the timed repeats.
    A clean attempt is returned at once; otherwise it measures again, up to ``attempts`` times, and returns
    the last measurement with ``condition["clean"] = False``, the other load seen and the spread.
    """
    waited, condition, times = 0.0, {}, []
    for attempt in range(1, attempts + 1):
        before = other_load()
        while before is not None and before > BUSY_CORES and waited < wait_s:
            time.sleep(1.0)
            waited += 1.15
            before = other_load()
        times = measure()
        after = other_load()
        seen = max((v for v in (before, after) if v is not None), default=None)
        spread = max(times) / min(times) if times and min(times) > 0 else 1.0
        condition = {
            "clean": (seen is None or seen <= BUSY_CORES) and spread <= MAX_SPREAD,
            "other_load_cores": None if seen is None else round(seen, 2),
            "spread": round(spread, 3),
            "attempts": attempt,
            "waited_s": round(waited, 1),
        }
        if condition["clean"]:
            break
    return times, condition


def condition_note(condition: dict[str, Any] | None) -> str:
    """A few words for a number measured under ``condition`` (empty for a clean one)."""
    if not condition or condition.get("clean", True):
        return ""
    parts = []
    if condition.get("other_load_cores") is not None and condition["other_load_cores"] > BUSY_CORES:
        parts.append(f"other processes kept {condition['other_load_cores']:.1f} cores busy")
    if condition.get("spread", 1) > MAX_SPREAD:
        parts.append(f"repeats spread {condition['spread']:.2f}x")
    return "contended: " + " and ".join(parts or ["unsteady"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_condition(before: float | None, after: float | None) -> dict[str, Any]:
    """A benchmark's record of the machine: other processes' load (`other_load`) before it started and
    after it ended, and whether both were quiet; a benchmark writes it beside its numbers and says so
    when they were not."""
    seen = [v for v in (before, after) if v is not None]
    condition = {
        "other_load_before": None if before is None else round(before, 2),
        "other_load_after": None if after is None else round(after, 2),
        "clean": all(v <= BUSY_CORES for v in seen),
    }
    if not condition["clean"]:
        print(
            f"warning: other processes kept {max(seen):.1f} cores busy around this benchmark; its timings are "
            "contended (recorded as condition.clean = false)"
        )
    return condition
