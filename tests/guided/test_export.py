"""Taking a network away: `guided.load` gives back what a folder holds, `guided export` writes files that
compute what the network computes, without guided."""

from __future__ import annotations

import importlib.util
import io

import pytest
import torch

import guided
from guided.cli import main
from guided.pruning import prune
from guided.storage.export import export
from models import cost, from_torchvision
from tests.guided.conftest import train_tiny_digits_run
from tests.models.test_bridge import _perturbed

HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
FORMATS = [
    "torchscript",
    "pt2",
    "torchvision",
    pytest.param("onnx", marks=pytest.mark.skipif(not HAVE_ONNX, reason="the export extra is not installed")),
]


def _reload(fmt: str, path):
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    if fmt == "pt2":
        return torch.export.load(str(path)).module()
    if fmt == "torchvision":
        return torch.load(path, weights_only=False).eval()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "mobilenet_v2",
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("vgg16_bn", marks=pytest.mark.slow),
    ],
)
def test_a_pruned_torchvision_network_exports_and_reloads_with_equal_outputs(name, fmt, tmp_path):
    model = from_torchvision(_perturbed(name, num_classes=10), input_size=32)
    pruned = prune(model, "l1-norm", ratio=0.5).model.eval()
    done = export(pruned, fmt, tmp_path / f"net.{fmt}", torchvision=name)
    assert done["max_abs_diff"] is not None and done["max_abs_diff"] <= 1e-5
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))  # another batch size than checked
    with torch.no_grad():
        expected = pruned(x)
        reloaded = _reload(fmt, tmp_path / f"net.{fmt}")
        got = reloaded(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    if fmt == "torchvision":  # torchvision's own class and layer names, with the pruned widths
        import torchvision

        fresh = getattr(torchvision.models, name)(num_classes=10)
        assert type(reloaded) is type(fresh) and list(reloaded.state_dict()) == list(fresh.state_dict())
        assert sum(p.numel() for p in reloaded.parameters()) == cost(pruned.spec).params


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_digits_run(tmp_path_factory.mktemp("runs") / "base", train_subset=256)


def test_load_gives_back_what_each_kind_of_folder_holds(run, tmp_path):
    from guided.training.train import load_weights

    model = guided.load(run)
    assert not model.training and model.spec == load_weights(run).spec
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), load_weights(run).state_dict().values()))
    pruned_dir = tmp_path / "pruned"
    assert (
        main(["prune", "--method", "l1-norm", "--checkpoint", str(run), "--ratio", "0.5", "--out", str(pruned_dir)])
        == 0
    )
    pruned = guided.load(pruned_dir)
    assert cost(pruned.spec).params < cost(model.spec).params
    x = torch.randn(2, 1, model.spec.input_size, model.spec.input_size)
    assert pruned(x).shape == (2, model.spec.num_classes)
    spec_file = tmp_path / "spec.json"
    assert main(["spec", "--spec", str(pruned_dir / "spec.json"), "--out", str(spec_file)]) == 0
    fresh = guided.load(spec_file)  # no weights: an architecture to train
    assert fresh.spec == pruned.spec
    weighted = guided.load(spec_file, pruned_dir / "model.pt")
    with torch.no_grad():
        assert torch.equal(weighted(x), pruned(x))


def test_export_command_writes_a_file_that_runs_without_guided(run, tmp_path, capsys):
    out = tmp_path / "base.ts"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    assert "reloaded and run against the network" in capsys.readouterr().out
    network = guided.load(run)
    scripted = torch.jit.load(io.BytesIO(out.read_bytes()))
    x = torch.randn(4, 1, network.spec.input_size, network.spec.input_size)
    with torch.no_grad():
        assert torch.allclose(scripted(x), network(x), atol=1e-6)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--format", "torchscript", "--out", "{run}/model.pt"], "is, holds or lies inside the input"),
        (["--format", "torchscript", "--out", "/dev/full"], "not a regular file"),
        (["--format", "pt2", "--out", "{tmp}"], "is a folder"),
    ],
)
def test_export_refuses_in_one_line_and_writes_nothing(run, tmp_path, capsys, argv, message):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    argv = [a.format(run=run, tmp=tmp_path) for a in argv]
    assert main(["export", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_folder_without_a_spec_is_refused(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "pt2", "--out", str(tmp_path.parent / "x.pt2")]) == 2
    assert "holds no spec.json" in capsys.readouterr().err


def test_onnx_without_the_extra_is_one_line_naming_it(run, tmp_path, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxscript"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[export]'" in err and err.count("\n") == 1 and not (tmp_path / "x.onnx").exists()


def test_a_network_pruned_with_torchvision_exports_back_to_torchvision_from_its_folder(tmp_path, capsys):
    import torchvision

    weights = tmp_path / "mine.pth"
    torch.save(_perturbed("resnet18", num_classes=10).state_dict(), weights)
    pruned = tmp_path / "pruned"
    argv = ["prune", "--torchvision", "resnet18", "--weights", str(weights), "--input-size", "32"]
    assert main([*argv, "--method", "l1-norm", "--ratio", "0.5", "--out", str(pruned)]) == 0
    out = tmp_path / "r18.pt"
    assert main(["export", str(pruned), "--format", "torchvision", "--out", str(out)]) == 0
    back = torch.load(out, weights_only=False).eval()
    assert isinstance(back, torchvision.models.ResNet) and back.layer1[0].conv1.out_channels == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), guided.load(pruned)(x), atol=1e-5)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "pruned"), "--format", "torchvision", "--torchvision", "vgg11_bn",
                 "--out", str(tmp_path / "x.pt")]) == 2  # fmt: skip
    assert "is not torchvision's vgg11_bn" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_the_torchvision_format_of_a_network_from_nowhere_asks_for_its_name(run, tmp_path, capsys):
    assert main(["export", str(run), "--format", "torchvision", "--out", str(tmp_path / "x.pt")]) == 2
    assert "give --torchvision NAME" in capsys.readouterr().err


def test_a_sparsity_design_loads_with_its_masked_weights_zero(tmp_path):
    from guided.pruning.unstructured import load_masks

    out = tmp_path / "masks"
    argv = ["design", "--uniform", "--kernel", "--arch", "vgg-tiny", "--budget", "params=50%", "--out", str(out)]
    assert main(argv) == 0
    model = guided.load(out)
    masks = load_masks(out / "masks.npz", model)
    params = dict(model.named_parameters())
    assert masks and all(not params[n][m == 0].any() for n, m in masks.items())
    assert any((m == 0).any() for m in masks.values())
