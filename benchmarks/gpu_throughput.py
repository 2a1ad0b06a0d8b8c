"""Training throughput of many small trainings on one device, per mode, against the device's peak.

Models: VGG-16 x0.25, VGG-16 x1 and ResNet-56 on CIFAR-shaped data (random uint8 images, 32x32, 10
classes: they cost what real ones do). Every mode trains with the engine's own step
(`guided.training.train.train_epoch`: the whole split as one uint8 tensor on the device, augmentation there,
channels-last) or the seed group's (`guided.training.multiseed.group_epoch`), at batch 128:

* ``fp32``: one run, fp32.
* ``bf16``: one run, bf16 autocast (on devices that compute bf16 natively).
* ``compile``: one run, bf16 where native, the model wrapped in `torch.compile` (compile time excluded:
  it is paid once per architecture and process; the row says how long it took).
* ``seeds-K``: K seeds of the architecture trained together as one batched network (`guided.training.multiseed`).
* ``jobs-N``: N processes at once, each one run of the fastest single-run precision (what
  ``guided run --jobs N`` does with N stages); images/s summed over the processes.

Achieved TFLOP/s counts 6 x the exact MACs per training image (forward 2, backward 4), as the issue
asks; ``fraction_of_peak`` divides by the device's dense bf16 peak from its data sheet (`PEAKS`, or
``--peak-tflops``); on a CPU there is no such number and it is null. ``matmul_tflops`` is a large bf16
(GPU) or fp32 (CPU) matmul measured in the same run: the practical ceiling.

Run on a GPU: ``python benchmarks/gpu_throughput.py --device cuda`` (a few minutes; writes
``results/benchmarks/gpu_throughput.json``). ``--smoke`` runs small sizes in seconds on a CPU (the test
does), written where ``--out`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

import guided
from guided.storage.io import write_json
from guided.storage.provenance import device_name, provenance
from guided.training.data import Split
from guided.training.loader import DeviceLoader
from guided.training.multiseed import SeedGroup, group_epoch
from guided.training.recipes import get_recipe
from guided.training.train import resolve_precision, train_epoch
from models import SpecError, build, cost, create_spec

#: Dense bf16 tensor-core peak, TFLOP/s (no sparsity), by a substring of the CUDA device name.
PEAKS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0, "RTX 4090": 165.2}

FULL = {"models": [("vgg16", 0.25), ("vgg16", 1.0), ("resnet56", 1.0)], "size": 32, "batch": 128, "batches": 40}
SMOKE = {"models": [("vgg16", 0.0625), ("resnet20", 0.25)], "size": 16, "batch": 16, "batches": 3}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: torch.device, n: int = 4096) -> float:
    """TFLOP/s of an n x n matmul (bf16 on CUDA, fp32 elsewhere), best of 10."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(13):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 3:
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def _data(n: int, size: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))


def _loader(split: Split, batch: int, device: torch.device, seed: int = 0) -> DeviceLoader:
    return DeviceLoader(split, (0.5,) * 3, (0.25,) * 3, batch_size=batch, train=True, device=device, seed=seed)


def one_run(spec, device: torch.device, batch: int, batches: int, *, amp: bool, compile: bool) -> dict:
    """Images/s of one run's training steps (after a warm-up epoch of 3 batches)."""
    model = build(spec, seed=0).to(device=device, memory_format=torch.channels_last)
    step_fn = torch.compile(model) if compile else model
    recipe = get_recipe("quick").override(batch_size=batch, epochs=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    state = {"step": 0, "epoch": 0}
    split = _data(batch * batches, spec.input_size)
    warm = _loader(Split(split.images[: 3 * batch], split.labels[: 3 * batch]), batch, device)
    t = time.perf_counter()
    train_epoch(step_fn, model, warm, opt, recipe, (), state, 10**9, amp, desc="warm-up")
    _sync(device)
    warm_s = time.perf_counter() - t
    loader = _loader(split, batch, device)
    t = time.perf_counter()
    train_epoch(step_fn, model, loader, opt, recipe, (), state, 10**9, amp, desc="timed")
    _sync(device)
    return {"images_per_s": len(loader) * batch / (time.perf_counter() - t), "warmup_s": round(warm_s, 2)}


def seed_group(spec, device: torch.device, batch: int, batches: int, *, k: int, amp: bool) -> dict:
    """Images/s (all seeds together) of K seeds trained as one batched network."""
    group = SeedGroup([build(spec, seed=s) for s in range(k)], device)
    recipe = get_recipe("quick").override(batch_size=batch, epochs=1)
    opt = torch.optim.SGD(list(group.params.values()), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    split = _data(batch * batches, spec.input_size)
    warm_split = Split(split.images[: 3 * batch], split.labels[: 3 * batch])
    group_epoch(group, [_loader(warm_split, batch, device, s) for s in range(k)], opt, recipe, 0, 10**9, amp, 0)
    _sync(device)
    loaders = [_loader(split, batch, device, s) for s in range(k)]
    t = time.perf_counter()
    group_epoch(group, loaders, opt, recipe, 0, 10**9, amp, 0)
    _sync(device)
    return {"images_per_s": k * len(loaders[0]) * batch / (time.perf_counter() - t)}


def concurrent_jobs(name: str, width: float, args, n: int, precision: str) -> dict:
    """Images/s summed over N processes started together, each timing one run."""
    cmd = [sys.executable, __file__, "--worker", f"{name}:{width}:{precision}", "--device", args.device]
    cmd += ["--smoke"] if args.smoke else []
    if args.device == "cpu":
        cmd += ["--threads", str(max(1, torch.get_num_threads() // n))]
    root = str(Path(guided.__file__).resolve().parents[1])  # the workers import the code this process runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {' '.join(cmd)}")
        rates.append(json.loads(out.strip().splitlines()[-1])["images_per_s"])
    return {"images_per_s": sum(rates), "per_process": [round(r, 1) for r in rates]}


def _row(name, width, mode, spec, measured: dict, peak: float | None) -> dict:
    tflops = measured["images_per_s"] * 6 * cost(spec).macs / 1e12
    row = {
        "model": f"{name} x{width:g}",
        "mode": mode,
        "images_per_s": round(measured["images_per_s"], 1),
        "tflops": round(tflops, 6),
        "fraction_of_peak": round(tflops / peak, 7) if peak else None,
        "macs": cost(spec).macs,
    }
    return {**row, **{k: v for k, v in measured.items() if k != "images_per_s"}}


def _worker(args) -> int:
    name, width, precision = args.worker.split(":")
    sizes = SMOKE if args.smoke else FULL
    device = torch.device(args.device)
    spec = create_spec(name, width_mult=float(width), input_size=sizes["size"])
    out = one_run(spec, device, sizes["batch"], sizes["batches"], amp=precision == "bf16", compile=False)
    print(json.dumps(out))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--modes", default="fp32,bf16,compile,seeds-4,seeds-8,seeds-16,jobs-4,jobs-8",
                   help="comma-separated modes (see the module docstring)")  # fmt: skip
    p.add_argument(
        "--models",
        help="comma-separated NAME:WIDTH networks (default: vgg16:0.25,vgg16:1,resnet56:1; --smoke: small ones)",
    )
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: from PEAKS)")
    p.add_argument("--smoke", action="store_true", help="small sizes, seconds on a CPU (for the test)")
    p.add_argument("--threads", type=int, help="CPU threads of this process")
    p.add_argument("--out", default="results/benchmarks/gpu_throughput.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        return _worker(args)
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.models:
        sizes["models"] = [_model(m) for m in args.models.split(",")]
    _check(args, sizes)
    device = torch.device(args.device)
    name_of_device = device_name(device)
    peak = args.peak_tflops or next((v for k, v in PEAKS.items() if k in name_of_device), None)
    native = resolve_precision("auto", device)
    rows = []
    for name, width in sizes["models"]:
        spec = create_spec(name, width_mult=width, input_size=sizes["size"])
        for mode in args.modes.split(","):
            measured = _measure(mode, name, width, spec, device, sizes, native, args)
            if measured is None:
                continue
            rows.append(_row(name, width, mode, spec, measured, peak))
            print(f"{name} x{width:g} {mode}: {rows[-1]['images_per_s']:.0f} img/s, {rows[-1]['tflops']:.3f} TFLOP/s",
                  file=sys.stderr)  # fmt: skip
    result = {
        "benchmark": "training throughput of small trainings on one device, per mode",
        "command": "python benchmarks/gpu_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": name_of_device,
        "peak_bf16_tflops": peak,
        "matmul_tflops": round(matmul_tflops(device), 2),
        "precision_single_runs": native,
        "batch_size": sizes["batch"],
        "timed_batches": sizes["batches"],
        "rows": rows,
        "provenance": provenance(device),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(Path(args.out), result)
    return 0


def _fail(message: str) -> NoReturn:
    """Bad arguments: one line on stderr, exit 2, before anything is measured."""
    print(f"gpu_throughput.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _model(text: str) -> tuple[str, float]:
    """``NAME:WIDTH`` (e.g. ``vgg16:0.25``) as (name, width multiplier)."""
    name, _, width = text.partition(":")
    try:
        value = float(width or 1.0)
    except ValueError:
        _fail(f"--models takes NAME:WIDTH entries such as vgg16:0.25, got {text!r}")
    if not 0 < value < 64:
        _fail(f"--models {text!r}: the width multiplier must lie in (0, 64)")
    return name, value


MODE = re.compile(r"(fp32|bf16|compile|(seeds|jobs)-([2-9]|[1-5][0-9]|6[0-4]))")


def _check(args, sizes: dict) -> None:
    """Every mode, model, device and the output path, before minutes of measuring."""
    from guided.errors import UserError
    from guided.storage.io import refuse_special
    from guided.storage.provenance import parse_device

    bad = [m for m in args.modes.split(",") if not MODE.fullmatch(m)]
    if bad:
        _fail(f"unknown mode(s) {bad}; choose fp32, bf16, compile, seeds-K or jobs-N (K, N from 2 to 64)")
    try:
        for name, width in sizes["models"]:
            create_spec(name, width_mult=width, input_size=sizes["size"])
        parse_device(args.device)
        refuse_special(args.out, "--out")
    except (UserError, SpecError) as exc:
        _fail(str(exc))
    parent = Path(args.out).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        _fail(f"--out {args.out}: cannot write into {parent}; give a path in a writable folder")


def _measure(mode: str, name: str, width: float, spec, device, sizes, native: str, args) -> dict | None:
    """One mode's measurement, or ``None`` where the mode does not apply to this device."""
    batch, batches = sizes["batch"], sizes["batches"]
    if mode == "fp32":
        return one_run(spec, device, batch, batches, amp=False, compile=False)
    if mode == "bf16":
        return one_run(spec, device, batch, batches, amp=True, compile=False) if native == "bf16" else None
    if mode == "compile":
        t = time.perf_counter()
        out = one_run(spec, device, batch, batches, amp=native == "bf16", compile=True)
        return {**out, "compile_and_warmup_s": round(time.perf_counter() - t, 1)}
    if mode.startswith("seeds-"):
        return seed_group(spec, device, batch, batches, k=int(mode.split("-")[1]), amp=native == "bf16")
    if mode.startswith("jobs-"):
        return concurrent_jobs(name, width, args, int(mode.split("-")[1]), native)
    raise AssertionError(f"mode {mode!r} passed _check")


if __name__ == "__main__":
    sys.exit(main())
