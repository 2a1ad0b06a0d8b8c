"""Durations as people read them in progress lines: ``42s``, ``3m05s``, ``2h07m``."""

from __future__ import annotations

__all__ = ["clock"]


def clock(seconds: float) -> str:
    """A duration, rounded to the second below an hour and to the minute above.

    Example:
        >>> clock(42.4), clock(185), clock(7620)
        ('42s', '3m05s', '2h07m')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
