"""Bad input, as a new user (or an attacker) types it, through the real CLI entry point (`guided.cli.main`).

Every case must end with exit code 2, exactly one line on stderr, no traceback, its output path as it was
(absent, or byte for byte unchanged), every input byte for byte unchanged (the whole fixture folder is
hashed before and after), and nothing created in the working folder. The fixtures are a real 2-epoch
training run on the offline digits data, pruned folders and a search made from it, broken copies of them,
special files (a device, a FIFO, links), and study files broken one key at a time.
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
    _more_fixtures(e, base, tiny)
    return e


def _more_fixtures(e: dict[str, Path], base: Path, tiny: str) -> None:
    """Inputs of the second half of the table: study files that escape or overflow, special files, broken
    tables and patterns, an image-folder bomb, a finished search."""
    import csv

    from PIL import Image

    studies = {
        "study_prune_name_escape": ('name = "slimming"', 'name = "../../escape"'),
        "study_prune_name_slash": ('name = "slimming"', 'name = "a/b"'),
        "study_prune_name_absolute": ('name = "slimming"', 'name = "/tmp/guided-escape"'),
        "study_transfer_name_escape": ('name = "wide"', 'name = "../wide"'),
        "study_name_escape": ('name = "study-tiny-digits"', 'name = "../../study"'),
        "study_l1_nan": ("sparsity_l1 = 1e-4", "sparsity_l1 = nan"),
        "study_l1_negative": ("sparsity_l1 = 1e-4", "sparsity_l1 = -1e-4"),
        "study_width_inf": ('arch = "vgg-tiny"\n\n[train]', 'arch = "vgg-tiny"\nwidth_mult = inf\n\n[train]'),
        "study_stage_map_range": ("width_mult = 1.5", "width_mult = 1.5\nstage_map = [0, 1, 2, 3, 99]"),
        "study_batch_above_data": ("batch_size = 64", "batch_size = 100000"),
        "study_huge_seeds": ("seeds = [0, 1]", f"seeds = {list(range(5000))}"),
        "study_negative_search_seed": ('arms = ["cold", "seeded", "random"]', 'arms = ["cold"]\nseed = -1'),
        "study_transfer_speed": ('name = "wide"', 'name = "speed"'),
        "study_transfer_report": ('name = "wide"', 'name = "report"'),
        "study_transfer_search": ('name = "wide"', 'name = "search"'),
        "study_retrain_twice": ('retrain = ["finetune", "scratch-b"]', 'retrain = ["finetune", "finetune"]'),
        "study_seed_5000_digits": ("seeds = [0, 1]", "seeds = [" + "9" * 5000 + "]"),
        "study_device_mps": ('device = "cpu"', 'device = "mps"'),
        "study_lr_huge": ("epochs = 2", "epochs = 2\nlr = 1e308"),
        "study_validation_one_image": ("validation = 0.2", "validation = 1e-9"),
        "study_base_seeds_foreign": ("seeds = [0, 1]", "seeds = [0, 1]\nbase_seeds = [5]"),
    }
    for name, write in {  # [study] sigma_from folders whose runs.csv no study wrote
        "binary": lambda f: f.write_bytes(bytes(range(256)) * 8),
        "strings": lambda f: f.write_text("domain,budget,arm,role,test_acc\ns,b,a,scratch,high\ns,b,a,scratch,low\n"),
        "huge": lambda f: f.open("wb").truncate(33 * 2**20),  # sparse: 33 MiB on paper, nothing on disk
        "fifo": lambda f: os.mkfifo(f),
    }.items():
        folder = base / f"sigma-{name}"
        folder.mkdir()
        write(folder / "runs.csv")
        studies[f"study_sigma_{name}"] = ('device = "cpu"', f'device = "cpu"\nsigma_from = "{folder}"')
    for name, (old, new) in studies.items():
        assert old in tiny, name
        e[name] = base / f"{name}.toml"
        e[name].write_text(tiny.replace(old, new, 1))
    e["study_binary"] = base / "study-binary.toml"
    e["study_binary"].write_bytes(bytes(range(256)) * 8)
    e["study_utf16"] = base / "study-utf16.toml"
    e["study_utf16"].write_bytes(tiny.encode("utf-16"))
    e["study_deep"] = base / "study-deep.toml"
    e["study_deep"].write_text("[study]\nname = " + "[" * 5000 + "]" * 5000 + "\n")
    for name, state in {
        "weights_nan": {"fc.weight": torch.full((10, 4), float("nan"))},
        "weights_inf": {"conv1.weight": torch.tensor([float("inf")])},
        "weights_int_keys": {0: torch.zeros(3)},
        "weights_sparse": {"fc.weight": torch.eye(3).to_sparse()},
        "weights_meta": {"fc.weight": torch.empty(3, 3, device="meta")},
    }.items():
        e[name] = base / f"{name}.pt"
        torch.save(state, e[name])
    e["unrelated"] = base / "unrelated"  # someone else's folder that happens to hold a config.json
    e["unrelated"].mkdir()
    (e["unrelated"] / "config.json").write_text('{"theirs": true}\n')
    e["other_study"] = base / "other-study"  # a study folder: runs never go inside it
    (e["other_study"] / "stages" / "x").mkdir(parents=True)
    (e["other_study"] / "study.json").write_text('{"name": "other"}\n')
    e["spec_deep"] = base / "spec-deep.json"
    e["spec_deep"].write_text("[" * 100000 + "]" * 100000)
    e["spec_huge"] = base / "spec-huge.json"
    e["spec_huge"].write_bytes(b" " * (33 * 2**20) + b"{}")
    e["binary"] = base / "binary.bin"
    e["binary"].write_bytes(bytes(range(256)) * 8)
    e["fifo"] = base / "fifo"
    os.mkfifo(e["fifo"])
    e["link_full"] = base / "link-to-dev-full"
    e["link_full"].symlink_to("/dev/full")
    e["dangling"] = base / "dangling-link"
    e["dangling"].symlink_to(base / "nothing-here")
    e["loop"] = base / "looping-link"
    e["loop"].symlink_to(e["loop"])
    for name, text in {
        "csv_empty": "",
        "csv_header_only": "label,params,macs,test_acc\n",
        "csv_strings": "label,params,macs,test_acc\na,lots,1,0.5\n",
        "csv_nan": "label,params,macs,test_acc\na,nan,1,0.5\n",
        "csv_negative": "label,params,macs,test_acc\na,10,-1,0.5\n",
    }.items():
        e[name] = base / f"{name}.csv"
        e[name].write_text(text)
    pattern = json.loads(e["pattern"].read_text())
    for name, edit in {
        "pattern_zero": lambda p: [r.update(keep_ratio_mean=0.0) for r in p["stages"] + p["layers"]],
        "pattern_stage_99": lambda p: p["stages"][-1].update(stage=99),
        "pattern_stage_twice": lambda p: p["stages"].append(dict(p["stages"][0])),
    }.items():
        copy = json.loads(json.dumps(pattern))
        edit(copy)
        e[name] = base / f"{name}.json"
        e[name].write_text(json.dumps(copy))
    assert main(["summarize", str(e["masked"]), "--out", str(base / "sparsity.json")]) == 0
    e["sparsity"] = base / "sparsity.json"
    for name, kept in {"layers_text": "abc", "layers_above": "500"}.items():
        e[name] = base / name
        shutil.copytree(e["pruned"], e[name])
        rows = list(csv.DictReader(open(e[name] / "layers.csv")))
        rows[0]["kept"] = kept
        with open(e[name] / "layers.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    e["run_config_type"] = base / "run-config-type"
    shutil.copytree(e["run"], e["run_config_type"])
    config = json.loads((e["run_config_type"] / "config.json").read_text())
    (e["run_config_type"] / "config.json").write_text(json.dumps({**config, "data": {**config["data"], "dataset": 5}}))
    for name in ("bomb", "dangling_image"):
        for split, cls in [(sp, c) for sp in ("train", "test") for c in ("a", "b")]:
            (base / name / split / cls).mkdir(parents=True)
            Image.new("RGB", (16, 16)).save(base / name / split / cls / "x.png")
        e[name] = base / name
    Image.new("1", (20000, 20000)).save(e["bomb"] / "train" / "a" / "big.png")  # 400M pixels, a small file
    (e["dangling_image"] / "train" / "a" / "y.png").symlink_to(base / "gone.png")
    e["vgg11_masks"] = base / "vgg11-masks"
    vgg11 = ["--arch", "vgg11", "--width-mult", "0.0625", "--in-channels", "1", "--input-size", "16"]
    assert (
        main(["design", "--uniform", "--kernel", *vgg11, "--budget", "params=50%", "--out", str(e["vgg11_masks"])]) == 0
    )
    e["search"] = base / "search"
    assert (
        main(["search", *TRAIN, "--epochs", "1", "--budget", "params=4000", "--trials", "1", "--out", str(e["search"])])
        == 0
    )


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
    (
        "prune-weights-no-torchvision",
        "prune --method l1-norm --arch vgg-tiny --weights {run}/model.pt --out {new}",
        "{new}",
    ),
    (
        "prune-torchvision-wrong-weights",
        "prune --method l1-norm --torchvision resnet18 --weights {run}/model.pt --ratio 0.5 --out {new}",
        "{new}",
    ),
    (
        "prune-torchvision-and-checkpoint",
        "prune --method l1-norm --torchvision resnet18 --checkpoint {run} --ratio 0.5 --out {new}",
        "{new}",
    ),
    ("spec-torchvision-unknown", "spec --torchvision resnet7 --out {new}", "{new}"),
    ("spec-torchvision-resnext", "spec --torchvision resnext50_32x4d --out {new}", "{new}"),
    ("spec-torchvision-width-resnet", "spec --torchvision resnet18 --width-mult 0.5 --out {new}", "{new}"),
    ("spec-torchvision-and-arch", "spec --torchvision resnet18 --arch vgg16 --out {new}", "{new}"),
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
    # ---- outputs that would escape --out, overwrite an input, or replace a special file
    ("prune-out-is-its-checkpoint", "prune --method l1-norm --checkpoint {run} --ratio 0.5 --out {run}", "{run}"),
    ("prune-out-inside-checkpoint", "prune --method l1-norm --checkpoint {run} --ratio 0.5 --out {run}/p", "{run}"),
    ("retrain-out-is-its-input", "retrain --from {pruned} --mode finetune --out {pruned}", "{pruned}"),
    ("retrain-out-inside-source-run", "retrain --from {pruned} --mode scratch-e --out {run}/ft", "{run}"),
    (
        "train-out-holds-its-masks",
        "train --spec {masked}/spec.json --masks {masked}/masks.npz --dataset digits --out {masked}",
        "{masked}",
    ),
    ("spec-out-dev-full", "spec --arch vgg-tiny --out /dev/full", "/dev/full"),
    ("spec-out-fifo", "spec --arch vgg-tiny --out {fifo}", "{fifo}"),
    ("spec-out-link-to-device", "spec --arch vgg-tiny --out {link_full}", "/dev/full"),
    ("train-out-dangling-link", "train {T} --epochs 1 --out {dangling}", "{dangling}"),
    ("train-out-looping-link", "train {T} --epochs 1 --out {loop}", None),
    ("search-out-holds-a-training-run", "search {T} --budget params=4000 --trials 1 --out {run}", "{run}"),
    (
        "search-out-holds-another-arch",
        "search {T} --width-mult 1.5 --budget params=4000 --trials 1 --out {search}",
        "{search}",
    ),
    (
        "search-out-holds-another-budget",
        "search {T} --epochs 1 --budget params=3000 --trials 2 --out {search}",
        "{search}",
    ),
    ("run-out-inside-another-study", "run {tiny_study} --out {other_study}/stages/x/mine", "{other_study}"),
    ("run-prune-name-escapes", "run {study_prune_name_escape} --out {new}", "{new}"),
    ("run-prune-name-slash", "run {study_prune_name_slash} --out {new}", "{new}"),
    ("run-prune-name-absolute", "run {study_prune_name_absolute} --out {new}", "{new}"),
    ("run-transfer-name-escapes", "run {study_transfer_name_escape} --out {new}", "{new}"),
    ("run-study-name-escapes", "run {study_name_escape} --out {new}", "{new}"),
    # ---- values that used to end in a traceback
    ("train-width-inf", "train {T} --width-mult inf --out {new}", "{new}"),
    ("train-momentum-negative", "train {T} --momentum -5 --out {new}", "{new}"),
    ("train-weight-decay-negative", "train {T} --weight-decay -1 --out {new}", "{new}"),
    ("train-label-smoothing-2", "train {T} --label-smoothing 2 --out {new}", "{new}"),
    ("train-image-size-huge", "train {T} --image-size 100000 --out {new}", "{new}"),
    ("train-seed-huge", "train {T} --seed 100000000000000000000000 --out {new}", "{new}"),
    ("train-config-binary", "train {T} --config {binary} --out {new}", "{new}"),
    ("train-config-folder", "train {T} --config {empty} --out {new}", "{new}"),
    ("train-spec-deep", "train --spec {spec_deep} --dataset digits --out {new}", "{new}"),
    ("train-spec-huge", "train --spec {spec_huge} --dataset digits --out {new}", "{new}"),
    ("train-image-bomb", "train --arch vgg-tiny --dataset imagefolder:{bomb} --out {new}", "{new}"),
    ("train-dangling-image", "train --arch vgg-tiny --dataset imagefolder:{dangling_image} --out {new}", "{new}"),
    ("cost-width-inf", "cost --arch vgg-tiny --width-mult inf", None),
    (
        "prune-thinet-no-samples",
        "prune --method thinet --checkpoint {run} --ratio 0.5 --samples 0 --out {new}",
        "{new}",
    ),
    (
        "prune-config-wrong-type",
        "prune --method l1-norm --checkpoint {run_config_type} --ratio 0.5 --out {new}",
        "{new}",
    ),
    ("summarize-kept-text", "summarize {layers_text} --out {new}", "{new}"),
    ("summarize-kept-above-original", "summarize {layers_above} --out {new}", "{new}"),
    ("plot-accuracy-binary", "plot accuracy {binary} --out {new}.png", "{new}.png"),
    ("plot-accuracy-empty", "plot accuracy {csv_empty} --out {new}.png", "{new}.png"),
    ("plot-accuracy-header-only", "plot accuracy {csv_header_only} --out {new}.png", "{new}.png"),
    ("plot-accuracy-strings", "plot accuracy {csv_strings} --out {new}.png", "{new}.png"),
    ("plot-accuracy-nan", "plot accuracy {csv_nan} --out {new}.png", "{new}.png"),
    ("plot-accuracy-negative", "plot accuracy {csv_negative} --out {new}.png", "{new}.png"),
    ("plot-widths-sparsity-pattern", "plot widths {sparsity} --out {new}.png", "{new}.png"),
    ("plot-out-pdf", "plot widths {pattern} --out {new}.pdf", "{new}.png"),
    ("run-binary-study", "run {study_binary} --out {new}", "{new}"),
    ("run-utf16-study", "run {study_utf16} --out {new}", "{new}"),
    ("run-deep-study", "run {study_deep} --out {new}", "{new}"),
    ("run-huge-seeds", "run {study_huge_seeds} --out {new}", "{new}"),
    ("run-l1-negative", "run {study_l1_negative} --out {new}", "{new}"),
    ("run-width-inf", "run {study_width_inf} --out {new}", "{new}"),
    ("run-search-seed-negative", "run {study_negative_search_seed} --out {new}", "{new}"),
    # ---- accepted without a word before
    ("train-zero-classes", "train {T} --num-classes 0 --out {new}", "{new}"),
    ("train-zero-in-channels", "train {T} --in-channels 0 --out {new}", "{new}"),
    ("cost-zero-input-size", "cost --arch vgg-tiny --input-size 0", None),
    ("train-threads-1000", "train {T} --threads 1000 --out {new}", "{new}"),
    (
        "prune-min-channels-keep-all",
        "prune --method l1-norm --checkpoint {run} --ratio 0.5 --min-channels 100000 --out {new}",
        "{new}",
    ),
    (
        "design-pattern-all-zero",
        "design --pattern {pattern_zero} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-pattern-stage-99",
        "design --pattern {pattern_stage_99} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-pattern-stage-twice",
        "design --pattern {pattern_stage_twice} --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "design-per-layer-sparsity",
        "design --pattern {sparsity} --per-layer --arch vgg-tiny --budget params=5k --out {new}",
        "{new}",
    ),
    (
        "search-two-objectives-median",
        "search {T} --budget params=4000 --objectives acc,macs --pruner median --out {new}",
        "{new}",
    ),
    ("spec-spec-and-width", "spec --spec {run}/spec.json --width-mult 2 --out {new}", "{new}"),
    ("summarize-same-folder-twice", "summarize {pruned} {pruned} --out {new}", "{new}"),
    (
        "train-masks-of-another-vgg",
        "train --arch vgg13 --width-mult 0.0625 --dataset digits --masks {vgg11_masks}/masks.npz --out {new}",
        "{new}",
    ),
    # ---- a command writes only into a new folder (or its own, with --resume), never onto what it reads
    ("train-out-holds-unrelated-files", "train {T} --epochs 1 --out {unrelated}", "{unrelated}"),
    ("train-resume-unrelated-folder", "train {T} --epochs 1 --resume --out {unrelated}", "{unrelated}"),
    ("train-out-is-a-pruned-folder", "train {T} --epochs 1 --out {pruned}", "{pruned}"),
    (
        "prune-out-is-another-run",
        "prune --method l1-norm --checkpoint {run} --ratio 0.5 --out {run_mismatch}",
        "{run_mismatch}",
    ),
    ("retrain-out-is-another-run", "retrain --from {pruned} --mode finetune --out {run_mismatch}", "{run_mismatch}"),
    (
        "design-out-is-its-pattern",
        "design --pattern {pattern} --arch vgg-tiny --budget params=5k --out {pattern}",
        "{pattern}",
    ),
    (
        "design-masks-out-holds-files",
        "design --uniform --kernel --arch vgg-tiny --budget params=50% --out {unrelated}",
        "{unrelated}",
    ),
    ("summarize-csv-inside-its-input", "summarize {pruned} --csv {pruned}/layers.csv", "{pruned}"),
    ("summarize-out-inside-its-input", "summarize {pruned} --out {pruned}/pattern.json", "{pruned}"),
    ("plot-out-is-its-input", "plot widths {pattern} --out {pattern}", "{pattern}"),
    ("spec-out-is-its-spec", "spec --spec {run}/spec.json --out {run}/spec.json", "{run}"),
    ("run-transfer-named-speed", "run {study_transfer_speed} --out {new}", "{new}"),
    ("run-transfer-named-report", "run {study_transfer_report} --out {new}", "{new}"),
    ("run-transfer-named-search", "run {study_transfer_search} --out {new}", "{new}"),
    ("run-retrain-mode-twice", "run {study_retrain_twice} --out {new}", "{new}"),
    # ---- weights no network could use
    *[
        (
            f"prune-torchvision-{w.replace('_', '-')}",
            f"prune --method l1-norm --torchvision resnet18 --weights {{{w}}} --ratio 0.5 --out {{new}}",
            "{new}",
        )
        for w in ("weights_nan", "weights_inf", "weights_int_keys", "weights_sparse", "weights_meta")
    ],
    # ---- zeros and negatives that silently became defaults, or ran
    ("spec-torchvision-input-size-0", "spec --torchvision resnet18 --input-size 0 --out {new}", "{new}"),
    ("spec-torchvision-classes-0", "spec --torchvision resnet18 --num-classes 0 --out {new}", "{new}"),
    ("spec-torchvision-classes-negative", "spec --torchvision resnet18 --num-classes -3 --out {new}", "{new}"),
    ("spec-torchvision-width-0", "spec --torchvision mobilenet_v2 --width-mult 0 --out {new}", "{new}"),
    ("spec-torchvision-width-nan", "spec --torchvision mobilenet_v2 --width-mult nan --out {new}", "{new}"),
    ("run-dry-run-group-seeds-negative", "run {tiny_study} --dry-run --group-seeds -3 --out {new}", "{new}"),
    ("run-dry-run-jobs-negative", "run {tiny_study} --dry-run --jobs -2 --out {new}", "{new}"),
    ("cost-width-nan", "cost --arch vgg-tiny --width-mult nan", None),
    ("cost-width-huge", "cost --arch vgg-tiny --width-mult 1e9", None),
    ("cost-classes-negative", "cost --arch vgg-tiny --num-classes -3", None),
    # ---- refused before the study folder is created
    ("run-batch-above-data", "run {study_batch_above_data} --out {new}", "{new}"),
    ("run-l1-nan", "run {study_l1_nan} --out {new}", "{new}"),
    ("run-stage-map-out-of-range", "run {study_stage_map_range} --out {new}", "{new}"),
    # ---- tracebacks before
    ("run-seed-of-5000-digits", "run {study_seed_5000_digits} --out {new}", "{new}"),
    ("run-device-mps", "run {study_device_mps} --out {new}", "{new}"),
    ("run-lr-1e308", "run {study_lr_huge} --out {new}", "{new}"),
    ("run-base-seeds-not-seeds", "run {study_base_seeds_foreign} --out {new}", "{new}"),
    *[
        (f"run-dry-run-sigma-from-{kind}", f"run {{study_sigma_{kind}}} --dry-run --out {{new}}", "{new}")
        for kind in ("binary", "strings", "huge", "fifo")
    ],
    ("train-device-mps", "train {T} --device mps --out {new}", "{new}"),
    *[
        (
            f"prune-width-{w}",
            f"prune --method l1-norm --arch vgg-tiny --width-mult {w} --ratio 0.5 --out {{new}}",
            "{new}",
        )
        for w in ("nan", "1e9")
    ],
    ("train-lr-1e308", "train {T} --lr 1e308 --out {new}", "{new}"),
    (
        "search-storage-port-not-a-number",
        "search {T} --budget params=4000 --storage postgresql://me@h:port/db --out {new}",
        "{new}",
    ),
    (
        "search-storage-port-too-big",
        "search {T} --budget params=4000 --storage postgresql://me@h:99999/db --out {new}",
        "{new}",
    ),
    ("retrain-scratch-with-epochs", "retrain --from {pruned} --mode scratch-e --epochs 1 --out {new}", "{new}"),
    # ---- trials scored on one image
    ("run-search-validation-one-image", "run {study_validation_one_image} --out {new}", "{new}"),
]

# (id, command line, what the one line must say): messages that named the wrong cause before.
MESSAGES = [
    (
        "weights-folder",
        "prune --method l1-norm --torchvision resnet18 --weights {empty} --ratio 0.5 --out {new}",
        "is a folder",
    ),
    (
        "weights-fifo",
        "prune --method l1-norm --torchvision resnet18 --weights {fifo} --ratio 0.5 --out {new}",
        "not a regular file",
    ),
    (
        "weights-dev-zero",
        "prune --method l1-norm --torchvision resnet18 --weights /dev/zero --ratio 0.5 --out {new}",
        "not a regular file",
    ),
    ("throughput-folder", "run {tiny_study} --dry-run --throughput {empty} --out {new}", "is a folder"),
    ("throughput-fifo", "run {tiny_study} --dry-run --throughput {fifo} --out {new}", "not a regular file"),
    ("imagefolder-a-file", "train --arch vgg-tiny --dataset imagefolder:{file} --out {new}", "is a file, not a folder"),
    (
        "min-keep-keeps-all",
        "prune --method l1-norm --checkpoint {run} --ratio 0.5 --min-keep 0.99 --out {new}",
        "min_keep 0.99",
    ),
    ("device-mps", "run {study_device_mps} --out {new}", "unknown device 'mps'"),
    ("lr-1e308", "train {T} --lr 1e308 --out {new}", "learning rates must lie in (0, 100]"),
    ("validation-one-image", "run {study_validation_one_image} --out {new}", "scores each trial on 0 of the"),
    ("sigma-from-huge", "run {study_sigma_huge} --dry-run --out {new}", "guided reads such files up to 32 MiB"),
    ("sigma-from-strings", "run {study_sigma_strings} --dry-run --out {new}", "test_acc = high"),
    (
        "storage-port",
        "search {T} --budget params=4000 --storage postgresql://me@h:99999/db --out {new}",
        "port 99999 is not a TCP port",
    ),
]


def _fill(text: str, env: dict[str, Path], new: Path) -> str:
    values = {k: str(v) for k, v in env.items()}
    return text.format(T=" ".join(TRAIN), tiny_study=ROOT / "configs" / "study-tiny-digits.toml", new=new, **values)


def snapshot(path: Path) -> object:
    """Absent (None), or every file and folder below ``path`` with a hash of each file's bytes (links are
    listed with their targets, not followed; special files by name)."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_dir():
        entries = [path]
    else:
        entries = sorted(path.rglob("*"))
    out = {}
    for p in entries:
        key = str(p.relative_to(path.parent))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file() and p.stat().st_size > 2**20:  # big inputs: identity and size, not a hash per case
            st = p.stat()
            out[key] = (st.st_ino, st.st_size, st.st_mtime_ns)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "folder" if p.is_dir() else "special"
    return out


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
    assert len(CASES) >= 140
    assert len({c[0] for c in CASES}) == len(CASES)


def _special(path: Path) -> object:
    """What kind of thing ``path`` is (a device's numbers, a FIFO, a link's target): changes if replaced."""
    import stat

    st = os.lstat(path)
    return (stat.S_IFMT(st.st_mode), st.st_rdev, os.readlink(path) if path.is_symlink() else None)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, env, tmp_path, capsys, monkeypatch):
    name, argv, watch = case
    if "{unwritable}" in argv and env["unwritable"] is None:
        pytest.skip("no folder on this machine refuses writes to this user")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing may appear here
    new = tmp_path / "out"
    argv = _fill(argv, env, new).split()
    watched = Path(_fill(watch, env, new)) if watch else None
    before = snapshot(watched) if watched else None
    kind = _special(watched) if watched and os.path.lexists(watched) and not watched.is_dir() else None
    inputs = snapshot(env["base"])
    line = one_line_error(argv, capsys)
    assert line.startswith("guided"), line
    print(f"{name}: {line}")  # -s shows every refusal, to read them as a user would
    if watched:
        assert snapshot(watched) == before, f"{watched} changed"
        assert kind is None or _special(watched) == kind, f"{watched} was replaced"
    assert snapshot(env["base"]) == inputs, "an input changed"
    assert list(work.iterdir()) == [], "something was written to the working folder"


@pytest.mark.parametrize("case", MESSAGES, ids=[c[0] for c in MESSAGES])
def test_the_one_line_names_the_real_cause(case, env, tmp_path, capsys):
    name, argv, expected = case
    line = one_line_error(_fill(argv, env, tmp_path / "out").split(), capsys)
    assert expected in line, line
    assert not (tmp_path / "out").exists()


def test_a_dry_run_needs_no_write_access(env, tmp_path, capsys):
    """A dry run writes nothing, so a folder this process cannot write to is no reason to refuse it."""
    if env["unwritable"] is None:
        pytest.skip("no folder on this machine refuses writes to this user")
    out = env["unwritable"] / "study"
    assert main(["run", str(ROOT / "configs" / "study-tiny-digits.toml"), "--dry-run", "--out", str(out)]) == 0
    assert "stages to run" in capsys.readouterr().out and not out.exists()


def _cost_raising(monkeypatch, run) -> None:
    import dataclasses

    import guided.cli

    monkeypatch.setitem(guided.cli.COMMANDS, "cost", dataclasses.replace(guided.cli.COMMANDS["cost"], run=run))


def test_running_out_of_memory_is_one_line_naming_the_allocation(monkeypatch, capsys):
    def too_big(args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 307200000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    _cost_raising(monkeypatch, too_big)
    line = one_line_error(["cost", "--arch", "vgg-tiny"], capsys)
    assert "out of memory (one allocation of 286.1 GiB)" in line and "--batch-size" in line


def test_another_runtime_error_is_not_taken_for_memory(monkeypatch):
    def bug(args):
        raise RuntimeError("a bug")

    _cost_raising(monkeypatch, bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["cost", "--arch", "vgg-tiny"])


def test_corrupt_dataset_cache_is_rebuilt_with_a_notice(tmp_path, monkeypatch, capsys):
    from guided.training.data import load_dataset

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
    assert main(argv) == 2
    printed = "".join(capsys.readouterr())
    warning, error = [line for line in printed.splitlines() if line.strip()]
    assert "warning: the --storage password is visible" in warning and "PGPASSWORD" in warning
    assert "cannot open storage" in error and "127.0.0.1" in error and "Traceback" not in printed
    assert not out.exists()
    for spelling in {password, unquote(password), quote(unquote(password), safe="")}:
        assert spelling not in printed
