"""Shared fixtures: tiny registered models, and paths to the optional shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import list_models

TINY_MODELS = [n for n in list_models(include_tiny=True) if n.endswith("-tiny")]
ALL_MODELS = list_models(include_tiny=True)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep decoded datasets of the test session out of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GUIDED_CACHE", str(tmp_path_factory.mktemp("guided-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _thread_budget():
    """A test that runs the CLI sets this process's thread budget; the next test starts from the default."""
    from guided.timing import threads

    before = torch.get_num_threads()
    yield
    threads._state.update(configured=False, explicit=None, share=1, applied=None)
    torch.set_num_threads(before)
