"""A study's stages: the library calls the other modules built, in order, each with its inputs.

For the source model, and for each ``[[transfer]]`` target (a *domain*: a model on a dataset):

1. ``base-{plain|sparse}-s{seed}``: train the full-width model (``sparse``: with the slimming penalty), for
   each of ``[study] base_seeds`` (default: every seed);
2. ``prune-{name}-s{seed}``: prune each base with every ``[[prune]]`` method (targets: only the design's
   pattern method, when ``own_pattern``), then ``{name}-{mode}-s{seed}``: fine-tune / Scratch-E / Scratch-B
   / lottery retraining where asked;
3. ``pattern-{name}``: the per-stage channel pattern over seeds;
4. ``uniform-{budget}``, ``design-{budget}`` and ``design-{budget}-per-layer``: the uniform, the guided
   (targets: transferred, and guided from their own pattern) and the per-layer architectures at each budget,
   each kind in its own stage, so that adding an arm to a finished study redoes no other arm's runs; and
   ``{budget}-pruned-s{seed}``: each base pruned to the budget;
5. ``{budget}-{arm}-s{seed}``: every design trained from scratch with the study's recipe;

then ``search/{cold|seeded|random}`` (Optuna width search on the source at one budget, on a validation split)
and ``search/{arm}-best-s{seed}`` (its best spec retrained like the designs); ``population/{budget}-pNNN`` (each
shape of the ``[population]`` trained once like the designs, with the first seed) and
``population/{budget}-pNNN-{proxy}`` (its proxy scores); and ``report``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guided.errors import UserError
from guided.operations import (
    SOLO_KEYS,
    latency_table,
    training_config,
)
from guided.pipeline.actions import ACTIONS, READS_WEIGHTS, train_group
from guided.pipeline.config import PruneConfig, Study, model_spec, slug
from guided.pipeline.roles import ARM_ROLES, POPULATION_ROLES, SEARCH_ARMS, Role, Tags
from guided.pipeline.runner import Stage
from guided.shapes.design import Budget, design, parse_budget
from guided.shapes.population import draw_shapes
from guided.storage.folders import StudyFolder
from guided.storage.provenance import resolve_device
from guided.training.data import DataConfig, DataShape, ImageData
from guided.training.recipes import Recipe, scratch_epochs
from guided.training.retrain import fresh_init_seed
from models import ArchSpec, cost

__all__ = ["Services", "Domain", "plan", "plan_study", "check_fits", "SOURCE"]

SOURCE = "source"


class Services:
    """Shared by every stage of one invocation: datasets (loaded once), device, precision, latency tables,
    and the plan (which the report reads)."""

    def __init__(self, study: Study, out: Path | None = None):
        self.study, self.out = study, out
        self._device: torch.device | None = None
        self.precision = study.study.precision
        self.stages: list[Stage] = []
        self._data: dict[DataConfig, ImageData] = {}
        self._shapes: dict[DataConfig, DataShape] = {}
        self._tables: dict[int, Any] = {}

    @property
    def device(self) -> torch.device:
        """The device stages run on, resolved when first needed: planning a CUDA study needs no GPU."""
        if self._device is None:
            self._device = resolve_device(self.study.study.device)
        return self._device

    @property
    def device_label(self) -> str:
        """The device as the study names it (``auto`` resolved here): what the speed stage records."""
        name = self.study.study.device
        return str(self.device) if name == "auto" or not name.startswith("cuda") else name

    def data(self, cfg: DataConfig | dict[str, Any]) -> ImageData:
        """The configured dataset (subsampled as configured), loaded once: what stages train on."""
        cfg = DataConfig(**cfg) if isinstance(cfg, dict) else cfg
        if cfg not in self._data:
            self._data[cfg] = cfg.load()
        return self._data[cfg]

    def shape(self, cfg: DataConfig) -> DataShape:
        """The configured dataset's sizes, for planning: an image folder is counted, not decoded."""
        if cfg not in self._shapes:
            self._shapes[cfg] = self._data[cfg].shape() if cfg in self._data else cfg.shape()
        return self._shapes[cfg]

    def budget(self, text: str, spec: ArchSpec, batch_size: int) -> Budget:
        """One of the study's budgets on ``spec``. A ``latency`` budget is predicted by this device's
        per-layer table at the training batch size (`latency_table`); every width up to twice ``spec``'s is
        timed here, while planning, so the stages that solve widths time nothing."""

        def prepared():
            table = self.latency_table(batch_size)
            table.prepare(spec, headroom=2, log=lambda line: print(line, file=sys.stderr, flush=True))
            return table

        return parse_budget(text, full=spec, table=prepared)

    def budget_from(self, record: dict[str, Any]) -> Budget:
        """The budget a stage's config records (`Budget.to_dict`), with its latency table."""
        table = self.latency_table(record["batch_size"]) if record["kind"] == "latency" else None
        return Budget.from_dict(record, table)

    def latency_table(self, batch_size: int):
        """This device's per-layer latency table at ``batch_size``, timed with one thread on a CPU (what each
        run gets beside others, whatever ``--jobs`` is) and kept in the study folder (``latency/``, else the
        user's cache), so every process of the study, and a later ``--resume``, reads the same numbers: the
        budgets solved to latency and the channels ranked by latency alike."""
        if batch_size not in self._tables:
            folder = StudyFolder(self.out).latency if self.out is not None else None
            self._tables[batch_size] = latency_table(self.device, batch_size=batch_size, threads=1, folder=folder)
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


#: The fewest images a search trial is scored on: with fewer, one image is a point or more of accuracy.
MIN_VALIDATION_IMAGES = 50


def check_fits(study: Study, services: Services) -> None:
    """Refuse, before anything is created, a batch larger than a dataset's training images (the search's
    trial split included): it reads each configured dataset once (kept by ``services`` for planning)."""
    batch = study.recipe().batch_size
    for where, cfg in [
        ("[data]", study.data),
        *((f"[[transfer]] {t.name!r}", t.data(study.data)) for t in study.transfer),
    ]:
        images = services.shape(cfg).train
        if batch > images:
            raise UserError(
                f"[train] batch_size {batch} exceeds the {images} training images of {where} ({cfg.dataset}); "
                "lower batch_size or use more images"
            )
    q = study.search
    if q is not None:
        images = services.shape(study.data).train
        scored = round(q.validation * images)
        if scored < MIN_VALIDATION_IMAGES:
            raise UserError(
                f"[search] validation = {q.validation} scores each trial on {scored} of the {images} training "
                f"images; raise it to hold at least {MIN_VALIDATION_IMAGES} images (a trial's score is noise below)"
            )
        trial_images = min(q.train_subset or images, images - scored)
        if batch > trial_images:
            raise UserError(
                f"[train] batch_size {batch} exceeds the {trial_images} images a [search] trial trains on; lower "
                "batch_size, or raise train_subset or lower validation"
            )


def plan_study(study: Study, out: Path | None = None) -> tuple[list[Stage], Services]:
    """The study's stages, and the services they share (loading its datasets once, to size the models;
    timing the latency table a ``latency=`` budget needs, kept in the study folder ``out``)."""
    services = Services(study, out)
    return plan(study, services), services


def plan(study: Study, services: Services) -> list[Stage]:
    """Every stage of ``study``, in an order where each stage comes after what it reads."""
    recipe = study.recipe()
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
    if study.population:
        build_.population(source)
    build_.speed()
    stages.append(
        _stage(
            "report",
            "report",
            {"title": study.report.title},
            tuple(s.id for s in stages),
            tags=Tags(role=Role.REPORT),
            work=_report_work(stages),
        )
    )
    services.stages = stages
    return stages


def _stage(stage_id: str, kind: str, config: dict[str, Any], needs: tuple[str, ...] = (), **rest) -> Stage:
    """A stage that runs its kind's action (`ACTIONS`) from ``config`` alone: what is fingerprinted is
    what runs. A training run that no hook changes joins the seed group of the runs that differ from it
    only in their seeds (`Stage.group`), which may train together (``guided run --group-seeds``)."""
    group = ""
    if kind == "train" and not any(config.get(k) for k in SOLO_KEYS):
        same = {k: v for k, v in config.items() if k not in ("seed", "init_seed")}
        group = hashlib.sha256(json.dumps([same, needs], sort_keys=True).encode()).hexdigest()[:16]
    reads = kind in READS_WEIGHTS
    return Stage(
        stage_id, kind, config, ACTIONS[kind], needs, group=group, group_action=train_group, reads_weights=reads, **rest
    )


def _domain(name: str, data_cfg: DataConfig, arch: str, width_mult: float, head, services: Services) -> Domain:
    data = services.shape(data_cfg)
    return Domain(name, data_cfg, model_spec(arch, width_mult, head, data), (), data.train, data.test)


class _Builder:
    """Appends stages; keeps the ids of what later stages need."""

    def __init__(self, study: Study, services: Services, recipe: Recipe, stages: list[Stage]):
        self.study, self.services, self.recipe, self.stages = study, services, recipe, stages
        self.seeds = study.study.seeds
        self.patterns: dict[tuple[str, str], str] = {}  # (domain, [[prune]] name) -> pattern stage id

    def add(self, stage: Stage) -> str:
        self.stages.append(stage)
        return stage.id

    def train_config(self, dom: Domain, spec: ArchSpec, seed: int, recipe: Recipe, **options) -> dict[str, Any]:
        """A training run's config (`guided.operations.training_config`) with the study's recipe and precision."""
        return training_config(
            spec,
            dom.data,
            recipe,
            recipe_name=self.study.train.recipe,
            seed=seed,
            precision=self.study.study.precision,
            **options,
        )

    def scratch_config(self, dom: Domain, seed: int, spec_from: dict[str, str]) -> dict[str, Any]:
        """A from-scratch run of the architecture another stage wrote (``spec_from``: its ``stage`` and what
        to ``read`` there: `_read_spec`), freshly initialised."""

        config = self.train_config(dom, dom.spec, seed, self.recipe, init_seed=fresh_init_seed(seed))
        return {**config, "spec": spec_from}

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

    def prune_config(self, dom: Domain, p: PruneConfig, seed: int, **changes: Any) -> dict[str, Any]:
        """A prune stage's config: the ``[[prune]]`` entry (``changes`` applied), the seed, the data its
        activations are read from, and the batch of the latency table a ``cost = "latency"`` ranks by."""
        config = {**dataclasses.asdict(p), "retrain": None, "seed": seed, "data": dataclasses.asdict(dom.data)}
        for key in ("min_keep", "coupled"):  # absent unless set: other studies' stages keep their fingerprints
            if not config[key]:
                del config[key]
        if p.cost == "latency":
            config["latency_batch"] = self.recipe.batch_size
        return {**config, **changes}

    # ------------------------------------------------------------------ one domain
    def domain(self, dom: Domain, transfer=None) -> None:
        st = self.study
        kinds = sorted({p.base for p in dom.prune}) if dom.prune else []
        bases: dict[tuple[str, int], str] = {}
        for seed in self.study.study.seeds_of_bases():
            for kind in kinds:
                penalty = {"sparse": {"sparsity_l1": st.train.sparsity_l1}}
                penalty["gated"] = {"sparsity_gates": st.train.sparsity_gates}
                config = self.train_config(dom, dom.spec, seed, self.recipe, save_init=True, **penalty.get(kind, {}))
                bases[kind, seed] = self.add(
                    _stage(
                        f"{dom.name}/base-{kind}-s{seed}",
                        "train",
                        config,
                        macs=self.training_macs(dom, dom.spec, self.recipe.epochs),
                        tags=Tags(domain=dom.name, role=Role.BASE, kind=kind, seed=seed),
                        work=self.train_work(dom, ArchSpec.from_dict(config["spec"]), self.recipe.epochs),
                    )
                )
        for p in dom.prune:
            self.prune_row(dom, p, bases)
        if st.design:
            self.designs(dom, bases, transfer)

    def prune_row(self, dom: Domain, p: PruneConfig, bases: dict[tuple[str, int], str]) -> None:
        """One ``[[prune]]`` entry on every seed's base, its retrainings, and its pattern."""
        pruned = []  # the prunes of the pattern seeds, which the pattern reads
        for seed in self.study.study.seeds_of_bases():
            base = bases[p.base, seed]
            pid = self.add(
                _stage(
                    f"{dom.name}/prune-{p.name}-s{seed}",
                    "prune",
                    self.prune_config(dom, p, seed),
                    (base,),
                    tags=Tags(domain=dom.name, role=Role.PRUNE, prune=p.name, seed=seed),
                    work=_prune_work(dom, p, seed),
                )
            )
            if seed in self.study.study.seeds_of_patterns():
                pruned.append(pid)
            for mode in p.retrain:
                epochs = self.recipe.finetune_epochs if mode == "finetune" else self.recipe.epochs
                config = {"mode": mode, "seed": seed, "recipe": self.recipe.to_dict()}
                config.update(data=dataclasses.asdict(dom.data), precision=self.study.study.precision)
                self.add(
                    _stage(
                        f"{dom.name}/{p.name}-{mode}-s{seed}",
                        "retrain",
                        config,
                        (pid,),
                        macs=self.training_macs(dom, dom.spec, epochs) * _kept_fraction(p) ** 2,
                        tags=Tags(domain=dom.name, role=Role.RETRAIN, prune=p.name, mode=mode, seed=seed),
                        work=self.retrain_work(dom, p, mode),
                    )
                )
        if p.unit == "blocks":  # removed blocks make no per-stage pattern
            return
        self.add(
            _stage(
                f"{dom.name}/pattern-{p.name}",
                "pattern",
                {"method": p.method, "ratio": p.ratio, "preset": p.preset, "source": dom.spec.name},
                tuple(pruned),
                tags=Tags(domain=dom.name, role=Role.PATTERN, prune=p.name, unit=p.unit),
            )
        )
        if self.study.design and p.name in self.study.design.pattern_names():
            self.patterns[dom.name, p.name] = f"{dom.name}/pattern-{p.name}"

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
        per_layer = {f"{a}-per-layer": a for a in pattern_of if d.per_layer_for(name_of[a])}
        for budget_text in transfer.budget_list(d) if transfer else d.budget_list():
            budget = self.services.budget(budget_text, dom.spec, self.recipe.batch_size)
            b = slug(budget_text)
            common = {"target": dom.spec.to_dict(), "budget": budget.to_dict(), "multiple_of": d.multiple_of}
            tags = Tags(domain=dom.name, role=Role.DESIGN, budget=budget_text)
            uid = self.add(  # reads no pattern: a new pattern does not redo the uniform runs
                _stage(f"{dom.name}/uniform-{b}", "design", {**common, "arms": ["uniform"], "patterns": {}}, tags=tags)
            )
            sources = {"uniform": (uid, {"stage": uid, "read": "arm:uniform"})}
            common["stage_map"] = transfer.stage_map if transfer else None
            for suffix, arms in (("", list(pattern_of)), ("-per-layer", list(per_layer))):
                if not arms:
                    continue
                read = (per_layer.get(a, a) for a in arms)  # a per-layer arm reads its guided arm's pattern
                patterns = {a: pattern_of[a] for a in read}
                config = {**common, "arms": arms, "patterns": patterns}
                needs = tuple(dict.fromkeys(patterns.values()))
                did = self.add(_stage(f"{dom.name}/design-{b}{suffix}", "design", config, needs, tags=tags))
                sources.update({arm: (did, {"stage": did, "read": f"arm:{arm}"}) for arm in arms})
            approx = design(dom.spec, budget, multiple_of=d.multiple_of)  # the uniform design's cost
            for seed in self.seeds:
                sources.update(self.pruned_to_budget(dom, bases, budget_text, seed))
                for arm, (upstream, spec_from) in sources.items():
                    self.add(
                        _stage(
                            f"{dom.name}/{b}-{arm}-s{seed}",
                            "train",
                            self.scratch_config(dom, seed, spec_from),
                            (upstream,),
                            macs=self.training_macs(dom, approx, self.recipe.epochs),
                            tags=Tags(domain=dom.name, role=Role.SCRATCH, budget=budget_text, arm=arm, seed=seed),
                            work=self.train_work(dom, approx, self.recipe.epochs),
                        )
                    )

    def pruned_to_budget(self, dom: Domain, bases, budget_text: str, seed: int) -> dict[str, tuple]:
        """Each pattern's method pruning this seed's base down to the budget (where the domain has that
        pattern of its own): arm -> (prune stage, where its spec is read)."""
        d = self.study.design
        budget, b = self.services.budget(budget_text, dom.spec, self.recipe.batch_size), slug(budget_text)
        out = {}
        for name in d.pattern_names():
            if (dom.name, name) not in self.patterns or not d.pruned_for(name):
                continue
            row = next(p for p in self.study.prune if p.name == name)
            arm = d.arm("pruned", name)
            base = bases[row.base, self.study.study.base_of(seed)]
            changes = {"name": None, "ratio": None, "budget": budget.to_dict()}
            pid = self.add(
                _stage(
                    f"{dom.name}/prune-to-{b}-s{seed}" if arm == "pruned" else f"{dom.name}/{arm}-to-{b}-s{seed}",
                    "prune",
                    self.prune_config(dom, row, seed, **changes),
                    (base,),
                    tags=Tags(domain=dom.name, role=Role.PRUNE_BUDGET, budget=budget_text, seed=seed, arm=arm),
                    work={**_prune_work(dom, row, seed), "budget": budget},
                )
            )
            out[arm] = (pid, {"stage": pid, "read": "pruned"})
        return out

    # ------------------------------------------------------------------ search
    def search(self, source: Domain) -> None:
        q = self.study.search
        budget = self.services.budget(q.budget, source.spec, self.recipe.batch_size)
        trial_recipe = self.recipe.override(epochs=q.epochs, eval="every")  # trial stoppers read every epoch
        approx = design(source.spec, budget)
        guided_arm = (
            self.study.design.arm("guided", self.study.design.pattern_names()[0]) if self.study.design else None
        )
        designs = [  # the first pattern's guided design, then uniform
            [f"{SOURCE}/design-{slug(q.budget)}", guided_arm],
            [f"{SOURCE}/uniform-{slug(q.budget)}", "uniform"],
        ]
        val_images = round(q.validation * source.train_images)
        trial_images = min(q.train_subset or source.train_images, source.train_images - val_images)
        trial_macs = float(cost(approx).macs) * (3 * trial_images + val_images) * q.epochs
        for arm in q.arms:
            seeded = SEARCH_ARMS[arm].seeded
            sid = self.add(
                _stage(
                    f"search/{arm}",
                    "search",
                    {
                        **dataclasses.asdict(q),
                        "arms": None,
                        "arm": arm,
                        "target": source.spec.to_dict(),
                        "data": dataclasses.asdict(source.data),
                        "recipe": trial_recipe.to_dict(),
                        "budget": budget.to_dict(),
                        "precision": self.study.study.precision,
                        "seed_designs": designs if seeded else [],
                    },
                    tuple(stage for stage, _ in designs) if seeded else (),
                    macs=trial_macs * q.trials,
                    tags=Tags(role=Role.SEARCH, arm=arm, budget=q.budget),
                    work={
                        **self.train_work(source, approx, q.epochs),
                        "kind": "search",
                        "train": trial_images,
                        "test": val_images,
                        "trials": q.trials,
                    },
                )
            )
            retrains = [(1, seed) for seed in self.seeds] + [(j, self.seeds[0]) for j in range(2, q.retrain_top + 1)]
            for rank, seed in retrains:  # the best with every seed; the next ones with the first, for the proxy
                tags = Tags(domain=SOURCE, role=Role.SEARCH_BEST if rank == 1 else Role.SEARCH_TOP, arm=arm)
                self.add(
                    _stage(
                        f"search/{arm}-best-s{seed}" if rank == 1 else f"search/{arm}-top{rank}-s{seed}",
                        "train",
                        self.scratch_config(source, seed, {"stage": sid, "read": f"top:{rank}"}),
                        (sid,),
                        macs=self.training_macs(source, approx, self.recipe.epochs),
                        tags=tags.but(budget=q.budget, seed=seed, rank=rank),
                        work=self.train_work(source, approx, self.recipe.epochs),
                    )
                )

    # ------------------------------------------------------------------ population
    def population(self, source: Domain) -> None:
        """Each shape of the ``[population]`` (drawn here: `guided.shapes.population.draw_shapes`) trained from
        scratch like the designs' first seed, and scored by each proxy. A shape's stages depend on its spec
        alone, so adding a population to a finished study adds exactly these stages."""

        q, seed = self.study.population, self.seeds[0]
        budget = self.services.budget(q.budget, source.spec, self.recipe.batch_size)
        multiple_of = self.study.design.multiple_of if self.study.design else 1
        low, high = q.ratio_range
        shapes = draw_shapes(source.spec, budget, q.n, seed=q.seed, low=low, high=high, multiple_of=multiple_of)
        b = slug(q.budget)
        tags = Tags(domain=SOURCE, budget=q.budget)
        for shape in shapes:
            sid = f"population/{b}-p{shape.index:03d}"
            config = self.train_config(source, shape.spec, seed, self.recipe, init_seed=fresh_init_seed(seed))
            self.add(
                _stage(
                    sid,
                    "train",
                    config,
                    macs=self.training_macs(source, shape.spec, self.recipe.epochs),
                    tags=tags.but(role=Role.POPULATION, shape=shape.index, seed=seed),
                    work=self.train_work(source, shape.spec, self.recipe.epochs),
                )
            )
            for p in q.proxies:
                self.add(self.proxy_stage(source, shape.spec, p, f"{sid}-{p.name}", tags.but(shape=shape.index)))

    def proxy_stage(self, source: Domain, spec: ArchSpec, p, stage_id: str, tags: Tags) -> Stage:
        """A proxy score of ``spec``: ``p.epochs`` of the study's recipe on ``p.train_subset`` images of the
        training split less its validation share, scored on that share (as search trials are)."""
        val_images = round(p.validation * source.train_images)
        images = min(p.train_subset or source.train_images, source.train_images - val_images)
        recipe = self.recipe.override(epochs=p.epochs)
        config = self.train_config(source, spec, p.seed, recipe)
        config["proxy"] = {"validation": p.validation, "train_subset": p.train_subset, "seed": p.seed}
        work = {**self.train_work(source, spec, p.epochs), "train": images, "test": val_images}
        macs = float(cost(spec).macs) * (3 * images + val_images) * p.epochs
        return _stage(
            stage_id,
            "train",
            config,
            macs=macs,
            tags=tags.but(role=Role.POPULATION_PROXY, proxy=p.name),
            work=work,
        )

    # ------------------------------------------------------------------ speed
    def speed(self) -> None:
        """Measure the inference speed of every from-scratch architecture, in a stage of its own that runs
        alone (it reads every stage before it), so the report reads speeds and measures nothing."""
        runs = [s.id for s in self.stages if s.tags.role in ARM_ROLES]
        if not runs:
            return
        latency = [s.id for s in self.stages if str(s.tags.budget or "").startswith("latency=") and s.id in runs]
        config = {
            "runs": runs,
            "latency_runs": latency,
            "latency_batch": self.recipe.batch_size if latency else None,
            "precision": self.study.study.precision,
            "device": self.services.device_label,
        }
        work = {"kind": "speed", "specs": _speed_work(self.stages)}  # the estimate times its inference passes
        # it reads every stage but the population's, and runs after those too: alone, and a population added
        # to a finished study leaves it done
        population = {s.id for s in self.stages if s.tags.role in POPULATION_ROLES}
        needs = tuple(s.id for s in self.stages if s.id not in population)
        after = tuple(s.id for s in self.stages if s.id in population)
        self.add(_stage("speed", "speed", config, needs, tags=Tags(role=Role.SPEED), work=work, after=after))


def _prune_work(dom: Domain, p: PruneConfig, seed: int) -> dict[str, Any]:
    """What a prune stage computes, for time estimates: the method on the base's shape (a latency cost is
    estimated as a MAC cost: its table is timed while planning)."""
    spec = dom.spec.replace(gated=True) if p.base == "gated" else dom.spec
    kwargs = {**p.prune_kwargs(), "seed": seed}
    if kwargs.get("cost") == "latency":
        kwargs["cost"] = "macs"
    return {"kind": "prune", "spec": spec, "method": p.method, "kwargs": kwargs, "budget": None}


def _report_work(stages: list[Stage]) -> dict[str, Any]:
    """The report's work: about one figure per domain and budget (speeds are measured by the speed stage)."""
    scratch = [s for s in stages if s.tags.role in ARM_ROLES]
    budgets = {(s.tags.domain, s.tags.budget) for s in scratch}
    domains = {s.tags.domain for s in scratch}
    patterns = sum(s.kind == "pattern" for s in stages)
    searches = any(s.kind == "search" for s in stages)
    return {"kind": "report", "figures": len(budgets) + len(domains) + patterns + searches}


def _speed_work(stages: list[Stage]) -> list[ArchSpec]:
    """The speed stage's work: one inference timing per distinct from-scratch architecture (one per domain,
    budget and arm; pruned arms differ per seed)."""
    distinct = {}
    for s in stages:
        if s.tags.role in ARM_ROLES:
            key = (s.tags.domain, s.tags.budget, s.tags.arm)
            if str(s.tags.arm or "").startswith("pruned"):
                key += (s.tags.seed,)
            distinct.setdefault(key, s.work["spec"])
    return list(distinct.values())


def _kept_fraction(p: PruneConfig) -> float:
    """A rough share of channels kept, for estimates only (presets and stage ratios count as half)."""
    return 1 - p.ratio if isinstance(p.ratio, float | int) else 0.5


# ---------------------------------------------------------------------- actions
# Each reads its stage's config (and the folders of the stages it needs), nothing else: see `_stage`.
