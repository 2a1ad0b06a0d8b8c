"""How well the per-layer latency table predicts a training step, over the designs of a study.

For every architecture a study wrote (``DIR/designs/*.json``: uniform, guided, per-layer, transferred,
pruned-to-budget and searched designs), the table (`guided.latency.LatencyTable`, a fresh one, timing
each conv/linear shape at the batch size) predicts one forward + backward step, and `measure_step` times
the whole network doing one; both are medians of 5 passes after 2 warm-ups. The table leaves out
BatchNorm, activations and pooling, so it should under-predict by a roughly constant share; what matters
for ranking channels is that the error is steady across designs (a rank correlation near 1).

Writes ``results/benchmarks/latency_prediction.json`` (per design: predicted and measured ms, error; the
median and spread of the error, Spearman's rank correlation; revision, device) and prints a summary.

Run: ``python benchmarks/latency_prediction.py results/study-vgg16-cifar10-cpu`` (a few minutes on 2
CPU cores; nothing else CPU-heavy may run meanwhile).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from guided.io import read_spec, write_json
from guided.latency import LatencyTable, measure_step
from guided.provenance import provenance

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder with designs/*.json")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "latency_prediction.json")
    args = parser.parse_args()
    from scipy import stats

    paths = sorted((args.study / "designs").glob("*.json"))
    rows = []
    with tempfile.TemporaryDirectory() as cache:  # a fresh table: every shape is timed in this run
        table = LatencyTable(args.device, batch_size=args.batch_size, cache=Path(cache))
        for path in paths:
            spec = read_spec(path)
            predicted = table.predict(spec)
            measured = measure_step(spec, args.device, batch_size=args.batch_size)
            rows.append(
                {
                    "design": path.stem,
                    "input_size": spec.input_size,
                    "predicted_ms": round(1000 * predicted, 2),
                    "measured_ms": round(1000 * measured, 2),
                    "error": round(predicted / measured - 1, 4),
                }
            )
            print(f"{path.stem:<40} predicted {1000 * predicted:8.1f} ms  measured {1000 * measured:8.1f} ms")
    errors = [r["error"] for r in rows]
    rho = stats.spearmanr([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]).statistic
    summary = {
        "designs": len(rows),
        "median_error": statistics.median(errors),
        "min_error": min(errors),
        "max_error": max(errors),
        "median_abs_error": statistics.median(abs(e) for e in errors),
        "spearman_rho": float(rho),
    }
    write_json(
        args.out,
        {
            "what": "predicted (per-layer table, conv and linear only) vs measured training step (forward + backward)",
            "study": str(args.study),
            "batch_size": args.batch_size,
            "command": f"python benchmarks/latency_prediction.py {args.study} --batch-size {args.batch_size}",
            "summary": summary,
            "rows": rows,
            "provenance": provenance(torch.device(args.device)),
        },
    )
    print(
        f"{len(rows)} designs: prediction error median {summary['median_error']:+.0%} "
        f"(from {summary['min_error']:+.0%} to {summary['max_error']:+.0%}), Spearman rho {rho:.3f}"
    )


if __name__ == "__main__":
    main()
