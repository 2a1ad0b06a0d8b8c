"""A model family added from a test module alone: one declaration and one `register_family` line, then the
toolkit specs, builds, costs, designs and prunes it with nothing else told about it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from guided.pruning import prune
from guided.shapes.design import Budget, design, designable
from guided.shapes.patterns import Pattern
from models import ArchSpec, SpecError, build, cost, entries_per_unit, layers
from models.blocks import ConvBN
from models.cost import Layer
from models.family import FAMILIES, Family, register_family
from models.groups import conv_group


class PlainNet(nn.Module):
    """3x3 conv-BN-ReLU stages, a 2x2 average pool between them, global pool, one linear classifier."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec, in_ch, stages = spec, spec.in_channels, []
        for widths in spec.stages:
            convs = []
            for w in widths:
                convs.append(ConvBN(in_ch, w))
                in_ch = w
            stages.append(nn.Sequential(*convs))
        self.stages, self.fc = nn.ModuleList(stages), nn.Linear(in_ch, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s, stage in enumerate(self.stages):
            x = stage(F.avg_pool2d(x, 2) if s else x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def plain_layers(spec: ArchSpec) -> list[Layer]:
    rows, in_ch, size = [], spec.in_channels, spec.input_size
    for s, widths in enumerate(spec.stages):
        size //= 2 if s else 1
        for i, w in enumerate(widths):
            rows += [Layer(f"stages.{s}.{i}.conv", "conv", s, in_ch, w, 3, 1, size)]
            rows += [Layer(f"stages.{s}.{i}.bn", "bn", s, w, w, out_size=size)]
            in_ch = w
    return [*rows, Layer("fc", "linear", -1, in_ch, spec.num_classes)]


def plain_groups(spec: ArchSpec):
    names = [(s, i) for s, widths in enumerate(spec.stages) for i in range(len(widths))]
    consumers = [f"stages.{s}.{i}.conv" for s, i in names[1:]] + ["fc"]
    return [
        conv_group(s, i, spec.stages[s][i], f"stages.{s}.{i}.conv", f"stages.{s}.{i}.bn", c)
        for (s, i), c in zip(names, consumers)
    ]


def _check(spec: ArchSpec) -> None:
    if spec.stage_widths or spec.stem_width:
        raise SpecError("plainnet specs have only stages")


PLAINNET = Family(
    name="plainnet",
    blocks={"plain": 1},
    build=PlainNet,
    layers=plain_layers,
    groups=plain_groups,
    coupled=plain_groups,
    depth=lambda spec, units: units + 1,
    check=_check,
    design="plain",
)


@pytest.fixture
def plainnet():
    register_family(PLAINNET)  # the one registration line
    yield ArchSpec(family="plainnet", stages=((16, 16), (32, 32), (64,)), num_classes=10)
    FAMILIES.pop("plainnet")


def test_a_family_from_a_test_module_is_specced_built_and_costed(plainnet):
    assert plainnet.name == "plainnet6" and entries_per_unit("plainnet", "plain") == 1
    model = build(plainnet, seed=0)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert cost(plainnet).params == sum(p.numel() for p in model.parameters())
    assert [r.name for r in layers(plainnet)][-1] == "fc"
    assert ArchSpec.from_json(plainnet.to_json()) == plainnet
    with pytest.raises(SpecError, match="only stages"):
        plainnet.replace(stem_width=4)
    with pytest.raises(SpecError, match="no head option"):
        plainnet.replace(head="l1")


def test_a_family_from_a_test_module_is_designed_and_pruned(plainnet):
    assert "plainnet" in designable()
    budget = Budget("params", 0.4 * cost(plainnet).params)
    uniform = design(plainnet, budget)
    rows = tuple({"stage": s, "keep_ratio_mean": r} for s, r in enumerate([1.0, 0.5, 0.3]))
    guided = design(plainnet, budget, pattern=Pattern("channels", rows))
    for spec in (uniform, guided):
        assert spec.family == "plainnet" and abs(cost(spec).params - budget.value) <= 0.01 * budget.value
    assert guided.stages[0][0] / uniform.stages[0][0] > guided.stages[2][0] / uniform.stages[2][0]
    result = prune(build(plainnet, seed=0), "l1-norm", ratio=0.5)
    pruned = result.model
    assert pruned.spec.family == "plainnet" and sum(pruned.spec.widths()) < sum(plainnet.widths())
    assert cost(pruned.spec).params == sum(p.numel() for p in pruned.parameters())
    assert pruned(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
