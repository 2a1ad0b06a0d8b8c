"""The one exception type the CLI turns into a one-line message and exit code 2, and the out-of-memory errors
it turns into one."""

import re

from models.spec import SpecError

__all__ = ["UserError", "USER_ERRORS", "memory_error"]


class UserError(ValueError):
    """Bad input from the user (a path, a name, a value): the message says what is wrong and how to fix it."""


#: Exceptions whose message is shown to the user as is, without a traceback.
USER_ERRORS = (UserError, SpecError)


_ASKED = re.compile(r"(?:tried to allocate|allocate) ([0-9.]+) ?(bytes|[KMGT]i?B)", re.I)


def memory_error(exc: BaseException) -> UserError | None:
    """A one-line `UserError` for running out of memory (Python's `MemoryError`, PyTorch's CPU allocator or
    CUDA out of memory), naming the allocation that did not fit; None for any other exception."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and not (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())
    ):
        return None
    found = _ASKED.search(text)
    size = ""
    if found:
        value, unit = float(found.group(1)), found.group(2)
        scale = {"bytes": 1, "KB": 1e3, "KiB": 2**10, "MB": 1e6, "MiB": 2**20, "GB": 1e9, "GiB": 2**30}
        nbytes = value * scale.get(unit, scale.get(unit.upper(), 2**40))
        size = f" (one allocation of {nbytes / 2**30:,.1f} GiB)"
    return UserError(
        f"out of memory{size}: the model, width or batch size is too large for this machine; use a smaller "
        "--width-mult, --batch-size or model"
    )
