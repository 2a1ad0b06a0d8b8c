"""Measured speed: what an architecture costs on the device it runs on, beside its parameters and MACs.

Parameters and MACs are proxies; a user pays in time. `inference_throughput` times forward passes of a
freshly built model on random input (the weights do not change the time of a dense network): a few
warm-up passes, then the median of timed passes, with the device synchronised around each on CUDA.
Training throughput comes from the runs themselves (``train_images_per_s`` in each ``result.json``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from guided.provenance import device_name
from models import ArchSpec, build

__all__ = ["inference_throughput", "median_seconds"]


def inference_throughput(
    spec: ArchSpec,
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 256,
    repeats: int = 5,
    warmup: int = 2,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Images per second of ``spec``'s forward pass in eval mode at ``batch_size``.

    Args:
        spec: the architecture to time.
        device: where to run it.
        batch_size: images per pass (256 by default, as the report uses).
        repeats: timed passes; the median is reported.
        warmup: untimed passes first (allocations, kernel selection, caches).
        precision: ``fp32`` or ``bf16`` (autocast), as the study trains.

    Example:
        >>> from models import create_spec
        >>> r = inference_throughput(create_spec("vgg-tiny"), batch_size=4, repeats=2)
        >>> r["images_per_s"] > 0, r["repeats"]
        (True, 2)
    """
    device = torch.device(device)
    model = build(spec, seed=0).to(device).eval()
    x = torch.randn(batch_size, spec.in_channels, spec.input_size, spec.input_size, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        median = median_seconds(lambda: model(x), device, repeats=repeats, warmup=warmup)
    return {
        "images_per_s": batch_size / median,
        "median_s": median,
        "batch_size": batch_size,
        "repeats": repeats,
        "precision": precision,
        "device": device_name(device),
    }


def median_seconds(step, device: torch.device, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``step()`` over ``repeats`` timed calls after ``warmup`` untimed ones, with the
    device synchronised around each call (CUDA runs asynchronously)."""
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
