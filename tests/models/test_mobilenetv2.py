"""MobileNetV2: torchvision's network at the ImageNet stem, exact counts, and channel pruning of hidden widths."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from models import ArchSpec, SpecError, build, channel_groups, cost, create_spec
from models.charge import channel_charges, prunable_cost
from models.mobilenetv2 import make_divisible


def _flops(model: torch.nn.Module, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


@pytest.mark.parametrize("width_mult", [1.0, 0.5, 1.4])
def test_imagenet_spec_counts_equal_torchvision(width_mult):
    spec = create_spec("mobilenetv2-imagenet", num_classes=1000, width_mult=width_mult)
    reference = torchvision.models.mobilenet_v2(num_classes=1000, width_mult=width_mult)
    assert cost(spec).params == sum(p.numel() for p in reference.parameters())
    assert 2 * cost(spec).macs == _flops(reference, 224)
    if width_mult == 1.0:
        assert cost(spec).params == 3_504_872  # torchvision's documented count


def test_cifar_stem_keeps_32_pixels_until_the_third_stage():
    spec = create_spec("mobilenetv2")
    sizes = {r.name: r.out_size for r in __import__("models").layers(spec) if r.kind == "conv"}
    assert sizes["stem.conv"] == 32 and sizes["stages.1.1.dw.conv"] == 32
    assert sizes["stages.2.0.dw.conv"] == 16 and sizes["stages.6.0.dw.conv"] == 4
    assert 2 * cost(spec).macs == _flops(build(spec, seed=0), 32)


def test_depthwise_convs_count_one_input_channel_per_output():
    spec = create_spec("mobilenetv2-tiny")
    rows = {r["name"]: r for r in cost(spec).layers}
    dw = rows["stages.1.0.dw.conv"]
    assert dw["params"] == dw["out_ch"] * 9
    assert dw["macs"] == dw["out_ch"] * 9 * dw["out_size"] ** 2


def test_make_divisible_follows_torchvision():
    from torchvision.models._utils import _make_divisible

    for value in [3.2, 8, 11.9, 24 * 0.35, 96 * 0.75, 1280 * 1.4, 320 * 1.3]:
        assert make_divisible(value) == _make_divisible(value, 8)


def test_groups_cover_the_hidden_widths_and_the_stem():
    spec = create_spec("mobilenetv2-tiny")
    groups = channel_groups(spec)
    assert [g.key for g in groups] == [(s, i) for s, st in enumerate(spec.stages) for i in range(len(st))]
    assert groups[0].conv == "stem.conv" and groups[0].consumer == "stages.0.0.project.conv"
    assert groups[1].conv == "stages.1.0.expand.conv" and groups[1].inner == ("stages.1.0.dw.conv", "stages.1.0.dw.bn")


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_a_hidden_channel_is_charged_what_removing_it_saves(kind):
    """The expanding conv, the depthwise conv and the projection read or write nothing else prunable."""
    spec = create_spec("mobilenetv2", width_mult=0.5)
    charges = channel_charges(spec, kind)
    for g in channel_groups(spec)[1:-1]:  # the stem is tied; the last conv's group also carries fc's bias
        stages = [list(s) for s in spec.stages]
        stages[g.stage][g.index] -= 1
        saved = getattr(cost(spec), kind) - getattr(cost(spec.replace(stages=stages)), kind)
        assert charges[g.key] == pytest.approx(saved)
    total = sum(charges[g.key] * g.width for g in channel_groups(spec))
    assert total == pytest.approx(prunable_cost(spec, kind))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stem_width": 8}, "no stem_width"),
        ({"stages": ((8, 8), (16, 16), (16, 32, 32))}, "first stage is one block"),
        ({"stages": ((8,), (16, 16), (32,))}, "then the last 1x1 conv"),
        ({"strides": (1, 1, 2)}, "strides must give"),
        ({"strides": (1, 1, 3, 2)}, "strides must give"),
        ({"stage_widths": (8, 8)}, "stage_widths"),
    ],
)
def test_bad_specs_are_refused_in_one_line(change, message):
    with pytest.raises(SpecError, match=message):
        create_spec("mobilenetv2-tiny").replace(**change)


def test_other_families_refuse_strides_and_keep_their_json():
    vgg = create_spec("vgg-tiny")
    assert "strides" not in vgg.to_dict()
    with pytest.raises(SpecError, match="fixed strides"):
        vgg.replace(strides=(1, 2))
    spec = create_spec("mobilenetv2", width_mult=0.5)
    assert ArchSpec.from_json(spec.to_json()) == spec


def test_input_must_survive_the_strides():
    with pytest.raises(SpecError, match="halves it 5 times"):
        create_spec("mobilenetv2-imagenet", input_size=16)
    assert create_spec("mobilenetv2", input_size=8).halvings == 3


def test_latency_tables_time_depthwise_convs_as_depthwise(tmp_path):
    """A depthwise conv is one unit of kind ``dwconv`` reading one channel per output, interpolated along its
    width only: its seconds are a depthwise conv's, not a dense conv's of the same channels."""
    from guided.timing.latency import LatencyTable, units

    spec = create_spec("mobilenetv2-tiny")
    shapes = {u["name"]: u["shape"] for u in units(spec)}
    assert shapes["stages.1.0.dw.conv"] == ("dwconv", 1, 16, 3, 2, 16, "bn", 0)
    assert shapes["stages.1.0.expand.conv"][0] == "conv"
    table = LatencyTable("cpu", batch_size=4, repeats=1, cache=tmp_path, threads=1)
    timed = table.prepare(spec)
    assert timed > 0 and all(not k.startswith("dwconv-2-") for k in table.seconds)  # no node reads two channels
    assert table.shape_seconds(("dwconv", 1, 24, 3, 1, 8, "bn", 0)) > 0
    assert table.predict(spec) > 0


def test_the_last_conv_is_a_pattern_stage_of_its_own_from_pruning_to_design(tmp_path):
    """Pooled with the last block, MobileNetV2's 1280-channel last conv would set that stage's ratio alone."""
    from guided.pruning import prune
    from guided.shapes.design import Budget, design, pattern_stage_count
    from guided.shapes.patterns import Pattern
    from models import pattern_stages

    spec = create_spec("mobilenetv2", width_mult=0.25)
    assert pattern_stages(spec)[-1] == [6, 7] and pattern_stage_count(spec) == 8
    model = build(spec, seed=0)
    with torch.no_grad():
        model.last.bn.weight.mul_(1e-3)  # the last conv's scales run low, as under the slimming penalty
    rows = prune(model, "slimming", ratio=0.3).rows
    assert rows[-1]["layer"] == "last.conv" and rows[-1]["stage"] == 7 and rows[-1]["kept"] < 0.3 * 1280
    assert {r["stage"] for r in rows} == set(range(8))

    ratios = [0.9] * 7 + [0.05]  # blocks keep 90%, the last conv 5%
    pattern = Pattern("channels", tuple({"stage": i, "keep_ratio_mean": r} for i, r in enumerate(ratios)))
    budget = Budget("macs", 0.5 * cost(spec).macs)
    guided, uniform = design(spec, budget, pattern=pattern), design(spec, budget)
    # the last block is as wide relative to uniform as the other blocks; only the last conv narrows
    rel = [g / u for g, u in zip(guided.widths(), uniform.widths())]
    assert rel[-2] == pytest.approx(rel[-3], rel=0.15) and rel[-1] < 0.1 * rel[-2]
    assert guided.stage_widths[-1] / uniform.stage_widths[-1] == pytest.approx(rel[-3], rel=0.15)
