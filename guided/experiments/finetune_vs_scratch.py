"""Fine-tuning versus training from scratch (the paper's first finding), on any model and dataset.

For each seed: train the base model (plain, and with the Network Slimming L1 penalty on BN scales when a
row needs it; initial weights kept for lottery tickets); prune it with every configured row's method;
fine-tune the inherited weights, and train the pruned architecture from scratch with Scratch-E and
Scratch-B budgets (and, for unstructured rows, from the base's initial weights under the same masks: the
lottery ticket). The table reports, per row, parameters and MACs (non-zero ones for masked rows) and test
accuracy (mean ± std over seeds) of each model. Masked rows also get their per-stage sparsity and
kernel-position pattern, as JSON and as a plot.

Config (TOML)::

    [data]       dataset, data_root, image_size, train_subset, test_subset
    [model]      arch, width_mult, head
    [train]      recipe, epochs, batch_size, lr, sparsity_l1, seeds, precision
    [[rows]]     name, method, base ("plain" | "sparse"), ratio | preset, allocation, samples
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from guided.errors import UserError
from guided.experiments.common import (
    DataConfig,
    ModelConfig,
    PruneRow,
    finished,
    load_data,
    markdown_table,
    mean_std,
    section,
    timed,
)
from guided.hooks import BatchNormL1
from guided.io import atomic_write_text, write_json
from guided.patterns import load_sparsity_reports, sparsity_summary
from guided.plots import draw_sparsity
from guided.provenance import provenance, resolve_device
from guided.pruning import prune
from guided.recipes import get_recipe
from guided.retrain import MODES, retrain, save_pruned
from guided.train import load_weights, train
from models import build, create_spec

__all__ = ["run", "ModelConfig", "TrainConfig", "RowConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: recipe overrides, the sparsity penalty of slimming bases, seeds."""

    recipe: str = "quick"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    sparsity_l1: float = 1e-4
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    precision: str = "auto"
    device: str = "auto"


#: ``[[rows]]``: one pruning method and setting.
RowConfig = PruneRow


def parse(config: dict[str, Any]) -> tuple[DataConfig, ModelConfig, TrainConfig, list[RowConfig]]:
    """Validate the whole config up front (unknown keys, wrong types, unknown methods)."""
    unknown = sorted(set(config) - {"data", "model", "train", "rows"})
    if unknown:
        raise UserError(f"unknown section(s) {unknown}; expected [data], [model], [train], [[rows]]")
    for name in ("data", "model", "rows"):
        if name not in config:
            raise UserError(f"the config has no [{name}] section" if name != "rows" else "the config has no [[rows]]")
    data = section(DataConfig, config["data"], "data")
    model = section(ModelConfig, config["model"], "model")
    tr = section(TrainConfig, config.get("train", {}), "train")
    rows = [section(RowConfig, r, f"rows.{i}") for i, r in enumerate(config["rows"])]
    create_spec(model.arch, width_mult=model.width_mult, head=model.head)  # the model exists
    get_recipe(tr.recipe)
    for r in rows:
        r.check(f"[[rows]] {r.name!r}")
        if (r.ratio is None) == (r.preset is None):
            raise UserError(f"[[rows]] {r.name!r}: give ratio or preset")
    if not tr.seeds:
        raise UserError("[train] seeds is empty")
    return data, model, tr, rows


def run(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    runs_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the experiment; returns the summary written to ``out_dir/summary.json``.

    Args:
        config: the parsed TOML (see module docstring).
        out_dir: where the table, per-run results and provenance go (small files, meant for git).
        runs_dir: where full training runs (checkpoints, weights) go; default ``out_dir/runs``.
        log: progress lines.
    """
    data_cfg, model_cfg, tr, rows = parse(config)
    out = Path(out_dir)
    runs = Path(runs_dir) if runs_dir else out / "runs"
    device = resolve_device(tr.device)
    data = load_data(data_cfg)
    log(data.describe())
    recipe = get_recipe(tr.recipe).override(epochs=tr.epochs, batch_size=tr.batch_size, lr=tr.lr)
    spec = create_spec(
        model_cfg.arch,
        num_classes=data.num_classes,
        width_mult=model_cfg.width_mult,
        head=model_cfg.head,
        input_size=data.input_size,
        in_channels=data.in_channels,
    )
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    masked_dirs: dict[int, list[Path]] = {}

    def train_once(run_dir: Path, make_model, run_recipe, seed, hooks=(), save_init=False):
        done = finished(run_dir)
        if done:
            return done
        resume = (run_dir / "checkpoint.pt").exists()
        with timed(log, f"train {run_dir.relative_to(runs)}"):
            return train(
                make_model(),
                data,
                run_recipe,
                out_dir=run_dir,
                device=device,
                seed=seed,
                hooks=hooks,
                resume=resume,
                save_init=save_init,
                precision=tr.precision,
                log=log,
            )

    for seed in tr.seeds:
        bases = {}
        for kind in sorted({r.base for r in rows} | {"plain"}):
            hooks = [BatchNormL1(tr.sparsity_l1)] if kind == "sparse" else []
            run_dir = runs / f"seed{seed}" / f"base-{kind}"
            result = train_once(run_dir, lambda s=seed: build(spec, seed=s), recipe, seed, hooks, save_init=True)
            bases[kind] = run_dir
            records.append({"row": f"unpruned ({kind})", "seed": seed, "stage": "base", **_brief(result)})
        for i, row in enumerate(rows):
            pruned_dir = runs / f"seed{seed}" / f"row{i}-pruned"
            if not (pruned_dir / "prune.json").exists():
                if pruned_dir.exists():
                    shutil.rmtree(pruned_dir)  # an interrupted prune: start it again
                base = load_weights(bases[row.base]).to(device).eval()
                result = prune(
                    base,
                    row.method,
                    ratio=row.ratio,
                    preset=row.preset,
                    allocation=row.allocation,
                    data=data,
                    samples=row.samples,
                    seed=seed,
                )
                base_result = finished(bases[row.base])
                save_pruned(
                    result,
                    pruned_dir,
                    source={"run": str(bases[row.base]), "epochs": base_result["epochs"], "config": {}},
                )
            info = json.loads((pruned_dir / "prune.json").read_text())
            masked = (pruned_dir / "masks.npz").exists()
            if masked:
                masked_dirs.setdefault(i, []).append(pruned_dir)
            for mode in [m for m in MODES if masked or m != "lottery"]:
                run_dir = runs / f"seed{seed}" / f"row{i}-{mode}"
                done = finished(run_dir)
                if not done:
                    with timed(log, f"{mode} {run_dir.relative_to(runs)} ({row.name})"):
                        done = retrain(
                            pruned_dir,
                            mode,
                            data,
                            recipe,
                            out_dir=run_dir,
                            seed=seed,
                            device=device,
                            resume=(run_dir / "checkpoint.pt").exists(),
                            precision=tr.precision,
                            log=log,
                        )
                records.append(
                    {
                        "row": row.name,
                        "seed": seed,
                        "stage": mode,
                        **_brief(done),
                        "params": info["params_after"],
                        "macs": info["macs_after"],
                    }
                )

    table = _table(records, rows)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(out / "runs.csv", index=False)
    table.to_csv(out / "table.csv", index=False)
    atomic_write_text(out / "table.md", markdown_table(table) + "\n")
    summary = {
        "experiment": "finetune-vs-scratch",
        "config": {
            "data": dataclasses.asdict(data_cfg),
            "model": dataclasses.asdict(model_cfg),
            "train": dataclasses.asdict(tr),
            "rows": [dataclasses.asdict(r) for r in rows],
        },
        "recipe": recipe.to_dict(),
        "dataset": data.describe(),
        "seeds": tr.seeds,
        "wall_time_s_this_invocation": round(time.perf_counter() - started, 1),
        "train_wall_time_s_total": round(sum(r["wall_time_s"] for r in records), 1),
        "provenance": provenance(device),
        "date": time.strftime("%Y-%m-%d"),
    }
    for i, dirs in masked_dirs.items():
        slug = f"sparsity-row{i}"
        pattern = sparsity_summary(load_sparsity_reports(dirs))
        write_json(out / f"{slug}.json", {"row": rows[i].name, **pattern})
        draw_sparsity(pattern, out / f"{slug}.png", title=f"{rows[i].name}, {spec.name} x{model_cfg.width_mult}")
        summary.setdefault("sparsity_patterns", {})[rows[i].name] = f"{slug}.json"
    write_json(out / "summary.json", summary)
    log(markdown_table(table))
    return summary


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "test_acc": result["test_acc"],
        "epochs": result["epochs"],
        "params": result["params"],
        "macs": result["macs"],
        "wall_time_s": result["wall_time_s"],
    }


def _table(records: list[dict[str, Any]], rows: list[RowConfig]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    out = []
    for name in [n for n in df["row"].unique() if n.startswith("unpruned")] + [r.name for r in rows]:
        sub = df[df["row"] == name]
        first = sub.iloc[0]
        entry = {"model": name, "params": f"{int(first['params']):,}", "MACs": f"{first['macs'] / 1e6:.1f}M"}
        for stage, label in [
            ("base", "accuracy (%)"),
            ("finetune", "fine-tuned"),
            ("scratch-e", "Scratch-E"),
            ("scratch-b", "Scratch-B"),
            ("lottery", "lottery ticket"),
        ]:
            vals = sub[sub["stage"] == stage]["test_acc"].tolist()
            if vals:
                entry[label] = mean_std(vals)
        if "scratch-b" in set(sub["stage"]):
            entry["Scratch-B epochs"] = str(int(sub[sub["stage"] == "scratch-b"]["epochs"].iloc[0]))
        out.append(entry)
    cols = [
        "model",
        "params",
        "MACs",
        "accuracy (%)",
        "fine-tuned",
        "Scratch-E",
        "Scratch-B",
        "lottery ticket",
        "Scratch-B epochs",
    ]
    table = pd.DataFrame(out)
    return table[[c for c in cols if c in table.columns]].fillna("")
