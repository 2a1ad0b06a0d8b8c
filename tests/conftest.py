"""Shared fixtures: tiny registered models, and paths to the optional shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import list_models

TINY_MODELS = [n for n in list_models(include_tiny=True) if n.endswith("-tiny")]
ALL_MODELS = list_models(include_tiny=True)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
