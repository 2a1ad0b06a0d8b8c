"""The training engine: run folders, resume after SIGKILL, divergence, hooks, and the train command."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from guided.cli import main
from guided.errors import UserError
from guided.training.data import load_dataset, subsample
from guided.training.hooks import BatchNormL1, FixedMasks
from guided.training.recipes import get_recipe
from guided.training.train import TrainingDiverged, load_weights, train
from models import build, create_spec

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def digits():
    return subsample(load_dataset("digits"), train=512, test=128, seed=0)


def tiny(data, name="vgg-tiny", seed=0):
    return build(create_spec(name, num_classes=10, in_channels=1, input_size=data.input_size), seed=seed)


@pytest.mark.slow
def test_run_folder_holds_everything_and_learns(digits, tmp_path):
    recipe = get_recipe("quick").override(epochs=8, batch_size=32)
    result = train(tiny(digits, "resnet-tiny"), digits, recipe, out_dir=tmp_path, save_init=True, log=QUIET)
    for f in ("spec.json", "init.pt", "checkpoint.pt", "metrics.jsonl", "model.pt", "result.json"):
        assert (tmp_path / f).is_file(), f
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result["test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert {"git", "torch", "device"} <= set(result["provenance"]) and result["seed"] == 0
    reloaded = load_weights(tmp_path).eval()
    assert reloaded.spec.name == "resnet14"
    init = load_weights(tmp_path, which="init")
    assert not torch.equal(init.stem.conv.weight, reloaded.stem.conv.weight)
    assert torch.equal(init.stem.conv.weight, tiny(digits, "resnet-tiny").stem.conv.weight)


def test_existing_run_is_not_overwritten_and_finished_resume_is_a_no_op(digits, tmp_path):
    recipe = get_recipe("quick").override(epochs=1, batch_size=64)
    train(tiny(digits), digits, recipe, out_dir=tmp_path, log=QUIET)
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny(digits), digits, recipe, out_dir=tmp_path, log=QUIET)
    before = (tmp_path / "result.json").read_text()
    train(tiny(digits), digits, recipe, out_dir=tmp_path, resume=True, log=QUIET)
    assert (tmp_path / "result.json").read_text() == before


def test_diverging_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    good = get_recipe("quick").override(epochs=1, batch_size=64, schedule="constant", lr=0.01)
    train(tiny(digits), digits, good, out_dir=tmp_path, log=QUIET)
    (tmp_path / "result.json").unlink()
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    bad = good.override(epochs=3, lr=1e30)
    with pytest.raises(TrainingDiverged, match="loss became .*last good checkpoint .*epoch 1"):
        train(tiny(digits), digits, bad, out_dir=tmp_path, resume=True, log=QUIET)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    assert not (tmp_path / "result.json").exists()


def test_divergence_in_the_first_epoch_leaves_nothing_behind(digits, tmp_path):
    bad = get_recipe("quick").override(epochs=2, batch_size=64, schedule="constant", lr=1e30)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="no epoch had finished, so nothing is kept"):
        train(tiny(digits), digits, bad, out_dir=out, save_init=True, config={"lr": 1e30}, log=QUIET)
    assert not out.exists()  # the folder this call created is gone
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's file")
    with pytest.raises(TrainingDiverged):
        train(tiny(digits), digits, bad, out_dir=tmp_path / "mine", save_init=True, log=QUIET)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_spec_and_dataset_must_agree(digits, tmp_path):
    model = build(create_spec("vgg-tiny", num_classes=7, in_channels=1), seed=0)
    with pytest.raises(UserError, match="expects 7 classes but digits has 10"):
        train(model, digits, get_recipe("quick"), out_dir=tmp_path, log=QUIET)


def test_fixed_masks_keep_masked_weights_exactly_zero(digits, tmp_path):
    model = tiny(digits)
    name = "stages.1.0.conv.weight"
    mask = (torch.rand_like(dict(model.named_parameters())[name]) > 0.7).float()
    recipe = get_recipe("quick").override(epochs=2, batch_size=32)
    train(model, digits, recipe, out_dir=tmp_path, hooks=[FixedMasks({name: mask})], log=QUIET)
    w = dict(model.named_parameters())[name].detach().cpu()
    assert torch.all(w[mask == 0] == 0) and torch.all(w[mask == 1] != 0)
    with pytest.raises(ValueError, match="shape"):
        FixedMasks({name: mask[:1]}).bind(model)
    with pytest.raises(ValueError, match="not a parameter"):
        FixedMasks({"nope.weight": mask}).bind(model)


def test_batchnorm_l1_adds_lambda_times_sign_to_scale_gradients():
    model = create_spec("vgg-tiny")
    model = build(model, seed=0)
    bn = model.stages[0][0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, bn.weight.numel()))
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    before = bn.weight.grad.clone()
    BatchNormL1(0.5).after_backward(model)
    assert torch.allclose(bn.weight.grad - before, 0.5 * torch.sign(bn.weight.detach()))


def _train_argv(out, epochs=3):
    return [
        "train",
        "--arch",
        "resnet-tiny",
        "--dataset",
        "digits",
        "--train-subset",
        "768",
        "--test-subset",
        "64",
        "--image-size",
        "24",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_killed_run_resumes_to_bit_identical_weights(tmp_path):
    """SIGKILL in the middle of epoch 2, resume: the final weights equal an uninterrupted run's."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "guided"]
    subprocess.run(cmd + _train_argv(tmp_path / "whole"), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + _train_argv(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "metrics.jsonl").exists():  # written right after the epoch-1 checkpoint
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    epochs_done = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert epochs_done < 3

    subprocess.run(cmd + _train_argv(killed) + ["--resume"], check=True, env=env, capture_output=True)
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2, 3]


def test_train_command_end_to_end_with_toml_config(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('arch = "vgg-tiny"\ndataset = "digits"\nepochs = 1\nbatch-size = 64\ntrain_subset = 256\n')
    code = main(["train", "--config", str(config), "--epochs", "2", "--out", str(tmp_path / "run")])
    assert code == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["epochs"] == 2  # the flag beats the file
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["recipe"]["batch_size"] == 64 and resolved["data"]["train_subset"] == 256
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "toml, message",
    [
        ("epochs = 'ten'\n", "key 'epochs' must be int"),
        ("epoch = 3\n", "unknown key 'epoch'"),
        ("x = [\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_refused_before_training(tmp_path, capsys, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    code = main(
        ["train", "--arch", "vgg-tiny", "--dataset", "digits", "--config", str(config), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "imagefolder:/no/such/dir"], "does not exist"),
        (["--dataset", "cifar10", "--data-root", "/no/such/root"], "could not find or download CIFAR10"),
        (["--dataset", "digits", "--epochs", "0"], "must be at least 1"),
        (["--dataset", "digits", "--device", "cuda:0"] if not torch.cuda.is_available() else ["--dataset", "x"], ""),
    ],
)
def test_train_command_bad_input_is_one_line(tmp_path, capsys, argv, message):
    code = main(["train", "--arch", "vgg-tiny", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_precision_option(digits, tmp_path):
    from guided.training.train import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("fp16", cpu)
    recipe = get_recipe("quick").override(epochs=1, batch_size=64)
    result = train(tiny(digits), digits, recipe, out_dir=tmp_path, precision="bf16", log=QUIET)
    assert result["precision"] == "bf16" and 0 <= result["test_loss"] < 10


# ---------------------------------------------------------------------- evaluation options of a recipe
def test_flip_averaging_averages_each_image_with_its_mirror(digits, tmp_path):
    from guided.training.loader import DeviceLoader
    from guided.training.train import evaluate

    model = tiny(digits)  # trained a little, so that no two classes tie
    train(model, digits, get_recipe("quick").override(epochs=2, batch_size=64), out_dir=tmp_path, log=QUIET)
    model.eval()
    loader = DeviceLoader(digits.test, digits.mean, digits.std, batch_size=64, train=False)
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])
    with torch.no_grad():
        p = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    loss, acc = evaluate(model, loader, flip=True)
    assert acc == pytest.approx((p.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(torch.nn.functional.nll_loss(p.log(), y).item(), rel=1e-5)
    plain = evaluate(model, loader)
    assert plain != (loss, acc)  # the digits are not mirror-symmetric: the mirror changes the answer


def test_weight_average_follows_its_formula_and_skips_integers():
    from guided.training.train import WeightAverage

    avg = WeightAverage({"w": torch.zeros(3), "n": torch.tensor(0)}, decay=0.9)
    expected = torch.zeros(3)
    for t in range(1, 30):
        value = torch.full((3,), float(t))
        avg.update({"w": value, "n": torch.tensor(t)})
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
    assert torch.allclose(avg.shadow["w"], expected)
    assert avg.shadow["n"].item() == 29


def test_ema_saves_and_reports_the_average_and_resumes_bit_for_bit(digits, tmp_path):
    recipe = get_recipe("quick").override(epochs=2, batch_size=64, ema=0.9, test_flip=True)
    result = train(tiny(digits), digits, recipe, out_dir=tmp_path / "a", log=QUIET)
    ev = result["evaluations"]
    assert set(ev) == {"plain", "plain_flip", "ema", "ema_flip"}
    assert result["test_acc"] == ev["ema_flip"]  # the recipe's evaluation: the average, with flips
    saved = torch.load(tmp_path / "a" / "model.pt")
    raw = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(saved["head.fc2.weight"], raw["model"]["head.fc2.weight"])
    assert torch.equal(saved["head.fc2.weight"], raw["average"]["shadow"]["head.fc2.weight"])
    assert {"ema", "test_flip"} <= set(recipe.to_dict())
    # stopped after epoch 1 and resumed: the same average as the run that never stopped
    one = recipe.override(epochs=2)
    b = tmp_path / "b"

    def stop(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(digits), digits, one, out_dir=b, on_epoch=stop, log=QUIET)
    train(tiny(digits), digits, one, out_dir=b, resume=True, log=QUIET)
    again = torch.load(b / "model.pt")
    assert all(torch.equal(saved[k], again[k]) for k in saved)


def test_new_recipe_fields_stay_out_of_old_configs():
    quick = get_recipe("quick")
    assert not {"ema", "test_flip", "eval"} & set(quick.to_dict())  # committed studies keep their fingerprints
    assert quick.override(eval="last").to_dict()["eval"] == "last"
    with pytest.raises(UserError, match="eval must be one of"):
        quick.override(eval="sometimes")
    with pytest.raises(UserError, match="ema is a decay"):
        quick.override(ema=1.0)


def test_eval_last_tests_once(digits, tmp_path, monkeypatch):
    import guided.training.train as engine

    calls = []
    real = engine.evaluate
    monkeypatch.setattr(engine, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    recipe = get_recipe("quick").override(epochs=3, batch_size=64, eval="last")
    result = train(tiny(digits), digits, recipe, out_dir=tmp_path, log=QUIET)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(calls) == 1
    assert [r["test_acc"] is None for r in rows] == [True, True, False]
    assert result["test_acc"] == rows[-1]["test_acc"]
