"""A study's report: tables (CSV and Markdown), figures, copies of patterns and designs, provenance.

Everything is read back from the stages' completion records and files, so the report of a resumed
study equals that of an uninterrupted one. Written into the study folder, beside ``stages/``::

    report.md, report.html   tables/*.csv|md   figures/*.png|svg   patterns/*.json   designs/*.json
    runs.csv (every training run, with wall times)   summary.json (study, recipe, provenance, times)

`write_report` calls one function per section; each returns its Markdown lines and registers its tables
and figures with the `_Report` it is given.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from guided.pipeline.config import Study, slug
from guided.pipeline.report_population import population_section
from guided.pipeline.roles import SEARCH_ARMS, SEARCH_COLOURS, Role, arm_label
from guided.pipeline.runner import Stage, StageContext
from guided.reporting.html import html_page
from guided.reporting.plots import (
    arm_colours,
    cost_note,
    draw_accuracy_cost,
    draw_profiles,
    draw_sparsity,
    draw_width_bars,
)
from guided.reporting.tables import difference, holm, interval_cell, markdown_table, mean_std, verdict
from guided.shapes.patterns import Pattern
from guided.storage.folders import PrunedFolder, SearchFolder, StageFolder, StudyFolder
from guided.storage.io import atomic_write_text, read_json, remove_inside, write_json
from guided.storage.provenance import device_name, provenance
from guided.timing.clock import clock
from guided.training.data import fingerprint
from guided.training.recipes import Recipe
from models import ArchSpec, cost
from search.plots import draw_history

__all__ = [
    "write_report",
    "runs_table",
    "budget_runs",
    "design_table",
    "retraining_table",
    "search_table",
    "search_warnings",
    "read_speeds",
]

MODE_LABELS = {"finetune": "fine-tuned", "scratch-e": "Scratch-E", "scratch-b": "Scratch-B", "lottery": "lottery"}
#: The paper's questions about retraining: does training from scratch match fine-tuning (Scratch-E and
#: Scratch-B against fine-tuned), and does the lottery ticket's original initialisation beat a fresh one?
RETRAIN_CONTRASTS = (("scratch-e", "finetune"), ("scratch-b", "finetune"), ("lottery", "scratch-e"))


class _Report:
    """The report being written: the study folder, the runs table, and what each section adds."""

    def __init__(self, study: Study, recipe: Recipe, stages: list[Stage], ctx: StageContext):
        self.study, self.recipe, self.stages, self.ctx, self.out = study, recipe, stages, ctx, ctx.out
        self.began = time.time()  # the report's start: what the run's estimated wall time is compared with
        self.runs = runs_table(stages, ctx)
        self.tables: dict[str, pd.DataFrame] = {}
        self.verdicts: list[dict[str, Any]] = []  # one family (`guided.reporting.tables.verdict` records)
        self.patterns: dict[str, Pattern] = {}
        self.inference_device: str | None = None  # the device and threads the inference timings used
        self.design_lines: list[str] = []  # the design section's verdict lines
        self.proxy: dict[str, Any] | None = None  # the search's proxy rank correlation
        self.population: dict[str, Any] | None = None  # where the arms sit in the population (`summary.json`)
        self.domains = list(dict.fromkeys(s.tags.domain for s in stages if s.tags.domain is not None))
        arms = [arm_label(s.tags.role, s.tags.arm) for s in stages if s.tags.arm is not None]
        for s in stages:
            arms += list(s.config.get("arms") or []) if s.kind == "design" else []
        #: one colour per arm, the same in every figure; ``figure_colours`` records what each figure drew
        self.colours = arm_colours(["pruned", *arms], SEARCH_COLOURS)
        self.figure_colours: dict[str, dict[str, str]] = {}

    def colours_for(self, figure: str, labels) -> dict[str, str]:
        """The report's colours of ``labels``, recorded for ``figure`` (``figures/colours.json``)."""
        labels = list(labels)
        if set(labels) - set(self.colours):  # appended in order: the colours given so far stay as they are
            self.colours = arm_colours([*self.colours, *labels], SEARCH_COLOURS)
        used = {label: self.colours[label] for label in labels}
        self.figure_colours[figure] = used
        return used

    def role(self, role: Role) -> list[Stage]:
        """The stages tagged with ``role``."""
        return [s for s in self.stages if s.tags.role == role]

    def runs_of(self, role: Role) -> pd.DataFrame:
        """Training runs of one role (`Role.BASE`, `Role.RETRAIN`, `Role.SCRATCH`, `Role.SEARCH_BEST`)."""
        return self.runs[self.runs["role"] == role] if len(self.runs) else self.runs

    def table(self, name: str, df: pd.DataFrame) -> str:
        """Write ``tables/NAME.csv`` and ``.md``; returns the Markdown."""
        self.tables[name] = df
        atomic_write_text(self.out / "tables" / f"{name}.csv", df.to_csv(index=False))
        atomic_write_text(self.out / "tables" / f"{name}.md", markdown_table(df) + "\n")
        return markdown_table(df)

    def verdict(self, a: list[float], b: list[float], names: tuple[str, str], where: str, seeds=None) -> str:
        """Record a verdict of the report's family (``seeds``: each accuracy's seed, for the paired interval
        beside Welch's; the study's ``[report] pairing`` says which one the verdict uses); returns the Markdown
        line's placeholder, filled in once the whole family is known (`_fill_verdicts`: Holm's adjustment
        needs every p-value)."""
        pairing = self.study.report.pairing
        self.verdicts.append(verdict(a, b, names=names, where=where, seeds=seeds, pairing=pairing))
        return f"- {VERDICT_MARK}{len(self.verdicts) - 1}{VERDICT_MARK}"

    def figure(self, path: Path) -> Path:
        return self.out / "figures" / path


def runs_table(stages: list[Stage], ctx: StageContext) -> pd.DataFrame:
    """One row per training stage: its tags and its result (accuracy, cost, epochs, wall time)."""
    rows = []
    for s in stages:
        if s.kind in ("train", "retrain"):
            rows.append({"stage": s.id, **s.tags.row(), **ctx.record(s.id)})
    return pd.DataFrame(rows)


def write_report(study: Study, recipe: Recipe, stages: list[Stage], ctx: StageContext) -> dict[str, Any]:
    """Write the report files into the study folder; returns a small record of what was written."""
    out = ctx.out
    for sub in ("tables", "figures", "patterns", "designs"):
        remove_inside(out / sub, out)
        (out / sub).mkdir(parents=True)
    r = _Report(study, recipe, stages, ctx)
    read_speeds(r)
    atomic_write_text(StudyFolder(out).runs, r.runs.to_csv(index=False))
    title = study.report.title or f"Study {study.study.name}"
    parts = [f"# {title}", "", _overview(study, recipe, ctx), ""]
    for section in (_bases, _retraining, _patterns, _designs, _search, population_section, _provenance):
        parts += section(r)
    holm(r.verdicts)
    report = _fill_verdicts("\n".join(parts), r.verdicts)
    write_json(out / "figures" / "colours.json", r.figure_colours)
    atomic_write_text(StudyFolder(out).report, report)
    atomic_write_text(StudyFolder(out).report_html, html_page(report, out, title=title))
    write_json(
        StudyFolder(out).summary,
        {
            "study": study.to_dict(),
            "recipe": recipe.to_dict(),
            "training_runs": len(r.runs),
            "train_wall_time_s": round(_train_seconds(r), 1),
            "wall_time": {k: v for k, v in (wall_time(r) or {}).items() if k != "sentence"} or None,
            "verdicts": r.verdicts,
            "proxy": r.proxy,
            **({"population": r.population} if r.population is not None else {}),
            "revisions": revisions(r),
            "datasets": _datasets(study, ctx),
            "provenance": provenance(ctx.services.device),
        },
    )
    return {"tables": sorted(r.tables), "verdicts": [v["text"] for v in r.verdicts]}


#: How every verdict line is read.
VERDICT_RULE = (
    "a difference counts when the 95% confidence interval of the difference of means over seeds, from "
    "Welch's t-test, excludes 0; a null verdict says the smallest difference it could have detected with 80% "
    "power; a difference is a finding of this report only when it also holds after Holm's adjustment over "
    "all of its verdicts"
)

#: Marks a verdict's place in the Markdown until the family is complete.
VERDICT_MARK = "\x00verdict"


def _fill_verdicts(text: str, verdicts: list[dict[str, Any]]) -> str:
    """Each verdict placeholder replaced by its line: where, the words, and whether it holds after Holm's
    adjustment over the report's whole family of verdicts."""
    for i, v in enumerate(verdicts):
        holds = ""
        if v["p_holm"] is not None:
            after = "holds" if v["survives"] else "does not hold"
            holds = f"; Holm-adjusted p = {v['p_holm']:.3g}: {after} over the report's {len(verdicts)} verdicts"
        text = text.replace(f"{VERDICT_MARK}{i}{VERDICT_MARK}", f"{v['where']}: {v['text']}{holds}{_other(v)}")
    return text


def _other(v: dict[str, Any]) -> str:
    """The interval the verdict does not use, and the arms' correlation over seeds, when runs are paired."""
    pair = v.get("paired")
    if not pair or pair.get("low") is None:
        return ""
    r = "" if pair["r"] is None else f"; seeds correlate r = {pair['r']:+.2f}"
    if v["pairing"] == "paired":
        w = v["welch"]
        return f" (Welch: {w['diff']:+.2f} [{w['low']:+.2f}, {w['high']:+.2f}]{r})" if w["low"] is not None else ""
    cell = f"{pair['diff']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}]"
    return f" (paired by seed: {cell}, detectable {pair['mde']:.2f}{r})"


def _datasets(study: Study, ctx: StageContext) -> dict[str, dict[str, Any]]:
    """Each dataset the study read (as subsampled): image counts and a hash of the decoded arrays."""

    configs = [study.data] + [t.data(study.data) for t in study.transfer]
    return {cfg.dataset: fingerprint(ctx.services.data(cfg)) for cfg in configs}


def _train_seconds(r: _Report) -> float:
    return float(r.runs["wall_time_s"].sum()) if len(r.runs) else 0.0


# ---------------------------------------------------------------------- sections
def _bases(r: _Report) -> list[str]:
    bases = r.runs_of("base")
    if not len(bases):
        return []
    rows = []
    for (dom, kind), runs in bases.groupby(["domain", "kind"], sort=False):
        stage = next(s for s in r.stages if s.id == runs["stage"].iloc[0])
        rows.append(
            {
                "model": dom,
                "architecture": ArchSpec.from_dict(stage.config["spec"]).name,
                "dataset": stage.config["data"]["dataset"],
                "training": {"sparse": "with slimming penalty", "gated": "gated blocks, gate penalty"}.get(
                    kind, "plain"
                ),
                "params": f"{int(runs['params'].iloc[0]):,}",
                "MACs": f"{runs['macs'].iloc[0] / 1e6:.2f}M",
                "test accuracy (%)": mean_std(runs["test_acc"].tolist()),
            }
        )
    return ["## Full-width models", "", r.table("bases", pd.DataFrame(rows)), ""]


def retraining_table(runs: pd.DataFrame, prune_records: dict[tuple[str, str], list[dict]]) -> pd.DataFrame:
    """Per pruned model: its cost after pruning (non-zero counts for masks), and test accuracy over seeds
    of every retraining mode, with Scratch-B's epoch count."""
    rows = []
    for (dom, name), r in runs.groupby(["domain", "prune"], sort=False):
        records = prune_records[dom, name]
        row = {
            "model": dom,
            "pruning": name,
            "params after": f"{int(sum(p['params_after'] for p in records) / len(records)):,}",
            "MACs after": f"{sum(p['macs_after'] for p in records) / len(records) / 1e6:.2f}M",
        }
        acc = {mode: r[r["mode"] == mode]["test_acc"].tolist() for mode in MODE_LABELS}
        for mode, label in MODE_LABELS.items():
            if acc[mode]:
                row[label] = mean_std(acc[mode])
        if (r["mode"] == "scratch-b").any():
            row["Scratch-B epochs"] = int(r[r["mode"] == "scratch-b"]["epochs"].iloc[0])
        for mode, base in RETRAIN_CONTRASTS:
            if acc[mode] and acc[base]:
                row[f"{MODE_LABELS[mode]} − {MODE_LABELS[base]} (95% CI)"] = interval_cell(
                    difference(acc[mode], acc[base])
                )
        rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows], columns=columns)


def _retraining(r: _Report) -> list[str]:
    retrains = r.runs_of("retrain")
    if not len(retrains):
        return []
    prune_records = {}
    for s in r.role(Role.PRUNE):
        prune_records.setdefault((s.tags.domain, s.tags.prune), []).append(r.ctx.record(s.id))
    rc = r.recipe
    ft = rc.finetune()
    verdicts = []
    for (dom, name), runs in retrains.groupby(["domain", "prune"], sort=False):
        acc = {mode: runs[runs["mode"] == mode]["test_acc"].tolist() for mode in MODE_LABELS}
        for mode, base in RETRAIN_CONTRASTS:
            if acc[mode] and acc[base]:
                names = (f"{MODE_LABELS[mode]}", f"{MODE_LABELS[base]}")
                verdicts.append(r.verdict(acc[mode], acc[base], names, f"{dom}, {name}"))
    return [
        "## Fine-tuning versus training from scratch",
        "",
        "Test accuracy (%) of each pruned model, mean ± std over seeds. *fine-tuned*: the inherited weights "
        f"trained {ft.epochs} more epochs at lr {ft.lr:g} ({ft.schedule} schedule); *Scratch-E*: a fresh "
        f"initialisation trained as many epochs as the base ({rc.epochs}); *Scratch-B*: as much compute as the "
        "base (epochs x full MACs / pruned MACs); *lottery*: the base's own initial weights under the masks. "
        "The last columns give differences of means in points with their 95% confidence intervals (Welch).",
        "",
        r.table("retraining", retraining_table(retrains, prune_records)),
        "",
        f"What the numbers say ({VERDICT_RULE}):",
        "",
        *verdicts,
        "",
    ]


def _patterns(r: _Report) -> list[str]:
    for st in r.role(Role.PATTERN):
        name = f"{st.tags.domain}-{st.tags.prune}"
        source = StageFolder(r.ctx.dir_of(st.id)).pattern
        shutil.copy(source, r.out / "patterns" / f"{name}.json")
        r.patterns[name] = Pattern.read(source)
    channels = {n: p for n, p in r.patterns.items() if p.kind == "channels"}
    weights = {n: p for n, p in r.patterns.items() if p.kind == "sparsity"}
    lines = []
    if channels:
        draw_profiles(channels, r.figure("profile.png"), title="fraction of channels kept, per layer")
        lines += [
            "## Design patterns",
            "",
            "Share of channels kept per stage (%, mean ± std over seeds):",
            "",
            r.table("patterns", _stage_table(channels, "keep_ratio")),
            "",
            "How each pattern's pruning ranked channels: "
            + "; ".join(f"{n}: {cost_note(p.cost).strip(' ()') or 'score alone'}" for n, p in channels.items())
            + ".",
            "",
            "![per-layer keep ratio](figures/profile.png)",
            "",
        ]
    if weights:
        lines += ["## Sparsity patterns", "", "Share of weights kept per stage (%, mean ± std over seeds):", ""]
        lines += [r.table("sparsity", _stage_table(weights, "density")), ""]
        for name, pattern in weights.items():
            draw_sparsity(pattern, r.figure(f"sparsity-{name}.png"), title=name)
            lines += [f"![density and 3x3 kernel positions, {name}](figures/sparsity-{name}.png)", ""]
    return lines


def _stage_table(patterns: dict[str, Pattern], key: str) -> pd.DataFrame:
    rows = []
    for i in range(max(len(p.stages) for p in patterns.values())):
        row = {"stage": i + 1}
        for name, p in patterns.items():
            st = next((s for s in p.stages if s["stage"] == i), None)
            row[name] = f"{100 * st[key + '_mean']:.1f} ± {100 * st[key + '_std']:.1f}" if st else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def budget_runs(runs: pd.DataFrame, domain: str, budget: str) -> pd.DataFrame:
    """Every network trained from scratch at one budget of one domain: the designs, the pruned
    architectures, and (at the search's budget) each search's best, as arm ``search-{arm}``."""
    if not len(runs):
        return runs
    at = runs[(runs["domain"] == domain) & (runs["budget"] == budget)]
    scratch = at[at["role"] == Role.SCRATCH]
    searched = at[at["role"] == Role.SEARCH_BEST]
    searched = searched.assign(arm=[arm_label(Role.SEARCH_BEST, a) for a in searched["arm"]])
    return pd.concat([scratch, searched])


def design_table(runs: pd.DataFrame, domain: str, budget: str) -> pd.DataFrame:
    """Arms trained from scratch at one budget: cost (counted and measured), test accuracy over seeds, and
    the difference to uniform with its 95% confidence interval."""
    sub = budget_runs(runs, domain, budget)
    if not len(sub):
        return pd.DataFrame()
    uniform = sub[sub["arm"] == "uniform"]["test_acc"].tolist()
    latency = budget.startswith("latency=")
    out = []
    for arm in dict.fromkeys(sub["arm"]):
        r = sub[sub["arm"] == arm]
        d = difference(r["test_acc"].tolist(), uniform)
        out.append(
            {
                "network": arm,
                "params": f"{int(r['params'].mean()):,}",
                "MACs": f"{r['macs'].mean() / 1e6:.2f}M",
                **({"step (ms, predicted)": _rate(r, "predicted_step_ms", ".1f")} if latency else {}),
                "inference (img/s)": _rate(r, "inference_images_per_s"),
                "timing": _timing(r),
                "training (img/s)": _rate(r, "train_images_per_s"),
                "test accuracy (%)": mean_std(r["test_acc"].tolist()),
                "vs uniform (95% CI)": interval_cell(d),
                "detectable (points)": "-" if d["mde"] is None else f"{d['mde']:.2f}",
                "seeds": len(r),
            }
        )
    return pd.DataFrame(out)


def _timing(runs: pd.DataFrame) -> str:
    """``contended`` when any of these runs' inference timings was taken on a busy machine, else ``clean``
    (``-`` when nothing was timed): a column of its own, so the throughput beside it stays a number."""
    if "inference_condition" not in runs or runs["inference_images_per_s"].isna().all():
        return "-"
    return "contended" if any(str(n) for n in runs["inference_condition"].dropna()) else "clean"


def _rate(runs: pd.DataFrame, column: str, form: str = ",.0f") -> str:
    values = runs[column].dropna() if column in runs else []
    return f"{values.mean():{form}}" if len(values) else "-"


def read_speeds(r: _Report) -> None:
    """Add each from-scratch run's inference throughput, and at latency budgets its predicted training
    step, as the speed stage measured them (``speed.json``): the report measures nothing, so rendering it
    again, here or elsewhere, changes no number."""
    if not len(r.runs) or "speed" not in {s.id for s in r.stages}:
        return
    record = read_json(StageFolder(r.ctx.dir_of("speed")).speed, "speed record")
    runs = record["runs"]
    r.inference_device = record["device"]
    r.runs["inference_images_per_s"] = [runs.get(stage, {}).get("images_per_s") for stage in r.runs["stage"]]
    r.runs["inference_condition"] = [runs.get(stage, {}).get("condition") for stage in r.runs["stage"]]
    if any("predicted_step_ms" in v for v in runs.values()):
        r.runs["predicted_step_ms"] = [runs.get(stage, {}).get("predicted_step_ms") for stage in r.runs["stage"]]


def _designs(r: _Report) -> list[str]:
    if not r.study.design:
        return []
    lines = [
        "## Guided versus uniform designs",
        "",
        "Every network below was trained from scratch with the same recipe "
        f"({r.recipe.epochs} epochs). *guided*: widths from the model's own pruning pattern; *transferred*: "
        "from the source's pattern; *pruned*: the architecture the pattern's method finds when it prunes each "
        "seed's base down to the budget; *uniform*: one width multiplier for every layer; *-per-layer*: the "
        "pattern's per-layer ratios instead of one per stage; *search-...*: each width search's best, retrained. "
        "*inference*: images/s of a forward pass at batch 256 on "
        f"{r.inference_device or device_name(r.ctx.services.device)} (median of 5 timed passes, "
        "measured by the report stage alone, after waiting briefly for a quiet machine; *timing* says "
        "*contended* for timings taken while other processes kept cores busy or the repeats spread widely, "
        "as `inference_condition` in runs.csv says); "
        "*training*: images/s of the training steps of its runs, test passes excluded (with `--jobs` above 1 "
        "they shared the machine with other runs). *vs uniform*: difference of mean test accuracy to the "
        "uniform design at the same budget, points, with its 95% confidence interval (Welch).",
        "",
    ]
    r.design_lines = []
    for dom in r.domains:
        acc_rows = []
        for budget in r.study.design.budget_list():
            lines += _design_budget(r, dom, budget, acc_rows)
        if acc_rows:
            labels = dict.fromkeys(row["label"] for row in acc_rows)
            draw_accuracy_cost(
                acc_rows,
                r.figure(f"accuracy-{dom}.png"),
                title=f"{domain_title(r, dom)}: test error of networks trained from scratch, by budget",
                colours=r.colours_for(f"accuracy-{dom}", labels),
            )
            lines += [
                f"![test error against parameters and against MACs](figures/accuracy-{dom}.png)",
                "",
                "Each arm's points are its means over seeds at each budget (bars: sample std); the dashed line "
                "is the Pareto front over all arms (no other network has both lower cost and lower error).",
                "",
            ]
    if r.design_lines:
        lines += [
            f"What the numbers say ({VERDICT_RULE}; all at equal parameters or MACs as each budget says):",
            "",
        ]
        lines += r.design_lines + [""]
    return lines


def domain_title(r: _Report, dom: str) -> str:
    """A domain as a figure names it: its full-width architecture and its dataset (``vgg16 x0.25 on cifar10``)."""
    design = next((s for s in r.stages if s.kind == "design" and s.tags.domain == dom), None)
    train = next((s for s in r.stages if s.kind == "train" and s.tags.domain == dom), None)
    if design is None or train is None:
        return dom
    target = ArchSpec.from_dict(design.config["target"])
    dataset = train.config["data"]["dataset"].rpartition("/")[2]  # an image folder by its last name
    return f"{dom}: {target.name} ({cost(target).params / 1e6:.2f}M params at full width) on {dataset}"


def _design_budget(r: _Report, dom: str, budget: str, acc_rows: list[dict[str, Any]]) -> list[str]:
    """One domain at one budget: the table, the verdicts against uniform, copies of the designs, widths."""
    table = design_table(r.runs, dom, budget)
    if not len(table):
        return []
    b = slug(budget)
    lines = [f"### {dom}, budget {budget}", "", r.table(f"designs-{dom}-{b}", table), ""]
    sub = budget_runs(r.runs, dom, budget)
    uniform = sub[sub["arm"] == "uniform"]
    for arm in [a for a in dict.fromkeys(sub["arm"]) if a != "uniform"]:
        runs = sub[sub["arm"] == arm]
        seeds = (runs["seed"].astype(int).tolist(), uniform["seed"].astype(int).tolist())
        r.design_lines.append(
            r.verdict(
                runs["test_acc"].tolist(), uniform["test_acc"].tolist(), (arm, "uniform"), f"{dom}, {budget}", seeds
            )
        )
    acc_rows += [
        {"label": x["arm"], "group": budget, "params": x["params"], "macs": x["macs"], "test_acc": x["test_acc"]}
        for _, x in sub.iterrows()
    ]
    specs = {}
    for st in r.role(Role.DESIGN):
        if st.tags.domain == dom and st.tags.budget == budget:
            for arm in st.config["arms"]:
                path = StageFolder(r.ctx.dir_of(st.id)).arm(arm)
                shutil.copy(path, r.out / "designs" / f"{dom}-{b}-{arm}.json")
                specs[arm] = ArchSpec.from_json(path.read_text())
    for st in r.role(Role.PRUNE_BUDGET):
        if st.tags.domain == dom and st.tags.budget == budget:
            name = f"{dom}-{b}-{st.tags.arm}-s{st.tags.seed}.json"
            shutil.copy(PrunedFolder(r.ctx.dir_of(st.id)).spec, r.out / "designs" / name)
    own = next((p for n, p in r.patterns.items() if n.startswith(f"{dom}-") and p.kind == "channels"), None)
    if own:  # the pruned bars are this model's own pruned runs
        figure = f"widths-{dom}-{b}"
        colours = r.colours_for(figure, ["pruned", *specs])
        draw_width_bars(
            own,
            specs,
            r.figure(f"{figure}.png"),
            title=f"{domain_title(r, dom)}: channels per layer, {budget}",
            colours=colours,
        )
        lines += [f"![widths](figures/{figure}.png)", ""]
    return lines


def search_table(records: dict[str, dict[str, Any]], runs: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """Per arm: trials, best validation accuracy, the trial that first reached the guided design's, and
    the retrained best's test accuracy. Also returns the guided design's validation accuracy (from the
    seeded arm's first trial, trained exactly like every trial), when there is one."""
    guided_val = None
    seeded = [arm for arm in records if SEARCH_ARMS[arm].seeded]
    if seeded:
        first = [t for t in records[seeded[0]]["trials"] if t["seed_design"] == 0 and t["value"] is not None]
        guided_val = first[0]["value"] if first else None
    out = []
    for arm, rec in records.items():
        trials = rec["trials"]
        done = [t for t in trials if t["value"] is not None]
        reach = "-"
        if guided_val is not None:
            hits = [t["number"] + 1 for t in done if t["value"] >= guided_val and t["seed_design"] != 0]
            reach = str(hits[0]) if hits else f"not in {len(trials)}"
        best = runs[(runs["role"] == Role.SEARCH_BEST) & (runs["arm"] == arm)]
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


def _search(r: _Report) -> list[str]:
    records = {s.tags.arm: r.ctx.record(s.id) for s in r.role(Role.SEARCH)}
    if not records:
        return []
    table, guided_val = search_table(records, r.runs)
    labels = {arm: SEARCH_ARMS[arm].label for arm in records}
    colours = r.colours_for("search", list(labels.values()))  # as in the accuracy figures
    draw_history(
        {arm: rec["trials"] for arm, rec in records.items()},
        r.figure("search.png"),
        reference=guided_val,
        colours={arm: colours[labels[arm]] for arm in records},
    )
    for arm in records:
        src = SearchFolder(r.ctx.dir_of(f"search/{arm}"))
        shutil.copy(src.best, r.out / "designs" / f"{labels[arm]}-best.json")
        shutil.copy(src.trials, r.out / "tables" / f"{labels[arm]}-trials.csv")
    q = r.study.search
    images = f"{q.train_subset:,} training images" if q.train_subset else "the rest of the training set"
    lines = [
        f"## Width search at {q.budget}",
        "",
        f"Optuna over per-stage width ratios, every trial solved to the budget: *cold* samples with TPE, "
        "*seeded* with TPE after first trying the guided and uniform designs, *random* uniformly (the control: "
        f"does TPE beat chance?). {q.trials} trials per arm, each {q.epochs} epochs on {images}, scored on a "
        f"{q.validation:.0%} validation split of the training set (never the test set); trial stopper: "
        f"{q.pruner}. *trials to reach guided*: the first trial (counting from 1) whose validation accuracy "
        "reached that of the guided design trained the same way (the seeded arm's first trial). The best spec "
        "of each search is retrained like the designs (see the budget's table above) and tested.",
        "",
        r.table("search", table),
        "",
    ]
    for warning in search_warnings(records):
        lines += [warning, ""]
    r.proxy = proxy_correlation(records, r.runs)
    p = r.proxy
    if p:
        what = f"over the {p['n']} retrained trials (the best {q.retrain_top} of each arm, first seed)"
        lines += [
            f"How far the trial score can be trusted: {what}, Spearman's rank correlation between the trial's "
            f"validation score and the retrained test accuracy is {p['rho']:+.2f} (p = {p['p']:.2g}, n = {p['n']})."
            if p["rho"] is not None
            else f"How far the trial score can be trusted cannot be told here: {what}, the trial scores (or the "
            "retrained accuracies) are all alike, so there is no ranking to compare.",
            "",
        ]
    return lines + ["![search history](figures/search.png)", ""]


def proxy_correlation(records: dict[str, dict[str, Any]], runs: pd.DataFrame) -> dict[str, Any] | None:
    """Spearman's rank correlation (scipy) between each retrained trial's search score and its retrained test
    accuracy (the first seed's run), over every arm's retrained best trials; ``None`` with fewer than 3."""
    from scipy import stats

    pairs = []
    retrained = runs[runs["role"].isin([Role.SEARCH_BEST, Role.SEARCH_TOP])] if len(runs) else runs
    for arm, rec in records.items():
        for top in rec.get("top", []):
            row = retrained[(retrained["arm"] == arm) & (retrained["rank"] == top["rank"])]
            if len(row):
                pairs.append((top["value"], float(row.sort_values("seed")["test_acc"].iloc[0])))
    if len(pairs) < 3:
        return None
    scores, accuracies = zip(*pairs)
    if len(set(scores)) == 1 or len(set(accuracies)) == 1:  # every score (or accuracy) alike: no ranking
        return {"rho": None, "p": None, "n": len(pairs), "pairs": pairs}
    test = stats.spearmanr(scores, accuracies)
    return {"rho": float(test.statistic), "p": float(test.pvalue), "n": len(pairs), "pairs": pairs}


def search_warnings(records: dict[str, dict[str, Any]]) -> list[str]:
    """A warning for each search arm in which fewer than half of the trials completed."""
    out = []
    for arm, rec in records.items():
        complete = sum(t["value"] is not None for t in rec["trials"])
        if complete < len(rec["trials"]) / 2:
            out.append(
                f"**Warning: only {complete} of {len(rec['trials'])} trials of the {arm} search completed**, "
                "so it barely searched; use fewer epochs per trial, more trials, or no trial stopper."
            )
    return out


def revisions(r: _Report) -> dict[str, int]:
    """Code revision -> how many of the study's stages started on it (from each ``stage.json``)."""
    counts: dict[str, int] = {}
    for s in [*r.stages, r.ctx.stage]:  # every stage before the report, and the report
        started = StageFolder(r.ctx.dir_of(s.id))
        rev = started.read_started().get("revision", "not recorded") if started.is_stage() else "not recorded"
        counts[rev] = counts.get(rev, 0) + 1
    return counts


def wall_time(r: _Report) -> dict[str, Any] | None:
    """This invocation's estimated and actual wall time up to the report (from ``estimate.json``, written
    when it started), or ``None`` when it did not estimate (a report run on its own)."""

    path = StudyFolder(r.out).estimate
    if not path.is_file():
        return None
    est = read_json(path, "run estimate")
    start = est.get("starts", {}).get("report")
    if start is None:
        return None
    actual = r.began - est["started_at"]
    off = actual / start - 1 if start > 0 else 0.0
    sentence = (
        f"Wall time: this run of {est['todo']} stages was estimated at {clock(start)} before the report and took "
        f"{clock(actual)} ({off:+.0%}); the estimate's basis: {est['basis']}, calibrated in "
        f"{est['calibration_s']:.0f}s before the first stage."
    )
    return {"estimated_s": round(start, 1), "actual_s": round(actual, 1), "error": round(off, 3), "sentence": sentence}


def _provenance(r: _Report) -> list[str]:
    prov = provenance(r.ctx.services.device)
    st, rc = r.study, r.recipe
    revs = revisions(r)
    lines = [
        "## Provenance",
        "",
        f"Study `{st.study.name}`, seeds {st.study.seeds}, recipe `{st.train.recipe}` "
        f"({rc.epochs} epochs, batch {rc.batch_size}, lr {rc.lr}); {len(r.runs)} training runs, "
        f"{_train_seconds(r) / 60:.1f} min of training. guided {prov['guided']}, torch {prov['torch']}, "
        f"{prov['device']}, python {prov['python']}. Code revisions the stages started on: "
        + ", ".join(f"`{rev}` ({n} stages)" for rev, n in revs.items())
        + ". Stage records and runs: `stages/`; every training run with its wall time: `runs.csv`; the datasets' "
        "image counts and content hashes: `summary.json`.",
        "",
    ]
    timing = wall_time(r)
    if timing:
        lines += [timing["sentence"], ""]
    if len(revs) > 1:
        lines += [
            f"**Warning: the stages ran on {len(revs)} different code revisions**, so these results mix code "
            "versions; for one revision, run the study again into a new folder.",
            "",
        ]
    return lines


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
        bases = {"sparse": ", slimming-penalty base", "gated": ", gated base"}
        methods = ", ".join(
            f"{p.name} ({p.method}, {f'preset {p.preset}' if p.preset else f'ratio {p.ratio}'}"
            + (f", channels ranked per unit of {p.cost}" if p.cost else "")
            + (f", every layer keeping at least {p.min_keep:.0%}" if p.min_keep else "")
            + (", residual widths pruned as coupled groups" if p.coupled else "")
            + bases.get(p.base, "")
            + ")"
            for p in study.prune
        )
        lines.append(f"Pruning: {methods}.")
    if study.design:
        lines.append(
            f"Designs follow the {', '.join(f'`{n}`' for n in study.design.pattern_names())} pattern(s) at budgets "
            f"{', '.join(study.design.budget_list())} "
            "(percentages of each full-width model's parameters or MACs)."
        )
    for t in study.transfer:
        data = svc.data(t.data(study.data)).describe()
        lines.append(f"Transfer `{t.name}`: {t.arch} x{t.width_mult} on {data}.")
    lines.append("The study file is `study.toml`.")
    return " ".join(lines)
