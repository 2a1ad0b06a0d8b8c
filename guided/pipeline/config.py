"""A study's TOML file, validated in full before anything runs.

Sections (only ``[study]``, ``[data]`` and ``[model]`` are required)::

    [study]        name, seeds, device, precision, base_seeds, pattern_seeds, sigma_from, detect
    [data]         dataset, data_root, image_size, train_subset, test_subset   (the source dataset)
    [model]        arch, width_mult, head                                       (the source model)
    [train]        recipe, epochs, batch_size, lr, ema, test_flip, eval, finetune_epochs, finetune_lr,
                   sparsity_l1, sparsity_gates  (every training run)
    [[prune]]      name, method, base ("plain" | "sparse" | "gated"), ratio | preset, allocation, samples,
                   cost ("params" | "macs" | "latency": rank channels per unit of cost; global allocation),
                   retrain (["finetune", "scratch-e", "scratch-b", "lottery"])
    [design]       pattern (a [[prune]] name, or several to compare), budgets (["25%", "macs=40M",
                   "latency=30%"]), match (["params", "macs"]: the cost kinds a budget without one is
                   matched on), per_layer, multiple_of, pruned (also prune each base to the budget, train it
                   from scratch); per_layer and pruned: true/false, or the pattern names that get them
    [[transfer]]   name, arch, width_mult, head, dataset, data_root, image_size, train_subset,
                   test_subset, own_pattern, stage_map, budgets (some of the design budgets; default all)
    [search]       budget, trials, epochs, validation, train_subset, arms (`SEARCH_ARMS`),
                   pruner, seed
    [report]       title

Every registered pruning method can be a ``[[prune]]`` entry: channel methods (their pattern is the kept
share of channels per stage), weight methods (``magnitude``, ``random``: masks; their pattern is a sparsity
pattern; the only ones with a ``lottery`` retraining) and block methods (``sss``: on a ``gated`` base of a
residual network, trained with the gate penalty ``sparsity_gates``; no pattern).

Budgets ending in ``%`` are fractions of the full-width model being designed (the source model, or the
transfer target), so one budget list serves every model of the study. A budget written without a cost
kind (``25%``) is matched once on each kind of ``match`` (default ``["params"]``): with
``match = ["params", "macs"]`` every arm is designed once at 25% of the parameters and once at 25% of the
MACs, and the report compares them at each. A ``latency=`` budget is a training step's predicted time on
the study's device (`guided.pipeline.stages.Services.budget`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.pipeline.roles import SEARCH_ARMS
from guided.pruning import PRUNERS
from guided.shapes.design import KINDS as BUDGET_KINDS
from guided.shapes.design import budget_kind, pattern_stage_count
from guided.storage.io import check_name, read_toml, toml_section
from guided.storage.provenance import parse_device
from guided.training.data import DataConfig, list_datasets
from guided.training.recipes import Recipe, check_lrs, get_recipe
from guided.training.retrain import MODES
from models import FAMILIES, ArchSpec, create_spec
from models.charge import COST_KINDS
from search.study import TOP_TRIALS

__all__ = [
    "Study",
    "StudyConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "PruneConfig",
    "DesignConfig",
    "TransferConfig",
    "SearchConfig",
    "PopulationConfig",
    "ProxyConfig",
    "ReportConfig",
    "parse_study",
    "load_study",
    "model_spec",
    "slug",
]


@dataclass(frozen=True)
class StudyConfig:
    """``[study]``: its name, the seeds every experiment repeats over, where to train; and for planning seeds
    by power: ``pattern_seeds`` (the seeds whose pruned runs make the patterns; default all: fix it to the
    seeds a study began with before adding seeds, so that its designs, and the runs already trained, stay
    as they are), ``sigma_from`` (a finished study folder whose runs give the seed-to-seed spread the dry
    run plans with, until this study has its own) and ``detect`` (points: the difference the dry run says
    how many seeds would detect). ``base_seeds`` (default all): the seeds that train a full-width base and
    prune it; the from-scratch arms still train every seed. A study with 3 bases and 12 seeds per arm pays
    for 3 bases, not 12; a seed without its own base takes its pruned-to-budget network from the base of
    ``base_seeds[i % len(base_seeds)]`` (``i``: its place in ``seeds``)."""

    name: str
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    precision: str = "auto"
    pattern_seeds: list[int] | None = None
    base_seeds: list[int] | None = None
    sigma_from: str | None = None
    detect: float | None = None

    def seeds_of_bases(self) -> list[int]:
        return self.seeds if self.base_seeds is None else self.base_seeds

    def seeds_of_patterns(self) -> list[int]:
        return self.seeds_of_bases() if self.pattern_seeds is None else self.pattern_seeds

    def base_of(self, seed: int) -> int:
        """The seed whose base a seed's pruned-to-budget arm prunes: its own where it has one."""
        bases = self.seeds_of_bases()
        return seed if seed in bases else bases[self.seeds.index(seed) % len(bases)]


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: a registered architecture and its width multiplier (and VGG head)."""

    arch: str
    width_mult: float = 1.0
    head: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: the recipe every run uses (its epochs, batch size and rate; ``ema``, ``test_flip``,
    ``eval``, and fine-tuning's ``finetune_epochs`` and ``finetune_lr``, as `guided.training.recipes.Recipe` has them),
    and the slimming penalty of ``sparse`` bases."""

    recipe: str = "quick"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    ema: float | None = None
    test_flip: bool | None = None
    eval: str | None = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    sparsity_l1: float = 1e-4
    sparsity_gates: float = 1e-2


#: What each kind of base is trained with: nothing, the slimming L1 penalty on BN scales, or gated residual
#: blocks with the Sparse Structure Selection penalty on the gates.
BASES = ("plain", "sparse", "gated")


@dataclass(frozen=True)
class PruneConfig:
    """``[[prune]]``: one pruning method applied to every seed's base; optionally retrained."""

    name: str
    method: str
    base: str = "plain"
    ratio: float | list[float] | None = None
    preset: str | None = None
    allocation: str | None = None
    samples: int = 512
    retrain: list[str] = field(default_factory=list)
    cost: str | None = None
    min_keep: float = 0.0
    coupled: bool = False

    @property
    def unit(self) -> str:
        """What the method removes: ``channels``, ``weights`` or ``blocks`` (see `guided.pruning.Method`)."""
        return PRUNERS[self.method].unit

    def prune_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `guided.pruning.prune` this entry stands for (data and seed aside)."""
        return {
            "ratio": self.ratio,
            "preset": self.preset,
            "allocation": self.allocation,
            "samples": self.samples,
            "cost": self.cost,
            **({"min_keep": self.min_keep} if self.min_keep else {}),
            **({"coupled": True} if self.coupled else {}),
        }

    def check(self, where: str) -> None:
        """Refuse what could only fail later: unknown names, ratios out of range, impossible combinations."""
        if self.method not in PRUNERS:
            raise UserError(f"{where}: unknown method {self.method!r}; choose one of {', '.join(sorted(PRUNERS))}")
        if self.base not in BASES:
            raise UserError(f"{where}: base must be one of {', '.join(BASES)}, got {self.base!r}")
        if len(set(self.retrain)) != len(self.retrain):
            raise UserError(f"{where}: retrain = {self.retrain} names a mode twice; each mode trains once per seed")
        if isinstance(self.ratio, list):
            if not all(0 <= r < 1 for r in self.ratio) or not any(self.ratio):
                raise UserError(f"{where}: stage ratios must lie in [0, 1) and not all be 0, got {self.ratio}")
        elif self.ratio is not None and not 0 < self.ratio < 1:
            raise UserError(f"{where}: ratio must lie in (0, 1) (the fraction removed), got {self.ratio}")
        if self.samples < 1:
            raise UserError(f"{where}: samples must be at least 1, got {self.samples}")
        if not (isinstance(self.min_keep, (int, float)) and 0 <= self.min_keep < 1):
            raise UserError(f"{where}: min_keep must lie in [0, 1) (the share of each layer kept), got {self.min_keep}")
        if self.coupled not in (True, False):
            raise UserError(f"{where}: coupled must be true or false, got {self.coupled!r}")
        if self.coupled and self.unit != "channels":
            raise UserError(f"{where}: coupled groups are for channel methods, not {self.method}")
        if self.coupled and self.preset is not None:
            raise UserError(f"{where}: a preset names single layers; prune coupled groups with a ratio")
        if self.unit == "channels" and (self.ratio is None) == (self.preset is None):
            raise UserError(f"{where}: give ratio or preset")
        if self.unit != "channels" and (self.preset is not None or isinstance(self.ratio, list)):
            raise UserError(f"{where}: {self.method} takes one ratio, not presets or stage ratios")
        if self.unit == "weights" and self.ratio is None:
            raise UserError(f"{where}: give ratio (the fraction of weights removed)")
        if (self.unit == "blocks") != (self.base == "gated"):
            raise UserError(
                f"{where}: {self.method} needs base = 'gated'"
                if self.unit == "blocks"
                else f"{where}: a gated base is for block methods (sss), not {self.method}"
            )
        bad = [m for m in self.retrain if m not in MODES]
        if bad:
            raise UserError(f"{where}: unknown retrain mode(s) {bad}; choose from {', '.join(MODES)}")
        if self.cost is not None:
            self._check_cost(where)
        if "lottery" in self.retrain and self.unit != "weights":
            raise UserError(f"{where}: lottery retraining restarts masked weights; {self.method} removes {self.unit}")

    def _check_cost(self, where: str) -> None:
        if self.cost not in (*COST_KINDS, "latency"):
            raise UserError(f"{where}: cost must be one of {', '.join(COST_KINDS)}, latency; got {self.cost!r}")
        allocation = self.allocation or PRUNERS[self.method].allocation
        if self.unit != "channels" or allocation != "global":
            how = f" with {allocation} allocation" if self.unit == "channels" else ""
            raise UserError(
                f"{where}: cost-aware pruning ranks channels across layers: it needs a channel method with "
                f"a global allocation (allocation = 'global'), not {self.method}{how}"
            )


@dataclass(frozen=True)
class DesignConfig:
    """``[design]``: guided and uniform designs at each budget, trained from scratch."""

    pattern: str | list[str]
    budgets: list[str]
    match: list[str] = field(default_factory=lambda: ["params"])
    per_layer: bool | list[str] = False
    multiple_of: int = 1
    pruned: bool | list[str] = True

    def pattern_names(self) -> list[str]:
        """The ``[[prune]]`` entries whose patterns guide designs (one, or several to compare)."""
        return [self.pattern] if isinstance(self.pattern, str) else list(self.pattern)

    def per_layer_for(self, pattern: str) -> bool:
        """Whether ``pattern`` also gets a per-layer arm (``per_layer``: true, or the patterns that do)."""
        return pattern in self.per_layer if isinstance(self.per_layer, list) else self.per_layer

    def pruned_for(self, pattern: str) -> bool:
        """Whether ``pattern``'s method also prunes each base to the budget (``pruned``: true, or a list)."""
        return pattern in self.pruned if isinstance(self.pruned, list) else self.pruned

    def arm(self, kind: str, pattern: str) -> str:
        """An arm's name: ``guided`` / ``transferred`` / ``pruned`` with one pattern; with several,
        ``guided-{pattern}`` and so on."""
        return kind if isinstance(self.pattern, str) else f"{kind}-{pattern}"

    def budget_list(self) -> list[str]:
        """Every budget designed at, each with its kind: ``25%`` becomes ``params=25%``, ``macs=25%``, ...
        (one per kind of ``match``); a budget that names its kind stays as it is."""
        out: list[str] = []
        for b in self.budgets:
            out += [b] if "=" in b else [f"{kind}={b.strip()}" for kind in self.match]
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class TransferConfig:
    """``[[transfer]]``: design another model (and/or dataset) from the source's pattern."""

    name: str
    arch: str
    width_mult: float = 1.0
    head: str | None = None
    dataset: str | None = None
    data_root: str = "./data"
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    own_pattern: bool = True
    stage_map: list[int] | None = None
    budgets: list[str] | None = None

    def budget_list(self, design: DesignConfig) -> list[str]:
        """The ``[design]`` budgets this target is designed at (``budgets``, else all of them)."""
        return design.budget_list() if self.budgets is None else list(self.budgets)

    def data(self, source: DataConfig) -> DataConfig:
        """This target's dataset (the source's when ``dataset`` is not given)."""
        if self.dataset is None:
            return source
        return DataConfig(self.dataset, self.data_root, self.image_size, self.train_subset, self.test_subset)


@dataclass(frozen=True)
class SearchConfig:
    """``[search]``: Optuna width search on the source model at one budget, against the designs.

    ``cold`` and ``seeded`` sample with TPE (``seeded`` first tries the guided and uniform designs),
    ``random`` samples uniformly (the control that says whether TPE beats chance). A trial trains for
    ``epochs`` on ``train_subset`` images of the training split (all but the ``validation`` share when not
    given) and is scored on the validation share. ``pruner`` (Optuna's early stopping of trials) is ``none``
    by default so that every trial completes at small trial counts. Each arm's sampler draws its own trials
    (seeded by ``seed`` and the arm). The best ``retrain_top`` trials of each arm are retrained like the
    designs (the best with every seed, the others with the first), so the report can say how well the
    trial score ranks what full training gives (the proxy's rank correlation). The default trial, one epoch
    on all the training images, is the evaluator the full-data VGG-16 population judged clearly better than
    two epochs on 3,000 images: Spearman +0.34 against -0.18 over 48 shapes, difference +0.52 [+0.09, +0.89]
    (results/study-vgg16-cifar10-full-cpu).
    """

    budget: str
    trials: int = 12
    epochs: int = 1  # one epoch on all the data: it ranked the full-data VGG population clearly better (#35)
    validation: float = 0.1
    arms: list[str] = field(default_factory=lambda: list(SEARCH_ARMS))
    pruner: str = "none"
    seed: int = 0
    train_subset: int | None = None
    retrain_top: int = 3


@dataclass(frozen=True)
class ProxyConfig:
    """One cheap evaluator a population's shapes are also scored with, as a search scores its trials: train
    ``epochs`` on ``train_subset`` images (all when not given) of the training split less a ``validation``
    share (drawn with ``seed``), and score on that share."""

    name: str
    epochs: int = 2
    train_subset: int | None = None
    validation: float = 0.1
    seed: int = 0


#: The evaluators a population scores by default: the small VGG study's search trials (2 epochs on 3,000
#: images) and one epoch on all the training images.
DEFAULT_PROXIES = (
    ProxyConfig("e2-3k", epochs=2, train_subset=3000),
    ProxyConfig("e1-all", epochs=1),
)


@dataclass(frozen=True)
class PopulationConfig:
    """``[population]``: ``n`` width shapes of the source model drawn at ``budget`` (`guided.shapes.population`:
    a keep ratio per design-pattern stage, log-uniform in ``ratio_range``, drawn from ``seed`` and solved to
    the budget), each trained once from scratch in the study's protocol (with the first study seed) and
    scored by each of ``proxies`` (default `DEFAULT_PROXIES`; ``proxies = []``: none). The report places every
    arm at ``budget`` in the population's accuracy distribution. Added to a finished study, ``--resume``
    trains only the population; raising ``n`` keeps the shapes drawn so far."""

    budget: str
    n: int = 48
    seed: int = 0
    ratio_range: list[float] = field(default_factory=lambda: [0.25, 1.0])
    proxies: list[ProxyConfig] = field(default_factory=lambda: list(DEFAULT_PROXIES))


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: the title, and ``pairing``, the interval every design verdict uses, fixed before the study
    runs: ``welch`` (two independent samples) or ``paired`` (the arms' runs paired by seed index, which shares
    their data order and augmentation). The report gives both, with the arms' correlation, either way."""

    title: str | None = None
    pairing: str = "welch"


@dataclass(frozen=True)
class Study:
    """A validated study."""

    study: StudyConfig
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    prune: list[PruneConfig]
    design: DesignConfig | None
    transfer: list[TransferConfig]
    search: SearchConfig | None
    report: ReportConfig
    population: PopulationConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain data (what the report and stage records store)."""
        return dataclasses.asdict(self)

    def recipe(self) -> Recipe:
        """The study's training recipe: the named one with ``[train]``'s epochs, batch size and rate."""
        t = self.train
        check_lrs({"[train] lr": t.lr, "[train] finetune_lr": t.finetune_lr})
        return get_recipe(t.recipe).override(
            epochs=t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            ema=t.ema,
            test_flip=t.test_flip,
            eval=t.eval,
            finetune_epochs=t.finetune_epochs,
            finetune_lr=t.finetune_lr,
        )


#: Folder names under ``stages/`` that the runner uses itself: the source domain, the speed and report
#: stages, the searches, the population. A transfer (whose stages live under its name) may not take one.
RESERVED_STAGE_NAMES = ("source", "speed", "report", "search", "population")

SECTIONS = ("study", "data", "model", "train", "prune", "design", "transfer", "search", "population", "report")


def model_spec(arch: str, width_mult: float, head: str | None, shape) -> ArchSpec:
    """A study's model (``[model]``, or a ``[[transfer]]`` target) sized for a dataset's ``shape``
    (`guided.training.data.DataShape`: classes, image size, channels)."""
    return create_spec(
        arch,
        num_classes=shape.num_classes,
        width_mult=width_mult,
        head=head,
        input_size=shape.input_size,
        in_channels=shape.in_channels,
    )


def load_study(path: str | Path) -> Study:
    """Read and validate a study TOML file."""
    table = read_toml(path, "study file")
    return parse_study(table)


def parse_study(table: dict[str, Any]) -> Study:
    """Validate a parsed study TOML: unknown keys, wrong types, missing sections, unknown names."""
    unknown = sorted(set(table) - set(SECTIONS))
    if unknown:
        raise UserError(f"unknown section(s) {unknown}; a study has {', '.join(f'[{s}]' for s in SECTIONS)}")
    for name in ("study", "data", "model"):
        if name not in table:
            raise UserError(f"the study has no [{name}] section")
    for name in ("prune", "transfer"):
        if name in table and not isinstance(table[name], list):
            raise UserError(f"[{name}] must be an array of tables: write [[{name}]]")
    study = toml_section(StudyConfig, table["study"], "study")
    data = toml_section(DataConfig, table["data"], "data")
    model = toml_section(ModelConfig, table["model"], "model")
    train = toml_section(TrainConfig, table.get("train", {}), "train")
    prune = [toml_section(PruneConfig, p, f"prune.{i}") for i, p in enumerate(table.get("prune", []))]
    design = toml_section(DesignConfig, table["design"], "design") if "design" in table else None
    transfer = [toml_section(TransferConfig, t, f"transfer.{i}") for i, t in enumerate(table.get("transfer", []))]
    search = toml_section(SearchConfig, table["search"], "search") if "search" in table else None
    report = toml_section(ReportConfig, table.get("report", {}), "report")
    if report.pairing not in ("welch", "paired"):
        raise UserError(f"[report] pairing must be welch or paired, got {report.pairing!r}")
    population = _parse_population(table["population"]) if "population" in table else None
    s = Study(study, data, model, train, prune, design, transfer, search, report, population)
    _check(s)
    return s


def _parse_population(table: Any) -> PopulationConfig:
    """``[population]``, its ``proxies`` (inline tables) parsed one by one."""
    if not isinstance(table, dict):
        raise UserError("[population] must be a table")
    rest = {k: v for k, v in table.items() if k != "proxies"}
    proxies = table.get("proxies")
    if proxies is not None and (not isinstance(proxies, list) or not all(isinstance(p, dict) for p in proxies)):
        raise UserError('[population] proxies must be a list of tables: proxies = [{name = "e1", epochs = 1}]')
    pop = toml_section(PopulationConfig, rest, "population")
    if proxies is not None:
        parsed = [toml_section(ProxyConfig, p, f"population.proxies.{i}") for i, p in enumerate(proxies)]
        pop = dataclasses.replace(pop, proxies=parsed)
    return pop


def _check_population(s: Study) -> None:
    """``[population]``: a budget the solver can read, a sane size and range, distinct well-formed proxies."""
    q = s.population
    budget_kind(q.budget)
    if not 1 <= q.n <= MAX_POPULATION:
        raise UserError(f"[population] n must lie in 1..{MAX_POPULATION}, got {q.n}")
    if not 0 <= q.seed < 2**32:
        raise UserError(f"[population] seed must lie in [0, 2**32), got {q.seed}")
    r = q.ratio_range
    if len(r) != 2 or not 0 < r[0] <= r[1] <= 1:
        raise UserError(f"[population] ratio_range must be [low, high] with 0 < low <= high <= 1, got {r}")
    names = [check_name(p.name, "[population] proxy name") for p in q.proxies]
    if len(set(names)) != len(names):
        raise UserError(f"[population] proxy names repeat: {names}")
    for p in q.proxies:
        if p.epochs < 1 or (p.train_subset is not None and p.train_subset < 1):
            raise UserError(f"[population] proxy {p.name!r}: epochs and train_subset must be at least 1")
        if not 0 < p.validation < 1:
            raise UserError(f"[population] proxy {p.name!r}: validation must lie in (0, 1), got {p.validation}")


#: The most seeds a study repeats over (each seed trains every arm once more).
MAX_SEEDS = 100

#: The most shapes a population draws (each is a training run).
MAX_POPULATION = 1000


def _check_seeds(q: StudyConfig) -> None:
    """``[study]`` seeds: some, at most `MAX_SEEDS`, distinct, in range; pattern seeds among them; a sane
    ``detect``."""
    if not q.seeds:
        raise UserError("[study] seeds is empty")
    if len(q.seeds) > MAX_SEEDS:
        raise UserError(f"[study] seeds lists {len(q.seeds)} seeds; a study takes at most {MAX_SEEDS}")
    if any(not 0 <= x < 2**32 for x in q.seeds):
        raise UserError(f"[study] seeds must lie in [0, 2**32), got {q.seeds}")
    if len(set(q.seeds)) != len(q.seeds):
        raise UserError(f"[study] seeds repeat: {q.seeds}")
    if q.base_seeds is not None and (
        not q.base_seeds or set(q.base_seeds) - set(q.seeds) or len(set(q.base_seeds)) != len(q.base_seeds)
    ):
        raise UserError(f"[study] base_seeds = {q.base_seeds} must be some of the seeds {q.seeds}, each once")
    bases = q.seeds_of_bases()
    if q.pattern_seeds is not None and (not q.pattern_seeds or set(q.pattern_seeds) - set(bases)):
        raise UserError(f"[study] pattern_seeds = {q.pattern_seeds} must be some of the base seeds {bases}")
    if q.detect is not None and not 0 < q.detect < 100:
        raise UserError(f"[study] detect is a difference in accuracy points, in (0, 100), got {q.detect}")


def _check_transfer_names(s: Study) -> None:
    tnames = [check_name(t.name, "[[transfer]] name") for t in s.transfer]
    if len(set(tnames)) != len(tnames):
        raise UserError(f"[[transfer]] names must be distinct: {tnames}")
    taken = sorted(set(tnames) & set(RESERVED_STAGE_NAMES))
    if taken:
        raise UserError(
            f"[[transfer]] name {taken[0]!r} is the name of one of the runner's own stages "
            f"({', '.join(RESERVED_STAGE_NAMES)}); choose another"
        )


def _check(s: Study) -> None:
    check_name(s.study.name, "[study] name")
    _check_seeds(s.study)
    _check_numbers(s)
    parse_device(s.study.device)
    if s.study.precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"[study] precision must be auto, fp32 or bf16, got {s.study.precision!r}")
    _check_dataset(s.data.dataset, "data")
    source = create_spec(s.model.arch, width_mult=s.model.width_mult, head=s.model.head)
    get_recipe(s.train.recipe)
    names = [check_name(p.name, "[[prune]] name") for p in s.prune]
    if len(set(names)) != len(names):
        raise UserError(f"[[prune]] names repeat: {names}")
    for p in s.prune:
        p.check(f"[[prune]] {p.name!r}")
        if p.base == "gated" and "gated" not in FAMILIES[source.family].options:
            gated = ", ".join(n for n, f in FAMILIES.items() if "gated" in f.options)
            raise UserError(f"[[prune]] {p.name!r}: gated bases are residual networks ({gated}), not {source.name}")
    if s.design:
        _check_design(s.design, s.prune, source)
    _check_transfer_names(s)
    if s.transfer and not s.design:
        raise UserError("[[transfer]] needs a [design] section (its pattern and budgets)")
    for t in s.transfer:
        if t.dataset is not None:
            _check_dataset(t.dataset, f"transfer {t.name!r}")
        target = create_spec(t.arch, width_mult=t.width_mult, head=t.head)
        n_target, n_source = pattern_stage_count(target), pattern_stage_count(source)
        if t.stage_map is None and n_target != n_source:
            raise UserError(
                f"[[transfer]] {t.name!r}: {target.name} has {n_target} pattern stages and {source.name} "
                f"{n_source}; give stage_map = [pattern stage for each of the target's stages]"
            )
        if t.stage_map is not None and len(t.stage_map) != n_target:
            raise UserError(f"[[transfer]] {t.name!r}: stage_map needs {n_target} entries")
        if t.stage_map is not None and any(not 0 <= i < n_source for i in t.stage_map):
            raise UserError(
                f"[[transfer]] {t.name!r}: stage_map = {t.stage_map} names a stage {source.name} does not have "
                f"(its pattern stages are 0 to {n_source - 1})"
            )
        if t.budgets is not None and (not t.budgets or set(t.budgets) - set(s.design.budget_list())):
            raise UserError(
                f"[[transfer]] {t.name!r}: budgets = {t.budgets} must list some of the [design] budgets "
                f"({', '.join(s.design.budget_list())}), each with its kind"
            )
    if s.population:
        _check_population(s)
    if s.search:
        q = s.search
        budget_kind(q.budget)
        bad = [a for a in q.arms if a not in SEARCH_ARMS]
        if bad or not q.arms:
            raise UserError(f"[search] arms must be among {', '.join(SEARCH_ARMS)}, got {q.arms}")
        seeded = [a for a in q.arms if SEARCH_ARMS[a].seeded]
        if seeded and (not s.design or q.budget not in s.design.budget_list()):
            raise UserError(
                f"[search] arm {seeded[0]!r} starts from the guided and uniform designs at its budget: {q.budget!r} "
                f"must be one of the [design] budgets ({', '.join(s.design.budget_list()) if s.design else 'none'})"
            )
        if len(set(q.arms)) != len(q.arms):
            raise UserError(f"[search] arms repeat: {q.arms}")
        if q.train_subset is not None and q.train_subset < 1:
            raise UserError(f"[search] train_subset must be at least 1, got {q.train_subset}")
        if q.trials < 1 or q.epochs < 1:
            raise UserError("[search] trials and epochs must be at least 1")
        if not 1 <= q.retrain_top <= min(q.trials, TOP_TRIALS):
            raise UserError(
                f"[search] retrain_top must lie in 1..{min(q.trials, TOP_TRIALS)} (at most the trials, and the "
                f"{TOP_TRIALS} best a search keeps), got {q.retrain_top}"
            )
        if not 0 <= q.seed < 2**32:
            raise UserError(f"[search] seed must lie in [0, 2**32), got {q.seed}")
        if not 0 < q.validation < 1:
            raise UserError(f"[search] validation must lie in (0, 1), got {q.validation}")
        if q.pruner not in ("median", "hyperband", "none"):
            raise UserError(f"[search] pruner must be median, hyperband or none, got {q.pruner!r}")


def _check_numbers(s: Study) -> None:
    """Numbers that must be finite and in range, refused before anything is created."""
    import math

    finite = {
        "[model] width_mult": s.model.width_mult,
        "[train] sparsity_l1": s.train.sparsity_l1,
        "[train] sparsity_gates": s.train.sparsity_gates,
        **{f"[[transfer]] {t.name!r} width_mult": t.width_mult for t in s.transfer},
    }
    if s.train.lr is not None:
        finite["[train] lr"] = s.train.lr
    for where, value in finite.items():
        if not math.isfinite(value) or value < 0 or (value == 0 and "width_mult" in where):
            need = "positive" if "width_mult" in where else "a finite number, 0 or more"
            raise UserError(f"{where} must be {need}, got {value}")
    if s.train.lr is not None and s.train.lr <= 0:
        raise UserError(f"[train] lr must be positive, got {s.train.lr}")
    for where, value in {"[train] epochs": s.train.epochs, "[train] batch_size": s.train.batch_size}.items():
        if value is not None and value < 1:
            raise UserError(f"{where} must be at least 1, got {value}")
    for section in (s.data, *[t for t in s.transfer]):
        for key in ("train_subset", "test_subset", "image_size"):
            value = getattr(section, key)
            if value is not None and value < 1:
                raise UserError(f"{key} = {value} must be at least 1")


def _check_design(d: DesignConfig, prune: list[PruneConfig], source: ArchSpec) -> None:
    if not d.pattern_names() or len(set(d.pattern_names())) != len(d.pattern_names()):
        raise UserError(f"[design] pattern must name distinct [[prune]] entries, got {d.pattern!r}")
    names = [p.name for p in prune]
    for pattern in d.pattern_names():
        if pattern not in names:
            raise UserError(f"[design] pattern = {pattern!r} names no [[prune]] entry; give one of {names}")
        method = next(p.method for p in prune if p.name == pattern)
        if PRUNERS[method].unit != "channels":
            channel_methods = sorted(n for n, m in PRUNERS.items() if m.unit == "channels")
            raise UserError(
                f"[design] pattern {pattern!r} uses {method}, which does not prune channels; designs need a "
                f"channel method ({', '.join(channel_methods)})"
            )
    if not d.budgets:
        raise UserError("[design] budgets is empty")
    bad = [k for k in d.match if k not in BUDGET_KINDS]
    if bad or not d.match or len(set(d.match)) != len(d.match):
        raise UserError(f"[design] match must list distinct cost kinds among {', '.join(BUDGET_KINDS)}, got {d.match}")
    for key in ("per_layer", "pruned"):
        chosen = getattr(d, key)
        unknown = [n for n in chosen if n not in d.pattern_names()] if isinstance(chosen, list) else []
        if unknown:
            raise UserError(f"[design] {key} = {chosen} names {unknown}, which [design] pattern does not list")
    for b in d.budget_list():
        budget_kind(b)
    if d.multiple_of < 1:
        raise UserError(f"[design] multiple_of must be at least 1, got {d.multiple_of}")


def _check_dataset(name: str, where: str) -> None:
    if name.startswith("imagefolder:"):
        return
    if name not in list_datasets():
        raise UserError(
            f"[{where}] dataset {name!r} is unknown; choose one of {', '.join(list_datasets())} or imagefolder:PATH"
        )


def slug(budget: str) -> str:
    """A folder-safe name for a budget string: ``params=25%`` -> ``params-25pct``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", budget.replace("%", "pct")).strip("-")
