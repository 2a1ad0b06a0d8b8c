"""Coupled channel groups: residual widths and stems pruned with every member keeping the same channels."""

import copy

import pytest
import torch

from guided.errors import UserError
from guided.pruning import PRUNERS, cut, prune, ratio_for_budget
from guided.shapes.design import Budget
from models import STREAM, build, channel_groups, cost, create_model, create_spec
from tests.guided.test_pruning import random_data, trained_like

FAMILIES = [
    "resnet-tiny",
    "preresnet-tiny",
    "preresnet-bottleneck-tiny",
    "tvresnet-tiny",
    "tvresnet-bottleneck-tiny",
    "mobilenetv2-tiny",
]
CHANNEL_METHODS = sorted(n for n, m in PRUNERS.items() if m.unit == "channels")


def shared(spec):
    return [g for g in channel_groups(spec, coupled=True) if g.kind == "coupled"]


def size_of(name):
    return create_spec(name).input_size


def zero_channels(model, group, drop):
    """Make ``drop`` channels of a coupled group exactly zero wherever they flow, and read by nothing."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for conv in group.producers:
            if not any(bn for bn, via in group.scales if via is None):
                modules[conv].weight[drop] = 0  # pre-activation: no BN after the producers
        for bn, via in group.scales:
            positions = drop if via is None else [p for p, c in enumerate(modules[via].index.tolist()) if c in drop]
            modules[bn].weight[positions] = 0
            modules[bn].bias[positions] = 0
            if via is not None:
                modules[bn].running_mean[positions] = 0
        for name in group.inner:
            if isinstance(modules[name], torch.nn.BatchNorm2d):
                modules[name].weight[drop] = 0
                modules[name].bias[drop] = 0
        for name, _ in group.tensors:  # a shortcut map adds nothing to a removed channel
            if name.endswith(".shortcut"):
                block = modules[name.rsplit(".", 1)[0]]
                block.shortcut[drop] = -1
                block._identity = False


@pytest.mark.parametrize("name", FAMILIES)
def test_cutting_coupled_groups_equals_zeroing_them_in_every_member(name):
    model = trained_like(name)
    gen = torch.Generator().manual_seed(1)
    keep = {}
    zeroed = copy.deepcopy(model)
    for g in shared(model.spec):
        kept = torch.randperm(g.width, generator=gen)[: max(1, g.width // 2)].sort().values
        keep[g.key] = kept
        zero_channels(zeroed, g, sorted(set(range(g.width)) - set(kept.tolist())))
    new = cut(model, keep)
    x = torch.randn(3, 3, size_of(name), size_of(name))
    with torch.no_grad():
        assert torch.allclose(zeroed(x), new(x), atol=1e-5, rtol=1e-4)
    assert all(new.spec.stage_widths[s] < model.spec.stage_widths[s] for s in range(len(model.spec.stages)))
    assert sum(p.numel() for p in new.parameters()) == cost(new.spec).params


def tag_channels(model):
    """Each coupled channel's number in the running means of the BNs that read or scale it."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for g in shared(model.spec):
            for bn, via in g.scales:
                source = torch.arange(g.width) if via is None else modules[via].index
                modules[bn].running_mean.copy_(source.float() * 1e-3 + 0.01 * g.stage)  # small: activations live
    return model


def channels_kept(new, group):
    """What the new model's members of ``group`` (named as in the old spec) say was kept: one tuple each."""
    modules = dict(new.named_modules())
    said = []
    for bn, via in group.scales:
        mean = modules[bn].running_mean.tolist()
        if via is None:
            said.append(tuple(mean))
        else:  # through a selection: its new channel numbers must name the same old channels everywhere
            said.append(tuple(sorted(dict(zip(modules[via].index.tolist(), mean)).items())))
    return said


@pytest.mark.parametrize("method", CHANNEL_METHODS)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_channel_method_prunes_coupled_groups_consistently(method, name):
    model = tag_channels(trained_like(name))
    result = prune(model, method, ratio=0.5, data=random_data(size=size_of(name)), samples=64, coupled=True)
    new = result.model
    size = size_of(name)
    out = new(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert result.info["coupled"] is True
    assert sum(p.numel() for p in new.parameters()) == cost(new.spec).params == result.info["params_after"]
    assert sum(new.spec.stage_widths) < sum(model.spec.stage_widths)
    for g in shared(model.spec):
        said = channels_kept(new, g)
        direct = [s for s, (_, via) in zip(said, g.scales) if via is None]
        assert all(s == direct[0] for s in direct), f"{g.name}: members keep different channels"
        if not direct:  # pre-activation: every selection's channel numbers agree on which old channel they are
            merged: dict = {}
            for pairs in said:
                for new_c, old_c in pairs:
                    assert merged.setdefault(new_c, old_c) == old_c, f"{g.name}: channel {new_c} differs"
    rows = {r["layer"]: r for r in result.rows if r["kind"] == "coupled"}
    assert {g.name for g in shared(model.spec)} == set(rows)
    assert all(r["kept"] < r["original"] for r in rows.values())


def test_resnet56_at_half_keeps_under_30_percent_and_prunes_stage_widths():
    result = prune(create_model("resnet56", seed=0), "l1-norm", ratio=0.5, coupled=True)
    assert result.info["params_after"] / result.info["params_before"] <= 0.30
    assert result.model.spec.stage_widths == (8, 16, 32) and result.model.spec.stem_width == 8
    plain = prune(create_model("resnet56", seed=0), "l1-norm", ratio=0.5)
    assert plain.info["params_after"] / plain.info["params_before"] > 0.45  # the gap is the coupled groups


def test_groups_the_first_stage_adds_to_are_one_group_with_their_input():
    tv = {g.key: g for g in shared(create_spec("tvresnet-tiny"))}  # basic: stem + stage 0 add
    assert (0, -2) not in tv and tv[(0, STREAM)].ties == ((0, -2),) and "stem.conv" in tv[(0, STREAM)].producers
    bottleneck = {g.key: g for g in shared(create_spec("tvresnet-bottleneck-tiny"))}  # the first block projects
    assert (0, -2) in bottleneck and bottleneck[(0, STREAM)].apart == ((0, -2),)
    mobile = {g.key: g for g in shared(create_spec("mobilenetv2-tiny"))}  # stem 8 = stage 0 = 8 at stride 1
    assert mobile[(0, STREAM)].ties == ((0, 0),) and (1, STREAM) in mobile


def test_widths_that_must_differ_stay_apart():
    model = trained_like("tvresnet-bottleneck-tiny")  # stem 4, stage 0 16: its first block projects
    new = prune(model, "l1-norm", ratio=[0.75, 0.0, 0.0, 0.0], coupled=True).model  # 4 -> 1, 16 -> 4
    assert new.spec.stem_width != new.spec.stage_widths[0]
    assert new.stages[0][0].downsample is not None


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_budgets_with_coupled_groups(kind):
    model = trained_like("resnet-tiny")
    full = getattr(cost(model.spec), kind)
    budget = Budget(kind, 0.3 * full)
    r = ratio_for_budget(model, "slimming", budget, coupled=True)
    result = prune(model, "slimming", ratio=r, coupled=True)
    assert getattr(cost(result.model.spec), kind) <= budget.value
    assert result.model.spec.stage_widths != model.spec.stage_widths


def test_refusals_are_one_line():
    with pytest.raises(UserError, match="DenseNet concatenates"):
        prune(trained_like("densenet-tiny"), "l1-norm", ratio=0.5, coupled=True)
    with pytest.raises(UserError, match="coupled groups are for channel methods"):
        prune(trained_like("resnet-tiny"), "magnitude", ratio=0.5, coupled=True)
    with pytest.raises(UserError, match="names single layers"):
        prune(create_model("resnet56", seed=0), "l1-norm", preset="resnet56-a", coupled=True)


def test_vgg_has_nothing_shared_and_prunes_as_before():
    model = trained_like("vgg-tiny")
    a = prune(model, "l1-norm", ratio=0.5, coupled=True).model
    b = prune(model, "l1-norm", ratio=0.5).model
    assert a.spec == b.spec


def test_resnet_checkpoints_from_before_shortcut_maps_load_with_the_default_map():
    model = trained_like("resnet-tiny")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("shortcut")}
    fresh = build(model.spec, seed=3)
    fresh.load_state_dict(state)
    fresh.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_a_pruned_resnet_may_narrow_from_stage_to_stage():
    spec = create_spec("resnet-tiny").replace(stage_widths=(8, 4, 6), stem_width=10)  # any widths build
    out = build(spec, seed=0)(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10)


def test_patterns_carry_stage_widths_and_designs_apply_them(tmp_path):
    from guided.shapes.design import design
    from guided.shapes.patterns import Pattern, summarize
    from guided.training.retrain import save_pruned

    folders = []
    for seed in (0, 1):
        result = prune(trained_like("resnet-tiny", seed), "l1-norm", ratio=[0.5, 0.25, 0.0], coupled=True)
        save_pruned(result, tmp_path / f"p{seed}", source={"run": None, "epochs": None, "config": {}})
        folders.append(tmp_path / f"p{seed}")
    pattern = summarize(folders)
    rows = pattern.stages
    assert [r["stage_width_ratio_mean"] for r in rows] == [0.5, 0.75, 1.0] and rows[0]["stem_ratio_mean"] == 0.5
    assert all(not r["layer"].startswith("stages.") or "." in r["layer"][7:] for r in pattern.layers)  # entries only
    Pattern.from_dict(pattern.to_dict())  # it validates
    target = create_spec("resnet-tiny")
    budget = Budget("macs", 0.5 * cost(target).macs)
    guided = design(target, budget, pattern=pattern)
    uniform = design(target, budget)
    assert guided.stage_widths[0] / uniform.stage_widths[0] < guided.stage_widths[2] / uniform.stage_widths[2]
    plain = [prune(trained_like("resnet-tiny", 0), "l1-norm", ratio=0.5)]
    save_pruned(plain[0], tmp_path / "plain", source={"run": None, "epochs": None, "config": {}})
    assert "stage_width_ratio_mean" not in summarize([tmp_path / "plain"]).stages[0]  # as before coupled groups
