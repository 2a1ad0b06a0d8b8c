"""What each kind of study stage does: one action per kind (`ACTIONS`), each a call of the library
(`guided.operations`, `guided.training.retrain`, `search`) with what the stage's recorded config says, so that a
stage runs from its config alone and what is fingerprinted is what runs. The plan that gives every stage
its config is `guided.pipeline.stages`; `train_group` trains the stages of one seed group together.
"""

from __future__ import annotations

from typing import Any

from guided.operations import design_to, prune_run, train_run, train_runs_together
from guided.pipeline.report import write_report
from guided.pipeline.roles import SEARCH_ARMS
from guided.pipeline.runner import StageContext
from guided.shapes.patterns import Pattern, summarize
from guided.storage.folders import PrunedFolder, RunFolder, SearchFolder, StageFolder
from guided.storage.io import read_spec, write_json
from guided.storage.provenance import device_name
from guided.timing import threads
from guided.timing.speed import STAGE_WAIT_S, condition_note, inference_throughput
from guided.training.data import subsample, validation_split
from guided.training.recipes import Recipe
from guided.training.retrain import retrain
from guided.training.train import resolve_precision
from models import ArchSpec
from search import run_search

__all__ = ["ACTIONS", "READS_WEIGHTS", "train_group"]


def _quiet(ctx: StageContext):
    return lambda line: ctx.log(f"      {line}")


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("test_acc", "params", "macs", "epochs", "wall_time_s", "train_images_per_s", "mode", "group_size")
    return {k: result[k] for k in keys if k in result}


def _read_spec(ctx: StageContext, where: dict[str, str]) -> ArchSpec:
    """The architecture another stage wrote: a design's ``arm:<name>``, a ``pruned`` model, a search's
    ``top:<rank>`` trial."""
    folder, read = ctx.dir_of(where["stage"]), where["read"]
    if read == "pruned":
        return PrunedFolder(folder).read_spec()
    if read.startswith("top:"):
        return read_spec(SearchFolder(folder).top(int(read[4:])))
    return read_spec(StageFolder(folder).arm(read.removeprefix("arm:")))


def _data_of(ctx: StageContext, config: dict[str, Any]):
    """A training stage's data: the configured dataset, or for a population's proxy score (``proxy``) part of
    its training split, scored on a validation share of it, as search trials are."""
    data = ctx.services.data(config["data"])
    proxy = config.get("proxy")
    if proxy:
        data = validation_split(data, proxy["validation"], seed=proxy["seed"])
        if proxy["train_subset"] is not None:
            data = subsample(data, train=proxy["train_subset"], seed=proxy["seed"])
    return data


def _train(ctx: StageContext) -> dict[str, Any]:
    """Train a base (plain, sparse or gated) or a designed, pruned, searched or population architecture from
    scratch, or score one by a proxy."""
    done = RunFolder(ctx.dir).finished()
    if done:
        return _brief(done)
    config = dict(ctx.stage.config)
    if "stage" in config["spec"]:
        config["spec"] = _read_spec(ctx, config["spec"]).to_dict()
    svc = ctx.services
    result = train_run(config, ctx.dir, data=_data_of(ctx, config), device=svc.device, log=_quiet(ctx))
    return _brief(result)


def train_group(ctxs: list[StageContext]) -> list[dict[str, Any]]:
    """Train stages of one seed group together (`guided.operations.train_runs_together`)."""
    configs = []
    for ctx in ctxs:
        config = dict(ctx.stage.config)
        if "stage" in config["spec"]:
            config["spec"] = _read_spec(ctx, config["spec"]).to_dict()
        configs.append(config)
    svc = ctxs[0].services
    results = train_runs_together(
        configs,
        [ctx.dir for ctx in ctxs],
        data=_data_of(ctxs[0], configs[0]),
        device=svc.device,
        log=_quiet(ctxs[0]),
    )
    return [_brief(r) for r in results]


def _retrain(ctx: StageContext) -> dict[str, Any]:
    """Fine-tune the pruned model of the stage it needs, or train its architecture from scratch."""

    done = RunFolder(ctx.dir).finished()
    if done:
        return _brief(done)
    cfg, svc = ctx.stage.config, ctx.services
    result = retrain(
        ctx.dir_of(ctx.stage.needs[0]),
        cfg["mode"],
        svc.data(cfg["data"]),
        Recipe.from_dict(cfg["recipe"]),
        out_dir=ctx.dir,
        seed=cfg["seed"],
        device=svc.device,
        resume=RunFolder(ctx.dir).checkpoint.exists(),
        precision=cfg["precision"],
        log=_quiet(ctx),
    )
    return _brief(result)


def _prune(ctx: StageContext) -> dict[str, Any]:
    """Prune the base it needs as its ``[[prune]]`` entry says, or with the ratio that just fits ``budget``."""
    cfg, svc = ctx.stage.config, ctx.services
    budget = svc.budget_from(cfg["budget"]) if cfg.get("budget") else None
    table = svc.latency_table(cfg["latency_batch"]) if cfg.get("cost") == "latency" else None
    options = {k: cfg.get(k) for k in ("ratio", "preset", "allocation", "samples", "cost", "min_keep", "coupled")}
    result = prune_run(
        ctx.dir,
        cfg["method"],
        checkpoint=ctx.dir_of(ctx.stage.needs[0]),
        data=svc.data(cfg["data"]),
        seed=cfg["seed"],
        budget=budget,
        latency=table,
        device=svc.device,
        **options,
    )
    keys = ("method", "params_after", "macs_after", "params_before", "macs_before")
    return {**{k: result.info[k] for k in keys}, **({"ratio": result.info["ratio"]} if budget else {})}


def _pattern(ctx: StageContext) -> dict[str, Any]:
    """Summarise the seeds' pruned folders: kept channels per stage, or (weight methods) weight density."""
    pattern = summarize([ctx.dir_of(n) for n in ctx.stage.needs], relative_to=ctx.out)
    pattern.write(StageFolder(ctx.dir).pattern)
    return {"stages": [round(r, 4) for r in pattern.stage_ratios()]}


def _design(ctx: StageContext) -> dict[str, Any]:
    """Design each arm at the budget: ``uniform``, or from the pattern stage its config names for it
    (``-per-layer`` arms read their base arm's pattern; ``transferred`` arms follow the stage map)."""
    cfg = ctx.stage.config
    target, budget = ArchSpec.from_dict(cfg["target"]), ctx.services.budget_from(cfg["budget"])
    patterns = {arm: Pattern.read(StageFolder(ctx.dir_of(stage)).pattern) for arm, stage in cfg["patterns"].items()}
    record = {}
    for arm in cfg["arms"]:
        base = arm.removesuffix("-per-layer")
        _, record[arm] = design_to(
            StageFolder(ctx.dir).arm(arm),
            target,
            budget,
            pattern=patterns.get(base),
            per_layer=arm.endswith("-per-layer"),
            stage_map=cfg.get("stage_map") if base.startswith("transferred") else None,
            multiple_of=cfg["multiple_of"],
        )
    return record


def _search(ctx: StageContext) -> dict[str, Any]:
    """Search, with the seed designs (the guided and the uniform design) enqueued first when it has them."""

    cfg, svc = ctx.stage.config, ctx.services
    data = validation_split(svc.data(cfg["data"]), cfg["validation"], seed=cfg["seed"])
    if cfg["train_subset"] is not None:  # cheaper trials: fewer training images, the same validation images
        data = subsample(data, train=cfg["train_subset"], seed=cfg["seed"])
    seeds = [read_spec(StageFolder(ctx.dir_of(stage)).arm(arm)) for stage, arm in cfg["seed_designs"]]
    summary = run_search(
        ArchSpec.from_dict(cfg["target"]),
        svc.budget_from(cfg["budget"]),
        data,
        Recipe.from_dict(cfg["recipe"]),
        trials=cfg["trials"],
        out_dir=ctx.dir,
        pruner=cfg["pruner"],
        sampler=SEARCH_ARMS[cfg["arm"]].sampler,
        seed_designs=seeds,
        study_name=SEARCH_ARMS[cfg["arm"]].label,
        seed=cfg["seed"],
        device=svc.device,
        precision=cfg["precision"],
        log=_quiet(ctx),
    )
    return {"best": summary["best"][0], "top": summary["top"], "trials": summary["history"]}


def _speed(ctx: StageContext) -> dict[str, Any]:
    """Time inference of each distinct from-scratch architecture (batch 256, median of 5 timed passes after 2
    warm-up passes, the study's device and precision, every core: this stage runs alone), and predict the
    training step of the runs at latency budgets from the study's table; writes ``speed.json``."""

    cfg, svc = ctx.stage.config, ctx.services
    precision = resolve_precision(cfg["precision"], svc.device)
    measured: dict[str, dict[str, Any]] = {}
    runs = {}
    waited = 0.0  # one short wait for a quiet machine per stage, not per architecture
    with threads.all_cores():
        for run in cfg["runs"]:
            spec = RunFolder(ctx.dir_of(run)).read_spec()
            key = spec.to_json()
            if key not in measured:
                wait = max(0.0, STAGE_WAIT_S - waited)
                measured[key] = inference_throughput(spec, svc.device, precision=precision, wait_s=wait)
                waited += measured[key]["condition"]["waited_s"]
            m = measured[key]
            runs[run] = {"images_per_s": round(m["images_per_s"], 1), "condition": condition_note(m["condition"])}
    if cfg["latency_runs"]:
        table = svc.latency_table(cfg["latency_batch"])
        for run in cfg["latency_runs"]:
            runs[run]["predicted_step_ms"] = 1000 * table.predict(RunFolder(ctx.dir_of(run)).read_spec())
    record = {"device": device_name(svc.device), "precision": precision, "runs": runs}
    write_json(StageFolder(ctx.dir).speed, record)
    return {"device": record["device"], "architectures": len(measured)}


def _report(ctx: StageContext) -> dict[str, Any]:
    svc = ctx.services
    return write_report(svc.study, svc.study.recipe(), [s for s in svc.stages if s.id != ctx.stage.id], ctx)


#: What each kind of stage does (`guided.pipeline.stages` gives each stage its kind's action).
#: The stage kinds whose actions read the weights of the stages they need (a base's, a pruned model's);
#: the others read records and architectures only.
READS_WEIGHTS = ("prune", "retrain")

ACTIONS = {
    "train": _train,
    "retrain": _retrain,
    "prune": _prune,
    "pattern": _pattern,
    "design": _design,
    "search": _search,
    "speed": _speed,
    "report": _report,
}
