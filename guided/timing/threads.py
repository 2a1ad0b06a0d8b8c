"""How many CPU threads a `guided` process computes with, so that several processes share a machine well.

Measured on a 2-core machine (``benchmarks/study_speed.py``): two ``guided train`` processes that each
take both cores train at 0.62x the total throughput of one alone, because PyTorch's OpenMP threads spin
while they wait for work and steal the cores the other process needs (4 busy threads on 2 cores); with
one core each, the two train at 1.23x the throughput of one alone.
So the budget is:

* ``--threads N`` or ``GUIDED_THREADS=N``: exactly N intra-op threads (reproducible numerics: pin it);
* otherwise all cores, divided by the number of `guided` processes running on this host (counted from
  ``/proc``), re-checked at every epoch: a second process started beside a long run makes both drop to
  their share within an epoch;
* workers that `guided` starts itself (``guided run --jobs N``) get ``cores // N`` each.

Inter-op parallelism is set to 1 thread: the engine's work is intra-op (one big op at a time).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["configure", "rebalance", "budget", "guided_processes", "all_cores", "ENV"]

ENV = "GUIDED_THREADS"

_state = {"configured": False, "explicit": None, "share": 1, "applied": None}


def cores() -> int:
    """CPU cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def guided_processes() -> int:
    """How many `guided` command-line processes run on this host, this one included (at least 1)."""
    count = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        script = any(a.endswith(b"/guided") or a == b"guided" for a in argv[:2])  # the console script
        module = argv[1:3] == [b"-m", b"guided"]  # python -m guided
        count += script or module
    return max(count, 1)


def budget() -> int:
    """The intra-op thread count the rules above give now."""
    if _state["explicit"]:
        return _state["explicit"]
    return max(1, cores() // max(_state["share"], guided_processes()))


def configure(threads: int | None = None, *, share: int = 1) -> int:
    """Set this process's budget: ``threads`` (else ``$GUIDED_THREADS``), or a ``share`` of the cores.

    Returns the intra-op thread count now in force.
    """
    from guided.errors import UserError

    explicit = threads if threads is not None else os.environ.get(ENV)
    if explicit is not None:
        try:
            explicit = int(explicit)
        except ValueError:
            raise UserError(f"{ENV} must be a whole number of threads, got {explicit!r}") from None
        if explicit < 1:
            raise UserError(f"the thread count must be at least 1, got {explicit}")
        if explicit > cores():
            raise UserError(
                f"{explicit} threads on {cores()} core(s) would oversubscribe the CPU (each thread spins while it "
                f"waits): give at most {cores()}"
            )
    _state.update(configured=True, explicit=explicit, share=max(1, share))
    return rebalance()


def rebalance() -> int | None:
    """Apply the current budget to PyTorch (cheap; the training loop calls it every epoch).

    Does nothing in a process that never called `configure` (a library user sets threads as they like).
    """
    import torch

    if not _state["configured"]:
        return None
    n = budget()
    if _state["applied"] != n:
        torch.set_num_threads(n)
        _state["applied"] = n
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # can only be set before inter-op work starts; it stays as it was
            pass
    return n


@contextmanager
def all_cores():
    """Within the block, PyTorch uses every core (or the explicit budget), then the budget it had before:
    for work that runs alone and measures time, like a report stage's throughput timings, in a worker
    whose share of the cores is smaller. Does nothing in a process that never called `configure`."""
    import torch

    if not _state["configured"]:
        yield torch.get_num_threads()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(_state["explicit"] or cores())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
