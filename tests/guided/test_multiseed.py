"""Seeds trained together (guided.training.multiseed) give each seed its own run, computed in the contiguous layout."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from guided.errors import UserError
from guided.operations import train_run, train_runs_together, training_config
from guided.storage.folders import RunFolder
from guided.training.data import DataConfig
from guided.training.multiseed import SeedGroup
from guided.training.recipes import get_recipe
from models import build, create_spec
from tests.studies import vary, write_study

SEEDS = (0, 1, 2)


def _configs(arch: str, *, epochs: int = 1, train: int = 512, **extra) -> list[dict]:
    data = DataConfig(dataset="digits", train_subset=train)
    recipe = get_recipe("quick").override(epochs=epochs, batch_size=64)
    spec = create_spec(arch, in_channels=1, input_size=16)
    return [training_config(spec, data, recipe, recipe_name="quick", seed=s, precision="fp32", **extra) for s in SEEDS]


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / a.norm().clamp_min(1e-12)).item()


def test_one_step_of_a_group_is_each_seeds_own_step():
    """The group's arithmetic, alone: the same batches give each seed its own SGD step to rounding."""
    torch.set_num_threads(1)
    spec = create_spec("resnet-tiny", in_channels=1, input_size=16)
    models = [build(spec, seed=s) for s in SEEDS]
    group = SeedGroup([copy.deepcopy(m) for m in models])
    opt = torch.optim.SGD(list(group.params.values()), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    own = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4) for m in models]
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(len(SEEDS), 16, 1, 16, 16, generator=gen)
        y = torch.randint(0, 10, (len(SEEDS), 16), generator=gen)
        opt.zero_grad()
        sum(F.cross_entropy(logits, target) for logits, target in zip(group(x), y)).backward()
        opt.step()
        for m, o, xs, ys in zip(models, own, x, y):
            o.zero_grad()
            F.cross_entropy(m(xs), ys).backward()
            o.step()
    for m, state in zip(models, group.state_dicts()):
        for key, value in m.state_dict().items():
            assert torch.allclose(value.float(), state[key].float(), atol=1e-5), key


@pytest.mark.parametrize("arch", ["vgg-tiny", "resnet-tiny", "densenet-tiny", "mobilenetv2-tiny"])
def test_each_seed_of_a_group_equals_its_own_run(tmp_path, arch):
    """A real run (one epoch of 8 steps, the engine's loaders and schedule): the same test accuracy, and
    the weights within 0.5% of the run's (norm of the difference over the norm, all float tensors).
    Elementwise equality is too strict here: a max-pool or ReLU that flips on a rounding difference sends
    the next steps elsewhere, as any float reordering does. Measured: the same run repeated with
    contiguous instead of channels-last tensors lands 1.4e-4 to 1.4e-3 (ResNet) and 2.3e-4 to 7.5e-4
    (MobileNetV2) away; the group lands as far, to two digits (it computes in contiguous layout)."""
    torch.set_num_threads(1)
    configs = _configs(arch)
    alone = [train_run(c, tmp_path / f"alone-{c['seed']}", log=lambda _: None) for c in configs]
    together = train_runs_together(configs, [tmp_path / f"group-{c['seed']}" for c in configs], log=lambda _: None)
    for c, a, g in zip(configs, alone, together):
        assert g["group_size"] == len(SEEDS) and g["seed"] == c["seed"]
        assert abs(a["test_acc"] - g["test_acc"]) <= 0.01, (a["test_acc"], g["test_acc"])
        wa = torch.load(RunFolder(tmp_path / f"alone-{c['seed']}").weights)
        wg = torch.load(RunFolder(tmp_path / f"group-{c['seed']}").weights)
        assert list(wa) == list(wg)
        floats = [key for key in wa if wa[key].is_floating_point()]
        assert all(torch.equal(wa[key], wg[key]) for key in wa if key not in floats)  # BatchNorm step counts
        gap = _relative_gap(torch.cat([wa[k].flatten() for k in floats]), torch.cat([wg[k].flatten() for k in floats]))
        assert gap < 5e-3, (arch, c["seed"], gap)
    # the seeds are different runs, not one run three times
    w0, w1 = (torch.load(RunFolder(tmp_path / f"group-{s}").weights) for s in SEEDS[:2])
    assert not torch.equal(next(iter(w0.values())), next(iter(w1.values())))


def test_a_group_writes_the_folders_a_run_writes(tmp_path):
    configs = _configs("vgg-tiny", epochs=1)
    train_run(configs[0], tmp_path / "alone", log=lambda _: None)
    train_runs_together(configs, [tmp_path / f"g{s}" for s in SEEDS], log=lambda _: None)
    names = sorted(p.name for p in (tmp_path / "alone").iterdir() if p.name not in ("checkpoint.pt",))
    assert sorted(p.name for p in (tmp_path / "g0").iterdir()) == names
    assert not list(tmp_path.glob("g*/.*"))  # no staging folder left


def test_groups_refuse_what_they_cannot_train_alike(tmp_path):
    configs = _configs("vgg-tiny", epochs=1)
    other = _configs("vgg-tiny", epochs=2)[1]
    with pytest.raises(UserError, match="differ only in their seeds; these differ: recipe"):
        train_runs_together([configs[0], other], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(UserError, match="sparsity_l1"):
        train_runs_together(_configs("vgg-tiny", sparsity_l1=1e-4), [tmp_path / f"s{s}" for s in SEEDS])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="already holds a run"):
        train_runs_together(configs[:1], [tmp_path / "taken"])


@pytest.mark.slow
def test_a_compiled_run_equals_the_plain_run(tmp_path):
    """The ``compile`` mode of the throughput benchmark (`torch.compile` in `guided.training.train.train`): the same
    run, to float tolerance (about a minute of compiling on a CPU)."""
    from guided.training.recipes import Recipe
    from guided.training.train import train

    torch.set_num_threads(1)
    config = _configs("vgg-tiny")[0]
    data = DataConfig(**config["data"]).load()
    results = {}
    for compiled in (False, True):
        model = build(create_spec("vgg-tiny", in_channels=1, input_size=16), seed=0)
        out = tmp_path / f"compiled-{compiled}"
        results[compiled] = train(
            model, data, Recipe.from_dict(config["recipe"]), out_dir=out, compile=compiled, precision="fp32",
            log=lambda _: None,
        )  # fmt: skip
    assert abs(results[True]["test_acc"] - results[False]["test_acc"]) <= 0.01
    plain, compiled = (torch.load(RunFolder(tmp_path / f"compiled-{c}").weights) for c in (False, True))
    floats = [k for k in plain if plain[k].is_floating_point()]
    gap = _relative_gap(
        torch.cat([plain[k].flatten() for k in floats]), torch.cat([compiled[k].flatten() for k in floats])
    )
    assert gap < 5e-3


def _train_stages(study: Path) -> dict[str, tuple[str, list[dict], dict]]:
    """Each trained stage of a study folder: its spec, its metrics rows and its result."""
    import json

    found = {}
    for result in sorted((study / "stages").rglob("result.json")):
        run = result.parent
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        found[str(run.relative_to(study))] = ((run / "spec.json").read_text(), rows, json.loads(result.read_text()))
    return found


@pytest.mark.slow
def test_tiny_study_groups_follow_their_own_runs(tmp_path, monkeypatch):
    """The tiny study (in float32) three ways: runs alone (channels-last, as the engine trains), runs alone in
    the contiguous layout a group computes in, and seed groups of 2. A grouped seed is its contiguous run to
    float rounding (first-epoch loss within 1e-4 for most stages); a float difference alone (the layout) moves a
    run by far more, so a group's seeds differ from channels-last runs as any float difference makes them differ."""
    import guided.training.train as engine
    from guided.cli import main

    monkeypatch.setenv("GUIDED_THREADS", "1")
    # in float32: "auto" trains in bf16 on CPUs with native bf16, whose rounding (about 1e-3 a step) any two
    # kernels differ by, grouped or not; the property under test is the float32 one
    study = tomllib.loads((Path(__file__).resolve().parents[2] / "configs" / "study-tiny-digits.toml").read_text())
    config = str(write_study(tmp_path, vary(study, {"study": {"precision": "fp32"}})))
    assert main(["run", config, "--out", str(tmp_path / "plain")]) == 0
    assert main(["run", config, "--out", str(tmp_path / "group"), "--group-seeds", "2"]) == 0
    monkeypatch.setattr(engine, "MEMORY_FORMAT", torch.contiguous_format)
    assert main(["run", config, "--out", str(tmp_path / "contiguous")]) == 0
    plain, group, contiguous = (_train_stages(tmp_path / k) for k in ("plain", "group", "contiguous"))
    grouped = [k for k, (_, _, r) in group.items() if r.get("group_size") == 2]
    # only stages whose architecture came out the same in both runs (designs follow each run's own pruning)
    same = [k for k in grouped if group[k][0] == contiguous[k][0] == plain[k][0]]
    assert len(grouped) >= 16 and len(same) >= 8, (len(grouped), len(same))
    first = {k: abs(group[k][1][0]["train_loss"] - contiguous[k][1][0]["train_loss"]) for k in same}
    # measured: most within 2e-7; one of 14 at 1.3e-4 (AMD EPYC, AVX2), one of 12 at 3.9e-3 (Xeon, AVX-512)
    assert sum(gap < 1e-4 for gap in first.values()) >= 0.8 * len(first), first
    # where a rounding difference grew (a ReLU or max-pool flipped), no further than the layout alone moves a run
    layout = {k: abs(plain[k][1][0]["train_loss"] - contiguous[k][1][0]["train_loss"]) for k in same}
    assert max(first.values()) <= max(layout.values()), (first, layout)
    gap_group = [abs(group[k][2]["test_acc"] - contiguous[k][2]["test_acc"]) for k in same]
    gap_layout = [abs(plain[k][2]["test_acc"] - contiguous[k][2]["test_acc"]) for k in same]
    assert sum(gap_group) < 0.5 * sum(gap_layout), (gap_group, gap_layout)
    assert max(gap_group) <= max(gap_layout)
