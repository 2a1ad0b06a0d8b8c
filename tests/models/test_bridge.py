"""The torchvision bridge: converted networks compute what the originals compute and count what they hold."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from models import BridgeError, build, cost, from_torchvision, torchvision_spec
from models.bridge import TORCHVISION_MODELS


def _with_statistics(module: torch.nn.Module, size: int = 64) -> torch.nn.Module:
    """``module`` with BatchNorm statistics estimated on data (cumulative averages over a few batches), in
    eval mode. With torchvision's initial statistics (mean 0, variance 1) a deep network's output hardly
    depends on its input (2e-8 between two inputs for MobileNetV2), so a wrong conversion would pass."""
    g = torch.Generator().manual_seed(2)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(8, 3, size, size, generator=g))
    return module.eval()


def _perturbed(name: str, **kwargs) -> torch.nn.Module:
    """A torchvision network with BatchNorm scales and shifts away from their initial values and statistics
    estimated on data (`_with_statistics`), in eval mode."""
    torch.manual_seed(0)
    module = getattr(torchvision.models, name)(**kwargs)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return _with_statistics(module)


def _agree(model: torch.nn.Module, original: torch.nn.Module, size: int = 64) -> bool:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(model(x), original(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16_bn" else n for n in TORCHVISION_MODELS]
)
def test_converted_networks_compute_and_count_what_torchvision_does(name):
    original = _perturbed(name, num_classes=7)
    model = from_torchvision(original, input_size=64).eval()
    assert _agree(model, original)
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


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_the_networks_compared_depend_on_their_input(name):
    original = _perturbed(name, num_classes=7)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        a, b = original(torch.randn(1, 3, 64, 64, generator=g)), original(torch.randn(1, 3, 64, 64, generator=g))
    assert (a - b).abs().max() > 1e-2 * a.abs().max()


@pytest.mark.parametrize(
    "name, sabotage",
    [
        ("resnet18", lambda m: m.stem.conv.weight.data.zero_()),
        ("mobilenet_v2", lambda m: m.stem.conv.weight.data.zero_()),
        ("mobilenet_v2", lambda m: setattr(_first_residual(m), "residual", False)),
    ],
    ids=["resnet18-zeroed-stem", "mobilenet-zeroed-stem", "mobilenet-dropped-shortcut"],
)
def test_the_comparison_sees_a_sabotaged_conversion(name, sabotage):
    original = _perturbed(name, num_classes=7)
    model = from_torchvision(original, input_size=64).eval()
    assert _agree(model, original)
    sabotage(model)
    assert not _agree(model, original)


def _first_residual(model: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in model.modules() if getattr(m, "residual", False))


def test_a_pruned_mobilenet_stem_whose_block_would_gain_a_shortcut_is_refused_naming_it():
    """Torch-Pruning prunes MobileNetV2's stem 32 -> 16: block 1 then reads 16 -> 16 at stride 1, but
    torchvision decided at build time that it has no shortcut; a guided block would add one."""
    from torchvision.ops.misc import Conv2dNormActivation

    module = torchvision.models.mobilenet_v2(num_classes=10)
    module.features[0] = Conv2dNormActivation(
        3, 16, stride=2, norm_layer=torch.nn.BatchNorm2d, activation_layer=torch.nn.ReLU6
    )
    module.features[1].conv[0] = Conv2dNormActivation(
        16, 16, stride=1, groups=16, norm_layer=torch.nn.BatchNorm2d, activation_layer=torch.nn.ReLU6
    )
    module.features[1].conv[1] = torch.nn.Conv2d(16, 16, 1, bias=False)
    assert module.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10) and not module.features[1].use_res_connect
    with pytest.raises(BridgeError, match=r"features\.1: torchvision built it without a shortcut") as err:
        from_torchvision(module)
    assert "16 -> 16, stride 1" in str(err.value) and "\n" not in str(err.value)
