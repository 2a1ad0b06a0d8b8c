"""How long a study will take on this machine, from this machine's own measurements.

Each stage says what it computes (`Stage.work`). `estimate` times that work here, briefly, through the
same code the stage runs, and adds the stages up the way the runner schedules them:

* **training** (bases, retraining, designs, searched bests, each search trial): the real `guided.training.train.train`
  on synthetic images of the stage's shape, for each distinct architecture and batch size: a run of
  2 batches and a longer one give the seconds per training step (their difference) and the fixed cost of
  a run and its first epoch (the rest); a 2-epoch run of the smallest network gives the fixed cost of each
  further epoch; a timed forward pass at the evaluation batch gives the test pass. A stage's time is then
  ``run + (epochs - 1) * epoch + epochs * (steps * step + test batches * test pass)``. Architectures a
  stage will only know when it runs (designs at a budget, pruned networks) are estimated by the uniform
  design of the same cost.
* **pruning**: `guided.pruning.prune` (and the bisection of `ratio_for_budget` for pruning to a budget)
  run on freshly initialised weights of the base (the compute does not depend on the weights).
* **the report**: the inference timing of every from-scratch architecture and the figures it draws.
* **every stage**: the runner's own cost (records, the code revision), timed with an empty stage;
  planning, timed as it happens.

Trainings run with the threads each will have (``--threads`` shared by ``--jobs``); ``--jobs N`` is
simulated as the runner schedules: ready stages in plan order, N at a time, and so is ``--group-seeds K``:
up to K ready stages of one seed group run as one unit (`guided.pipeline.runner.units`); timed here, a
unit costs the sum of its runs. A device this machine does not have (a CUDA study planned on a laptop)
is estimated from its throughput benchmark instead (`guided.pipeline.throughput`). Concurrent runs are assumed
not to slow each other beyond their thread share (two single-thread VGG-16 x0.25 trainings on the 2-core
development host each ran an epoch in 22-24 s, one alone in 24.5 s; a memory-bound host would be slower:
the estimate is then low). Synthetic images stand in for the dataset, so the cost of reading a large
dataset's arrays is missed (about 15% of a step for VGG-16 x0.25 on 8,000 CIFAR images there).
"""

from __future__ import annotations

import heapq
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guided.pipeline.runner import Stage, run_one, schedule
from guided.pipeline.throughput import Throughput
from guided.pruning import PRUNERS, prune, ratio_for_budget
from guided.reporting.plots import draw_accuracy_cost
from guided.timing import threads
from guided.timing.speed import STAGE_WAIT_S, median_seconds
from guided.timing.threads import cores
from guided.training.data import ImageData, Split
from guided.training.recipes import get_recipe
from guided.training.train import resolve_precision, train
from models import build, create_spec

__all__ = ["estimate", "simulate", "Schedule", "Clock"]


class Clock:
    """Measured times on this machine, each measured once: training runs, test passes, prunes, overheads."""

    def __init__(self, services: Any, *, threads: int, log: Callable[[str], None] = lambda _: None, device=None):
        self.services, self.threads, self.log = services, threads, log
        self.device = device if device is not None else services.device
        self._runs: dict[tuple, tuple[float, float]] = {}
        self._passes: dict[tuple, float] = {}
        self._prunes: dict[tuple, float] = {}
        self._epoch: float | None = None
        self._stage: float | None = None
        self._figure: float | None = None
        self._warm = False
        self._tmp = tempfile.TemporaryDirectory(prefix="guided-estimate-")

    # ------------------------------------------------------------------ training
    def training(self, work: dict[str, Any]) -> float:
        """Seconds of one training run as ``work`` describes it (spec, images, epochs, batch)."""
        spec, batch = work["spec"], work["batch"]
        step, fixed = self._run(spec, batch)
        test_batch = max(256, batch)
        steps = work["train"] // batch
        tests = math.ceil(work["test"] / test_batch)
        epoch = self._test_pass(spec, test_batch) * tests + step * steps
        return fixed + (work["epochs"] - 1) * self.epoch_overhead() + work["epochs"] * epoch

    def _run(self, spec, batch: int) -> tuple[float, float]:
        """(seconds per training step, fixed seconds of a run and its first epoch) for ``spec`` at ``batch``."""
        key = (spec.to_json(), batch)
        if key not in self._runs:
            if not self._warm:  # a process's first training pays imports and caches once: not per run
                self._train(spec, batch, batches=2)
                self._warm = True
            short = self._train(spec, batch, batches=2)
            # enough steps that their time (about 2 s) stands well above the run's fixed cost and its noise
            long_batches = max(8, min(30, 2 + round(2.0 / max(short / 2, 1e-3))))
            long = self._train(spec, batch, batches=long_batches)
            step = max(0.0, (long - short) / (long_batches - 2))
            test = self._test_pass(spec, max(256, batch))
            self._runs[key] = (step, max(0.0, short - 2 * step - test))
        return self._runs[key]

    def epoch_overhead(self) -> float:
        """Fixed seconds of each epoch after the first (checkpoint, metrics), from a tiny network."""
        if self._epoch is None:
            tiny = create_spec("vgg-tiny", num_classes=2, in_channels=1, input_size=16)
            one, two = self._train(tiny, 8, batches=2), self._train(tiny, 8, batches=2, epochs=2)
            step, _ = self._run(tiny, 8)
            self._epoch = max(0.0, two - one - 2 * step - self._test_pass(tiny, 256))
        return self._epoch

    def _train(self, spec, batch: int, *, batches: int, epochs: int = 1) -> float:
        test_batch = max(256, batch)
        data = _synthetic(spec, batch * batches, test_batch)
        recipe = get_recipe("quick").override(epochs=epochs, batch_size=batch)
        folder = Path(self._tmp.name) / f"run-{len(self._runs)}-{batches}-{epochs}-{time.monotonic_ns()}"
        svc = self.services
        with _threads(self.threads):
            start = time.perf_counter()
            train(
                build(spec, seed=0),
                data,
                recipe,
                out_dir=folder,
                device=self.device,
                precision=svc.precision,
                log=_mute,
            )
            return time.perf_counter() - start

    def _test_pass(self, spec, batch: int) -> float:
        """Seconds of one evaluation forward pass at ``batch`` (median of 3, after one warm-up)."""
        key = (spec.to_json(), batch)
        if key not in self._passes:
            import torch

            device = self.device
            model = build(spec, seed=0).to(device=device, memory_format=torch.channels_last).eval()
            x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, device=device)
            amp = resolve_precision(self.services.precision, device) == "bf16"
            with _threads(self.threads), torch.inference_mode():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    self._passes[key] = median_seconds(lambda: model(x), device, repeats=3, warmup=1)
        return self._passes[key]

    # ------------------------------------------------------------------ other stages
    def prune(self, work: dict[str, Any]) -> float:
        """Seconds of pruning ``work["spec"]`` with ``work["method"]`` (to a budget: with the bisection)."""
        spec, kwargs = work["spec"], dict(work["kwargs"])
        key = (spec.to_json(), work["method"], repr(sorted(kwargs.items())), repr(work.get("budget")))
        if key not in self._prunes:
            needs = PRUNERS[work["method"]].needs_data
            data = _synthetic(spec, max(kwargs.get("samples") or 64, 64), 64) if needs else None
            model = build(spec, seed=0).to(self.device).eval()
            with _threads(self.threads):
                start = time.perf_counter()
                if work.get("budget") is not None:
                    kwargs.update(preset=None, ratio=None)
                    rest = {k: v for k, v in kwargs.items() if k not in ("ratio", "preset")}
                    kwargs["ratio"] = ratio_for_budget(model, work["method"], work["budget"], data=data, **rest)
                prune(model, work["method"], data=data, **kwargs)
                self._prunes[key] = time.perf_counter() - start
        return self._prunes[key]

    def speed(self, work: dict[str, Any]) -> float:
        """Seconds of the speed stage: an inference timing per from-scratch architecture, and at most
        `guided.timing.speed.STAGE_WAIT_S` in all waiting for a quiet machine (counted whole: the stage
        waits that long whenever other processes keep the cores busy)."""

        timing = 2 * 0.15 if Path("/proc/stat").is_file() else 0.0  # the load checks around each timing
        return STAGE_WAIT_S + sum(timing + 7 * self._test_pass(spec, 256) for spec in work["specs"])

    def report(self, work: dict[str, Any]) -> float:
        """Seconds of the report: its figures."""
        return work["figures"] * self.figure()

    def figure(self) -> float:
        """Seconds to draw and save one report figure (PNG and SVG)."""
        if self._figure is None:
            rows = [
                {"label": arm, "group": g, "params": 1e5 * (1 + i), "macs": 1e7 * (1 + i), "test_acc": 0.5 + 0.01 * s}
                for i, arm in enumerate(("uniform", "guided", "pruned"))
                for g in ("a", "b")
                for s in range(3)
            ]
            draw_accuracy_cost(rows, Path(self._tmp.name) / "warm.png", title="timing")  # imports, font cache
            start = time.perf_counter()
            draw_accuracy_cost(rows, Path(self._tmp.name) / "figure.png", title="timing")
            self._figure = time.perf_counter() - start
        return self._figure

    def stage_overhead(self) -> float:
        """The runner's own seconds per stage (records, code revision), from an empty stage."""
        if self._stage is None:
            out = Path(self._tmp.name) / "study"
            start = time.perf_counter()
            run_one(Stage("empty", "empty", {}, lambda ctx: {}), out, "0" * 16, log=lambda _: None)
            self._stage = time.perf_counter() - start
        return self._stage

    def seconds(self, stage: Stage) -> float:
        """The estimated seconds of one stage."""
        work = stage.work
        kind = work.get("kind")
        seconds = self.stage_overhead()
        if kind == "train":
            seconds += self.training(work)
        elif kind == "search":
            seconds += work["trials"] * (self.training(work) + 0.05) + self.figure()
        elif kind == "prune":
            seconds += self.prune(work)
        elif kind == "speed":
            seconds += self.speed(work)
        elif kind == "report":
            seconds += self.report(work)
        return seconds

    def close(self) -> None:
        self._tmp.cleanup()


def estimate(
    stages: Sequence[Stage],
    services: Any,
    *,
    todo: set[str] | None = None,
    jobs: int = 1,
    threads: int | None = None,
    planning_s: float = 0.0,
    group_seeds: int = 0,
    throughput: Throughput | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Estimated seconds of each stage in ``todo`` (default: all) and of the whole run with ``jobs``
    stages at a time, sharing ``threads`` CPU threads (default: every core), and (``group_seeds`` K above 1)
    up to K seeds of one architecture trained together.

    With a ``throughput`` benchmark (`guided.pipeline.throughput`), trainings and the speed stage are
    estimated from its device's measured rates instead of timed here, and the other stages (pruning,
    figures, the runner's own costs) are timed on this machine's CPU: an upper bound for a GPU. A seed
    group timed here costs the sum of its runs (a CPU gains little from batching seeds).

    Returns ``{"stages": {id: seconds}, "starts": {id: seconds after the run began}, "wall_s", "basis"}``;
    a grouped stage's seconds are its share of its group's (the group's over its size), as the runner
    records them.
    """

    threads = threads or cores()
    slots = max(1, jobs)
    per_stage = max(1, threads // slots)
    precision = services.precision
    clock = Clock(services, threads=per_stage, log=log, device=_cpu() if throughput else None)
    todo = {s.id for s in stages} if todo is None else todo
    runs = [s for s in stages if s.id in todo]

    def measured(stage: Stage) -> float:
        kind = stage.work.get("kind")
        if throughput is None or kind not in ("train", "search", "speed"):
            return clock.seconds(stage)
        if kind == "speed":
            return clock.stage_overhead() + throughput.speed_seconds(stage.work, precision=precision)
        return clock.stage_overhead() + throughput.training_seconds([stage.work], precision=precision, slots=slots)

    def unit_seconds(unit: tuple[Stage, ...]) -> float:
        if len(unit) == 1 or throughput is None:
            return sum(seconds[s.id] for s in unit)
        works = [s.work for s in unit]
        return clock.stage_overhead() * len(unit) + throughput.training_seconds(works, precision=precision, slots=slots)

    try:
        started = time.perf_counter()
        seconds = {s.id: measured(s) for s in runs}
        calibration = time.perf_counter() - started
        # before the first stage: starting Python and importing (as this process did), planning, this
        # calibration, and workers planning the study again
        head = _STARTUP + planning_s * (2 if jobs > 1 else 1) + calibration
        plan = simulate(runs, seconds, slots=slots, group_seeds=group_seeds, unit_seconds=unit_seconds)
    finally:
        clock.close()
    if throughput is not None:
        basis = f"{len(clock._prunes)} prunes timed here, trainings {throughput.basis(slots, group_seeds, precision)}"
    else:
        basis = (
            f"{len(clock._runs)} architectures timed in real training runs, {len(clock._prunes)} prunes, "
            f"{per_stage} thread(s) per stage, {slots} stage(s) at a time"
            + (f", seed groups of up to {group_seeds} at the sum of their runs" if group_seeds > 1 else "")
        )
    return {
        "stages": {k: round(v, 3) for k, v in plan.seconds.items()},
        "starts": {k: round(head + v, 3) for k, v in plan.starts.items()},
        "wall_s": round(head + plan.wall, 1),
        "jobs": jobs,
        "group_seeds": group_seeds,
        "threads_per_stage": per_stage,
        "calibration_s": round(calibration, 1),
        "device": throughput.device if throughput is not None else None,
        "basis": basis,
    }


@dataclass
class Schedule:
    """A simulated run: when each stage starts, its seconds (a grouped stage: its share of its group's),
    and when the last ends."""

    starts: dict[str, float]
    seconds: dict[str, float]
    wall: float


def simulate(
    stages: Sequence[Stage],
    seconds: dict[str, float],
    *,
    slots: int,
    group_seeds: int = 0,
    unit_seconds: Callable[[tuple[Stage, ...]], float] | None = None,
) -> Schedule:
    """When each stage starts, and when the last ends, if ``slots`` units run at once as the runner
    schedules them (ready stages in plan order, up to ``group_seeds`` of one seed group as one unit:
    `guided.pipeline.runner.units`); a stage whose inputs are not in ``stages`` counts them as done. A
    unit takes ``unit_seconds(unit)`` (default: the sum of its stages' ``seconds``).

    Example:
        >>> a, b, c = (Stage(i, "x", {}, None) for i in "abc")
        >>> c = Stage("c", "x", {}, None, needs=("a",))
        >>> plan = simulate([a, b, c], {"a": 2.0, "b": 5.0, "c": 1.0}, slots=2)
        >>> plan.starts, plan.wall
        ({'a': 0.0, 'b': 0.0, 'c': 2.0}, 5.0)
    """

    unit_seconds = unit_seconds or (lambda unit: sum(seconds.get(s.id, 0.0) for s in unit))
    running: list[tuple[float, int, tuple[Stage, ...]]] = []  # (when it ends, its key, the unit)
    starts: dict[str, float] = {}
    shares: dict[str, float] = {}
    now = 0.0

    def start(unit: tuple[Stage, ...]) -> int:
        took = unit_seconds(unit)
        for s in unit:
            starts[s.id], shares[s.id] = now, took / len(unit)
        key = len(starts)
        heapq.heappush(running, (now + took, key, unit))
        return key

    def finish(_keys: list[int]) -> int:
        nonlocal now
        now, key, _ = heapq.heappop(running)
        return key

    try:
        schedule(stages, slots=slots, start=start, finish=finish, group_seeds=group_seeds)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    return Schedule(starts, shares, now)


def _cpu():
    import torch

    return torch.device("cpu")


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere)."""
    try:
        import os

        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


#: Seconds a guided process takes to start and import what a study needs: this process's, up to the first
#: import of this module.
_STARTUP = _process_age()


def _mute(_line: str) -> None:
    pass


def _synthetic(spec, train: int, test: int):
    """Random uint8 images and labels of ``spec``'s input shape and classes."""

    rng = np.random.default_rng(0)
    shape = (spec.in_channels, spec.input_size, spec.input_size)

    def split(n: int) -> Split:
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        return Split(images, rng.integers(0, spec.num_classes, n).astype(np.int64))

    mean, std = (0.5,) * spec.in_channels, (0.25,) * spec.in_channels
    return ImageData("synthetic", split(train), split(test), tuple(map(str, range(spec.num_classes))), mean, std)


class _threads:
    """The intra-op thread count for a ``with`` block (a stage's share of the cores): set in
    `guided.timing.threads` too, so that the training loop's per-epoch rebalancing keeps it."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.before, self.state = torch.get_num_threads(), dict(threads._state)
        threads._state.update(configured=True, explicit=self.n, applied=None)
        threads.rebalance()

    def __exit__(self, *exc):
        import torch

        threads._state.clear()
        threads._state.update(self.state)
        torch.set_num_threads(self.before)
