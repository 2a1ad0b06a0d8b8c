"""Unstructured pruning: exact sparsity, masks that stay zero, lottery tickets, storage, reports."""

import json

import numpy as np
import pytest
import torch

from guided.cli import main
from guided.errors import UserError
from guided.pruning import prune
from guided.pruning.unstructured import (
    load_masks,
    magnitude_masks,
    nonzero_cost,
    prunable_weights,
    random_masks,
    save_masks,
    sparsity_report,
)
from guided.reporting.plots import draw_sparsity, sparsity_plot_data
from guided.shapes.patterns import Pattern, sparsity_summary
from guided.training.hooks import FixedMasks
from models import build, cost, create_spec
from tests.guided.conftest import train_tiny_digits_run
from tests.guided.test_pruning import random_data


def model(name="vgg-tiny", seed=0):
    return build(create_spec(name), seed=seed)


@pytest.mark.parametrize("ratio", [0.3, 0.8, 0.55])
def test_global_masks_hit_the_requested_sparsity_exactly(ratio):
    m = model()
    masks = magnitude_masks(m, ratio)
    total = sum(x.numel() for x in masks.values())
    assert sum(int(x.sum()) for x in masks.values()) == round((1 - ratio) * total)
    # every kept weight is at least as large as every removed one
    w = torch.cat([p.detach().abs().flatten() for p in prunable_weights(m).values()])
    keep = torch.cat([x.flatten() for x in masks.values()])
    assert w[keep].min() >= w[~keep].max()


def test_per_layer_masks_hit_the_requested_sparsity_in_every_layer():
    masks = magnitude_masks(model(), 0.7, scope="layer", include_linear=True)
    assert any(name.startswith("head.") for name in masks)
    for name, x in masks.items():
        assert int(x.sum()) == round(0.3 * x.numel()), name


def test_ties_still_give_exact_counts():
    m = model()
    with torch.no_grad():
        for p in prunable_weights(m).values():
            p.fill_(1.0)
    masks = magnitude_masks(m, 0.5)
    total = sum(x.numel() for x in masks.values())
    assert sum(int(x.sum()) for x in masks.values()) == round(0.5 * total)


def test_iterative_pruning_keeps_removed_weights_removed():
    m = model()
    first = magnitude_masks(m, 0.5)
    second = magnitude_masks(m, 0.75, masks=first)
    for name in first:
        assert not torch.any(second[name] & ~first[name])


def test_random_masks_copy_per_layer_counts():
    like = magnitude_masks(model(), 0.8)
    rand = random_masks(like, seed=3)
    assert all(int(rand[n].sum()) == int(like[n].sum()) for n in like)
    assert any(not torch.equal(rand[n], like[n]) for n in like)


def test_masks_survive_a_save_load_round_trip(tmp_path):
    m = model()
    masks = magnitude_masks(m, 0.8, include_linear=True)
    save_masks(tmp_path / "masks.npz", masks)
    again = load_masks(tmp_path / "masks.npz", m)
    assert masks.keys() == again.keys() and all(torch.equal(masks[k], again[k]) for k in masks)
    with np.load(tmp_path / "masks.npz", allow_pickle=False) as z:  # packed bits, no pickle
        assert z["bits0"].dtype == np.uint8


def test_bad_masks_are_clear_errors(tmp_path):
    save_masks(tmp_path / "masks.npz", magnitude_masks(model("resnet-tiny"), 0.5))
    with pytest.raises(UserError, match="names no weight of vgg9"):
        load_masks(tmp_path / "masks.npz", model("vgg-tiny"))
    wide = build(create_spec("resnet-tiny", width_mult=2.0))
    with pytest.raises(UserError, match="has shape .* but the weight has"):
        load_masks(tmp_path / "masks.npz", wide)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a mask file"):
        load_masks(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="shape"):
        FixedMasks({"stages.0.0.conv.weight": torch.ones(2, 2)}).bind(model())


def test_masked_weights_stay_exactly_zero_through_sparse_training(tmp_path):
    from guided.training.recipes import get_recipe
    from guided.training.train import train

    m = model()
    masks = magnitude_masks(m, 0.8)
    train(
        m,
        random_data(n=64),
        get_recipe("quick").override(epochs=3, batch_size=16),
        out_dir=tmp_path,
        hooks=[FixedMasks(masks)],
        log=lambda *_: None,
    )
    params = dict(m.named_parameters())
    for name, mask in masks.items():
        w = params[name].detach().cpu()
        assert torch.all(w[~mask] == 0) and torch.count_nonzero(w[mask]) == int(mask.sum())


def test_nonzero_cost_counts_kept_weights():
    spec = create_spec("vgg-tiny")
    masks = magnitude_masks(model(), 0.8)
    c, dense = nonzero_cost(spec, masks), cost(spec)
    removed = sum(int((~m).sum()) for m in masks.values())
    assert dense.params - c.params == removed
    layer_macs = {r["name"]: r for r in dense.layers}
    expected = sum(layer_macs[n.removesuffix(".weight")]["macs"] * int(m.sum()) / m.numel() for n, m in masks.items())
    others = sum(r["macs"] for r in dense.layers if r["name"] + ".weight" not in masks)
    assert abs(c.macs - (expected + others)) <= len(masks)


def test_sparsity_report_and_kernel_positions_by_hand():
    spec = create_spec("vgg-tiny")
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_weights(model()).items()}
    masks["stages.1.0.conv.weight"][:, :, 0, 0] = False  # corner removed in one stage-1 layer (8x8 filters)
    report = sparsity_report(spec, masks)
    stage1 = next(r for r in report["stages"] if r["stage"] == 1)
    assert stage1["weights"] == 8 * 8 * 9 * 2 and stage1["kept"] == stage1["weights"] - 64
    assert report["kernel"][1][0][0] == pytest.approx(0.5) and report["kernel"][1][1][1] == 1.0
    summary = sparsity_summary([report, report])
    assert summary["runs"] == 2 and summary["kernel"][1][0][0] == pytest.approx(0.5)
    data = sparsity_plot_data(Pattern.from_dict({"kind": "sparsity", **summary}))
    assert data["density"][1] == pytest.approx(stage1["kept"] / stage1["weights"])
    assert data["kernel"][data["kernel_stages"].index(1)][0][0] == pytest.approx(0.5)


def test_sparsity_plot_writes_png_and_svg(tmp_path):
    report = sparsity_report(create_spec("vgg-tiny"), magnitude_masks(model(), 0.8))
    files = draw_sparsity(
        Pattern.from_dict({"kind": "sparsity", **sparsity_summary([report])}), tmp_path / "sparsity.png"
    )
    assert [f.suffix for f in files] == [".png", ".svg"]
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[0].stat().st_size > 5000


@pytest.fixture(scope="module")
def base_with_init(tmp_path_factory):
    return train_tiny_digits_run(tmp_path_factory.mktemp("u") / "base", "--save-init", train_subset=256)


def test_lottery_mode_starts_from_the_saved_initial_weights(base_with_init, tmp_path, monkeypatch):
    import guided.training.retrain as retrain_module

    assert (
        main(
            [
                "prune",
                "--method",
                "magnitude",
                "--checkpoint",
                str(base_with_init),
                "--ratio",
                "0.8",
                "--out",
                str(tmp_path / "m80"),
            ]
        )
        == 0
    )
    seen = {}
    real_train = retrain_module.train

    def spy(model, *args, **kwargs):
        seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["hooks"] = kwargs.get("hooks")
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(retrain_module, "train", spy)
    assert main(["retrain", "--from", str(tmp_path / "m80"), "--mode", "lottery", "--out", str(tmp_path / "lt")]) == 0
    init = torch.load(base_with_init / "init.pt", weights_only=True)
    assert all(torch.equal(seen["state"][k], init[k]) for k in init)
    assert isinstance(seen["hooks"][0], FixedMasks)
    result = json.loads((tmp_path / "lt" / "result.json").read_text())
    assert result["mode"] == "lottery" and result["epochs"] == 2 and result["density"] == pytest.approx(0.2, abs=1e-3)
    final = torch.load(tmp_path / "lt" / "model.pt", weights_only=True)
    masks = load_masks(tmp_path / "m80" / "masks.npz")
    assert all(torch.all(final[n][~m] == 0) for n, m in masks.items())


def test_lottery_needs_masks_and_init(base_with_init, tmp_path, capsys):
    assert (
        main(
            [
                "prune",
                "--method",
                "l1-norm",
                "--checkpoint",
                str(base_with_init),
                "--ratio",
                "0.5",
                "--out",
                str(tmp_path / "l1"),
            ]
        )
        == 0
    )
    assert main(["retrain", "--from", str(tmp_path / "l1"), "--mode", "lottery", "--out", str(tmp_path / "x")]) == 2
    assert "has no masks.npz" in capsys.readouterr().err


def test_scratch_b_counts_nonzero_macs(base_with_init, tmp_path):
    out = tmp_path / "m80"
    assert (
        main(
            ["prune", "--method", "magnitude", "--checkpoint", str(base_with_init), "--ratio", "0.8", "--out", str(out)]
        )
        == 0
    )
    info = json.loads((out / "prune.json").read_text())
    assert (
        info["macs_after"] == nonzero_cost(create_spec("vgg-tiny", in_channels=1), load_masks(out / "masks.npz")).macs
    )
    assert main(["retrain", "--from", str(out), "--mode", "scratch-b", "--out", str(tmp_path / "sb")]) == 0
    result = json.loads((tmp_path / "sb" / "result.json").read_text())
    assert result["epochs"] == int(2 * info["macs_before"] / info["macs_after"])


def test_summarize_command(base_with_init, tmp_path, capsys):
    dirs = []
    for seed in (0, 1):
        d = tmp_path / f"r{seed}"
        assert (
            main(
                [
                    "prune",
                    "--method",
                    "random",
                    "--checkpoint",
                    str(base_with_init),
                    "--ratio",
                    "0.5",
                    "--seed",
                    str(seed),
                    "--out",
                    str(d),
                ]
            )
            == 0
        )
        dirs.append(str(d))
    capsys.readouterr()
    assert main(["summarize", *dirs, "--out", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "stage 5" in out and "kernel" in out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["runs"] == 2 and summary["density"] == pytest.approx(0.5, abs=0.01)
    assert (tmp_path / "s.png").exists()


def test_prune_magnitude_refuses_presets():
    with pytest.raises(UserError, match="takes one --ratio or --threshold"):
        prune(model(), "magnitude", preset="vgg16-a")


def test_scratch_modes_do_not_reuse_the_source_initialisation(base_with_init, tmp_path, monkeypatch):
    """Otherwise Scratch-E of a masked model (same spec, same seed) would silently be the lottery ticket."""
    import guided.training.retrain as retrain_module

    assert (
        main(
            [
                "prune",
                "--method",
                "magnitude",
                "--checkpoint",
                str(base_with_init),
                "--ratio",
                "0.5",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    seen = {}
    real_train = retrain_module.train

    def spy(model, *args, **kwargs):
        seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(retrain_module, "train", spy)
    assert main(["retrain", "--from", str(tmp_path / "m"), "--mode", "scratch-e", "--out", str(tmp_path / "se")]) == 0
    init = torch.load(base_with_init / "init.pt", weights_only=True)
    assert not torch.equal(seen["state"]["stages.0.0.conv.weight"], init["stages.0.0.conv.weight"])
