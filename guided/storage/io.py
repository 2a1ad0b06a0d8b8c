"""Small file helpers: atomic writes (nothing half-written on disk), safe deletes and names, spec files.

The promises behind them: a file is replaced whole or not at all, and only a regular file is ever replaced
(never a device, a pipe or what a link points at); nothing is deleted outside the folder it belongs to;
an output never overwrites an input; a name that becomes a path is a plain name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guided.errors import UserError
from models.spec import ArchSpec, SpecError

__all__ = [
    "check_file",
    "read_csv_table",
    "atomic_write_bytes",
    "atomic_write_text",
    "state_mismatch",
    "write_json",
    "read_json",
    "read_spec",
    "write_spec",
    "read_toml",
    "read_tensors",
    "load_state",
    "check_state_dict",
    "check_output",
    "check_name",
    "refuse_special",
    "remove_inside",
    "toml_section",
    "type_ok",
    "MAX_TEXT_BYTES",
]

#: The largest JSON or TOML file guided reads (specs, patterns, records and study files are far smaller).
MAX_TEXT_BYTES = 32 * 2**20

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(name: object, what: str) -> str:
    """``name`` if it is a plain name that can be one path component; else a one-line `UserError`.

    A plain name starts with a letter or digit and holds letters, digits, ``_``, ``.`` and ``-`` (at most
    100 characters): no ``/``, no ``..``, no absolute path, so a folder named by it stays where it belongs.

    >>> check_name("slimming-0.4", "[[prune]] name")
    'slimming-0.4'
    >>> check_name("../x", "[[prune]] name")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    guided.errors.UserError: [[prune]] name '../x' is not a plain name: use letters, digits, ...
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"{what} {name!r} is not a plain name: use letters, digits, '_', '.' and '-' (starting with a letter "
            "or digit), at most 100 characters"
        )
    return name


def remove_inside(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Delete ``path`` (a folder, a file or a link) if it lies strictly inside the folder ``root``.

    The one way guided deletes what a run wrote. The check is made here, where it deletes, on resolved
    paths: ``root`` itself, anything outside it, and a path that leaves it through ``..`` or a link are
    refused. A link inside ``root`` is removed, never followed. A missing path is nothing to do.
    """
    path, root = Path(path), Path(root).resolve()
    if not os.path.lexists(path):
        return
    where = path.parent.resolve() / path.name  # the last part unresolved: a link is removed, not its target
    if where == root or root not in where.parents or path.name in ("..", "."):
        raise UserError(f"refusing to delete {path}: it does not lie inside {root}")
    if where.is_symlink() or not where.is_dir():
        where.unlink()
    else:
        shutil.rmtree(where)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    A reader (or a crash) never sees a half-written file: the rename is atomic on POSIX file systems.
    """
    path = Path(path)
    refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # a full disk, an immutable file: name the file asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def refuse_special(path: str | os.PathLike, option: str = "") -> None:
    """Refuse (one line) to write over anything but a regular file: a symbolic link (wherever it points), a
    device, a pipe, a socket or a folder. A missing path is fine."""
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if os.path.islink(path):
        raise UserError(
            f"{label} is a symbolic link; guided writes no file through a link (it could point anywhere): remove "
            "it or give another path"
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:  # a link loop (ELOOP), a name too long, a parent that is a file
        raise UserError(f"{label} cannot be used: {exc.strerror}; give another path") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{label} is a folder; give a file name")
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{label} is not a regular file (a device, pipe or socket, or a link to one); guided replaces regular "
            "files only: give another path"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write indented JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_file(path: Path, what: str, hint: str = "") -> None:
    """``path`` is a regular file (through links), or a one-line `UserError` saying what it is instead: absent,
    a folder, or a special file (a FIFO, a device: reading those blocks or never ends)."""
    if path.is_file():
        return
    if not os.path.lexists(path):
        found = "does not exist"
    elif path.is_dir():
        found = "is a folder"
    elif not path.exists():
        found = "is a link to nothing"
    else:
        found = "is not a regular file (a FIFO, a device or a socket)"
    raise UserError(f"{what} {path} {found}; give {hint or 'a file'}")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into a one-line `UserError`."""
    path = Path(path)
    check_file(path, what, "a .json file")
    try:
        return json.loads(_read_limited(path, what))
    except (ValueError, UnicodeDecodeError) as exc:  # ValueError: also an integer of over 4,300 digits
        raise UserError(f"{what} {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is nested too deeply to be a guided file") from None


def _read_limited(path: Path, what: str) -> str:
    """A text file's contents, refusing files above `MAX_TEXT_BYTES` and bytes that are not UTF-8."""
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise UserError(f"{what} {path} is {size / 2**20:.0f} MiB; guided reads such files up to 32 MiB")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text (a binary file, or another encoding)") from None


def read_csv_table(path: str | os.PathLike, what: str, columns: Sequence[str], numeric: Sequence[str] = ()):
    """A CSV table (pandas) with ``columns``, its ``numeric`` ones finite numbers of 0 or more; a missing,
    special, oversized (over `MAX_TEXT_BYTES`), binary or malformed file, a missing column or a bad number is a
    one-line `UserError` naming the file (and the row)."""
    import io

    import pandas as pd

    path = Path(path)
    check_file(path, what, "a .csv file")
    try:
        df = pd.read_csv(io.StringIO(_read_limited(path, what)))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise UserError(
            f"{what} {path} is not a CSV table ({type(exc).__name__}); give one with columns {', '.join(columns)}"
        ) from None
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise UserError(f"{what} {path} is missing {missing}; it needs columns {', '.join(columns)}")
    for column in numeric:
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() | (values < 0) | values.isin([float("inf")])
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise UserError(
                f"{what} {path}, row {row + 1}: {column} = {df[column].iloc[row]}; {', '.join(numeric)} must be "
                "finite numbers, 0 or more"
            )
        df[column] = values
    return df


def read_spec(path: str | os.PathLike) -> ArchSpec:
    """Load an `ArchSpec` JSON file (as written by `write_spec` or ``guided spec``)."""
    try:
        return ArchSpec.from_dict(read_json(path, "spec file"))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def write_spec(path: str | os.PathLike, spec: ArchSpec) -> Path:
    """Write a spec as indented JSON, atomically."""
    return atomic_write_text(path, spec.to_json() + "\n")


def read_toml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a one-line `UserError` naming it."""
    import tomllib

    path = Path(path)
    check_file(path, what, "a .toml file")
    try:
        return tomllib.loads(_read_limited(path, what))
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # ValueError: an integer of over 4,300 digits
        raise UserError(f"{what} {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is nested too deeply to be a guided file") from None


def read_tensors(path: str | os.PathLike, what: str = "weights file") -> dict[str, Any]:
    """A file written by ``torch.save`` holding tensors (and plain data) only, loaded with ``weights_only``.

    Every failure is one line: a missing file, a truncated or corrupt one, and a file that holds pickled
    objects other than tensors (which could run code when loaded: it is refused, never retried unsafely).
    """
    import pickle
    import warnings

    import torch

    path = Path(path)
    check_file(path, what, "a file written by torch.save")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before refusing them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise UserError(
                f"{what} {path} holds objects other than tensors and will not be loaded: files written by guided "
                "hold tensors only, so this one was made elsewhere or tampered with"
            ) from None
        raise UserError(
            f"{what} {path} is not a PyTorch tensor file (corrupt, or written by another program)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as exc:
        reason = "truncated or corrupt" if isinstance(exc, RuntimeError | EOFError) else "not a PyTorch file"
        raise UserError(f"{what} {path} is {reason}; write it again") from None
    if not isinstance(payload, dict):
        raise UserError(f"{what} {path} holds a {type(payload).__name__}, not a dictionary of tensors")
    return payload


def check_state_dict(state: dict[Any, Any], path: str | os.PathLike, what: str = "weights file") -> None:
    """Refuse (one line) a state_dict that no network could use: keys that are not names, entries that are not
    dense tensors with data (sparse, or on the ``meta`` device), and weights that are NaN or infinite."""
    import torch

    for key, value in state.items():
        if not isinstance(key, str):
            raise UserError(f"{what} {path}: key {key!r} is not a parameter name; save model.state_dict()")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{what} {path}: entry {key!r} is not a tensor; save model.state_dict()")
        if value.layout != torch.strided or value.is_meta:
            kind = "on the meta device (no data)" if value.is_meta else f"{value.layout} (not dense)"
            raise UserError(f"{what} {path}: tensor {key!r} is {kind}; save the trained model's dense weights")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(
                f"{what} {path}: tensor {key!r} holds NaN or infinite values; the run that wrote it diverged"
            )


def load_state(model: Any, state: dict[str, Any], path: str | os.PathLike) -> None:
    """``model.load_state_dict(state, strict=True)``, with a one-line error when the entries are unusable
    (`check_state_dict`) or the shapes disagree."""
    import torch

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: entry {bad[0]!r} is not a tensor; this is not a state dict of {model.spec.name}")
    check_state_dict(state, path)
    mismatch = state_mismatch(model.state_dict(), state, "the spec")
    if mismatch:
        raise UserError(
            f"{path} does not match the architecture in spec.json ({model.spec.name}): {mismatch}; the weights and "
            "the spec must come from the same run"
        )
    model.load_state_dict(state, strict=True)


def state_mismatch(own: dict[str, Any], state: dict[str, Any], where: str) -> str | None:
    """How ``state`` fails to fit a module whose own state_dict is ``own`` (``None`` if it fits): counts of
    tensors that differ in shape, are missing or unexpected, and the first of them, ``where`` naming the module.

    Example:
        >>> import torch
        >>> state_mismatch({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, "the spec")
        '1 tensor(s) differ in shape, 0 missing, 0 unexpected (first: w is (3,) in the file, (2,) in the spec)'
    """
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or extra or wrong):
        return None
    first = (
        f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file, {tuple(own[wrong[0]].shape)} in {where}"
        if wrong
        else f"{(missing or extra)[0]} is {'missing from the file' if missing else f'not in {where}'}"
    )
    return f"{len(wrong)} tensor(s) differ in shape, {len(missing)} missing, {len(extra)} unexpected (first: {first})"


def check_output(
    path: str | os.PathLike,
    *,
    folder: bool = True,
    option: str = "--out",
    inputs: tuple[str | os.PathLike, ...] = (),
    new: bool = False,
    own: Callable[[Path], bool] | None = None,
    writable: bool = True,
) -> Path:
    """Refuse an output path that cannot be written, before any work starts; nothing is left behind.

    ``folder``: the output is a folder (else a file). An existing path of the other kind, a parent that is a
    file, a symbolic link (to a folder, a file, nothing or itself: guided writes nothing through a link), a
    special file (device, pipe), an output that is or lies inside one of ``inputs`` (so writing it would
    change them), and a place this process cannot create files in (permissions, a read-only file system) are
    each refused in one line. ``new``: the folder must be new or empty, unless ``own(path)`` says it is this
    command's own kind of folder to continue (``--resume``). Writability is probed by creating and removing a
    temporary folder in the nearest existing ancestor, which works where permission bits do not tell (root,
    read-only mounts). ``writable=False`` (a dry run, which writes nothing) skips that probe.
    """
    path = Path(path).expanduser()
    if os.path.islink(path):
        refuse_special(path, option)  # any link, whatever the output's kind
    if not folder:
        refuse_special(path, option)
    for source in inputs:
        given, target = Path(source).expanduser().resolve(), path.resolve()
        if target == given or given in target.parents or (folder and target in given.parents):
            raise UserError(
                f"{option} {path} is, holds or lies inside the input {source}; write the output elsewhere so the "
                "input stays as it is"
            )
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder (a new or existing directory)")
    if new and path.is_dir() and not (own is not None and own(path)):
        _refuse_unless_empty(path, option, resumable=own is not None)
    if not folder and path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    probe_in = path if folder and path.is_dir() else path.parent
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UserError(f"{option} {path}: {probe_in} is a file, so no folder can be made below it")
    if not writable:
        return path
    try:
        tempfile.TemporaryDirectory(prefix=".guided-probe-", dir=probe_in).cleanup()
    except OSError as exc:
        raise UserError(
            f"{option} {path} cannot be written ({probe_in}: {exc.strerror}); choose another place"
        ) from None
    return path


def _refuse_unless_empty(path: Path, option: str, *, resumable: bool) -> None:
    try:
        held = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise UserError(f"{option} {path} cannot be read ({exc.strerror}); choose another place") from None
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        hint = "; or pass --resume to continue the run there" if resumable else ""
        raise UserError(
            f"{option} {path} already holds files ({shown}); this command writes into a new or empty folder only{hint}"
        )


def type_ok(value: Any, expected: str) -> bool:
    """Whether a TOML value fits a type annotation written as text (``int``, ``float | None``, ``list[str]``).

    ``float`` accepts integers; ``bool`` is never taken for a number. The one type check behind study
    sections (`toml_section`) and ``--config`` files (`guided.cli.apply_config`).
    """
    checks = {"str": str, "int": int, "float": (int, float), "bool": bool}
    for t in (part.strip() for part in str(expected).split("|")):
        if t == "None" and value is None:
            return True
        if t.startswith("list") and isinstance(value, list):
            inner = t[t.index("[") + 1 : -1] if "[" in t else "str"
            if all(type_ok(v, inner) for v in value):
                return True
        if t in checks and isinstance(value, checks[t]) and not (t != "bool" and isinstance(value, bool)):
            return True
    return False


def toml_section(cls, table: Any, name: str):
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys, wrong types and missing keys by name."""
    from dataclasses import MISSING, fields

    if not isinstance(table, dict):
        raise UserError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise UserError(f"[{name}] has unknown key {key!r}; known keys: {', '.join(known)}")
        if not type_ok(value, known[key].type):
            raise UserError(f"[{name}] {key} = {value!r} has the wrong type (expected {known[key].type})")
    missing = [
        f.name for f in fields(cls) if f.name not in table and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise UserError(f"[{name}] is missing {', '.join(missing)}")
    return cls(**table)
