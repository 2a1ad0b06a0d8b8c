"""The torchvision bridge: converted networks compute what the originals compute and count what they hold."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from models import BridgeError, build, cost, from_torchvision, torchvision_spec
from models.bridge import TORCHVISION_MODELS


def _perturbed(name: str, **kwargs) -> torch.nn.Module:
    """A torchvision network with BatchNorm scales, shifts and statistics away from their initial values."""
    torch.manual_seed(0)
    module = getattr(torchvision.models, name)(**kwargs)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return module.eval()


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16_bn" else n for n in TORCHVISION_MODELS]
)
def test_converted_networks_compute_and_count_what_torchvision_does(name):
    original = _perturbed(name, num_classes=7)
    model = from_torchvision(original, input_size=64).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), original(x), atol=1e-5, rtol=1e-4)
    assert cost(model.spec).params == sum(p.numel() for p in original.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        original(torch.zeros(1, 3, 64, 64))
    assert 2 * cost(model.spec).macs == counter.get_total_flops()
    assert model.spec.num_classes == 7 and model.spec.input_size == 64


def test_the_converted_spec_is_the_registered_model():
    from models import create_spec

    assert torchvision_spec(torchvision.models.resnet50(num_classes=10)) == create_spec("resnet50")
    assert torchvision_spec(torchvision.models.mobilenet_v2(num_classes=10)) == create_spec("mobilenetv2-imagenet")
    assert torchvision_spec(torchvision.models.vgg11_bn(num_classes=10)) == create_spec(
        "vgg11", head="imagenet", input_size=224
    )


def test_widths_are_read_not_assumed():
    spec = torchvision_spec(torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.5))
    assert spec.stages[1] == (48, 96) and spec.stage_widths[-1] == 160 and spec.stages[-1][-1] == 1280
    wide = torchvision_spec(torchvision.models.wide_resnet50_2(num_classes=5))
    assert wide.stages[0][:2] == (128, 128) and wide.stage_widths[0] == 256


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_pruning_a_converted_network_by_l1_norm_gives_a_network_of_its_spec(name):
    from guided.pruning import prune

    model = from_torchvision(_perturbed(name, num_classes=10), input_size=32)
    result = prune(model, "l1-norm", ratio=0.5)
    new = result.model.eval()
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in new.parameters()) == cost(new.spec).params == result.info["params_after"]
    assert result.info["params_after"] < 0.8 * result.info["params_before"]
    rebuilt = build(new.spec)
    rebuilt.load_state_dict(new.state_dict(), strict=True)


def test_pruning_vgg_with_the_imagenet_head_slices_the_classifier_per_channel():
    """The last conv's channels reach the first linear layer as 7x7 blocks: dropping a channel drops its 49
    inputs, so the pruned network equals the original with the dropped channels zeroed."""
    from guided.pruning import prune
    from models import channel_groups

    model = from_torchvision(_perturbed("vgg11_bn", num_classes=4), input_size=32).eval()
    result = prune(model, "l1-norm", ratio=0.5)
    last = model.spec.stages[-1][-1]
    assert result.model.spec.stages[-1][-1] == last // 2
    assert result.model.head.fc1.in_features == last // 2 * 49
    modules, pruned = dict(model.named_modules()), dict(result.model.named_modules())
    with torch.no_grad():
        for g in channel_groups(model.spec):
            kept = pruned[g.bn].weight.detach()
            bn = modules[g.bn]
            drop = [i for i, gamma in enumerate(bn.weight.detach()) if not (kept == gamma).any()]
            bn.weight[drop] = 0
            bn.bias[drop] = 0
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(result.model.eval()(x), model(x), atol=1e-5)


@pytest.mark.parametrize(
    "make, first_layer",
    [
        (lambda: torchvision.models.resnext50_32x4d(), "layer1.0.conv2: 32 groups"),
        (lambda: torchvision.models.vgg16(), "features.1 (ReLU)"),
        (lambda: torchvision.models.mobilenet_v3_small(), "a MobileNetV3"),
        (lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), "a Sequential"),
    ],
)
def test_a_network_it_cannot_convert_is_refused_naming_the_first_layer(make, first_layer):
    with pytest.raises(BridgeError, match="cannot convert") as err:
        torchvision_spec(make())
    assert first_layer in str(err.value) and "\n" not in str(err.value)


def test_a_changed_layer_is_named():
    module = torchvision.models.resnet18()
    module.layer2[1].relu = torch.nn.GELU()
    module.layer3[0].conv1 = torch.nn.Conv2d(128, 256, 5, 2, 2, bias=False)
    with pytest.raises(BridgeError, match=r"layer3\.0\.conv1: kernel \(5, 5\)"):
        torchvision_spec(module)
