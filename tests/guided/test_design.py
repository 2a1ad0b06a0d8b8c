"""Guided design: stage grouping, budgets, patterns, transfer, sparsification (pure functions, no training)."""

import pytest

from guided.errors import UserError
from guided.pruning.unstructured import nonzero_cost
from guided.shapes.design import (
    Budget,
    _apply,
    _base_widths,
    design,
    design_sparsity,
    parse_budget,
    pattern_stage_count,
)
from guided.shapes.patterns import Pattern, channel_summary
from models import build, cost, create_spec, layers, list_models

PATTERN = Pattern.from_dict(
    {
        "kind": "channels",
        "stages": [{"stage": s, "keep_ratio_mean": r} for s, r in enumerate([1.0, 0.9, 0.8, 0.26, 0.13])],
        "layers": [{"stage": s, "keep_ratio_mean": r} for s, r in enumerate([1.0, 0.9, 0.8, 0.26, 0.13])],
    }
)


@pytest.mark.parametrize("name", list_models(include_tiny=True))
def test_stages_are_the_feature_map_sizes(name):
    """VGG stages end at pools, ResNet stages at stride-2 blocks, DenseNet stages at transitions; a
    MobileNetV2 stage is one of its bottleneck sequences, which halve the size where ``strides`` say."""
    spec = create_spec(name)
    for row in layers(spec):
        if row.kind == "conv" and row.stage >= 0:
            halvings = row.stage if not spec.strides else sum(s == 2 for s in spec.strides[: row.stage + 2])
            if spec.family == "tvresnet":  # after the stride-2 stem and max-pool (the stem is outside stages)
                halvings = row.stage + 2
            expected = spec.input_size // 2**halvings
            # a bottleneck (inverted) block that downsamples runs its first 1x1 conv before the stride-2 3x3 conv
            entry_1x1 = row.name.endswith((".0.conv1", ".0.expand.conv")) and row.kernel == 1
            assert row.out_size == expected or (entry_1x1 and row.out_size == 2 * expected), row


def test_pattern_maps_to_hand_computed_widths():
    target = create_spec("vgg16", width_mult=0.25, head="slim")
    spec = _apply(
        target,
        _base_widths(target),
        [[r] * len(s) for r, s in zip([1, 0.9, 0.8, 0.26, 0.13], target.stages)],
        1.0,
        1,
        {},
    )
    assert spec.stages == ((16, 16), (29, 29), (51, 51, 51), (33, 33, 33), (17, 17, 17))
    rounded = _apply(target, _base_widths(target), [[1.0] * len(s) for s in target.stages], 0.5, 8, {})
    assert rounded.stages == ((8, 8), (16, 16), (32,) * 3, (64,) * 3, (64,) * 3)


@pytest.mark.parametrize(  # the residual families take seconds per case: the inner loop checks VGG
    "arch",
    [
        "vgg16",
        "vgg19",
        pytest.param("resnet56", marks=pytest.mark.slow),
        pytest.param("preresnet56", marks=pytest.mark.slow),
        "mobilenetv2",
        "resnet18",
    ],
)
@pytest.mark.parametrize("kind", ["params", "macs"])
@pytest.mark.parametrize("fraction", [0.03, 0.25, 0.6])
@pytest.mark.parametrize("guided", [False, True])
def test_budgets_are_met_within_one_percent(arch, kind, fraction, guided):
    target = create_spec(arch, width_mult=0.5)
    full = cost(target).params if kind == "params" else cost(target).macs
    pattern = None
    if guided:
        n = pattern_stage_count(target)
        pattern = Pattern("channels", tuple({"stage": s, "keep_ratio_mean": 1 - 0.8 * s / n} for s in range(n)))
    spec = design(target, Budget(kind, fraction * full), pattern=pattern)
    got = cost(spec).params if kind == "params" else cost(spec).macs
    assert abs(got - fraction * full) / (fraction * full) <= 0.01
    assert sum(p.numel() for p in build(spec).parameters()) == cost(spec).params  # it builds, as counted


def test_guided_and_uniform_differ_as_the_pattern_says():
    target = create_spec("vgg19", width_mult=0.25, head="slim", num_classes=100)
    budget = Budget("params", 0.3e6)
    guided, uniform = design(target, budget, pattern=PATTERN), design(target, budget)
    g = [s[0] / b[0] for s, b in zip(guided.stages, target.stages)]
    u = [s[0] / b[0] for s, b in zip(uniform.stages, target.stages)]
    assert len(set(round(x, 1) for x in u)) == 1  # uniform: one multiplier
    assert g[0] > u[0] and g[-1] < u[-1]  # guided: wider early, narrower late
    # per-stage ratios follow the pattern (up to rounding)
    for s in range(1, 5):
        assert g[s] / g[0] == pytest.approx(PATTERN.stages[s]["keep_ratio_mean"], rel=0.15)


def test_transfer_across_depth_keeps_per_stage_ratios():
    source = create_spec("vgg16", width_mult=0.25)
    runs = [
        [
            {"layer": f"l{i}", "stage": s, "original": w, "kept": max(1, round(w * [1, 0.9, 0.8, 0.3, 0.15][s]))}
            for i, (s, w) in enumerate((s, w) for s, ws in enumerate(source.stages) for w in ws)
        ]
    ]
    pattern = Pattern.from_dict({"kind": "channels", **channel_summary(runs)})
    target = create_spec("vgg19", width_mult=0.25, num_classes=100)
    spec = design(target, Budget("params", 0.2e6), pattern=pattern)
    ratios = [spec.stages[s][0] / target.stages[s][0] for s in range(5)]
    for s in range(5):
        expected = pattern.stages[s]["keep_ratio_mean"] / pattern.stages[0]["keep_ratio_mean"]
        assert ratios[s] / ratios[0] == pytest.approx(expected, rel=0.15)


@pytest.mark.slow
def test_mismatched_transfer_is_refused_with_a_way_out():
    with pytest.raises(UserError, match="5 stages but resnet56 has 3; give a stage map"):
        design(create_spec("resnet56"), Budget("params", 2e5), pattern=PATTERN)
    spec = design(create_spec("resnet56"), Budget("params", 2e5), pattern=PATTERN, stage_map=[0, 2, 4])
    assert spec.stage_widths[2] <= spec.stage_widths[1] * 2
    with pytest.raises(UserError, match="needs 3 indices"):
        design(create_spec("resnet56"), Budget("params", 2e5), pattern=PATTERN, stage_map=[0, 7, 1])
    with pytest.raises(UserError, match="not supported yet"):
        design(create_spec("densenet40"), Budget("params", 2e5))


def test_per_layer_interpolates_within_stages():
    pattern = Pattern(
        "channels",
        ({"stage": 0, "keep_ratio_mean": 0.75},),
        ({"stage": 0, "keep_ratio_mean": 1.0}, {"stage": 0, "keep_ratio_mean": 0.5}),
    )
    target = create_spec("vgg11").replace(stages=((64, 64, 64, 64),))
    spec = design(target, Budget("params", cost(target).params * 0.5), pattern=pattern, per_layer=True)
    assert list(spec.stages[0]) == sorted(spec.stages[0], reverse=True) and spec.stages[0][0] > spec.stages[0][-1]


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("params=0.3M", "params", 3e5),
        ("macs=40M", "macs", 4e7),
        ("params=250000", "params", 2.5e5),
        ("MACS=1.2g", "macs", 1.2e9),
    ],
)
def test_parse_budget(text, kind, value):
    assert parse_budget(text) == Budget(kind, value)


@pytest.mark.parametrize("text", ["params", "flops=3M", "params=-1", "params=abc"])
def test_bad_budgets(text):
    with pytest.raises(UserError):
        parse_budget(text)


def test_guided_sparsification_meets_the_budget_and_follows_the_pattern():
    spec = create_spec("vgg16", width_mult=0.25)
    pattern = Pattern(
        "sparsity",
        tuple({"stage": s, "density_mean": d} for s, d in enumerate([0.8, 0.6, 0.4, 0.2, 0.1])),
        kernel={s: [[0.1, 0.5, 0.1], [0.5, 1.0, 0.5], [0.1, 0.5, 0.1]] for s in range(5)},
    )
    budget = Budget("params", 0.15e6)
    guided = design_sparsity(spec, budget, pattern=pattern, kernel=True)
    uniform = design_sparsity(spec, budget)
    for result in (guided, uniform):
        assert abs(nonzero_cost(spec, result["masks"]).params - budget.value) / budget.value <= 0.01
    d = guided["densities"]
    assert d["stages.0.0.conv"] > d["stages.4.0.conv"]
    assert len({round(v, 3) for v in uniform["densities"].values()}) == 1
    m = guided["masks"]["stages.3.0.conv.weight"].float().mean((0, 1))
    assert m[1, 1] > m[0, 0]  # centres kept more than corners


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_bottleneck_budgets(fraction):
    target = create_spec("preresnet164")
    spec = design(target, Budget("params", fraction * cost(target).params))
    assert abs(cost(spec).params - fraction * cost(target).params) / (fraction * cost(target).params) <= 0.01


def test_impossible_budgets_are_refused():
    with pytest.raises(UserError, match="below the smallest"):
        design(create_spec("vgg-tiny"), Budget("params", 10))
