"""Recompute a finished study's verdicts, with their detectable effects and Holm-adjusted p, from its runs.

A study's report (from before verdicts carried ``mde`` and ``p_holm``) keeps every run's test accuracy in
``runs.csv``. The verdicts are pure functions of those accuracies, so they can be recomputed without
training anything: each design, pruned and searched arm against uniform at each budget of each domain,
and each retraining contrast (Scratch-E and Scratch-B against fine-tuned, lottery against Scratch-E), with
the same code the report uses (`guided.reporting.tables.verdict`: Welch's test, its 95% interval, the minimum
detectable effect at 80% power) and Holm's adjustment over all of them (`guided.reporting.tables.holm`). The numbers
are the report's as it would be written today from the same runs; the runs themselves are not redone.

Writes ``STUDY/verdicts.json`` (the revision of this code, the source file and every verdict) and prints
one line per verdict.

Run: ``python benchmarks/recompute_verdicts.py results/study-vgg16-cifar10-cpu`` (seconds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from guided.pipeline.report import MODE_LABELS, RETRAIN_CONTRASTS, budget_runs
from guided.reporting.tables import holm, verdict
from guided.storage.io import write_json
from guided.storage.provenance import git_revision


def verdicts_of(runs: pd.DataFrame) -> list[dict]:
    """The report's family of verdicts over ``runs`` (a study's ``runs.csv``), Holm-adjusted."""
    family = []
    if "mode" in runs:
        retrains = runs[runs["role"] == "retrain"]
        for (dom, name), group in retrains.groupby(["domain", "prune"], sort=False):
            acc = {mode: group[group["mode"] == mode]["test_acc"].tolist() for mode in MODE_LABELS}
            for mode, base in RETRAIN_CONTRASTS:
                if acc[mode] and acc[base]:
                    names = (MODE_LABELS[mode], MODE_LABELS[base])
                    family.append(verdict(acc[mode], acc[base], names=names, where=f"{dom}, {name}"))
    scratch = runs[runs["role"].isin(["scratch", "search-best"])]
    for dom in scratch["domain"].drop_duplicates():
        for budget in scratch[scratch["domain"] == dom]["budget"].drop_duplicates():
            sub = budget_runs(runs, dom, budget)
            uniform = sub[sub["arm"] == "uniform"]["test_acc"].tolist()
            for arm in [a for a in dict.fromkeys(sub["arm"]) if a != "uniform"]:
                vals = sub[sub["arm"] == arm]["test_acc"].tolist()
                family.append(verdict(vals, uniform, names=(arm, "uniform"), where=f"{dom}, {budget}"))
    holm(family)
    return family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a finished study folder with runs.csv")
    args = parser.parse_args()
    family = verdicts_of(pd.read_csv(args.study / "runs.csv"))
    write_json(
        args.study / "verdicts.json",
        {
            "what": "the study's verdicts recomputed from runs.csv with guided.reporting.tables (mde: 80% power, "
            "two-sided "
            "Welch at 5%; p_holm: Holm over all of them)",
            "source": str(args.study / "runs.csv"),
            "command": f"python benchmarks/recompute_verdicts.py {args.study}",
            "revision": git_revision(),
            "verdicts": family,
        },
    )
    for v in family:
        holds = f"Holm p {v['p_holm']:.3g} ({'holds' if v['survives'] else 'does not hold'})" if v["p_holm"] else ""
        mde = f"detectable {v['mde']:.2f}" if v["mde"] is not None else ""
        where = f"{v['where']}: {v['arms'][0]} vs {v['arms'][1]}"
        print(f"{where}: {v['diff']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}] {mde} {holds}")


if __name__ == "__main__":
    main()
