"""A study's stages: the library calls the other modules built, in order, each with its inputs.

For the source model, and for each ``[[transfer]]`` target (a *domain*: a model on a dataset):

1. ``base-{plain|sparse}-s{seed}``: train the full-width model (``sparse``: with the slimming penalty);
2. ``prune-{name}-s{seed}``: prune each base with every ``[[prune]]`` method (targets: only the design's
   pattern method, when ``own_pattern``), then ``{name}-{mode}-s{seed}``: fine-tune / Scratch-E / Scratch-B
   / lottery retraining where asked;
3. ``pattern-{name}``: the per-stage channel pattern over seeds;
4. ``design-{budget}``: uniform and guided (targets: transferred, and guided from their own pattern)
   architectures at each budget, and ``{budget}-pruned-s{seed}``: each base pruned to the budget;
5. ``{budget}-{arm}-s{seed}``: every design trained from scratch with the study's recipe;

then ``search/{cold|seeded|random}`` (Optuna width search on the source at one budget, on a validation split)
and ``search/{arm}-best-s{seed}`` (its best spec retrained like the designs), and ``report``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guided.data import ImageData, load_dataset, subsample, validation_split
from guided.design import Budget, design
from guided.errors import UserError
from guided.hooks import BatchNormL1, GateSparsity
from guided.io import read_json, read_spec, write_json, write_spec
from guided.pipeline.config import DataConfig, PruneConfig, Study, resolve_budget, slug
from guided.pipeline.report import write_report
from guided.pipeline.runner import Stage, StageContext
from guided.provenance import resolve_device
from guided.recipes import Recipe, get_recipe
from models import ArchSpec, build, cost, create_spec

__all__ = ["Services", "Domain", "plan", "plan_study", "check_fits", "load_data", "SOURCE"]

SOURCE = "source"


def load_data(cfg: DataConfig, seed: int = 0) -> ImageData:
    """The configured dataset, subsampled with a fixed seed (the same images for every run)."""
    name = cfg.dataset
    if name.startswith("imagefolder:"):
        name = "imagefolder:" + str(Path(name.split(":", 1)[1]).expanduser())
    data = load_dataset(name, root=cfg.data_root, size=cfg.image_size)
    return subsample(data, train=cfg.train_subset, test=cfg.test_subset, seed=seed)


def finished(run_dir: Path) -> dict | None:
    """A training run's result.json if it finished, else None."""
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Services:
    """Shared by every stage of one invocation: datasets (loaded once), device, precision."""

    def __init__(self, study: Study, out: Path | None = None):
        self.study, self.out = study, out
        self.device = resolve_device(study.study.device)
        self.precision = study.study.precision
        self._data: dict[DataConfig, ImageData] = {}
        self._tables: dict[int, Any] = {}

    def data(self, cfg: DataConfig) -> ImageData:
        """The configured dataset (subsampled as configured), loaded once."""
        if cfg not in self._data:
            self._data[cfg] = load_data(cfg)
        return self._data[cfg]

    def budget(self, text: str, spec: ArchSpec, batch_size: int) -> Budget:
        """One of the study's budgets on ``spec``. A ``latency`` budget is predicted by this device's
        per-layer table at the training batch size, timed with one thread on a CPU (what each run gets
        beside others, whatever ``--jobs`` is) and kept in the study folder (``latency/``), so that every
        process of the study, and a later ``--resume``, solves widths against the same numbers. Every width
        up to twice ``spec``'s is timed here, while planning, so the stages that solve widths time nothing."""
        if text.partition("=")[0].strip().lower() != "latency":
            return resolve_budget(text, spec)
        table = self.latency_table(batch_size)
        table.prepare(spec, headroom=2, log=lambda line: print(line, file=sys.stderr, flush=True))
        return resolve_budget(text, spec, table)

    def latency_table(self, batch_size: int):
        """This device's per-layer latency table at ``batch_size`` (one thread on a CPU; see `budget`), kept
        in the study folder (else in the user's cache, `guided.latency.default_cache`)."""
        from guided.latency import LatencyTable, default_cache

        if batch_size not in self._tables:
            cache = self.out / "latency" if self.out is not None else default_cache()
            self._tables[batch_size] = LatencyTable(self.device, batch_size=batch_size, cache=cache, threads=1)
        return self._tables[batch_size]


@dataclass(frozen=True)
class Domain:
    """A model on a dataset: the source, or a transfer target."""

    name: str
    data: DataConfig
    spec: ArchSpec
    prune: tuple[PruneConfig, ...]
    train_images: int
    test_images: int


def check_fits(study: Study, services: Services) -> None:
    """Refuse, before anything is created, a batch larger than a dataset's training images (the search's
    trial split included): it reads each configured dataset once (kept by ``services`` for planning)."""
    batch = _recipe(study).batch_size
    for where, cfg in [
        ("[data]", study.data),
        *((f"[[transfer]] {t.name!r}", t.data(study.data)) for t in study.transfer),
    ]:
        images = len(services.data(cfg).train)
        if batch > images:
            raise UserError(
                f"[train] batch_size {batch} exceeds the {images} training images of {where} ({cfg.dataset}); "
                "lower batch_size or use more images"
            )
    q = study.search
    if q is not None:
        images = len(services.data(study.data).train)
        trial_images = min(q.train_subset or images, images - round(q.validation * images))
        if batch > trial_images:
            raise UserError(
                f"[train] batch_size {batch} exceeds the {trial_images} images a [search] trial trains on; lower "
                "batch_size, or raise train_subset or lower validation"
            )


def _recipe(study: Study) -> Recipe:
    return get_recipe(study.train.recipe).override(
        epochs=study.train.epochs, batch_size=study.train.batch_size, lr=study.train.lr
    )


def plan_study(study: Study, out: Path | None = None) -> tuple[list[Stage], Services]:
    """The study's stages, and the services they share (loading its datasets once, to size the models;
    timing the latency table a ``latency=`` budget needs, kept in the study folder ``out``)."""
    services = Services(study, out)
    return plan(study, services), services


def plan(study: Study, services: Services) -> list[Stage]:
    """Every stage of ``study``, in an order where each stage comes after what it reads."""
    recipe = _recipe(study)
    source = _domain(SOURCE, study.data, study.model.arch, study.model.width_mult, study.model.head, services)
    source = dataclasses.replace(source, prune=tuple(study.prune))
    stages: list[Stage] = []
    build_ = _Builder(study, services, recipe, stages)
    build_.domain(source)
    for t in study.transfer:
        dom = _domain(t.name, t.data(study.data), t.arch, t.width_mult, t.head, services)
        own = tuple(
            dataclasses.replace(p, retrain=[])
            for p in study.prune
            if p.name in study.design.pattern_names() and t.own_pattern
        )
        build_.domain(dataclasses.replace(dom, prune=own), transfer=t)
    if study.search:
        build_.search(source)
    needs = tuple(s.id for s in stages)
    report = _report_action(study, recipe, list(stages))
    stages.append(
        Stage(
            "report",
            "report",
            {"title": study.report.title},
            report,
            needs,
            tags={"role": "report"},
            work=_report_work(stages),
        )
    )
    return stages


def _domain(name: str, data_cfg: DataConfig, arch: str, width_mult: float, head, services: Services) -> Domain:
    data = services.data(data_cfg)
    spec = create_spec(
        arch,
        num_classes=data.num_classes,
        width_mult=width_mult,
        head=head,
        input_size=data.input_size,
        in_channels=data.in_channels,
    )
    return Domain(name, data_cfg, spec, (), len(data.train), len(data.test))


class _Builder:
    """Appends stages; keeps the ids of what later stages need."""

    def __init__(self, study: Study, services: Services, recipe: Recipe, stages: list[Stage]):
        self.study, self.services, self.recipe, self.stages = study, services, recipe, stages
        self.seeds = study.study.seeds
        self.patterns: dict[tuple[str, str], str] = {}  # (domain, [[prune]] name) -> pattern stage id

    def add(self, stage: Stage) -> str:
        self.stages.append(stage)
        return stage.id

    def train_config(self, dom: Domain, spec: ArchSpec, seed: int, recipe: Recipe, **extra) -> dict[str, Any]:
        return {
            "spec": spec.to_dict(),
            "data": dataclasses.asdict(dom.data),
            "recipe": recipe.to_dict(),
            "seed": seed,
            "precision": self.study.study.precision,
            **extra,
        }

    def train_work(self, dom: Domain, spec: ArchSpec, epochs: int) -> dict[str, Any]:
        """What a training stage computes, for time estimates (`guided.pipeline.estimate`)."""
        b = self.recipe.batch_size
        return {
            "kind": "train",
            "spec": spec,
            "train": dom.train_images,
            "test": dom.test_images,
            "epochs": epochs,
            "batch": b,
        }

    def retrain_work(self, dom: Domain, p: PruneConfig, mode: str) -> dict[str, Any]:
        """A retraining's work: the pruned network's shape (structured: the uniform design of the kept
        share's MACs) and epochs (fine-tuning's, the source's, or Scratch-B's compute-matched count)."""
        from guided.recipes import scratch_epochs

        full = float(cost(dom.spec).macs)
        kept = full * _kept_fraction(p) ** (2 if p.unit == "channels" else 1)
        spec = design(dom.spec, Budget("macs", kept)) if p.unit == "channels" else dom.spec
        if mode == "finetune":
            epochs = self.recipe.finetune_epochs
        else:
            epochs = scratch_epochs("scratch-e" if mode == "lottery" else mode, self.recipe.epochs, full, kept)
        return self.train_work(dom, spec, epochs)

    def training_macs(self, dom: Domain, spec: ArchSpec, epochs: int) -> float:
        """Forward and backward (3x) over the train split and a forward over the test split, per epoch."""
        return float(cost(spec).macs) * (3 * dom.train_images + dom.test_images) * epochs

    # ------------------------------------------------------------------ one domain
    def domain(self, dom: Domain, transfer=None) -> None:
        st = self.study
        kinds = sorted({p.base for p in dom.prune}) if dom.prune else []
        bases: dict[tuple[str, int], str] = {}
        for seed in self.seeds:
            for kind in kinds:
                penalty = {"sparse": st.train.sparsity_l1, "gated": st.train.sparsity_gates}.get(kind)
                spec = dom.spec.replace(gated=True) if kind == "gated" else dom.spec
                extra = {"sparsity_gates" if kind == "gated" else "sparsity_l1": penalty}
                bases[kind, seed] = self.add(
                    Stage(
                        f"{dom.name}/base-{kind}-s{seed}",
                        "train",
                        self.train_config(dom, spec, seed, self.recipe, **extra, save_init=True),
                        _train_action(dom.data, self.recipe, seed, kind, penalty),
                        macs=self.training_macs(dom, dom.spec, self.recipe.epochs),
                        tags={"domain": dom.name, "role": "base", "kind": kind, "seed": seed},
                        work=self.train_work(dom, spec, self.recipe.epochs),
                    )
                )
        pruned: dict[str, list[str]] = {}
        for p in dom.prune:
            for seed in self.seeds:
                base = bases[p.base, seed]
                pid = self.add(
                    Stage(
                        f"{dom.name}/prune-{p.name}-s{seed}",
                        "prune",
                        {**dataclasses.asdict(p), "retrain": None, "seed": seed},
                        _prune_action(dom.data, p, base, seed),
                        (base,),
                        tags={"domain": dom.name, "role": "prune", "prune": p.name, "seed": seed},
                        work=_prune_work(dom, p, seed),
                    )
                )
                pruned.setdefault(p.name, []).append(pid)
                for mode in p.retrain:
                    epochs = self.recipe.finetune_epochs if mode == "finetune" else self.recipe.epochs
                    self.add(
                        Stage(
                            f"{dom.name}/{p.name}-{mode}-s{seed}",
                            "train",
                            {"mode": mode, "seed": seed, "recipe": self.recipe.to_dict()},
                            _retrain_action(dom.data, self.recipe, mode, pid, seed),
                            (pid,),
                            macs=self.training_macs(dom, dom.spec, epochs) * _kept_fraction(p) ** 2,
                            tags={"domain": dom.name, "role": "retrain", "prune": p.name, "mode": mode, "seed": seed},
                            work=self.retrain_work(dom, p, mode),
                        )
                    )
            if p.unit == "blocks":  # removed blocks make no per-stage pattern
                continue
            self.add(
                Stage(
                    f"{dom.name}/pattern-{p.name}",
                    "pattern",
                    {"method": p.method, "ratio": p.ratio, "preset": p.preset, "source": dom.spec.name},
                    _pattern_action(p, dom),
                    tuple(pruned[p.name]),
                    tags={"domain": dom.name, "role": "pattern", "prune": p.name, "unit": p.unit},
                )
            )
            if st.design and p.name in st.design.pattern_names():
                self.patterns[dom.name, p.name] = f"{dom.name}/pattern-{p.name}"
        if st.design:
            self.designs(dom, bases, transfer)

    def designs(self, dom: Domain, bases: dict[tuple[str, int], str], transfer) -> None:
        d = self.study.design
        pattern_of: dict[str, str] = {}  # guided/transferred arm -> the pattern stage it reads
        name_of: dict[str, str] = {}  # ... and the pattern's name
        for name in d.pattern_names():
            if (dom.name, name) in self.patterns:
                pattern_of[d.arm("guided", name)] = self.patterns[dom.name, name]
                name_of[d.arm("guided", name)] = name
        for name in d.pattern_names():
            if transfer is not None:
                pattern_of[d.arm("transferred", name)] = self.patterns[SOURCE, name]
                name_of[d.arm("transferred", name)] = name
        arms = list(pattern_of) + [f"{a}-per-layer" for a in pattern_of if d.per_layer_for(name_of[a])]
        for budget_text in transfer.budget_list(d) if transfer else d.budget_list():
            budget = self.services.budget(budget_text, dom.spec, self.recipe.batch_size)
            b = slug(budget_text)
            common = {"target": dom.spec.to_dict(), "budget": budget.to_dict(), "multiple_of": d.multiple_of}
            tags = {"domain": dom.name, "role": "design", "budget": budget_text}
            uid = self.add(  # reads no pattern: a new pattern does not redo the uniform runs
                Stage(
                    f"{dom.name}/uniform-{b}",
                    "design",
                    {**common, "arms": ["uniform"]},
                    _design_action(dom.spec, budget, ["uniform"], {}, d.multiple_of, None),
                    tags=tags,
                )
            )
            sources: dict[str, tuple[str, Callable[[StageContext], ArchSpec]]] = {
                "uniform": (uid, _spec_from(uid, "uniform.json"))
            }
            if arms:
                did = self.add(
                    Stage(
                        f"{dom.name}/design-{b}",
                        "design",
                        {**common, "arms": arms, "stage_map": transfer.stage_map if transfer else None},
                        _design_action(dom.spec, budget, arms, pattern_of, d.multiple_of, transfer),
                        tuple(dict.fromkeys(pattern_of.values())),
                        tags=tags,
                    )
                )
                sources.update({arm: (did, _spec_from(did, f"{arm}.json")) for arm in arms})
            approx = design(dom.spec, budget, multiple_of=d.multiple_of)  # the uniform design's cost
            for seed in self.seeds:
                sources.update(self.pruned_to_budget(dom, bases, budget_text, seed))
                for arm, (upstream, get_spec) in sources.items():
                    self.add(
                        Stage(
                            f"{dom.name}/{b}-{arm}-s{seed}",
                            "train",
                            self.train_config(dom, dom.spec, seed, self.recipe, arm=arm, budget=budget_text),
                            _scratch_action(dom.data, self.recipe, seed, get_spec),
                            (upstream,),
                            macs=self.training_macs(dom, approx, self.recipe.epochs),
                            tags={
                                "domain": dom.name,
                                "role": "scratch",
                                "budget": budget_text,
                                "arm": arm,
                                "seed": seed,
                            },
                            work=self.train_work(dom, approx, self.recipe.epochs),
                        )
                    )

    def pruned_to_budget(self, dom: Domain, bases, budget_text: str, seed: int) -> dict[str, tuple]:
        """Each pattern's method pruning this seed's base down to the budget (where the domain has that
        pattern of its own): arm -> (prune stage, how to read its spec)."""
        d = self.study.design
        budget, b = self.services.budget(budget_text, dom.spec, self.recipe.batch_size), slug(budget_text)
        out = {}
        for name in d.pattern_names():
            if (dom.name, name) not in self.patterns or not d.pruned_for(name):
                continue
            row = next(p for p in self.study.prune if p.name == name)
            arm = d.arm("pruned", name)
            base = bases[row.base, seed]
            pid = self.add(
                Stage(
                    f"{dom.name}/prune-to-{b}-s{seed}" if arm == "pruned" else f"{dom.name}/{arm}-to-{b}-s{seed}",
                    "prune",
                    {
                        **dataclasses.asdict(row),
                        "name": None,
                        "ratio": None,
                        "retrain": None,
                        "budget": budget.to_dict(),
                        "seed": seed,
                    },
                    _prune_action(dom.data, row, base, seed, budget),
                    (base,),
                    tags={"domain": dom.name, "role": "prune-budget", "budget": budget_text, "seed": seed, "arm": arm},
                    work={**_prune_work(dom, row, seed), "budget": budget},
                )
            )
            out[arm] = (pid, _spec_from(pid, "spec.json"))
        return out

    # ------------------------------------------------------------------ search
    def search(self, source: Domain) -> None:
        q = self.study.search
        budget = self.services.budget(q.budget, source.spec, self.recipe.batch_size)
        trial_recipe = self.recipe.override(epochs=q.epochs)
        approx = design(source.spec, budget)
        guided_arm = (
            self.study.design.arm("guided", self.study.design.pattern_names()[0]) if self.study.design else None
        )
        designs = (
            (f"{SOURCE}/design-{slug(q.budget)}", guided_arm),  # the first pattern's guided design, then uniform
            (f"{SOURCE}/uniform-{slug(q.budget)}", "uniform"),
        )
        val_images = round(q.validation * source.train_images)
        trial_images = min(q.train_subset or source.train_images, source.train_images - val_images)
        trial_macs = float(cost(approx).macs) * (3 * trial_images + val_images) * q.epochs
        for arm in q.arms:
            seeded = arm == "seeded"
            sid = self.add(
                Stage(
                    f"search/{arm}",
                    "search",
                    {
                        **dataclasses.asdict(q),
                        "arms": None,
                        "arm": arm,
                        "target": source.spec.to_dict(),
                        "data": dataclasses.asdict(source.data),
                        "recipe": trial_recipe.to_dict(),
                    },
                    _search_action(source, budget, trial_recipe, q, designs if seeded else None),
                    tuple(stage for stage, _ in designs) if seeded else (),
                    macs=trial_macs * q.trials,
                    tags={"role": "search", "arm": arm, "budget": q.budget},
                    work={
                        **self.train_work(source, approx, q.epochs),
                        "kind": "search",
                        "train": trial_images,
                        "test": val_images,
                        "trials": q.trials,
                    },
                )
            )
            for seed in self.seeds:
                self.add(
                    Stage(
                        f"search/{arm}-best-s{seed}",
                        "train",
                        self.train_config(source, source.spec, seed, self.recipe, arm=f"search-{arm}"),
                        _scratch_action(source.data, self.recipe, seed, _spec_from(sid, "best.json")),
                        (sid,),
                        macs=self.training_macs(source, approx, self.recipe.epochs),
                        tags={"domain": SOURCE, "role": "search-best", "arm": arm, "budget": q.budget, "seed": seed},
                        work=self.train_work(source, approx, self.recipe.epochs),
                    )
                )


def _prune_work(dom: Domain, p: PruneConfig, seed: int) -> dict[str, Any]:
    """What a prune stage computes, for time estimates: the method on the base's shape (a latency cost is
    estimated as a MAC cost: its table is timed while planning)."""
    spec = dom.spec.replace(gated=True) if p.base == "gated" else dom.spec
    kwargs = {**p.prune_kwargs(), "seed": seed}
    if kwargs.get("cost") == "latency":
        kwargs["cost"] = "macs"
    return {"kind": "prune", "spec": spec, "method": p.method, "kwargs": kwargs, "budget": None}


def _report_work(stages: list[Stage]) -> dict[str, Any]:
    """The report's work: an inference timing per distinct from-scratch architecture (one per domain,
    budget and arm; pruned arms differ per seed) and about one figure per domain and budget."""
    scratch = [s for s in stages if s.tags.get("role") in ("scratch", "search-best")]
    distinct = {}
    for s in scratch:
        key = (s.tags.get("domain"), s.tags.get("budget"), s.tags.get("arm"))
        if str(s.tags.get("arm", "")).startswith("pruned"):
            key += (s.tags.get("seed"),)
        distinct.setdefault(key, s.work["spec"])
    budgets = {(s.tags.get("domain"), s.tags.get("budget")) for s in scratch}
    domains = {s.tags.get("domain") for s in scratch}
    patterns = sum(s.kind == "pattern" for s in stages)
    searches = any(s.kind == "search" for s in stages)
    return {
        "kind": "report",
        "specs": list(distinct.values()),
        "figures": len(budgets) + len(domains) + patterns + searches,
    }


def _kept_fraction(p: PruneConfig) -> float:
    """A rough share of channels kept, for estimates only (presets and stage ratios count as half)."""
    return 1 - p.ratio if isinstance(p.ratio, float | int) else 0.5


# ---------------------------------------------------------------------- actions
def _quiet(ctx: StageContext) -> Callable[[str], None]:
    return lambda line: ctx.log(f"      {line}")


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("test_acc", "params", "macs", "epochs", "wall_time_s", "train_images_per_s", "mode")
    return {k: result[k] for k in keys if k in result}


def _run_training(ctx: StageContext, model, data: ImageData, recipe: Recipe, seed: int, **kw) -> dict[str, Any]:
    from guided.train import train

    done = finished(ctx.dir)
    if done:
        return _brief(done)
    svc = ctx.services
    result = train(
        model,
        data,
        recipe,
        out_dir=ctx.dir,
        device=svc.device,
        seed=seed,
        resume=(ctx.dir / "checkpoint.pt").exists(),
        precision=svc.precision,
        log=_quiet(ctx),
        **kw,
    )
    return _brief(result)


def _train_action(data_cfg: DataConfig, recipe: Recipe, seed: int, kind: str, penalty: float | None):
    """Train a base: ``plain``, ``sparse`` (slimming's L1 on BN scales) or ``gated`` (SSS gate penalty)."""

    def action(ctx: StageContext) -> dict[str, Any]:
        spec = ArchSpec.from_dict(ctx.stage.config["spec"])
        hooks = [BatchNormL1(penalty)] if kind == "sparse" else [GateSparsity(penalty)] if kind == "gated" else []
        data = ctx.services.data(data_cfg)
        return _run_training(ctx, build(spec, seed=seed), data, recipe, seed, hooks=hooks, save_init=True)

    return action


def _scratch_action(data_cfg: DataConfig, recipe: Recipe, seed: int, get_spec: Callable[[StageContext], ArchSpec]):
    """Train a designed (or pruned, or searched) architecture from a fresh initialisation."""

    def action(ctx: StageContext) -> dict[str, Any]:
        from guided.retrain import fresh_init_seed

        spec = get_spec(ctx)
        write_spec(ctx.dir / "arch.json", spec)
        model = build(spec, seed=fresh_init_seed(seed))
        return _run_training(ctx, model, ctx.services.data(data_cfg), recipe, seed)

    return action


def _spec_from(stage_id: str, filename: str) -> Callable[[StageContext], ArchSpec]:
    return lambda ctx: read_spec(ctx.dir_of(stage_id) / filename)


def _prune_action(data_cfg: DataConfig, p: PruneConfig, base_id: str, seed: int, budget: Budget | None = None):
    """Prune one seed's base as ``p`` says, or (``budget``) with the ratio that just fits the budget."""

    def action(ctx: StageContext) -> dict[str, Any]:
        from guided.pruning import prune, ratio_for_budget
        from guided.retrain import save_pruned
        from guided.train import load_weights

        model = load_weights(ctx.dir_of(base_id)).to(ctx.services.device).eval()
        kwargs = {**p.prune_kwargs(), "data": ctx.services.data(data_cfg), "seed": seed}
        extra = {}
        if budget is not None:
            kwargs.update(preset=None, ratio=None)
            extra["ratio"] = kwargs["ratio"] = ratio_for_budget(
                model, p.method, budget, **_without(kwargs, "ratio", "preset")
            )
        result = prune(model, p.method, **kwargs)
        base = ctx.record(base_id)
        save_pruned(result, ctx.dir, source={"run": str(ctx.dir_of(base_id)), "epochs": base["epochs"], "config": {}})
        keys = ("method", "params_after", "macs_after", "params_before", "macs_before")
        return {**{k: result.info[k] for k in keys}, **extra}

    return action


def _without(kwargs: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in keys}


def _retrain_action(data_cfg: DataConfig, recipe: Recipe, mode: str, prune_id: str, seed: int):
    def action(ctx: StageContext) -> dict[str, Any]:
        from guided.retrain import retrain

        done = finished(ctx.dir)
        if done:
            return _brief(done)
        svc = ctx.services
        result = retrain(
            ctx.dir_of(prune_id),
            mode,
            svc.data(data_cfg),
            recipe,
            out_dir=ctx.dir,
            seed=seed,
            device=svc.device,
            resume=(ctx.dir / "checkpoint.pt").exists(),
            precision=svc.precision,
            log=_quiet(ctx),
        )
        return _brief(result)

    return action


def _pattern_action(p: PruneConfig, dom: Domain):
    """Summarise the seeds' pruned folders: kept channels per stage, or (weight methods) weight density."""

    def action(ctx: StageContext) -> dict[str, Any]:
        from guided.patterns import channel_summary, load_channel_rows, load_sparsity_reports, sparsity_summary

        dirs = [ctx.dir_of(n) for n in ctx.stage.needs]
        if p.unit == "weights":
            summary, key = {"kind": "sparsity", **sparsity_summary(load_sparsity_reports(dirs))}, "density_mean"
        else:
            summary, key = {"kind": "channels", **channel_summary(load_channel_rows(dirs))}, "keep_ratio_mean"
        source = {
            "method": p.method,
            "ratio": p.ratio,
            "preset": p.preset,
            "cost": p.cost,
            "source_spec": dom.spec.name,
        }
        summary["sources"] = [{"dir": str(d.relative_to(ctx.out)), **source, "dataset": dom.data.dataset} for d in dirs]
        summary["cost"] = p.cost  # the cost the pattern was discovered under (None: importance alone)
        write_json(ctx.dir / "pattern.json", summary)
        return {"stages": [round(r[key], 4) for r in summary["stages"]]}

    return action


def _design_action(target: ArchSpec, budget: Budget, arms, pattern_of: dict[str, str], k: int, transfer):
    """Design each arm at the budget: ``uniform``, or from the pattern stage ``pattern_of`` names for it
    (``-per-layer`` arms read their base arm's pattern)."""

    def action(ctx: StageContext) -> dict[str, Any]:
        patterns = {arm: read_json(ctx.dir_of(stage) / "pattern.json") for arm, stage in pattern_of.items()}
        record = {}
        for arm in arms:
            base = arm.removesuffix("-per-layer")
            stage_map = transfer.stage_map if transfer and base.startswith("transferred") else None
            spec = design(
                target,
                budget,
                pattern=patterns.get(base),
                per_layer=arm.endswith("-per-layer"),
                stage_map=stage_map,
                multiple_of=k,
            )
            write_spec(ctx.dir / f"{arm}.json", spec)
            c = cost(spec)
            record[arm] = {"params": c.params, "macs": c.macs, "stages": [list(s) for s in spec.stages]}
        return record

    return action


def _search_action(source: Domain, budget: Budget, recipe: Recipe, q, designs):
    """Search, with ``designs`` ((stage, arm) of the guided and the uniform design) enqueued first when given."""

    def action(ctx: StageContext) -> dict[str, Any]:
        from search import run_search

        svc = ctx.services
        data = validation_split(svc.data(source.data), q.validation, seed=q.seed)
        if q.train_subset is not None:  # cheaper trials: fewer training images, the same validation images
            data = subsample(data, train=q.train_subset, seed=q.seed)
        seeds = []
        if designs:
            seeds = [read_spec(ctx.dir_of(stage) / f"{arm}.json") for stage, arm in designs]
        summary = run_search(
            source.spec,
            budget,
            data,
            recipe,
            trials=q.trials,
            out_dir=ctx.dir,
            pruner=q.pruner,
            sampler="random" if ctx.stage.config["arm"] == "random" else "tpe",
            seed_designs=seeds,
            study_name=f"search-{ctx.stage.config['arm']}",
            seed=q.seed,
            device=svc.device,
            precision=svc.precision,
            log=_quiet(ctx),
        )
        return {"best": summary["best"][0], "trials": summary["history"]}

    return action


def _report_action(study: Study, recipe: Recipe, stages: list[Stage]):
    return lambda ctx: write_report(study, recipe, stages, ctx)
