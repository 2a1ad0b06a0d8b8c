"""The full-data CPU protocol's recipe, measured: epochs, flip averaging and weight averaging on the uniform arm.

Each run trains the uniform design at 25% of VGG-16 x0.25's MACs (8/16/31/63/63, 4.95M MACs) on all
50,000 CIFAR-10 training images and is tested on all 10,000 test images, with ``guided train --recipe
quick``, one thread per run (``--threads 1``; two runs at a time fill two cores). The grid:

* ``--epochs`` 10, 15 and 20, seeds 0-3 (``uniform-e{E}-s{S}``);
* at 10 epochs, the same seeds again with ``--ema DECAY --test-flip`` (``uniform-e10-ema-s{S}``). The
  weight average does not change the training trajectory, so ``result.json``'s ``evaluations`` holds the
  plain network, the plain network with flips, the average and the average with flips, all from one run:
  the four are compared within each seed (paired), and the plain one must equal the run without the options.

Run: ``python benchmarks/full_data_recipe.py --runs DIR --train`` trains what is missing into DIR (one
``guided train`` at a time, or ``--jobs 2``), then summarises; without ``--train`` it only summarises the
runs already in DIR. Writes ``results/benchmarks/full_data_recipe.json`` (per setting: seeds, accuracies,
mean, sample std, minutes per run; paired differences with their 95% intervals; host, precision, code
revision of each group of runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = (10, 15, 20)
SEEDS = (0, 1, 2, 3)
EMA = 0.999


def _runs() -> dict[str, list[str]]:
    """Run folder name -> the extra ``guided train`` flags that make it."""
    runs = {f"uniform-e{e}-s{s}": ["--epochs", str(e), "--seed", str(s)] for e in EPOCHS for s in SEEDS}
    for s in SEEDS:
        runs[f"uniform-e10-ema-s{s}"] = ["--epochs", "10", "--seed", str(s), "--ema", str(EMA), "--test-flip"]
    return runs


def train_missing(folder: Path, data: str, jobs: int) -> None:
    spec = folder / "uniform-macs25.json"
    if not spec.is_file():
        subprocess.run([sys.executable, "-m", "guided", "design", "--arch", "vgg16", "--width-mult", "0.25",
                        "--uniform", "--budget", "macs=25%", "--out", str(spec)], check=True)  # fmt: skip
    todo = [(n, f) for n, f in _runs().items() if not (folder / n / "result.json").is_file()]

    def one(item):
        name, flags = item
        argv = [sys.executable, "-m", "guided", "train", "--spec", str(spec), "--dataset", data, "--recipe", "quick",
                "--threads", "1", "--device", "cpu", *flags, "--out", str(folder / name)]  # fmt: skip
        with open(folder / f"{name}.log", "w") as log:
            subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))


def _interval(diffs: list[float]) -> dict[str, float]:
    """Mean and 95% t interval of paired differences (points)."""
    from scipy import stats

    n = len(diffs)
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / n**0.5 if n > 1 else float("nan")
    return {"mean": round(mean, 3), "low": round(mean - half, 3), "high": round(mean + half, 3), "n": n}


def _setting(results: list[dict], key=lambda r: r["test_acc"]) -> dict:
    acc = [100 * key(r) for r in results]
    return {
        "seeds": [r["seed"] for r in results],
        "test_acc": [round(a, 2) for a in acc],
        "mean": round(statistics.mean(acc), 3),
        "std": round(statistics.stdev(acc), 3) if len(acc) > 1 else None,
        "minutes_per_run": round(statistics.mean(r["wall_time_s"] for r in results) / 60, 2),
        "revision": sorted({r["provenance"]["git"] for r in results}),
    }


def summarise(folder: Path) -> dict:
    done = [n for n in _runs() if (folder / n / "result.json").is_file()]
    read = {n: json.loads((folder / n / "result.json").read_text()) for n in done}
    epochs = {}
    for e in EPOCHS:
        group = [read[f"uniform-e{e}-s{s}"] for s in SEEDS if f"uniform-e{e}-s{s}" in read]
        if group:
            epochs[str(e)] = _setting(group)
    out: dict = {"epochs": epochs}
    ema = [read[f"uniform-e10-ema-s{s}"] for s in SEEDS if f"uniform-e10-ema-s{s}" in read]
    if ema:
        variants = {v: _setting(ema, key=lambda r, v=v: r["evaluations"][v]) for v in ema[0]["evaluations"]}
        paired = {
            f"{v} - plain": _interval([100 * (r["evaluations"][v] - r["evaluations"]["plain"]) for r in ema])
            for v in variants
            if v != "plain"
        }
        same = all(
            r["evaluations"]["plain"] == read[f"uniform-e10-s{r['seed']}"]["test_acc"]
            for r in ema
            if f"uniform-e10-s{r['seed']}" in read
        )
        out["averaging"] = {"ema_decay": EMA, "epochs": 10, "variants": variants, "paired": paired,
                            "plain_equals_the_run_without_options": same}  # fmt: skip
    first = next(iter(read.values()))
    out["conditions"] = {
        "network": "uniform design at 25% of VGG-16 x0.25's MACs (widths 8/16/31/63/63, 228,028 params, 4.95M MACs)",
        "data": "all 50,000 CIFAR-10 training images (shared JPEG copy), all 10,000 test images",
        "recipe": "quick (one-cycle, Nesterov, label smoothing 0.1, batch 128, lr 0.1, wd 5e-4)",
        "threads_per_run": 1,
        "runs_at_once": 2,
        "precision": first["precision"],
        "device": first["provenance"]["device"],
        "cpu": _cpu_name(),
        "torch": first["provenance"]["torch"],
        "python": platform.python_version(),
    }
    return out


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return f"{name} ({'AVX-512' if 'avx512f' in flags else 'AVX2, no AVX-512' if 'avx2' in flags else 'no AVX2'})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="folder of the run folders")
    p.add_argument("--data", default="imagefolder:~/.cache/guided-data/cifar10")
    p.add_argument("--train", action="store_true", help="train the runs that are missing first")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--note", default="", help="how the runs were made, if not all by this script (kept)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "full_data_recipe.json")
    args = p.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.train:
        kind, _, path = args.data.partition(":")
        train_missing(args.runs, f"{kind}:{Path(path).expanduser()}" if path else kind, args.jobs)
    record = summarise(args.runs)
    if args.note:
        record["conditions"]["note"] = args.note
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
