import pytest

from guided.errors import UserError
from guided.training.recipes import RECIPES, get_recipe, scratch_epochs


def test_paper_recipe_is_the_published_one():
    r = get_recipe("paper")
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.nesterov, r.weight_decay) == (160, 64, 0.1, 0.9, False, 1e-4)
    assert r.lr_at(0.0) == 0.1 and r.lr_at(0.49) == 0.1
    assert r.lr_at(0.5) == pytest.approx(0.01) and r.lr_at(0.75) == pytest.approx(0.001)
    ft = r.finetune()
    assert (ft.epochs, ft.lr, ft.lr_at(0.9)) == (40, 0.001, 0.001)


def test_onecycle_and_cosine_shapes():
    r = get_recipe("quick").override(warmup=0.2, lr=1.0)
    assert r.lr_at(0.0) == 0 and r.lr_at(0.1) == pytest.approx(0.5) and r.lr_at(0.2) == pytest.approx(1.0)
    assert r.lr_at(0.6) == pytest.approx(0.5) and r.lr_at(1.0) == 0
    c = r.override(schedule="cosine")
    assert c.lr_at(0) == 1.0 and c.lr_at(0.5) == pytest.approx(0.5) and c.lr_at(1) == pytest.approx(0)


def test_scratch_budgets():
    assert scratch_epochs("scratch-e", 160, 313.5e6, 206.3e6) == 160
    assert scratch_epochs("scratch-b", 160, 313.5e6, 206.3e6) == int(160 * 313.5 / 206.3)
    assert scratch_epochs("scratch-b", 10, 4.0, 1.0) == 40  # no cap
    with pytest.raises(UserError):
        scratch_epochs("scratch-c", 10, 1, 1)


def test_overrides_are_checked():
    assert get_recipe("quick").override(epochs=3, lr=None).epochs == 3
    with pytest.raises(UserError, match="unknown recipe field"):
        get_recipe("quick").override(epoch=3)
    with pytest.raises(UserError, match="unknown schedule"):
        get_recipe("quick").override(schedule="linear")
    with pytest.raises(UserError, match="unknown recipe"):
        get_recipe("fast")
    assert set(RECIPES) >= {"paper", "quick"}
