"""Optuna width search over the `models.ArchSpec` space, seeded by guided designs.

Nothing is implemented here yet: the search is tracked as its own issue and builds on `guided`.
"""

__all__: list[str] = []
