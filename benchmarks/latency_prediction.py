"""How well the per-layer latency table predicts a training step, over the designs of a study.

For every architecture a study wrote (``DIR/designs/*.json``: uniform, guided, per-layer, transferred,
pruned-to-budget and searched designs), the table (`guided.timing.latency.LatencyTable`, a fresh one, timing
units -- conv + BatchNorm + ReLU (+ VGG's max-pool), linear (+ BatchNorm + ReLU) -- at power-of-two widths
at the batch size and interpolating between them, as studies do) predicts one forward + backward step,
and `measure_step` times the whole network doing one; both are medians of 5 passes after 2 warm-ups,
with ``--threads`` threads (default 1, what a study's table uses). The table leaves out the input, the
loss and residual additions. Targets: median absolute error at most 5%, Spearman's rank correlation at
least 0.9 (ranking channels and matching budgets need a steady error). Designs solved to one
``latency-`` budget should take about the same measured time: the summary gives their spread.

Writes ``results/benchmarks/latency_prediction.json`` (per design: predicted and measured ms, error; the
median and spread of the error, Spearman's rank correlation, the measured spread at each latency budget;
revision, device) and prints a summary.

Run: ``python benchmarks/latency_prediction.py results/study-vgg16-cifar10-cpu`` (a few minutes on 2
CPU cores; nothing else CPU-heavy may run meanwhile).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from guided.operations import latency_table
from guided.storage.io import read_spec, write_json
from guided.storage.provenance import provenance
from guided.timing.latency import measure_step
from guided.timing.speed import benchmark_condition, other_load

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    load_before = other_load(1.0)  # the machine before: recorded with the numbers
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder with designs/*.json")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the table and the measured steps")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measure every design this many times, in interleaved rounds"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "latency_prediction.json")
    args = parser.parse_args()
    from scipy import stats

    paths = sorted((args.study / "designs").glob("*.json"))
    specs = {p.stem: read_spec(p) for p in paths}
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:  # a fresh table: every shape is timed in this run
        table = latency_table(args.device, batch_size=args.batch_size, folder=Path(cache), threads=args.threads)
        predicted = {name: table.predict(spec) for name, spec in specs.items()}
    rounds = {name: [] for name in specs}
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine touches every design alike
        for name, spec in specs.items():
            rounds[name].append(measure_step(spec, args.device, batch_size=args.batch_size))
    rows = []
    for name, spec in specs.items():
        measured = statistics.median(rounds[name])
        rows.append(
            {
                "design": name,
                "input_size": spec.input_size,
                "predicted_ms": round(1000 * predicted[name], 2),
                "measured_ms": round(1000 * measured, 2),
                "measured_rounds_ms": [round(1000 * t, 2) for t in rounds[name]],
                "error": round(predicted[name] / measured - 1, 4),
            }
        )
        print(f"{name:<50} predicted {1000 * predicted[name]:8.1f} ms  measured {1000 * measured:8.1f} ms")
    errors = [r["error"] for r in rows]
    rho = stats.spearmanr([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]).statistic
    summary = {
        "designs": len(rows),
        "median_error": statistics.median(errors),
        "min_error": min(errors),
        "max_error": max(errors),
        "median_abs_error": statistics.median(abs(e) for e in errors),
        "spearman_rho": float(rho),
        "measurement_noise": _noise(rows, specs),
        "measured_spread_at_latency_budgets": _spreads(rows),
    }
    write_json(
        args.out,
        {
            "what": "predicted (per-unit table: conv+BN+ReLU(+pool), linear(+BN+ReLU)) vs measured training step "
            "(forward + backward)",
            "targets": {"median_abs_error_at_most": 0.05, "spearman_rho_at_least": 0.9},
            "study": str(args.study),
            "batch_size": args.batch_size,
            "command": f"python benchmarks/latency_prediction.py {args.study} --batch-size {args.batch_size} "
            f"--threads {args.threads} --rounds {args.rounds}",
            "summary": summary,
            "rows": rows,
            "provenance": provenance(torch.device(args.device)),
            "condition": benchmark_condition(load_before, other_load(1.0)),
        },
    )
    print(
        f"{len(rows)} designs: prediction error median {summary['median_error']:+.0%} "
        f"(from {summary['min_error']:+.0%} to {summary['max_error']:+.0%}), Spearman rho {rho:.3f}"
    )
    noise = summary["measurement_noise"]
    print(
        f"measurement noise: rounds of one design differ by a median {noise['rounds_spread']:.1%}; identical "
        f"designs measure up to {noise['identical_spread']:.1%} apart"
    )
    for budget, spread in summary["measured_spread_at_latency_budgets"].items():
        low, high = spread["min_ms"], spread["max_ms"]
        print(f"{budget}: measured steps from {low:.1f} to {high:.1f} ms ({spread['ratio']:.2f}x)")


def _noise(rows: list[dict], specs: dict) -> dict[str, float]:
    """How far measurements of one network are apart: a design's rounds ((max - min) / median, median over
    designs), and designs with identical specs (the largest (max - min) / min among their medians): the
    floor under which a prediction error cannot be told from the measurement's own."""
    spread = [(max(r["measured_rounds_ms"]) - min(r["measured_rounds_ms"])) / r["measured_ms"] for r in rows]
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(specs[r["design"]].to_json(), []).append(r["measured_ms"])
    same = [(max(g) - min(g)) / min(g) for g in groups.values() if len(g) > 1]
    return {"rounds_spread": statistics.median(spread), "identical_spread": max(same, default=0.0)}


def _spreads(rows: list[dict]) -> dict[str, dict]:
    """Per ``latency-`` budget of the designs' names: the fastest and slowest measured step."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        budget = next((part for part in r["design"].split("-") if part.endswith("pct")), None)
        if "-latency-" in r["design"] and budget:
            groups.setdefault(f"latency={budget[:-3]}%", []).append(r["measured_ms"])
    return {
        b: {"designs": len(v), "min_ms": min(v), "max_ms": max(v), "ratio": round(max(v) / min(v), 3)}
        for b, v in groups.items()
    }


if __name__ == "__main__":
    main()
