"""Cost counting against the paper's tables, the built modules, and torch's own FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import build, cost, create_spec, densities_from_masks, layers
from tests.conftest import ALL_MODELS, TINY_MODELS

VGG16_A = [[32, 64], [128, 128], [256] * 3, [256] * 3, [256] * 3]


def test_vgg16_l1_head_matches_published_counts():
    c = cost(create_spec("vgg16", num_classes=10))
    assert c.params == 14_987_722
    assert abs(c.macs - 313.5e6) / 313.5e6 < 0.002
    assert c.flops == 2 * c.macs


def test_vgg16_a_matches_published_counts():
    c = cost(create_spec("vgg16", widths=VGG16_A))
    assert c.params == 5_397_034
    assert abs(c.macs - 206.3e6) / 206.3e6 < 0.002


@pytest.mark.parametrize("name, params, macs", [("resnet56", 8.5e5, 1.25e8), ("resnet110", 1.72e6, 2.53e8)])
def test_resnets_within_one_percent_of_published(name, params, macs):
    c = cost(create_spec(name))
    assert abs(c.params - params) / params < 0.01
    assert abs(c.macs - macs) / macs < 0.01


@pytest.mark.parametrize("name", ALL_MODELS)
def test_layer_rows_name_the_built_modules_and_count_their_parameters(name):
    spec = create_spec(name)
    model = build(spec, seed=0)
    rows = layers(spec)
    for row in rows:
        module = model.get_submodule(row.name)
        assert sum(p.numel() for p in module.parameters(recurse=False)) == row.weight_params + row.bias_params
    assert cost(spec).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", TINY_MODELS + ["resnet20", "vgg11", "densenet40"])
def test_macs_equal_torch_flop_counter(name):
    spec = create_spec(name)
    model = build(spec, seed=0).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size))
    assert counter.get_total_flops() == 2 * cost(spec).macs


def test_odd_input_sizes_agree_with_torch():
    spec = create_spec("resnet-tiny", input_size=15)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        build(spec).eval()(torch.zeros(1, 3, 15, 15))
    assert counter.get_total_flops() == 2 * cost(spec).macs


def test_nonzero_counts_scale_masked_layers_by_hand():
    spec = create_spec("vgg-tiny")
    dense = cost(spec)
    conv = next(r for r in layers(spec) if r.kind == "conv" and r.stage == 1)
    mask = torch.zeros(conv.out_ch, conv.in_ch, 3, 3)
    mask.view(-1)[: mask.numel() // 4] = 1  # a quarter of the weights kept
    sparse = cost(spec, densities_from_masks({conv.name + ".weight": mask}))
    assert dense.params - sparse.params == conv.weight_params * 3 // 4
    assert dense.macs - sparse.macs == conv.macs * 3 // 4


def test_density_for_an_unknown_layer_is_an_error():
    with pytest.raises(ValueError, match="not conv or linear"):
        cost(create_spec("vgg-tiny"), {"stages.9.9.conv": 0.5})
