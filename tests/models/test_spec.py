import json

import pytest

from models import ArchSpec, SpecError, create_spec, list_models
from tests.conftest import ALL_MODELS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_json_round_trip_is_identity(name):
    spec = create_spec(name, num_classes=7, width_mult=0.5)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(spec.to_json())["format"] == "guided.archspec/1"


@pytest.mark.parametrize(
    "name, depth",
    [
        ("vgg11", 11),
        ("vgg16", 16),
        ("vgg19", 19),
        ("resnet56", 56),
        ("resnet110", 110),
        ("preresnet164", 164),
        ("preresnet56", 56),
        ("densenet40", 40),
        ("densenet-bc100", 100),
    ],
)
def test_names_match_depth(name, depth):
    spec = create_spec(name)
    assert spec.depth == depth
    assert spec.name == name


def test_width_mult_scales_every_width():
    full, quarter = create_spec("vgg16"), create_spec("vgg16", width_mult=0.25)
    assert quarter.stages[0] == (16, 16) and quarter.stages[-1] == (128,) * 3
    assert quarter.head_width == full.head_width // 4


def test_list_models_hides_tiny_variants():
    assert "vgg16" in list_models() and "vgg-tiny" not in list_models()
    assert "vgg-tiny" in list_models(include_tiny=True)


def _vgg(**kw):
    base = dict(family="vgg", stages=[[8], [8], [8], [8], [8]], head="l1")
    return ArchSpec(**{**base, **kw})


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: _vgg(stages=[[8], [0], [8], [8], [8]]), "stages[1][0] = 0"),
        (lambda: _vgg(stages=[[8], [-3], [8], [8], [8]]), "positive integer"),
        (lambda: _vgg(stages=[[8], [2.5], [8], [8], [8]]), "positive integer"),
        (lambda: _vgg(family="alexnet"), "unknown family"),
        (lambda: _vgg(head="big"), "head must be one of"),
        (lambda: _vgg(input_size=8), "input_size 8 is too small"),
        (lambda: _vgg(stages=[]), "stages is empty"),
        (lambda: create_spec("resnet20").replace(stage_widths=(16, 32)), "3 stages need 3 stage_widths"),
        (lambda: create_spec("preresnet164").replace(stages=((16, 16),) * 3), "take 3 widths each"),
        (
            lambda: create_spec("preresnet56").replace(stages=((17, 16) * 9,) + create_spec("preresnet56").stages[1:]),
            "keeps 17 input channels",
        ),
        (lambda: create_spec("densenet40").replace(growth=0), "growth must be a positive integer"),
        (
            lambda: create_spec("densenet40").replace(
                stages=((25,) + create_spec("densenet40").stages[0][1:],) + create_spec("densenet40").stages[1:]
            ),
            "keeps 25 input channels but only 24",
        ),
        (lambda: create_spec("resnet20").replace(head="l1"), "has no head option"),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(make, message):
    with pytest.raises(SpecError, match=r".*" + message.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_from_json_rejects_malformed_input():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{family: vgg")
    with pytest.raises(SpecError, match="unknown spec key"):
        ArchSpec.from_dict({**create_spec("vgg11").to_dict(), "colour": "red"})
    with pytest.raises(SpecError, match="unsupported spec format"):
        ArchSpec.from_dict({**create_spec("vgg11").to_dict(), "format": "guided.archspec/99"})
    with pytest.raises(SpecError, match="list of lists"):
        ArchSpec.from_dict({"family": "vgg", "stages": "64,64"})
    with pytest.raises(SpecError, match="needs at least"):
        ArchSpec.from_dict({"family": "vgg"})


def test_unknown_model_name_lists_choices():
    with pytest.raises(SpecError, match="unknown model 'vgg17'.*vgg16"):
        create_spec("vgg17")


def test_widths_override_replaces_stages():
    widths = [[32, 64], [128, 128], [256] * 3, [256] * 3, [256] * 3]
    spec = create_spec("vgg16", widths=widths)
    assert [list(s) for s in spec.stages] == widths
