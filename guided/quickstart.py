"""The offline quick start: pruning as architecture discovery, end to end, in a few minutes on a CPU.

On scikit-learn's handwritten digits (always offline): train a small VGG with the Network Slimming
penalty for two seeds; prune each with a global threshold; summarise the kept channels into a per-stage
pattern; design guided and uniform networks at one parameter budget; train both from scratch; transfer
the pattern to a deeper VGG; and write a report (Markdown and a self-contained HTML page) with tables
and plots. Finished runs are skipped when it is run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from guided.data import load_dataset
from guided.design import Budget, design
from guided.experiments.common import finished, markdown_table, mean_std
from guided.hooks import BatchNormL1
from guided.io import atomic_write_text, write_json, write_spec
from guided.patterns import channel_summary, load_channel_rows
from guided.plots import draw_accuracy_cost, draw_profiles, draw_width_bars
from guided.provenance import provenance, resolve_device
from guided.pruning import prune
from guided.recipes import get_recipe
from guided.report import html_page
from guided.retrain import save_pruned
from guided.train import load_weights, train
from models import ArchSpec, build, cost, create_spec

__all__ = ["quickstart", "QUICK"]

#: The quick start's settings: small enough for about 3 minutes on 2 idle CPU cores.
QUICK = {
    "dataset": "digits",
    "source": "vgg11",
    "transfer_target": "vgg16",
    "width_mult": 0.25,
    "head": "slim",
    "epochs": 12,
    "batch_size": 64,
    "sparsity_l1": 1e-4,
    "prune_ratio": 0.5,
    "budget_fraction": 0.3,
    "seeds": [0, 1],
}


def quickstart(
    out_dir: str | Path = "results/quickstart",
    *,
    log: Callable[[str], None] = print,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Run the quick start and write ``report.md``, ``report.html`` and plots into ``out_dir``.

    Args:
        out_dir: the results folder (training runs go to ``out_dir/runs``).
        log: progress lines.
        settings: overrides of `QUICK` (tests use fewer epochs).

    Returns:
        The path of ``report.md``.
    """
    cfg = {**QUICK, **(settings or {})}
    out = Path(out_dir)
    runs = out / "runs"
    started = time.perf_counter()
    device = resolve_device("cpu")
    data = load_dataset(cfg["dataset"])
    recipe = get_recipe("quick").override(epochs=cfg["epochs"], batch_size=cfg["batch_size"])
    log(f"[1/6] {data.describe()}")

    def spec_of(name: str) -> ArchSpec:
        return create_spec(
            name,
            num_classes=data.num_classes,
            width_mult=cfg["width_mult"],
            head=cfg["head"],
            input_size=data.input_size,
            in_channels=data.in_channels,
        )

    def run(name: str, spec: ArchSpec, seed: int, hooks=()) -> dict[str, Any]:
        folder = runs / name
        done = finished(folder)
        if done:
            return done
        log(f"      training {name} ({cost(spec).params:,} params)")
        return train(
            build(spec, seed=seed),
            data,
            recipe,
            out_dir=folder,
            device=device,
            seed=seed,
            hooks=hooks,
            resume=(folder / "checkpoint.pt").exists(),
            log=lambda _line: None,
        )

    source = spec_of(cfg["source"])
    log(f"[2/6] sparsity training of {source.name} x{cfg['width_mult']} (Network Slimming), seeds {cfg['seeds']}")
    rows: list[dict[str, Any]] = []
    pruned_dirs = []
    for seed in cfg["seeds"]:
        base = run(f"base-s{seed}", source, seed, hooks=[BatchNormL1(cfg["sparsity_l1"])])
        rows.append({"label": f"{source.name} unpruned", "seed": seed, **_brief(base)})
        pdir = runs / f"slimmed-s{seed}"
        if not (pdir / "prune.json").exists():
            result = prune(load_weights(runs / f"base-s{seed}").eval(), "slimming", ratio=cfg["prune_ratio"])
            save_pruned(
                result,
                pdir,
                source={
                    "run": str(runs / f"base-s{seed}"),
                    "epochs": cfg["epochs"],
                    "config": {"dataset": cfg["dataset"]},
                },
            )
        pruned_dirs.append(pdir)
    log(f"[3/6] pruned {cfg['prune_ratio']:.0%} of channels with one global |gamma| threshold; pattern:")
    pattern = {
        "kind": "channels",
        **channel_summary(load_channel_rows(pruned_dirs)),
        "sources": [
            {
                "dir": str(d),
                "method": "slimming",
                "ratio": cfg["prune_ratio"],
                "source_spec": source.name,
                "dataset": cfg["dataset"],
            }
            for d in pruned_dirs
        ],
    }
    write_json(out / "pattern.json", pattern)
    for row in pattern["stages"]:
        log(f"      stage {row['stage'] + 1}: keeps {row['keep_ratio_mean']:.0%} ± {row['keep_ratio_std']:.0%}")

    budget = Budget("params", cfg["budget_fraction"] * cost(source).params)
    designs: dict[str, dict[str, ArchSpec]] = {}
    for target_name, tag in [(cfg["source"], "same model"), (cfg["transfer_target"], "transferred")]:
        target = spec_of(target_name)
        designs[target_name] = {
            "guided" if tag == "same model" else "transferred": design(target, budget, pattern=pattern),
            "uniform": design(target, budget),
        }
    log(
        f"[4/6] designed guided and uniform networks at {budget.value:,.0f} params "
        f"({cfg['budget_fraction']:.0%} of {source.name}); transfer target {cfg['transfer_target']}"
    )
    for target_name, specs in designs.items():
        for label, spec in specs.items():
            write_spec(out / "designs" / f"{target_name}-{label}.json", spec)

    log("[5/6] training the designs from scratch")
    for target_name, specs in designs.items():
        for label, spec in specs.items():
            for seed in cfg["seeds"]:
                result = run(f"{target_name}-{label}-s{seed}", spec, seed)
                rows.append({"label": f"{target_name} {label}", "seed": seed, **_brief(result)})

    log("[6/6] writing the report")
    pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    figures = {
        "widths": draw_width_bars(
            pattern,
            {f"{cfg['source']} {k}": v for k, v in designs[cfg["source"]].items()},
            out / "widths.png",
            title=f"channels per layer, budget {budget.value:,.0f} params",
        )[0],
        "profile": draw_profiles(
            {"slimming": pattern}, out / "profile.png", title=f"{source.name}: channels kept by Network Slimming"
        )[0],
        "accuracy": draw_accuracy_cost(
            [r for r in rows if "unpruned" not in r["label"]],
            out / "accuracy.png",
            title="test error of designs trained from scratch",
        )[0],
    }
    report = _report(
        cfg, data.describe(), pattern, designs, rows, budget, figures, time.perf_counter() - started, provenance(device)
    )
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "report.html", html_page(report, out, title="guided quick start"))
    log(f"wrote {out / 'report.md'} and {out / 'report.html'} in {time.perf_counter() - started:.0f}s")
    return out / "report.md"


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": result["params"],
        "macs": result["macs"],
        "test_acc": result["test_acc"],
        "wall_time_s": result["wall_time_s"],
    }


def _report(cfg, data_line, pattern, designs, rows, budget, figures, seconds, prov) -> str:
    df = pd.DataFrame(rows)
    acc = []
    for label in dict.fromkeys(df["label"]):
        sub = df[df["label"] == label]
        acc.append(
            {
                "network": label,
                "params": f"{int(sub['params'].iloc[0]):,}",
                "MACs": f"{sub['macs'].iloc[0] / 1e6:.2f}M",
                "test accuracy (%)": mean_std(sub["test_acc"].tolist()),
                "seeds": len(sub),
            }
        )
    stages = pd.DataFrame(
        [
            {
                "stage": r["stage"] + 1,
                "channels": r["original"],
                "kept (%)": f"{100 * r['keep_ratio_mean']:.1f} ± {100 * r['keep_ratio_std']:.1f}",
            }
            for r in pattern["stages"]
        ]
    )
    widths = pd.DataFrame(
        [
            {
                "network": f"{t} {label}",
                "widths per stage": " / ".join(",".join(map(str, s)) for s in spec.stages),
                "params": f"{cost(spec).params:,}",
            }
            for t, specs in designs.items()
            for label, spec in specs.items()
        ]
    )
    guided_key = f"{cfg['source']} guided"
    uniform_key = f"{cfg['source']} uniform"
    g, u = df[df["label"] == guided_key]["test_acc"].mean(), df[df["label"] == uniform_key]["test_acc"].mean()
    diff = 100 * (g - u)
    word = "matches" if abs(diff) < 0.005 else ("beats" if diff > 0 else "trails")
    verdict = f"{word} uniform width ({100 * g:.2f}% vs {100 * u:.2f}%, {diff:+.2f} points)"
    return f"""# guided quick start

{data_line}. Source: {cfg["source"]} x{cfg["width_mult"]} ({cfg["head"]} head), trained {cfg["epochs"]} epochs
with the Network Slimming penalty ({cfg["sparsity_l1"]:g}) for seeds {cfg["seeds"]}, then
{cfg["prune_ratio"]:.0%} of its channels pruned with one global |gamma| threshold.

## The pattern pruning found

{markdown_table(stages)}

![per-layer keep ratio]({figures["profile"].name})

## Designs at {budget.value:,.0f} parameters ({cfg["budget_fraction"]:.0%} of the source)

{markdown_table(widths)}

![widths per stage]({figures["widths"].name})

## Trained from scratch

{markdown_table(pd.DataFrame(acc))}

On this run the guided {cfg["source"]} {verdict}. Digits is a small, easy dataset: differences of a
fraction of a point are within seed noise here; the CIFAR protocols in `configs/` are the real test.

![test error against cost]({figures["accuracy"].name})

## Provenance

{len(rows)} training runs, {seconds:.0f} s wall time in this invocation; guided {prov["guided"]}, git
{prov["git"]}, torch {prov["torch"]}, {prov["device"]}, python {prov["python"]}. Runs and their
`result.json` files are in `runs/`; the pattern in `pattern.json`; the designs in `designs/`.
"""
