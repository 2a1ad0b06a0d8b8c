"""The report's population section: where each arm at the population's budget sits among the population's
shapes (`guided.shapes.population`), what each stage's width share says about accuracy there, and how well each
proxy ranks the shapes. Read back from the stages' records, like the rest of the report."""

from __future__ import annotations

from typing import Any

import pandas as pd

from guided.pipeline.config import model_spec, slug
from guided.pipeline.roles import ARM_ROLES, Role, arm_label
from guided.reporting.plots import draw_population_edf, draw_population_stages
from guided.shapes.population import analyse, stage_shares
from models import ArchSpec

__all__ = ["population_section", "population_data", "EDF_FIGURE", "STAGES_FIGURE"]

EDF_FIGURE = "population-edf"
STAGES_FIGURE = "population-stages"


def population_data(stages: list[Any], runs: pd.DataFrame, target: ArchSpec, budget: str) -> dict[str, Any] | None:
    """The population's analysis (`guided.shapes.population.analyse`) from the study's stages and runs table: the
    shapes' stage shares and accuracies, every arm trained at ``budget`` (designs by arm, search bests as
    ``search-{arm}``), and each proxy's scores, paired by shape. ``None`` without finished population runs."""
    if not len(runs) or "role" not in runs:
        return None
    pop = runs[runs["role"] == Role.POPULATION].sort_values("shape")
    if not len(pop):
        return None
    spec_of = {s.id: ArchSpec.from_dict(s.config["spec"]) for s in stages if s.tags.role == Role.POPULATION}
    shares = [list(stage_shares(spec_of[sid], target)) for sid in pop["stage"]]
    accuracy = [float(a) for a in pop["test_acc"]]
    at = runs[(runs["budget"] == budget) & runs["role"].isin(ARM_ROLES)] if "budget" in runs else runs[:0]
    at = at[at["domain"] == "source"] if "domain" in at else at
    arms: dict[str, list[float]] = {}
    for _, row in at.iterrows():
        name = arm_label(row["role"], row["arm"])
        arms.setdefault(name, []).append(float(row["test_acc"]))
    proxies: dict[str, list[float]] = {}
    scored = runs[runs["role"] == Role.POPULATION_PROXY]
    shapes = list(pop["shape"])
    for name in dict.fromkeys(scored["proxy"]) if len(scored) else []:
        by_shape = dict(zip(scored[scored["proxy"] == name]["shape"], scored[scored["proxy"] == name]["test_acc"]))
        if all(s in by_shape for s in shapes):
            proxies[name] = [float(by_shape[s]) for s in shapes]
    out = analyse(shares, accuracy, arms=arms, proxies=proxies)
    return {**out, "budget": budget, "shares": shares, "accuracies": accuracy}


def summary_record(data: dict[str, Any], first_proxy: str | None) -> dict[str, Any]:
    """What ``summary.json`` keeps of a population: budget, size, each arm's mean and percentile, the stages,
    the first proxy (the reference evaluator) as ``proxy`` and every proxy under ``proxies``."""

    def rank(d: dict[str, Any]) -> dict[str, Any]:
        return {"spearman": d["rho"], "p": d["p"], "low": d["low"], "high": d["high"], "n": d["n"]}

    proxies = {name: rank(d) for name, d in data["proxies"].items()}
    return {
        "budget": data["budget"],
        "n": data["n"],
        "accuracy": data["accuracy"],
        "arms": data["arms"],
        "stages": data["stages"],
        "proxy": {"name": first_proxy, **proxies[first_proxy]} if first_proxy in proxies else None,
        "proxies": proxies,
        "contrasts": data.get("contrasts", []),
    }


def population_section(r) -> list[str]:
    """The population section of report ``r`` (`guided.pipeline.report._Report`); sets ``r.population``."""
    q = r.study.population
    if q is None:
        return []
    study = r.study
    target = model_spec(study.model.arch, study.model.width_mult, study.model.head, r.ctx.services.shape(study.data))
    data = population_data(r.stages, r.runs, target, q.budget)
    if data is None:
        return []
    first = q.proxies[0].name if q.proxies else None
    r.population = summary_record(data, first)
    b = slug(q.budget)
    lines = [
        f"## Population: where the arms sit among {data['n']} shapes at {q.budget}",
        "",
        f"{data['n']} width shapes of {target.name}: each design-pattern stage's keep ratio drawn log-uniformly in "
        f"[{q.ratio_range[0]}, {q.ratio_range[1]}] (seed {q.seed}), every shape solved to {q.budget} within 1% by "
        "the designs' solver and trained once from scratch with the study's recipe and first seed "
        f"({r.study.study.seeds[0]}, whose data order the arms' first runs share). " + _spread(data["accuracy"]),
        "",
        r.table(f"population-arms-{b}", _arms_table(data["arms"])),
        "",
        "Percentile: the share of the population below the arm's mean (ties half), and below the ends of its 95% "
        "interval over seeds.",
        "",
    ]
    labels = list(data["arms"])
    colours = r.colours_for(EDF_FIGURE, labels)
    title = f"{target.name} at {q.budget}: {data['n']} shapes"
    draw_population_edf(data["accuracies"], data["arms"], r.figure(f"{EDF_FIGURE}.png"), colours=colours, title=title)
    draw_population_stages(data["shares"], data["accuracies"], data["stages"], r.figure(f"{STAGES_FIGURE}.png"))
    lines += [f"![accuracy EDF](figures/{EDF_FIGURE}.png)", "", r.table(f"population-stages-{b}", _stages_table(data))]
    lines += ["", _stage_words(data["stages"]), "", f"![width share against accuracy](figures/{STAGES_FIGURE}.png)", ""]
    if data["proxies"]:
        lines += [r.table(f"population-proxies-{b}", _proxies_table(q, data["proxies"], data["contrasts"])), ""]
        lines += [_contrast_words(data["contrasts"]), ""] if data["contrasts"] else []
    return lines


def _contrast_words(contrasts: list[dict[str, Any]]) -> str:
    """One sentence per proxy against the first (the reference evaluator): better, clearly or not."""
    said = []
    for c in contrasts:
        if c["low"] is None:
            said.append(f"{c['proxy']} against {c['against']}: no contrast (a constant score)")
            continue
        verdict = "clearly better" if c["clearly_better"] else "not clearly better"
        said.append(
            f"{c['proxy']} against {c['against']}: {c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], "
            f"{verdict}"
        )
    return (
        "Difference of Spearman rho to the first proxy (the reference evaluator), with a 95% paired bootstrap "
        "interval over shapes; an evaluator is clearly better when the interval lies above zero: "
        + "; ".join(said)
        + "."
    )


def _spread(acc: dict[str, Any]) -> str:
    std = "" if acc["std"] is None else f" +- {100 * acc['std']:.2f}"
    return (
        f"Their test accuracy: {100 * acc['mean']:.2f}{std}% (median {100 * acc['median']:.2f}%, range "
        f"{100 * acc['min']:.2f}-{100 * acc['max']:.2f}%)."
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _arms_table(arms: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for arm, a in arms.items():
        interval = "" if a["low"] is None else f" [{100 * a['low']:.2f}, {100 * a['high']:.2f}]"
        rows.append(
            {
                "arm": arm,
                "seeds": a["seeds"],
                "mean accuracy (%) [95% CI]": f"{100 * a['mean']:.2f}{interval}",
                "percentile": f"{a['percentile']:.0f}",
                "at the CI's ends": f"{_pct(a['percentile_low'])}-{_pct(a['percentile_high'])}",
            }
        )
    return pd.DataFrame(rows)


def _rho_cell(d: dict[str, Any]) -> str:
    if d["rho"] is None:
        return "n/a"
    interval = "" if d["low"] is None else f" [{d['low']:+.2f}, {d['high']:+.2f}]"
    return f"{d['rho']:+.2f}{interval}"


def _stages_table(data: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for row in data["stages"]:
        good = row["good"]
        rows.append(
            {
                "stage": row["stage"] + 1,
                "mean width share": f"{row['share_mean']:.3f}",
                "Spearman rho [95% CI]": _rho_cell(row),
                "p": "-" if row["p"] is None else f"{row['p']:.3g}",
                "good range (best)": "-"
                if good is None
                else f"{good['low']:.3f}-{good['high']:.3f} ({good['best']:.3f})",
            }
        )
    return pd.DataFrame(rows)


def _good_cell(good: dict[str, float]) -> str:
    return f"{good['low']:.3f}-{good['high']:.3f} ({good['best']:.3f})"


def _stage_words(stages: list[dict[str, Any]]) -> str:
    """Which stages' widths go with accuracy at this budget (p < 0.05, unadjusted), in words."""
    pays = [f"stage {s['stage'] + 1} ({s['rho']:+.2f})" for s in stages if s["p"] is not None and s["p"] < 0.05]
    if not pays:
        return (
            "No stage's width share correlates with accuracy at p < 0.05 (unadjusted): at this budget and "
            "population size, where width goes does not show in accuracy."
        )
    return (
        "Width shares that correlate with accuracy at p < 0.05 (unadjusted, one test per stage): "
        + ", ".join(pays)
        + ". A positive rho: shapes wider there (and so narrower elsewhere, at equal cost) do better. The good "
        "range is where the best shapes of bootstrap samples of a quarter of the population put the stage."
    )


def _proxies_table(q, proxies: dict[str, dict[str, Any]], contrasts: list[dict[str, Any]]) -> pd.DataFrame:
    by_name = {p.name: p for p in q.proxies}
    against = {c["proxy"]: c for c in contrasts}
    rows = []
    for name, d in proxies.items():
        p, c = by_name.get(name), against.get(name)
        rows.append(
            {
                "proxy": name,
                "epochs": p.epochs if p else "",
                "training images": (p.train_subset or "all but validation") if p else "",
                "Spearman rho with accuracy [95% CI]": _rho_cell(d),
                "p": "-" if d["p"] is None else f"{d['p']:.3g}",
                "vs first [95% CI]": _contrast_cell(c),
                "shapes": d["n"],
            }
        )
    return pd.DataFrame(rows)


def _contrast_cell(c: dict[str, Any] | None) -> str:
    if c is None or c["low"] is None:
        return "-"
    return f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"
