"""Bad input, as a new user types it, through the real CLI entry point (`guided.cli.main`).

Every case must end with exit code 2, exactly one line on stderr, no traceback, and its output path as
it was (absent, or byte for byte unchanged). The fixtures are a real 2-epoch training run on the offline
digits data, pruned folders made from it, and broken copies of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from guided.cli import main

pytestmark = pytest.mark.slow  # one real training run and a few dozen in-process commands (~20 s)

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--arch", "vgg-tiny", "--dataset", "digits", "--train-subset", "256", "--batch-size", "64"]


class _Payload:
    """A pickled object that touches a marker file when unpickled: a stand-in for malicious code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def poison(path: Path, marker: Path) -> None:
    """Replace a weights file with a checkpoint-looking pickle that would run code if loaded unsafely."""
    torch.save({"features.0.weight": _Payload(marker)}, path)


def _unwritable(base: Path) -> Path | None:
    """A folder this process cannot create files in (root ignores permission bits: use sysfs there)."""
    if os.geteuid() != 0:
        folder = base / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    try:
        tempfile.TemporaryDirectory(dir="/sys").cleanup()
    except OSError:
        return Path("/sys")
    return None


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad-inputs")
    run = base / "run"
    assert main(["train", *TRAIN, "--epochs", "2", "--save-init", "--out", str(run)]) == 0
    pruned, masked = base / "pruned", base / "masked"
    assert main(["prune", "--method", "l1-norm", "--checkpoint", str(run), "--ratio", "0.5", "--out", str(pruned)]) == 0
    assert (
        main(["prune", "--method", "magnitude", "--checkpoint", str(run), "--ratio", "0.5", "--out", str(masked)]) == 0
    )
    assert main(["summarize", str(pruned), "--out", str(base / "pattern.json")]) == 0
    e = {"base": base, "run": run, "pruned": pruned, "masked": masked, "pattern": base / "pattern.json"}

    def broken_run(name: str, make) -> Path:
        copy = base / name
        shutil.copytree(run, copy)
        make(copy)
        return copy

    e["run_truncated"] = broken_run("run-truncated", lambda d: (d / "model.pt").write_bytes(b"PK\x03\x04" + b"\0" * 40))
    e["run_garbage"] = broken_run("run-garbage", lambda d: (d / "model.pt").write_text("not a checkpoint"))
    other = base / "other-spec.json"
    assert main(["spec", "--arch", "vgg-tiny", "--width-mult", "2", "--in-channels", "1", "--out", str(other)]) == 0
    e["run_mismatch"] = broken_run("run-mismatch", lambda d: shutil.copy(other, d / "spec.json"))
    e["pruned_garbage"] = base / "pruned-garbage"
    shutil.copytree(pruned, e["pruned_garbage"])
    (e["pruned_garbage"] / "model.pt").write_bytes(b"\x80\x04garbage")
    e["file"] = base / "a-file.txt"
    e["file"].write_text("I am a file\n")
    e["empty"] = base / "empty-folder"
    e["empty"].mkdir()
    e["unwritable"] = _unwritable(base)
    for name, content in {
        "pattern_list": [1, 2, 3],
        "pattern_stages_int": {"kind": "channels", "stages": 3, "layers": []},
        "pattern_no_ratio": {"kind": "channels", "stages": [{"stage": 0}], "layers": [{"stage": 0}]},
        "pattern_kind": {"kind": "colours", "stages": [], "layers": []},
    }.items():
        e[name] = base / f"{name}.json"
        e[name].write_text(json.dumps(content))
    (base / "not-json.json").write_text("{oops")
    e["not_json"] = base / "not-json.json"
    e["toml_unknown"] = base / "unknown-key.toml"
    e["toml_unknown"].write_text("epochz = 3\n")
    e["toml_type"] = base / "wrong-type.toml"
    e["toml_type"].write_text('epochs = "three"\n')
    e["toml_broken"] = base / "broken.toml"
    e["toml_broken"].write_text("[study\nname = 1\n")
    tiny = (ROOT / "configs" / "study-tiny-digits.toml").read_text()
    for name, (old, new) in {
        "study_negative_ratio": ("ratio = 0.4", "ratio = -0.4"),
        "study_unknown_method": ('method = "slimming"', 'method = "slimmer"'),
        "study_unknown_section": ("[report]", "[reprot]"),
        "study_bad_budget": ('budgets = ["50%"]', 'budgets = ["500%"]'),
        "study_no_pattern": ('pattern = "slimming"', 'pattern = "nothing"'),
    }.items():
        assert old in tiny or name == "study_unknown_section"
        e[name] = base / f"{name}.toml"
        e[name].write_text(tiny.replace(old, new) if old in tiny else tiny + "\n[reprot]\ntitle = 'x'\n")
    e["csv_columns"] = base / "runs.csv"
    e["csv_columns"].write_text("name,acc\na,0.5\n")
    return e


def _unfinished(env, name: str) -> Path:
    """A copy of the run that looks interrupted after epoch 2 of 2 (checkpoint, no model.pt/result.json)."""
    copy = env["base"] / name
    if not copy.exists():
        shutil.copytree(env["run"], copy)
        (copy / "result.json").unlink()
        (copy / "model.pt").unlink()
    return copy


# (id, command line with {placeholders}, the path that must stay as it was). {new} is a fresh path per case;
# {T} stands for a small vgg-tiny-on-digits training setup.
CASES = [
    # ---- train
    ("train-out-is-file", "train {T} --epochs 1 --out {file}", "{file}"),
    ("train-out-under-file", "train {T} --epochs 1 --out {file}/run", "{file}"),
    ("train-out-unwritable", "train {T} --epochs 1 --out {unwritable}/run", "{unwritable}/run"),
    ("train-resume-empty", "train {T} --epochs 1 --resume --out {empty}", "{empty}"),
    ("train-resume-more-epochs", "train {T} --epochs 3 --resume --out {run}", "{run}"),
    ("train-again-without-resume", "train {T} --epochs 2 --out {run}", "{run}"),
    ("train-unknown-arch", "train --arch vgg17 --dataset digits --out {new}", "{new}"),
    ("train-unknown-dataset", "train --arch vgg-tiny --dataset imagenot --out {new}", "{new}"),
    ("train-no-arch", "train --dataset digits --out {new}", "{new}"),
    ("train-missing-spec", "train --spec {base}/nope.json --dataset digits --out {new}", "{new}"),
    ("train-spec-not-json", "train --spec {not_json} --dataset digits --out {new}", "{new}"),
    ("train-negative-width", "train {T} --width-mult -1 --out {new}", "{new}"),
    ("train-batch-too-big", "train {T} --batch-size 100000 --out {new}", "{new}"),
    ("train-spec-wrong-input", "train --spec {run}/spec.json --dataset digits --image-size 32 --out {new}", "{new}"),
    ("train-config-missing", "train {T} --config {base}/nope.toml --out {new}", "{new}"),
    ("train-config-unknown-key", "train {T} --config {toml_unknown} --out {new}", "{new}"),
    ("train-config-wrong-type", "train {T} --config {toml_type} --out {new}", "{new}"),
    ("train-config-broken", "train {T} --config {toml_broken} --out {new}", "{new}"),
    ("train-gates-on-vgg", "train {T} --sparsity-gates 1e-4 --out {new}", "{new}"),
    ("train-masks-garbage", "train {T} --masks {file} --out {new}", "{new}"),
    ("train-bad-epochs-value", "train {T} --epochs two --out {new}", "{new}"),
    ("train-bad-precision", "train {T} --precision fp8 --out {new}", "{new}"),
    # ---- prune
    ("prune-out-is-file", "prune --method l1-norm --checkpoint {run} --ratio 0.5 --out {file}", "{file}"),
    (
        "prune-out-unwritable",
        "prune --method l1-norm --checkpoint {run} --ratio 0.5 --out {unwritable}/p",
        "{unwritable}/p",
    ),
    ("prune-out-holds-pruned", "prune --method l1-norm --checkpoint {run} --ratio 0.3 --out {pruned}", "{pruned}"),
    ("prune-truncated-weights", "prune --method l1-norm --checkpoint {run_truncated} --ratio 0.5 --out {new}", "{new}"),
    ("prune-garbage-weights", "prune --method l1-norm --checkpoint {run_garbage} --ratio 0.5 --out {new}", "{new}"),
    ("prune-spec-mismatch", "prune --method l1-norm --checkpoint {run_mismatch} --ratio 0.5 --out {new}", "{new}"),
    ("prune-missing-run", "prune --method l1-norm --checkpoint {base}/nope --ratio 0.5 --out {new}", "{new}"),
    ("prune-ratio-above-one", "prune --method l1-norm --checkpoint {run} --ratio 1.5 --out {new}", "{new}"),
    ("prune-ratio-negative", "prune --method l1-norm --checkpoint {run} --ratio -0.4 --out {new}", "{new}"),
    (
        "prune-ratio-and-preset",
        "prune --method l1-norm --checkpoint {run} --ratio 0.5 --preset vgg16-a --out {new}",
        "{new}",
    ),
    ("prune-preset-wrong-model", "prune --method l1-norm --checkpoint {run} --preset resnet56-a --out {new}", "{new}"),
    ("prune-sss-on-vgg", "prune --method sss --checkpoint {run} --ratio 0.5 --out {new}", "{new}"),
    (
        "prune-checkpoint-and-arch",
        "prune --method l1-norm --checkpoint {run} --arch vgg-tiny --ratio 0.5 --out {new}",
        "{new}",
    ),
    ("prune-unknown-method", "prune --method l2-norm --checkpoint {run} --ratio 0.5 --out {new}", "{new}"),
    ("prune-stage-ratio-count", "prune --method l1-norm --checkpoint {run} --ratio 0.5,0.2 --out {new}", "{new}"),
    # ---- retrain
    ("retrain-garbage-weights", "retrain --from {pruned_garbage} --mode finetune --out {new}", "{new}"),
    ("retrain-missing-folder", "retrain --from {base}/nope --mode finetune --out {new}", "{new}"),
    ("retrain-lottery-structured", "retrain --from {pruned} --mode lottery --out {new}", "{new}"),
    ("retrain-out-is-file", "retrain --from {pruned} --mode finetune --out {file}", "{file}"),
    ("retrain-unknown-mode", "retrain --from {pruned} --mode scratch-c --out {new}", "{new}"),
    # ---- design
    (
        "design-pattern-is-list",
        "design --pattern {pattern_list} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-pattern-stages-int",
        "design --pattern {pattern_stages_int} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-pattern-no-ratio",
        "design --pattern {pattern_no_ratio} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    ("design-pattern-kind", "design --pattern {pattern_kind} --arch vgg-tiny --budget params=5k --out {new}", "{new}"),
    ("design-pattern-not-json", "design --pattern {not_json} --arch vgg-tiny --budget params=5k --out {new}", "{new}"),
    ("design-budget-wider", "design --uniform --arch vgg-tiny --budget params=100M --out {new}", "{new}"),
    ("design-budget-garbage", "design --uniform --arch vgg-tiny --budget lots --out {new}", "{new}"),
    ("design-budget-negative", "design --uniform --arch vgg-tiny --budget params=-5 --out {new}", "{new}"),
    ("design-budget-kind", "design --uniform --arch vgg-tiny --budget flops=5k --out {new}", "{new}"),
    (
        "design-pattern-and-uniform",
        "design --uniform --pattern {pattern} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-stage-map-length",
        "design --pattern {pattern} --arch vgg-tiny --budget params=5k --stage-map 0,1 --out {new}",
        "{new}",
    ),
    ("design-out-is-folder", "design --uniform --arch vgg-tiny --budget params=5k --out {empty}", "{empty}"),
    (
        "design-out-unwritable",
        "design --uniform --arch vgg-tiny --budget params=5k --out {unwritable}/d.json",
        "{unwritable}/d.json",
    ),
    # ---- cost, spec, summarize, plot
    ("cost-unknown-arch", "cost --arch resnet57", None),
    ("cost-spec-not-json", "cost --spec {not_json}", None),
    ("spec-out-is-folder", "spec --arch vgg-tiny --out {empty}", "{empty}"),
    ("spec-out-unwritable", "spec --arch vgg-tiny --out {unwritable}/s.json", "{unwritable}/s.json"),
    ("summarize-missing", "summarize {base}/nope --out {new}", "{new}"),
    ("summarize-mixed", "summarize {pruned} {masked} --out {new}", "{new}"),
    ("summarize-out-is-folder", "summarize {pruned} --out {empty}", "{empty}"),
    ("plot-csv-columns", "plot accuracy {csv_columns} --out {new}", "{new}"),
    ("plot-widths-bad-pattern", "plot widths {pattern_stages_int} --out {new}", "{new}"),
    # ---- search
    ("search-out-is-file", "search {T} --budget params=4000 --trials 1 --out {file}", "{file}"),
    ("search-bad-storage", "search {T} --budget params=4000 --storage nosuchdb://x --out {new}", "{new}"),
    ("search-budget-wider", "search {T} --budget params=100M --trials 1 --out {new}", "{new}"),
    # ---- run
    ("run-missing-file", "run {base}/nope.toml --out {new}", "{new}"),
    ("run-broken-toml", "run {toml_broken} --out {new}", "{new}"),
    ("run-negative-ratio", "run {study_negative_ratio} --out {new}", "{new}"),
    ("run-unknown-method", "run {study_unknown_method} --out {new}", "{new}"),
    ("run-unknown-section", "run {study_unknown_section} --out {new}", "{new}"),
    ("run-budget-over-100", "run {study_bad_budget} --out {new}", "{new}"),
    ("run-pattern-names-nothing", "run {study_no_pattern} --out {new}", "{new}"),
    ("run-out-is-file", "run {tiny_study} --out {file}", "{file}"),
    ("run-out-not-a-study", "run {tiny_study} --out {run}", "{run}"),
    ("run-out-unwritable", "run {tiny_study} --out {unwritable}/s", "{unwritable}/s"),
    # ---- the command line itself
    ("no-such-command", "trian --out {new}", "{new}"),
    ("quickstart-out-is-file", "quickstart --out {file}", "{file}"),
]


def _fill(text: str, env: dict[str, Path], new: Path) -> str:
    values = {k: str(v) for k, v in env.items()}
    return text.format(T=" ".join(TRAIN), tiny_study=ROOT / "configs" / "study-tiny-digits.toml", new=new, **values)


def snapshot(path: Path) -> object:
    """Absent (None), or every file below ``path`` with a hash of its bytes."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit 2, one stderr line, no traceback; return the line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits itself
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert "Traceback" not in out + err
    return lines[0]


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, env, tmp_path, capsys):
    name, argv, watch = case
    if "{unwritable}" in argv and env["unwritable"] is None:
        pytest.skip("no folder on this machine refuses writes to this user")
    new = tmp_path / "out"
    argv = _fill(argv, env, new).split()
    watched = Path(_fill(watch, env, new)) if watch else None
    before = snapshot(watched) if watched else None
    line = one_line_error(argv, capsys)
    assert line.startswith("guided"), line
    if watched:
        assert snapshot(watched) == before, f"{watched} changed"


def test_corrupt_dataset_cache_is_rebuilt_with_a_notice(tmp_path, monkeypatch, capsys):
    from guided.data import load_dataset

    monkeypatch.setenv("GUIDED_CACHE", str(tmp_path))
    first = load_dataset("digits")
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    capsys.readouterr()
    again = load_dataset("digits")
    err = capsys.readouterr().err
    assert (again.train.images == first.train.images).all()
    assert len(err.strip().splitlines()) == 1 and "unreadable" in err
    assert load_dataset("digits").num_classes == 10  # the rebuilt cache reads back silently
    assert capsys.readouterr().err == ""


@pytest.fixture()
def poisoned(env, tmp_path):
    """Every entry point that loads weights, each given a file with a pickled payload."""
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    shutil.copytree(env["run"], run)
    poison(run / "model.pt", marker)
    pruned = tmp_path / "pruned"
    shutil.copytree(env["pruned"], pruned)
    poison(pruned / "model.pt", marker)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(_unfinished(env, "interrupted"), interrupted)
    poison(interrupted / "checkpoint.pt", marker)
    ticket_run = tmp_path / "ticket-run"
    shutil.copytree(env["run"], ticket_run)
    masked = tmp_path / "masked"
    assert (
        main(
            ["prune", "--method", "magnitude", "--checkpoint", str(ticket_run), "--ratio", "0.5", "--out", str(masked)]
        )
        == 0
    )
    poison(ticket_run / "init.pt", marker)
    return {"marker": marker, "run": run, "pruned": pruned, "interrupted": interrupted, "masked": masked}


def test_pickled_payload_never_runs(poisoned, tmp_path, capsys):
    p = poisoned
    out = tmp_path / "out"
    entry_points = {
        "prune --checkpoint": ["prune", "--method", "l1-norm", "--checkpoint", str(p["run"]), "--ratio", "0.5"],
        "retrain --from": ["retrain", "--from", str(p["pruned"]), "--mode", "finetune"],
        "train --resume": ["train", *TRAIN, "--epochs", "2", "--resume"],
        "retrain --mode lottery": ["retrain", "--from", str(p["masked"]), "--mode", "lottery"],
    }
    for what, argv in entry_points.items():
        target = p["interrupted"] if what == "train --resume" else out
        before = snapshot(target)
        line = one_line_error([*argv, "--out", str(target)], capsys)
        assert "objects other than tensors" in line, (what, line)
        assert "weights_only" not in line, (what, line)  # never suggest turning the check off
        assert not p["marker"].exists(), f"{what}: the payload ran"
        assert snapshot(target) == before, what
    # the payload is live: loading it the unsafe way would have run it
    torch.load(p["run"] / "model.pt", weights_only=False)
    assert p["marker"].exists()


@pytest.mark.parametrize("password", ["Sl/ashPW42", "p@ss@word9", "co:lon:pw7", "pc%zz%9", "%2Fenc%40ded"])
def test_storage_password_never_shown_for_an_unreachable_server(password, tmp_path, capsys):
    from urllib.parse import quote, unquote

    url = f"postgresql://guided:{password}@127.0.0.1:1/postgres"
    out = tmp_path / "search"
    argv = ["search", *TRAIN, "--budget", "params=4000", "--trials", "1", "--storage", url, "--out", str(out)]
    line = one_line_error(argv, capsys)
    assert "cannot open storage" in line and "127.0.0.1" in line
    for spelling in {password, unquote(password), quote(unquote(password), safe="")}:
        assert spelling not in line
        for f in out.rglob("*") if out.exists() else []:
            assert not f.is_file() or spelling.encode() not in f.read_bytes()
