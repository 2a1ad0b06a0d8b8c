"""`models.charge`: every prunable layer's cost is shared out among the channels it touches, exactly once."""

from __future__ import annotations

import pytest

from models import channel_groups, cost, create_spec
from models.charge import channel_charges, prunable_cost


@pytest.mark.parametrize("arch", ["vgg16", "resnet56", "preresnet56", "densenet40", "densenet-bc100"])
@pytest.mark.parametrize("kind", ["params", "macs"])
def test_charges_over_all_channels_add_up_to_the_prunable_cost(arch, kind):
    spec = create_spec(arch)
    groups = channel_groups(spec)
    charges = channel_charges(spec, kind)
    total = sum(charges[g.key] * g.width for g in groups)
    assert total == pytest.approx(prunable_cost(spec, kind), rel=1e-9)
    assert 0.9 * getattr(cost(spec), kind) < total <= getattr(cost(spec), kind)  # stem and classifier aside
    assert all(c > 0 for c in charges.values())


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_a_channel_between_fixed_neighbours_is_charged_what_removing_it_saves(kind):
    spec = create_spec("resnet20")  # a basic block's inner channels: conv1 writes them, conv2 reads them
    for g in channel_groups(spec):
        stages = [list(s) for s in spec.stages]
        stages[g.stage][g.index] -= 1
        saved = getattr(cost(spec), kind) - getattr(cost(spec.replace(stages=stages)), kind)
        assert channel_charges(spec, kind)[g.key] == pytest.approx(saved)


def test_adjacent_prunable_layers_split_the_conv_between_them():
    spec = create_spec("vgg11")
    rows = {r["name"]: r for r in cost(spec).layers}
    first, second = channel_groups(spec)[:2]
    conv1, conv2 = rows[first.conv], rows[second.conv]  # conv2 reads group 1 and writes group 2
    expected = conv1["macs"] / conv1["out_ch"] + 0.5 * conv2["macs"] / conv2["in_ch"]
    assert channel_charges(spec, "macs")[first.key] == pytest.approx(expected)
