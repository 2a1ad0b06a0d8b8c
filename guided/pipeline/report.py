"""A study's report: tables (CSV and Markdown), figures, copies of patterns and designs, provenance.

Everything is read back from the stages' completion records and files, so the report of a resumed
study equals that of an uninterrupted one. Written into the study folder, beside ``stages/``::

    report.md, report.html   tables/*.csv|md   figures/*.png|svg   patterns/*.json   designs/*.json
    runs.csv (every training run, with wall times)   summary.json (study, recipe, provenance, times)
"""

from __future__ import annotations

import shutil
from typing import Any

import pandas as pd

from guided.experiments.common import markdown_table, mean_std
from guided.io import atomic_write_text, read_json, write_json
from guided.pipeline.config import Study
from guided.pipeline.runner import Stage, StageContext
from guided.pipeline.stages import slug
from guided.plots import draw_accuracy_cost, draw_profiles, draw_width_bars
from guided.provenance import provenance
from guided.recipes import Recipe
from guided.report import compare, html_page
from models import ArchSpec

__all__ = ["write_report", "runs_table", "design_table", "search_table", "search_curves"]

MODE_LABELS = {"finetune": "fine-tuned", "scratch-e": "Scratch-E", "scratch-b": "Scratch-B", "lottery": "lottery"}


def runs_table(stages: list[Stage], ctx: StageContext) -> pd.DataFrame:
    """One row per training stage: its tags and its result (accuracy, cost, epochs, wall time)."""
    rows = []
    for s in stages:
        if s.kind == "train":
            rows.append({"stage": s.id, **s.tags, **ctx.record(s.id)})
    return pd.DataFrame(rows)


def design_table(runs: pd.DataFrame, domain: str, budget: str) -> pd.DataFrame:
    """Arms trained from scratch at one budget: cost, test accuracy over seeds, difference to uniform."""
    sub = runs[(runs["role"] == "scratch") & (runs["domain"] == domain) & (runs["budget"] == budget)]
    uniform = sub[sub["arm"] == "uniform"]["test_acc"].mean()
    out = []
    for arm in dict.fromkeys(sub["arm"]):
        r = sub[sub["arm"] == arm]
        out.append(
            {
                "network": arm,
                "params": f"{int(r['params'].mean()):,}",
                "MACs": f"{r['macs'].mean() / 1e6:.2f}M",
                "test accuracy (%)": mean_std(r["test_acc"].tolist()),
                "vs uniform": f"{100 * (r['test_acc'].mean() - uniform):+.2f}",
                "seeds": len(r),
            }
        )
    return pd.DataFrame(out)


def search_curves(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Per search arm: trial numbers of completed trials, their validation accuracy, the best so far."""
    out = {}
    for arm, rec in records.items():
        done = [t for t in rec["trials"] if t["value"] is not None]
        best, running = [], float("-inf")
        for t in done:
            running = max(running, t["value"])
            best.append(running)
        out[arm] = {
            "number": [t["number"] for t in done],
            "value": [t["value"] for t in done],
            "best": best,
            "seeded": [t["seed_design"] is not None for t in done],
        }
    return out


def search_table(records: dict[str, dict[str, Any]], runs: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """Per arm: trials, best validation accuracy, the trial that first reached the guided design's, and
    the retrained best's test accuracy. Also returns the guided design's validation accuracy (from the
    seeded arm's first trial, trained exactly like every trial), when there is one."""
    guided_val = None
    if "seeded" in records:
        first = [t for t in records["seeded"]["trials"] if t["seed_design"] == 0 and t["value"] is not None]
        guided_val = first[0]["value"] if first else None
    out = []
    for arm, rec in records.items():
        trials = rec["trials"]
        done = [t for t in trials if t["value"] is not None]
        reach = "-"
        if guided_val is not None:
            hits = [t["number"] + 1 for t in done if t["value"] >= guided_val and t["seed_design"] != 0]
            reach = str(hits[0]) if hits else f"not in {len(trials)}"
        best = runs[(runs["role"] == "search-best") & (runs["arm"] == arm)]
        out.append(
            {
                "search": arm,
                "trials (complete / stopped)": f"{len(done)} / {sum(t['state'] == 'pruned' for t in trials)}",
                "best validation (%)": f"{100 * max(t['value'] for t in done):.2f}",
                "trials to reach guided": reach,
                "best retrained, test (%)": mean_std(best["test_acc"].tolist()),
                "params": f"{int(best['params'].mean()):,}" if len(best) else "-",
            }
        )
    return pd.DataFrame(out), guided_val


def write_report(study: Study, recipe: Recipe, stages: list[Stage], ctx: StageContext) -> dict[str, Any]:
    """Write the report files into the study folder; returns a small record of what was written."""
    out = ctx.out
    for sub in ("tables", "figures", "patterns", "designs"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    runs = runs_table(stages, ctx)
    runs.to_csv(out / "runs.csv", index=False)
    title = study.report.title or f"Study {study.study.name}"
    parts = [f"# {title}", "", _overview(study, recipe, ctx), ""]
    tables: dict[str, pd.DataFrame] = {}

    def add_table(name: str, df: pd.DataFrame) -> str:
        tables[name] = df
        df.to_csv(out / "tables" / f"{name}.csv", index=False)
        atomic_write_text(out / "tables" / f"{name}.md", markdown_table(df) + "\n")
        return markdown_table(df)

    by_role = {role: [s for s in stages if s.tags.get("role") == role] for role in {s.tags.get("role") for s in stages}}
    domains = list(dict.fromkeys(s.tags["domain"] for s in stages if "domain" in s.tags))

    # -- bases
    bases = runs[runs["role"] == "base"] if len(runs) else runs
    if len(bases):
        rows = []
        for (dom, kind), r in bases.groupby(["domain", "kind"], sort=False):
            spec = ArchSpec.from_dict(next(s for s in stages if s.id == r["stage"].iloc[0]).config["spec"])
            data = next(s for s in stages if s.id == r["stage"].iloc[0]).config["data"]["dataset"]
            rows.append(
                {
                    "model": dom,
                    "architecture": spec.name,
                    "dataset": data,
                    "training": "with slimming penalty" if kind == "sparse" else "plain",
                    "params": f"{int(r['params'].iloc[0]):,}",
                    "MACs": f"{r['macs'].iloc[0] / 1e6:.2f}M",
                    "test accuracy (%)": mean_std(r["test_acc"].tolist()),
                }
            )
        parts += ["## Full-width models", "", add_table("bases", pd.DataFrame(rows)), ""]

    # -- pruning and retraining
    retrains = runs[runs["role"] == "retrain"] if len(runs) else runs
    if len(retrains):
        rows = []
        for (dom, name), r in retrains.groupby(["domain", "prune"], sort=False):
            prune_ids = [s.id for s in by_role["prune"] if s.tags["domain"] == dom and s.tags["prune"] == name]
            params = [ctx.record(i)["params_after"] for i in prune_ids]
            row = {"model": dom, "pruning": name, "params after": f"{int(sum(params) / len(params)):,}"}
            for mode, label in MODE_LABELS.items():
                vals = r[r["mode"] == mode]["test_acc"].tolist()
                if vals:
                    row[label] = mean_std(vals)
            rows.append(row)
        parts += [
            "## Fine-tuning versus training from scratch",
            "",
            "Test accuracy (%) of each pruned model fine-tuned from the base's weights and trained from scratch "
            "(Scratch-E: the base's epochs; Scratch-B: the base's compute).",
            "",
            add_table("retraining", pd.DataFrame(rows)),
            "",
        ]

    # -- patterns
    patterns = {}
    for st in by_role.get("pattern", []):
        name = f"{st.tags['domain']}-{st.tags['prune']}"
        shutil.copy(ctx.dir_of(st.id) / "pattern.json", out / "patterns" / f"{name}.json")
        patterns[name] = read_json(ctx.dir_of(st.id) / "pattern.json")
    if patterns:
        rows = []
        n = max(len(p["stages"]) for p in patterns.values())
        for i in range(n):
            row = {"stage": i + 1}
            for name, p in patterns.items():
                st = next((r for r in p["stages"] if r["stage"] == i), None)
                row[name] = f"{100 * st['keep_ratio_mean']:.1f} ± {100 * st['keep_ratio_std']:.1f}" if st else "-"
            rows.append(row)
        draw_profiles(patterns, out / "figures" / "profile.png", title="fraction of channels kept, per layer")
        parts += [
            "## Design patterns",
            "",
            "Share of channels kept per stage (%, mean ± std over seeds):",
            "",
            add_table("patterns", pd.DataFrame(rows)),
            "",
            "![per-layer keep ratio](figures/profile.png)",
            "",
        ]

    # -- designs
    verdicts = []
    if study.design:
        parts += [
            "## Guided versus uniform designs",
            "",
            "Every network below was trained from scratch with the same recipe "
            f"({recipe.epochs} epochs). *guided*: widths from the model's own pruning pattern; *transferred*: "
            "from the source's pattern; *pruned*: the architecture the pattern's method finds when it prunes each "
            "seed's base down to the budget; *uniform*: one width multiplier for every layer; *-per-layer*: the "
            "pattern's per-layer ratios instead of one per stage.",
            "",
        ]
        for dom in domains:
            acc_rows = []
            for budget in study.design.budgets:
                table = design_table(runs, dom, budget)
                if not len(table):
                    continue
                name = f"designs-{dom}-{slug(budget)}"
                parts += [f"### {dom}, budget {budget}", "", add_table(name, table), ""]
                sub = runs[(runs["role"] == "scratch") & (runs["domain"] == dom) & (runs["budget"] == budget)]
                uni = sub[sub["arm"] == "uniform"]["test_acc"].tolist()
                for arm in [a for a in dict.fromkeys(sub["arm"]) if a != "uniform"]:
                    vals = sub[sub["arm"] == arm]["test_acc"].tolist()
                    verdicts.append(f"{dom}, {budget}: " + compare(vals, uni, names=(arm, "uniform")))
                acc_rows += [
                    {"label": r["arm"], "params": r["params"], "macs": r["macs"], "test_acc": r["test_acc"]}
                    for _, r in sub.iterrows()
                ]
                specs = {}
                for st in by_role["design"]:
                    if st.tags["domain"] != dom or st.tags["budget"] != budget:
                        continue
                    for arm in st.config["arms"]:
                        path = ctx.dir_of(st.id) / f"{arm}.json"
                        shutil.copy(path, out / "designs" / f"{dom}-{slug(budget)}-{arm}.json")
                        specs[arm] = ArchSpec.from_json(path.read_text())
                for st in by_role.get("prune-budget", []):
                    if st.tags["domain"] == dom and st.tags["budget"] == budget:
                        name = f"{dom}-{slug(budget)}-pruned-s{st.tags['seed']}.json"
                        shutil.copy(ctx.dir_of(st.id) / "spec.json", out / "designs" / name)
                own = next((p for p in patterns if p.startswith(f"{dom}-")), None)
                if own:  # the pruned bars are this model's own pruned runs
                    figure = f"widths-{dom}-{slug(budget)}"
                    draw_width_bars(
                        patterns[own],
                        specs,
                        out / "figures" / f"{figure}.png",
                        title=f"{dom}: channels per layer, {budget}",
                    )
                    parts += [f"![widths](figures/{figure}.png)", ""]
            if acc_rows:
                draw_accuracy_cost(acc_rows, out / "figures" / f"accuracy-{dom}.png", title=f"{dom}: from scratch")
                parts += [f"![test error against cost](figures/accuracy-{dom}.png)", ""]
        if verdicts:
            parts += ["What the numbers say (a difference counts when it exceeds the seed std):", ""]
            parts += [f"- {v}" for v in verdicts] + [""]

    # -- search
    search_records = {s.tags["arm"]: ctx.record(s.id) for s in by_role.get("search", [])}
    if search_records:
        table, guided_val = search_table(search_records, runs)
        curves = search_curves(search_records)
        _draw_search(curves, guided_val, out / "figures" / "search.png")
        for arm in search_records:
            src = ctx.dir_of(f"search/{arm}")
            shutil.copy(src / "best.json", out / "designs" / f"search-{arm}-best.json")
            shutil.copy(src / "trials.csv", out / "tables" / f"search-{arm}-trials.csv")
        q = study.search
        parts += [
            f"## Width search at {q.budget}",
            "",
            f"Optuna TPE over per-stage width ratios, {q.trials} trials of {q.epochs} epochs each on a "
            f"{q.validation:.0%} validation split of the training set ({q.pruner} pruner); *seeded* enqueues the "
            "guided and uniform designs as its first trials. The best spec of each search is retrained like "
            "the designs and tested once.",
            "",
            add_table("search", table),
            "",
            "![search history](figures/search.png)",
            "",
        ]
    prov = provenance(ctx.services.device)
    total = float(runs["wall_time_s"].sum()) if len(runs) else 0.0
    parts += [
        "## Provenance",
        "",
        f"Study `{study.study.name}`, seeds {study.study.seeds}, recipe `{study.train.recipe}` "
        f"({recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr}); {len(runs)} training runs, "
        f"{total / 60:.1f} min of training. guided {prov['guided']}, git {prov['git']}, torch {prov['torch']}, "
        f"{prov['device']}, python {prov['python']}. Stage records and runs: `stages/`; every training run "
        "with its wall time: `runs.csv`.",
        "",
    ]
    report = "\n".join(parts)
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "report.html", html_page(report, out, title=title))
    write_json(
        out / "summary.json",
        {
            "study": study.to_dict(),
            "recipe": recipe.to_dict(),
            "training_runs": len(runs),
            "train_wall_time_s": round(total, 1),
            "verdicts": verdicts,
            "provenance": prov,
        },
    )
    return {"tables": sorted(tables), "verdicts": verdicts}


def _overview(study: Study, recipe: Recipe, ctx: StageContext) -> str:
    """One paragraph: data, source model, pruning, budgets, transfers, search (from the study itself)."""
    svc = ctx.services
    m = study.model
    lines = [
        f"Source: {m.arch} x{m.width_mult} on {svc.data(study.data).describe()}. "
        f"Every network is trained with the `{study.train.recipe}` recipe ({recipe.epochs} epochs) for seeds "
        f"{study.study.seeds}; accuracies are on the test split (mean ± sample std over seeds)."
    ]
    if study.prune:
        methods = ", ".join(
            f"{p.name} ({p.method}, {f'preset {p.preset}' if p.preset else f'ratio {p.ratio}'}"
            + (", slimming-penalty base" if p.base == "sparse" else "")
            + ")"
            for p in study.prune
        )
        lines.append(f"Pruning: {methods}.")
    if study.design:
        lines.append(
            f"Designs follow the `{study.design.pattern}` pattern at budgets {', '.join(study.design.budgets)} "
            "(percentages of each full-width model)."
        )
    for t in study.transfer:
        data = svc.data(t.data(study.data)).describe()
        lines.append(f"Transfer `{t.name}`: {t.arch} x{t.width_mult} on {data}.")
    lines.append("The study file is `study.toml`.")
    return " ".join(lines)


def _draw_search(curves: dict[str, dict[str, list]], guided_val: float | None, path) -> None:
    from guided.plots import finish, subplots

    fig, ax = subplots(figsize=(5.5, 3.2))
    for arm, c in curves.items():
        xs = [n + 1 for n in c["number"]]
        (line,) = ax.plot(xs, [100 * v for v in c["best"]], "-", label=f"{arm}: best so far")
        ax.plot(xs, [100 * v for v in c["value"]], "o", ms=3, color=line.get_color(), alpha=0.5)
    if guided_val is not None:
        ax.axhline(100 * guided_val, ls="--", color="k", lw=1, label="guided design")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    finish(fig, path)
