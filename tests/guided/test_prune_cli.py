"""`guided prune` and `guided retrain` end to end on digits."""

import json

import pytest

from guided.cli import main
from guided.operations import flat_settings
from guided.storage.io import read_spec
from models import cost
from tests.guided.conftest import train_tiny_digits_run


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return train_tiny_digits_run(tmp_path_factory.mktemp("runs") / "base", "--sparsity-l1", "1e-4", train_subset=512)


def test_prune_preset_then_cost_reports_vgg16_a(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["prune", "--method", "l1-norm", "--arch", "vgg16", "--preset", "vgg16-a", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["cost", "--spec", str(out / "spec.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 5_397_034
    rows = (out / "layers.csv").read_text().splitlines()
    assert rows[0] == "layer,stage,kind,original,kept,kept_fraction" and rows[1].startswith(
        "stages.0.0.conv,0,conv,64,32"
    )


def test_prune_a_users_torchvision_weights(tmp_path, capsys):
    """`--torchvision NAME --weights FILE`: the user's state_dict, converted, pruned like any guided network."""
    import torch
    import torchvision

    from guided.pruning import prune
    from guided.training.train import load_weights
    from models import from_torchvision

    torch.manual_seed(3)
    original = torchvision.models.mobilenet_v2(num_classes=6)
    weights = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, weights)
    out = tmp_path / "pruned"
    argv = ["prune", "--torchvision", "mobilenet_v2", "--weights", str(weights), "--input-size", "32"]
    assert main([*argv, "--method", "l1-norm", "--ratio", "0.5", "--out", str(out)]) == 0
    record = json.loads((out / "prune.json").read_text())
    assert record["source"]["torchvision"] == "mobilenet_v2" and record["source"]["weights"] == str(weights)
    direct = prune(from_torchvision(original.eval(), input_size=32).eval(), "l1-norm", ratio=0.5).model
    written = load_weights(out)
    assert written.spec == direct.spec and written.spec.num_classes == 6
    assert all(torch.equal(a, b) for a, b in zip(written.state_dict().values(), direct.state_dict().values()))
    assert record["params_after"] == cost(written.spec).params


@pytest.mark.slow
def test_prune_checkpoint_then_every_retraining_mode(base_run, tmp_path):
    pruned = tmp_path / "slim"
    assert (
        main(["prune", "--method", "slimming", "--checkpoint", str(base_run), "--ratio", "0.5", "--out", str(pruned)])
        == 0
    )
    info = json.loads((pruned / "prune.json").read_text())
    assert info["source"]["run"] == str(base_run) and info["source"]["epochs"] == 2
    assert info["params_after"] == cost(read_spec(pruned / "spec.json")).params < info["params_before"]
    epochs = {}
    for mode in ("finetune", "scratch-e", "scratch-b"):
        out = tmp_path / mode
        assert main(["retrain", "--from", str(pruned), "--mode", mode, "--out", str(out)]) == 0
        result = json.loads((out / "result.json").read_text())
        assert result["dataset"] == "digits" and result["mode"] == mode  # data inherited from the base run
        epochs[mode] = result["epochs"]
    assert epochs["scratch-e"] == 2
    assert epochs["scratch-b"] == int(2 * info["macs_before"] / info["macs_after"]) > 2
    assert epochs["finetune"] == 4  # the quick recipe's fine-tuning epochs


def test_retrain_epochs_are_what_fine_tuning_trains_and_are_refused_for_scratch(base_run, tmp_path, capsys):
    pruned = tmp_path / "l1"
    assert (
        main(["prune", "--method", "l1-norm", "--checkpoint", str(base_run), "--ratio", "0.5", "--out", str(pruned)])
        == 0
    )
    out = tmp_path / "ft1"
    assert main(["retrain", "--from", str(pruned), "--mode", "finetune", "--epochs", "1", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 1 and len((out / "metrics.jsonl").read_text().splitlines()) == 1  # one epoch
    capsys.readouterr()
    assert (
        main(["retrain", "--from", str(pruned), "--mode", "scratch-e", "--epochs", "1", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "trains for the source's 2 epochs" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_study_training_stage_is_a_checkpoint(base_run, tmp_path, capsys):
    """A study's stage folder has ``stage.json`` (its data and resolved recipe) instead of ``config.json``."""
    import shutil

    stage = tmp_path / "stages" / "source" / "base-sparse-s0"
    shutil.copytree(base_run, stage)
    config = json.loads((stage / "config.json").read_text())
    (stage / "config.json").unlink()
    data = {"dataset": "digits", "data_root": "./data", "image_size": None, "train_subset": 512, "test_subset": None}
    recipe = {"epochs": 2, "batch_size": config["recipe"]["batch_size"], "lr": 0.05}
    spec = json.loads((stage / "spec.json").read_text())
    stage_config = {"spec": spec, "data": data, "recipe": recipe, "seed": 0, "precision": "auto"}
    (stage / "stage.json").write_text(json.dumps({"id": "source/base-sparse-s0", "config": stage_config}))
    out = tmp_path / "thinet"
    argv = ["prune", "--method", "thinet", "--checkpoint", str(stage), "--ratio", "0.3", "--samples", "32"]
    assert main([*argv, "--out", str(out)]) == 0  # thinet reads training images: the stage's dataset
    source = flat_settings(json.loads((out / "prune.json").read_text())["source"]["config"])
    assert source["dataset"] == "digits" and source["train_subset"] == 512 and source["lr"] == 0.05
    (stage / "stage.json").write_text(json.dumps({"id": "source/pattern-slim", "config": {"method": "slimming"}}))
    assert main([*argv, "--out", str(tmp_path / "again")]) == 2
    assert "trained no network of its own" in capsys.readouterr().err


def test_activation_methods_use_the_checkpoint_data(base_run, tmp_path):
    out = tmp_path / "thinet"
    assert (
        main(
            [
                "prune",
                "--method",
                "thinet",
                "--checkpoint",
                str(base_run),
                "--ratio",
                "0.5",
                "--samples",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "prune.json").read_text())["samples"] == 64


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "l1-norm", "--arch", "vgg16", "--ratio", "1.5"], "ratio must lie in (0, 1)"),
        (["--method", "l1-norm", "--arch", "resnet20", "--preset", "vgg16-a"], "fits VGG-16 only"),
        (["--method", "l1-norm", "--arch", "vgg16"], "either a ratio"),
        (["--method", "l1-norm", "--checkpoint", "/no/run", "--ratio", "0.5"], "does not exist"),
    ],
)
def test_prune_bad_input_is_one_line(tmp_path, capsys, argv, message):
    code = main(["prune", *argv, "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "p" / "prune.json").exists()


def test_unknown_method_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--method", "l3", "--arch", "vgg16", "--ratio", "0.5", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice: 'l3'" in capsys.readouterr().err
