"""Structured pruning: every method on every family it applies to, presets, surgery, reconstruction."""

import copy

import numpy as np
import pytest
import torch

from guided.errors import UserError
from guided.pruning import PRUNERS, cut, prune
from guided.pruning.criteria import Context
from guided.pruning.reconstruct import (
    reconstruction_error,
    regression_select,
    sample_consumer_inputs,
    thinet_select,
)
from guided.training.data import ImageData, Split
from models import build, channel_groups, cost, create_model, create_spec
from tests.conftest import TINY_MODELS


def random_data(n=96, size=16, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    split = Split(
        rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)
    )
    return ImageData("random", split, split, tuple(map(str, range(classes))), (0.5,) * 3, (0.25,) * 3)


def trained_like(name, seed=0):
    """A tiny model whose BN scales and statistics are not at their initial constants."""
    model = build(create_spec(name), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def applies(method: str, name: str) -> bool:
    """Whether a registered method can prune the tiny model ``name`` (the contract tests' case list)."""
    m = PRUNERS[method]
    if m.unit == "weights":
        return True
    if m.unit == "blocks":
        return create_spec(name).gated
    return any(g.kind in m.kinds for g in channel_groups(create_spec(name)))


def contract_cases() -> list[tuple[str, str]]:
    return [(method, name) for method in PRUNERS for name in TINY_MODELS if applies(method, name)]


CASES = [c for c in contract_cases() if PRUNERS[c[0]].unit == "channels"]


def check_method_contract(method: str, name: str) -> None:
    """What every registered method promises on a model it applies to: a smaller, working network (or
    masks), its costs recorded, and the input model untouched. Channel methods: every eligible group
    narrows as the allocation says and no other group changes."""
    model = trained_like(name)
    result = prune(model, method, ratio=0.5, data=random_data(), samples=64)
    new, unit = result.model, PRUNERS[method].unit
    assert result.info["params_after"] < result.info["params_before"]
    out = new(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained_like(name).state_dict().values()))
    if unit == "weights":
        kept = sum(int(m.sum()) for m in result.masks.values()) / sum(m.numel() for m in result.masks.values())
        assert 0.45 <= kept <= 0.55 and new.spec == model.spec
    elif unit == "blocks":
        assert new.spec.depth < model.spec.depth
    else:
        old_w, new_w = model.spec.widths(), new.spec.widths()
        eligible = [j for j, g in enumerate(channel_groups(model.spec)) if g.kind in PRUNERS[method].kinds]
        if PRUNERS[method].allocation == "layer":
            assert all(new_w[j] == max(1, int(old_w[j] * 0.5)) for j in eligible)
        assert sum(new_w) < sum(old_w)
        assert all(new_w[j] == old_w[j] for j in range(len(old_w)) if j not in eligible)
        assert result.info["params_after"] == cost(new.spec).params


@pytest.mark.parametrize("method, name", contract_cases())
def test_every_registered_method_keeps_its_contract(method, name):
    check_method_contract(method, name)


@pytest.mark.parametrize("method, name", [c for c in CASES if PRUNERS[c[0]].select is None])
def test_removing_channels_equals_zeroing_them(method, name):
    model = trained_like(name)
    result = prune(model, method, ratio=0.4, data=random_data(), samples=64)
    zeroed = copy.deepcopy(model)
    modules = dict(zeroed.named_modules())
    new_groups = {g.key: g for g in channel_groups(result.model.spec)}
    for g in channel_groups(model.spec):
        if new_groups[g.key].width == g.width:
            continue
        # which positions survived: recover them from the kept BN scales
        kept_gamma = dict(result.model.named_modules())[g.bn].weight.detach()
        gamma = modules[g.bn].weight.detach()
        kept = [int((gamma == v).nonzero()[0]) for v in kept_gamma]
        drop = sorted(set(range(g.width)) - set(kept))
        with torch.no_grad():  # and the BatchNorms between producer and consumer (MobileNetV2's depthwise)
            for bn in [g.bn, *(n for n in g.inner if isinstance(modules[n], torch.nn.BatchNorm2d))]:
                modules[bn].weight[drop] = 0
                modules[bn].bias[drop] = 0
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(zeroed(x), result.model(x), atol=1e-5, rtol=1e-4)


def test_global_threshold_removes_the_requested_fraction():
    model = trained_like("vgg-tiny")
    result = prune(model, "slimming", ratio=0.6)
    before, after = sum(model.spec.widths()), sum(result.model.spec.widths())
    assert after == before - int(0.6 * before)
    # the kept channels are exactly those with the largest |gamma| over the whole network
    gammas = torch.cat(
        [m.weight.detach().abs() for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    )
    kept = torch.cat(
        [m.weight.detach().abs() for n, m in result.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    )
    assert torch.equal(kept.sort().values, gammas.sort().values[int(0.6 * before) :])


def test_min_channels_keeps_every_layer_alive():
    model = trained_like("vgg-tiny")
    with torch.no_grad():
        model.stages[2][0].bn.weight.mul_(1e-6)  # one layer's scales all tiny
    result = prune(model, "slimming", ratio=0.3, min_channels=2)
    assert result.model.spec.stages[2][0] == 2


def test_min_keep_keeps_a_share_of_every_layer_and_zero_changes_nothing():
    model = trained_like("vgg-tiny")
    with torch.no_grad():
        model.stages[2][0].bn.weight.mul_(1e-6)  # one layer's scales all tiny: a global threshold empties it
    plain = prune(model, "slimming", ratio=0.3)
    assert plain.model.spec.stages[2][0] == 1
    assert prune(model, "slimming", ratio=0.3, min_keep=0.0).model.spec == plain.model.spec
    floored = prune(model, "slimming", ratio=0.3, min_keep=0.25)
    for width, full in zip(floored.model.spec.widths(), model.spec.widths()):
        assert width >= -(-full // 4)  # at least a quarter, rounded up
    assert floored.info["min_keep"] == 0.25 and "min_keep" not in plain.info
    with pytest.raises(UserError, match="min_keep must lie in"):
        prune(model, "slimming", ratio=0.3, min_keep=1.0)


def test_stage_ratios():
    result = prune(trained_like("resnet-tiny"), "l1-norm", ratio=[0.5, 0.0, 0.25])
    assert result.model.spec.stages == ((2, 2), (8, 8), (12, 12))


@pytest.mark.parametrize(
    "name, preset_name, params, macs",
    [
        ("vgg16", "vgg16-a", 5_397_034, 206.3e6),
        ("resnet56", "resnet56-a", 7.7e5, 1.12e8),
        ("resnet56", "resnet56-b", 7.3e5, 9.09e7),
        ("resnet110", "resnet110-a", 1.68e6, 2.13e8),
        ("resnet110", "resnet110-b", 1.16e6, 1.55e8),
    ],
)
def test_presets_match_published_counts(name, preset_name, params, macs):
    result = prune(create_model(name, seed=0), "l1-norm", preset=preset_name)
    assert abs(result.info["params_after"] - params) / params < 0.01
    assert abs(result.info["macs_after"] - macs) / macs < 0.01
    if preset_name == "vgg16-a":
        assert result.model.spec.stages == ((32, 64), (128, 128), (256,) * 3, (256,) * 3, (256,) * 3)
        assert result.info["params_after"] == 5_397_034


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="l2-norm", ratio=0.5), "unknown pruning method"),
        (dict(method="l1-norm", ratio=1.2), r"ratio must lie in \(0, 1\)"),
        (dict(method="l1-norm", ratio=0.0), r"ratio must lie in \(0, 1\)"),
        (dict(method="l1-norm", preset="resnet56-a"), "fits ResNet-56 only"),
        (dict(method="l1-norm", preset="vgg19-z"), "unknown preset"),
        (dict(method="l1-norm"), "either a ratio"),
        (dict(method="thinet", ratio=0.5), "give a dataset"),
    ],
)
def test_bad_requests_are_clear_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        prune(trained_like("vgg-tiny"), **kwargs)


def test_reconstruction_methods_beat_l1_on_next_layer_error():
    """Same kept count; error of the next layer's output on held-out sampled activations."""
    model = trained_like("vgg-tiny", seed=3)
    data = random_data(n=256, seed=1)
    group = channel_groups(model.spec)[2]  # stages.1.1.conv -> stages.2.0.conv, 8 channels
    consumer = dict(model.named_modules())[group.consumer]
    fit = sample_consumer_inputs(Context(model, data, samples=128, seed=0), [group])[group.key]
    held_out = sample_consumer_inputs(Context(model, random_data(n=256, seed=2), samples=128, seed=5), [group])
    held_out = held_out[group.key]
    k = 3
    l1 = dict(model.named_modules())[group.conv].weight.detach().abs().sum((1, 2, 3))
    l1_kept = l1.argsort(descending=True)[:k].sort().values
    l1_err = reconstruction_error(held_out, consumer, l1_kept, consumer.weight.detach()[:, l1_kept])
    for select in (thinet_select, regression_select):
        kept, new_w = select(fit, consumer, k, seed=0)
        assert len(kept) == k
        assert reconstruction_error(held_out, consumer, kept, new_w) < l1_err, select.__name__


def test_reconstructed_weights_are_what_the_pruned_model_carries():
    model = trained_like("resnet-tiny")
    result = prune(model, "regression", ratio=0.5, data=random_data(), samples=32)
    assert result.model.stages[0][0].conv2.weight.shape[1] == 2
    assert not torch.equal(result.model.stages[0][0].conv2.weight, model.stages[0][0].conv2.weight[:, :2])


def test_surgery_refuses_bad_positions():
    model = trained_like("vgg-tiny")
    with pytest.raises(ValueError, match="sorted and unique"):
        cut(model, {(0, 0): torch.tensor([3, 1])})
    with pytest.raises(ValueError, match="must lie in"):
        cut(model, {(0, 0): torch.tensor([0, 99])})
    with pytest.raises(ValueError, match="keep at least one"):
        cut(model, {(0, 0): torch.tensor([], dtype=torch.long)})
    with pytest.raises(ValueError, match="no channel group"):
        cut(model, {(9, 0): torch.tensor([0])})


# ---------------------------------------------------------------------- Sparse Structure Selection
@pytest.mark.parametrize("name", ["resnet-gated-tiny", "preresnet-gated-tiny"])
def test_sss_removes_blocks_with_zero_gates_exactly(name):
    model = trained_like(name)
    with torch.no_grad():
        model.stages[0][1].gate.zero_()  # removable (identity shortcut)
        model.stages[2][1].gate.zero_()
        model.stages[1][0].gate.mul_(0.7)  # a downsampling block: kept, its gate folded in
    result = prune(model, "sss", threshold=1e-6)
    new = result.model
    assert not new.spec.gated and new.spec.units_per_stage == (1, 2, 1)
    assert new.spec.depth == model.spec.depth - 4
    assert result.info["blocks_removed"] == 2
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), new(x), atol=1e-5, rtol=1e-4)


def test_sss_ratio_picks_the_smallest_removable_gates_and_the_result_trains(tmp_path):
    from guided.training.recipes import get_recipe
    from guided.training.train import train

    model = trained_like("resnet-gated-tiny")
    with torch.no_grad():
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage):
                block.gate.fill_(0.1 * (s + 1) + 0.01 * b)
    # removable: (0,0) 0.10, (0,1) 0.11, (1,1) 0.21, (2,1) 0.31; remove 3, smallest gate first, but
    # (0,1) is stage 0's last block once (0,0) is gone, so it stays
    result = prune(model, "sss", ratio=0.75)
    kept = [(r["stage"], r["block"]) for r in result.rows if r["kept"]]
    assert kept == [(0, 1), (1, 0), (2, 0)]
    data = random_data(n=64)
    out = train(
        result.model, data, get_recipe("quick").override(epochs=1, batch_size=32), out_dir=tmp_path, log=lambda *_: None
    )
    assert out["params"] == cost(result.model.spec).params


def test_gate_sparsity_is_a_proximal_l1_step():
    from guided.training.hooks import GateSparsity

    model = build(create_spec("resnet-gated-tiny"))
    with torch.no_grad():
        model.stages[0][0].gate.fill_(0.3)
        model.stages[0][1].gate.fill_(-0.05)
    GateSparsity(1.0).after_step(model, lr=0.1)
    assert model.stages[0][0].gate.item() == pytest.approx(0.2)
    assert model.stages[0][1].gate.item() == 0.0


def test_sss_needs_gates():
    with pytest.raises(UserError, match="no block gates"):
        prune(trained_like("resnet-tiny"), "sss", ratio=0.5)
    with pytest.raises(UserError, match="threshold is for sss"):
        prune(trained_like("resnet-tiny"), "l1-norm", ratio=0.5, threshold=0.1)


def test_global_threshold_breaks_ties_to_remove_the_exact_count():
    model = create_model("vgg-tiny", seed=0)  # untrained: every BN scale is 1
    result = prune(model, "slimming", ratio=0.5)
    before, after = sum(model.spec.widths()), sum(result.model.spec.widths())
    assert after == before - int(0.5 * before)


@pytest.mark.parametrize(
    "arch, method", [("vgg-tiny", "slimming"), ("resnet-tiny", "l1-norm"), ("preresnet-bottleneck-tiny", "slimming")]
)
@pytest.mark.parametrize("kind", ["params", "macs"])
def test_ratio_for_budget_lands_just_under_the_budget(arch, method, kind):
    from guided.pruning import ratio_for_budget
    from guided.shapes.design import Budget

    model = trained_like(arch)
    budget = Budget(kind, 0.7 * Budget(kind, 0).of(model.spec))
    ratio = ratio_for_budget(model, method, budget)
    pruned = prune(model, method, ratio=ratio).model.spec
    assert budget.of(pruned) <= budget.value
    slightly_less = prune(model, method, ratio=max(ratio - 0.02, 0.001)).model.spec
    assert budget.of(slightly_less) > budget.value or ratio <= 0.02
