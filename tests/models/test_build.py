"""Every registered model builds from its spec, trains, and round-trips through spec JSON + state_dict."""

import io

import pytest
import torch
import torch.nn.functional as F

from models import ArchSpec, build, create_model, create_spec
from tests.conftest import ALL_MODELS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_gives_finite_loss_and_every_gradient(name):
    spec = create_spec(name, num_classes=5)
    model = build(spec, seed=0)
    assert model.spec is spec
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    out = model(x)
    assert out.shape == (2, 5)
    loss = F.cross_entropy(out, torch.tensor([0, 4]))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", ALL_MODELS)
def test_spec_json_and_state_dict_round_trip_reproduces_outputs(name):
    spec = create_spec(name, num_classes=3)
    model = build(spec, seed=1)
    # Give buffers (BN statistics, channel selections) non-default values so the round trip proves they travel.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    text = spec.to_json()

    rebuilt = build(ArchSpec.from_json(text), seed=99)
    buf.seek(0)
    rebuilt.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    rebuilt.eval()
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_seeded_builds_are_reproducible_and_leave_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = create_model("resnet-tiny", seed=3)
    after = torch.rand(1)
    b = create_model("resnet-tiny", seed=3)
    c = create_model("resnet-tiny", seed=4)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_initialisation_follows_the_paper_code():
    model = create_model("vgg16", seed=0)
    conv = model.stages[2][0].conv  # 128 -> 256, 3x3: std sqrt(2 / (9 * 256))
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.05)
    assert torch.all(model.stages[0][0].bn.weight == 0.5)
    assert torch.all(create_model("resnet20").stem.bn.weight == 1.0)


def test_channel_selection_picks_the_stored_channels():
    spec = create_spec("densenet-tiny")
    widths = [list(s) for s in spec.stages]
    widths[0][1] = 5  # second dense layer keeps 5 of its 12 input channels
    pruned = build(spec.replace(stages=widths))
    select = pruned.stages[0].layers[1].select
    select.index.copy_(torch.tensor([0, 2, 3, 7, 11]))
    x = torch.randn(1, 12, 4, 4)
    assert torch.equal(select(x), x[:, [0, 2, 3, 7, 11]])
