"""Width search with Optuna: a thin adapter from trials to specs, trained by the guided engine.

* Objective: validation accuracy after a short training (never the test set), or two objectives,
  accuracy and MACs, with NSGA-II (a Pareto front). Every trial meets the budget by construction
  (`search.space.WidthSpace`).
* Samplers: TPE, or uniform random sampling (``sampler="random"``: the control that says whether TPE
  beats chance); NSGA-II for two objectives.
* Early stopping of unpromising trials through Optuna's pruners (median, Hyperband) on per-epoch
  validation accuracy, single-objective only, off by default so that every trial completes: at the small
  trial counts of a study the median pruner stops about half of all trials once its 5 start-up trials
  are done. (Optuna's "pruners" stop trials; they are not network pruning.)
* Warm start: guided and uniform designs are enqueued as the first trials.
* Storage: a journal file under the output folder by default (no server), or any Optuna RDB URL
  (``postgresql://...``) shared by many workers; with RDB storage, heartbeats mark a killed worker's trial
  failed and a retry callback runs it again. URLs are never printed with their password.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guided.errors import UserError
from guided.shapes.design import Budget
from guided.storage.folders import SearchFolder, StageFolder
from guided.storage.io import atomic_write_text, read_json, refuse_special, remove_inside, write_json, write_spec
from guided.storage.locks import LOCK_NAME, folder_lock
from guided.training.data import ImageData, fingerprint
from guided.training.recipes import Recipe
from guided.training.train import train
from models import ArchSpec, build
from search.plots import draw_history, draw_pareto
from search.space import WidthSpace

__all__ = [
    "run_search",
    "open_storage",
    "storage_url",
    "mask_url",
    "worker_seed",
    "TRIAL_STOPPERS",
    "SAMPLERS",
    "register_sampler",
]

#: Optuna "pruners" that stop unpromising trials early (named apart from network pruning methods).
TRIAL_STOPPERS = ("none", "median", "hyperband")

#: Samplers of single-objective searches, by ``--sampler`` name: ``make(seed=...)`` gives an Optuna sampler.
#: TPE, or uniform random (the control); two objectives always use NSGA-II.
SAMPLERS: dict[str, Callable[..., Any]] = {}


def register_sampler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``make(seed=...) -> optuna sampler`` under ``name`` (a decorator); ``guided search --sampler``
    and the search functions take it."""

    def register(make: Callable[..., Any]) -> Callable[..., Any]:
        SAMPLERS[name] = make
        return make

    return register


@register_sampler("tpe")
def _tpe(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


@register_sampler("random")
def _random(seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def storage_url(text: str):
    """Parse a database URL into a SQLAlchemy ``URL``, also when the password holds ``/``, ``@`` or ``:``.

    The user part ends at the *last* ``@`` before the query string, so a password need not be
    percent-encoded (``postgresql://me:p@ss/word@host/db`` works); percent-escapes in it are decoded, as
    in every database URL.
    """
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme, sep, rest = text.partition("://")
    head, qmark, query = rest.partition("?")
    user = password = None
    if sep and "@" in head:
        userinfo, head = head.rsplit("@", 1)
        user, colon, secret = userinfo.partition(":")
        password = unquote(secret) if colon else None
        user = unquote(user)
    try:
        url = make_url(f"{scheme}{sep}{head}{qmark}{query}")
        if url.port is not None and not 0 < url.port < 65536:
            raise UserError(f"--storage {mask_url(text)}: port {url.port} is not a TCP port (1 to 65535)")
    except ValueError as exc:  # a port that is not a number
        if isinstance(exc, UserError):
            raise
        raise UserError(f"--storage {mask_url(text)} has a port that is not a number; write HOST:PORT") from None
    except ArgumentError:
        raise UserError(
            f"--storage {mask_url(text)} is not a database URL; write DIALECT://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    return url.set(username=user, password=password) if user is not None else url


#: Query parameters that carry a password (libpq's ``password``, and the spellings drivers accept).
SECRET_PARAMS = ("password", "passwd", "pwd", "pass")


def query_secrets(url) -> list[str]:
    """The password values given as query parameters of a storage URL (text or SQLAlchemy ``URL``), as typed."""
    from urllib.parse import parse_qsl

    if not isinstance(url, str):
        values = [url.query[k] for k in url.query if k.lower() in SECRET_PARAMS]
        return [v for value in values for v in ([value] if isinstance(value, str) else value)]
    query = url.partition("?")[2]
    raw = [pair.partition("=")[2] for pair in query.split("&") if pair.partition("=")[0].lower() in SECRET_PARAMS]
    decoded = [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in SECRET_PARAMS]
    return [v for v in raw + decoded if v]


def mask_url(url) -> str:
    """The URL (text or SQLAlchemy ``URL``) with its password, if any, shown as ``***``: in the user info and
    in a ``password=`` query parameter.

    >>> mask_url("postgresql://me:pw@host/db?sslmode=require&password=s3cret")
    'postgresql://me:***@host/db?sslmode=require&password=***'
    """
    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    scheme, sep, rest = text.partition("://")
    head, qmark, query = rest.partition("?")
    if sep and "@" in head:
        userinfo, host = head.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        head = f"{user}{':***' if colon else ''}@{host}"
    pairs = []
    for pair in query.split("&") if query else []:
        key, eq, _ = pair.partition("=")
        pairs.append(f"{key}{eq}***" if eq and key.lower() in SECRET_PARAMS else pair)
    return f"{scheme}{sep}{head}{qmark}{'&'.join(pairs)}" if sep else text


def _scrub(message: str, text: str, url) -> str:
    """``message`` with every spelling of the URL's password (as typed, decoded, encoded) replaced by ``***``."""
    from urllib.parse import quote

    secrets = set()
    for secret in ([url.password] if url.password else []) + query_secrets(url) + query_secrets(text):
        secrets |= {secret, quote(secret, safe=""), quote(secret)}
    scheme, sep, rest = text.partition("://")
    head = rest.partition("?")[0]
    if "@" in head and ":" in head.rsplit("@", 1)[0]:
        secrets.add(head.rsplit("@", 1)[0].partition(":")[2])
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def open_storage(url: str | None, out_dir: Path, *, heartbeat: int = 30):
    """An Optuna storage: a journal file in ``out_dir`` by default, else the RDB at ``url``.

    With an RDB, each running trial beats every ``heartbeat`` seconds; a trial silent for two beats (its
    worker was killed) is marked failed by the next worker that starts a trial, and retried once more as a
    new trial, up to three times. The password is never printed nor written to a file.
    """
    import optuna

    if url is None:
        from optuna.storages.journal import JournalFileBackend

        out_dir.mkdir(parents=True, exist_ok=True)
        journal = SearchFolder(out_dir).journal
        refuse_special(journal)  # optuna appends to it: never through a link, never to a FIFO or device
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    import time
    import warnings

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    parsed = storage_url(url)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's terms; we need them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    parsed.render_as_string(hide_password=False),
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
        except (IntegrityError, ProgrammingError) as exc:  # workers starting together race to create the schema
            error = exc
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:  # noqa: BLE001 - a wrong URL, an unreachable server: the user's to fix
            error = exc
            break
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UserError(f"cannot open storage {mask_url(parsed)}: {_scrub(message, url, parsed)[:200]}")


def run_search(
    target: ArchSpec,
    budget: Budget,
    data: ImageData,
    recipe: Recipe,
    *,
    trials: int,
    out_dir: str | Path,
    objectives: Sequence[str] = ("acc",),
    pruner: str = "none",
    sampler: str = "tpe",
    seed_designs: Sequence[ArchSpec] = (),
    storage: str | None = None,
    heartbeat: int = 30,
    study_name: str = "guided-search",
    per_layer: bool = False,
    seed: int = 0,
    device: Any = "cpu",
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Search widths of ``target`` at ``budget``; returns the summary written to ``out_dir/search.json``.

    Args:
        target: the architecture whose widths are searched (its widths are the base widths).
        budget: every trial's parameters or MACs (within 1%).
        data: train split and a *validation* split as ``test`` (see `guided.training.data.validation_split`).
        recipe: the short training of each trial.
        trials: finished (complete or stopped) trials the study should reach, over all workers.
        out_dir: trial runs, best spec(s), trials CSV, plots.
        objectives: ``("acc",)`` or ``("acc", "macs")`` (NSGA-II, a Pareto front).
        pruner: ``none``, ``median`` (after 5 complete start-up trials) or ``hyperband`` (single objective
            only).
        sampler: a name in `SAMPLERS`: ``tpe`` or ``random`` (single objective only; two objectives use NSGA-II).
        seed_designs: specs enqueued first (guided, uniform designs).
        storage: an Optuna RDB URL; default a journal file in ``out_dir``.
        heartbeat: seconds between a running trial's heartbeats (RDB storage).
        study_name: joins an existing study of that name in the storage.
        per_layer: search one ratio per layer instead of per stage.
        seed: training seed, and the sampler seed (with shared storage, each worker derives its own from it).
    """
    import optuna

    multi = _check_request(tuple(objectives), pruner, trials, sampler)
    out = Path(out_dir)
    space = WidthSpace(target, budget, per_layer=per_layer)
    space.spec(dict.fromkeys(space.names, 1.0))  # the uniform point: refuses an unreachable budget now
    request = {
        "target": target.to_dict(),
        "budget": budget.to_dict(),
        "data": fingerprint(data),
        "recipe": recipe.to_dict(),
        **{"objectives": list(objectives), "sampler": sampler, "pruner": pruner, "per_layer": per_layer},
        **{"seed": seed, "study": study_name, "seed_designs": [s.to_dict() for s in seed_designs]},
    }
    shared = open_storage(storage, out, heartbeat=heartbeat) if storage is not None else None  # may refuse
    if out.is_dir():
        _claim(out, request, write=False)  # refuse a foreign folder before locking (the lock file) in it
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "search folder") if storage is None else contextlib.nullcontext():
        _claim(out, request)
        if storage is None:
            _drop_unfinished(out, study_name)
        sampler_seed = seed if storage is None else worker_seed(seed, out)  # shared storage: one seed per worker
        stored = shared if shared is not None else open_storage(None, out)
        study = _create_study(multi, pruner, sampler, recipe.epochs, sampler_seed, stored, study_name)
        for i, spec in enumerate(seed_designs):
            study.enqueue_trial(space.params_of(spec), user_attrs={"seed_design": i}, skip_if_exists=True)

        objective = _objective(
            space, data, recipe, out, seed=seed, device=device, precision=precision, multi=multi, log=log
        )
        done = tuple(optuna.trial.TrialState[name] for name in DONE_STATES)
        stop = optuna.study.MaxTrialsCallback(trials, states=done)
        if len(study.get_trials(deepcopy=False, states=done)) < trials:
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is our exception, shown once
            study.optimize(objective, callbacks=[stop], catch=())
        return summarize(study, out, multi=multi, storage=storage)


#: Trial states that count toward ``trials``: completed, or stopped early by the trial stopper.
DONE_STATES = ("COMPLETE", "PRUNED")


def _claim(out: Path, request: dict[str, Any], *, write: bool = True) -> None:
    """Refuse a search folder that holds another search (another target, budget, data, recipe, sampler,
    ...) or something that is not a search; record this search's request in a new one."""
    path = SearchFolder(out).request
    if path.is_file():
        held = read_json(path, "search request")
        if held != request:
            differ = [k for k in request if not isinstance(held, dict) or held.get(k) != request[k]]
            raise UserError(
                f"{out} holds another search (its {', '.join(differ) or 'request'} differ); choose another --out, "
                "or repeat the request it holds to resume it"
            )
        return
    if SearchFolder(out).journal.is_file():
        raise UserError(
            f"{out} holds a search begun by an earlier version of guided, which cannot be resumed exactly; remove "
            "the folder to search again, or choose another --out"
        )
    others = [p for p in out.iterdir() if p.name not in (LOCK_NAME, StageFolder(out).started.name)]  # a stage's
    if others:
        raise UserError(f"{out} is not a search folder (it holds {others[0].name}); choose another --out")
    if write:
        write_json(path, request)


#: The file in a search folder that records what it searches (`_claim`).


def _drop_unfinished(out: Path, study_name: str) -> None:
    """Resume a journal-stored search exactly: keep its finished trials, in order, and drop the trials an
    interrupted run left running, failed or waiting (the journal is rewritten, then swapped in whole).

    With the sampler reseeded from each trial's number (`_PerTrialSeed`) and the seed designs enqueued again,
    the resumed search then proposes, trains and scores the trials an uninterrupted run would have.
    """
    import optuna

    journal = SearchFolder(out).journal
    if not journal.is_file():
        return
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(None, out))
    except KeyError:
        return
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    kept = [t for t in trials if t.state.name in DONE_STATES]
    if len(kept) == len(trials):
        return
    rebuilt = out / ".study.journal.rebuild"
    remove_inside(rebuilt, out)
    from optuna.storages.journal import JournalFileBackend

    fresh = optuna.create_study(
        study_name=study_name,
        storage=optuna.storages.JournalStorage(JournalFileBackend(str(rebuilt))),
        directions=study.directions,
    )
    fresh.add_trials(kept)
    os.replace(rebuilt, journal)


def _objective(space: WidthSpace, data: ImageData, recipe: Recipe, out: Path, *, seed, device, precision, multi, log):
    """A trial: the proposed widths trained briefly into ``out/trials/trial-NNNN``; validation accuracy
    (and MACs with two objectives)."""

    def objective(trial) -> float | tuple[float, float]:
        spec = space.suggest(trial)
        run = out / "trials" / f"trial-{trial.number:04d}"
        remove_inside(run, out)  # left by an interrupted attempt at this trial: it starts over
        result = train(
            build(spec, seed=seed),
            data,
            recipe,
            out_dir=run,
            seed=seed,
            device=device,
            precision=precision,
            on_epoch=None if multi else _reporter(trial),
            log=lambda _line: None,
        )
        log(
            f"trial {trial.number}: {result['params']:,} params, {result['macs'] / 1e6:.2f}M MACs, "
            f"validation accuracy {result['test_acc']:.2%}"
        )
        return (result["test_acc"], float(result["macs"])) if multi else result["test_acc"]

    return objective


def worker_seed(seed: int, out: Path) -> int:
    """The sampler seed of one worker of a shared study: derived from ``seed``, the host and the worker's
    ``--out`` folder, so that workers given the same ``--seed`` draw different trials, and the same worker
    started again draws the same ones."""
    import hashlib
    import socket

    key = f"{seed}|{socket.gethostname()}|{Path(out).resolve()}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _check_request(objectives: tuple[str, ...], pruner: str, trials: int, sampler: str = "tpe") -> bool:
    """Refuse unknown objectives, stoppers, samplers and trial counts; returns whether the search is
    multi-objective."""
    if objectives not in (("acc",), ("acc", "macs")):
        raise UserError(f"objectives must be acc or acc,macs, got {','.join(objectives)}")
    if pruner not in TRIAL_STOPPERS:
        raise UserError(f"unknown pruner {pruner!r}; choose one of {', '.join(TRIAL_STOPPERS)}")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if len(objectives) == 2 and (pruner != "none" or sampler != "tpe"):
        raise UserError(
            "two objectives search with NSGA-II and no trial stopper: drop --pruner and --sampler, or search acc alone"
        )
    return len(objectives) == 2


def _create_study(multi: bool, pruner: str, sampler: str, epochs: int, seed: int, storage, name: str):
    """The Optuna study: TPE or random (one objective) or NSGA-II (accuracy and MACs), with its trial stopper."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make = optuna.samplers.NSGAIISampler if multi else SAMPLERS[sampler]
    chosen = per_trial_seed(make, seed)
    if multi or pruner == "none":
        stopper = optuna.pruners.NopPruner()
    elif pruner == "median":  # no trial is stopped before 5 have completed, nor in its first epoch
        stopper = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    else:
        stopper = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=chosen,
        pruner=stopper,
        directions=["maximize", "minimize"] if multi else ["maximize"],
        load_if_exists=True,
    )


def per_trial_seed(make: Callable[..., Any], seed: int):
    """A sampler that makes a fresh ``make(seed=...)`` for each trial, seeded from ``seed``, the study's name
    and the trial's number: studies of other names (a study's search arms) draw other trials, and a
    trial's proposal depends only on the trials finished before it and on its number, not on how many
    proposals this process drew before, so a resumed search proposes what an uninterrupted one would
    (`_drop_unfinished`). The wrapped sampler of the current trial is ``.inner``."""
    import hashlib

    import optuna

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = make(seed=seed)

        def before_trial(self, study, trial) -> None:
            key = hashlib.sha256(f"{seed}:{study.study_name}:{trial.number}".encode()).digest()
            self.inner = make(seed=int.from_bytes(key[:4], "little"))
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:  # seeds come from trial numbers
            pass

    return PerTrialSeed()


def _reporter(trial) -> Callable[[dict[str, Any]], None]:
    """Per epoch: report validation accuracy to the trial, and stop it when its stopper says so."""
    import optuna

    def report(row: dict[str, Any]) -> None:
        trial.report(row["test_acc"], row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned()

    return report


#: A single-objective search writes the specs of its best this many trials (``top-<j>.json``), best first.
TOP_TRIALS = 3


def summarize(study, out: Path, *, multi: bool, storage: str | None) -> dict[str, Any]:
    """Write best spec(s) (and the `TOP_TRIALS` best), the trials table and plots; return the summary."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise UserError("no trial completed; nothing to report")
    df = study.trials_dataframe()
    atomic_write_text(SearchFolder(out).trials, df.to_csv(index=False))
    best = study.best_trials if multi else [study.best_trial]
    files = []
    for i, t in enumerate(best):
        path = SearchFolder(out).pareto(i) if multi else SearchFolder(out).best
        write_spec(path, ArchSpec.from_json(t.user_attrs["spec"]))
        files.append(path.name)
    summary = {
        "study": study.study_name,
        "storage": mask_url(storage_url(storage)) if storage else str(SearchFolder(out).journal),
        "trials": {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in optuna.trial.TrialState},
        "best": [
            {
                "number": t.number,
                "values": t.values,
                "params": t.user_attrs["params"],
                "macs": t.user_attrs["macs"],
                "file": f,
            }
            for t, f in zip(best, files)
        ],
    }
    ranked = sorted(complete, key=lambda t: (-t.values[0], t.number))[: 0 if multi else TOP_TRIALS]
    for j, t in enumerate(ranked, 1):
        write_spec(SearchFolder(out).top(j), ArchSpec.from_json(t.user_attrs["spec"]))
    summary["top"] = [{"rank": j, "number": t.number, "value": t.values[0]} for j, t in enumerate(ranked, 1)]
    summary["history"] = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.values[0] if t.state == optuna.trial.TrialState.COMPLETE else None,
            "seed_design": t.user_attrs.get("seed_design"),
            "params": t.user_attrs.get("params"),
            "macs": t.user_attrs.get("macs"),
        }
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ]

    draw_history({study.study_name: summary["history"]}, out / "history.png")
    if multi:
        draw_pareto(complete, [t.number for t in best], out / "pareto.png")
    write_json(SearchFolder(out).summary, summary)
    return summary
