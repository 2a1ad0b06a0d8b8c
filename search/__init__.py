"""Optuna width search over the `models.ArchSpec` space, seeded by guided designs.

Example:
    >>> from guided.shapes.design import Budget
    >>> from models import create_spec
    >>> from search import WidthSpace
    >>> space = WidthSpace(create_spec("vgg16", width_mult=0.25), Budget("params", 2e5))
    >>> space.names
    ['r0', 'r1', 'r2', 'r3', 'r4']
"""

from search.space import WidthSpace
from search.study import mask_url, open_storage, run_search

__all__ = ["WidthSpace", "run_search", "open_storage", "mask_url"]
