"""What pairing arms by seed buys, measured on a finished study: Welch's interval against the paired one.

Arms that share a seed index share data order and augmentation (common random numbers), so part of their
noise is common. For every design verdict of the study (each arm against uniform), this reads from its
``summary.json`` both intervals the report computed (`guided.reporting.tables.verdict`): Welch's over the two arms'
seeds and the paired t interval over the per-seed differences, with each one's detectable effect (80%
power at 5%), the arms' correlation over seeds ``r`` and each arm's seed std. The interval the verdict used
is the one ``[report] pairing`` fixed before the study ran.

Run: ``python benchmarks/pairing.py results/study-vgg16-cifar10-full-cpu`` writes
``results/benchmarks/pairing.json`` (``--out`` to change), naming the study, its code revision and host.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _width(d: dict) -> float | None:
    return None if d is None or d.get("low") is None else round(d["high"] - d["low"], 3)


def _numbers(d: dict | None, keys: tuple[str, ...]) -> dict | None:
    return None if d is None else {k: (round(d[k], 4) if isinstance(d.get(k), float) else d.get(k)) for k in keys}


def measure(study: Path) -> dict:
    """The study's design verdicts with both intervals side by side."""
    summary = json.loads((study / "summary.json").read_text())
    rows = []
    for v in summary["verdicts"]:
        if "paired" not in v or "uniform" not in v["arms"]:
            continue
        welch, paired = v["welch"], v["paired"]
        rows.append(
            {
                "where": v["where"],
                "arms": v["arms"],
                "used": v["pairing"],
                "n": v["n"],
                "arm_sd": [round(s, 4) for s in v["sd"]],
                "r": None if paired is None or paired.get("r") is None else round(paired["r"], 4),
                "welch": {**_numbers(welch, ("diff", "low", "high", "p", "mde")), "width": _width(welch)},
                "paired": None
                if paired is None
                else {**_numbers(paired, ("diff", "low", "high", "p", "mde", "sd")), "width": _width(paired)},
                "width_ratio": None
                if paired is None or not _width(welch)
                else round(_width(paired) / _width(welch), 3),
                "p_holm": v.get("p_holm"),
            }
        )
    prov = summary.get("provenance", {})
    return {
        "benchmark": "Welch's interval against the paired one, per design verdict of a finished study",
        "command": "python benchmarks/pairing.py " + " ".join(sys.argv[1:]),
        "study": str(study.relative_to(ROOT)) if study.resolve().is_relative_to(ROOT) else str(study),
        "revisions": summary.get("revisions"),
        "recipe": summary.get("recipe"),
        "host": {k: prov.get(k) for k in ("git", "host", "cpu", "device", "torch", "python") if k in prov},
        "precision": summary.get("study", {}).get("study", {}).get("precision"),
        "verdicts": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path, help="a finished study folder (its summary.json)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "pairing.json")
    args = p.parse_args()
    if not (args.study / "summary.json").is_file():
        sys.exit(f"pairing.py: error: {args.study} holds no summary.json; give a finished study folder")
    record = measure(args.study.resolve())
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for r in record["verdicts"]:
        w, q = r["welch"], r["paired"] or {}
        print(f"{r['where']}, {r['arms'][0]}: Welch width {w['width']} (mde {w['mde']}), paired width "
              f"{q.get('width')} (mde {q.get('mde')}), r = {r['r']}")  # fmt: skip


if __name__ == "__main__":
    main()
