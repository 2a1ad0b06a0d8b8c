"""Small file helpers: atomic writes (nothing half-written on disk) and spec files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from guided.errors import UserError
from models.spec import ArchSpec, SpecError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "read_spec",
    "write_spec",
    "read_toml",
    "read_tensors",
    "load_state",
    "check_output",
    "toml_section",
    "type_ok",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    A reader (or a crash) never sees a half-written file: the rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into a one-line `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc}") from None


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

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} {path} is not valid TOML: {exc}") from None


def read_tensors(path: str | os.PathLike, what: str = "weights file") -> dict[str, Any]:
    """A file written by ``torch.save`` holding tensors (and plain data) only, loaded with ``weights_only``.

    Every failure is one line: a missing file, a truncated or corrupt one, and a file that holds pickled
    objects other than tensors (which could run code when loaded: it is refused, never retried unsafely).
    """
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
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


def load_state(model: Any, state: dict[str, Any], path: str | os.PathLike) -> None:
    """``model.load_state_dict(state, strict=True)``, with a one-line error when the shapes disagree."""
    import torch

    own = model.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: entry {bad[0]!r} is not a tensor; this is not a state dict of {model.spec.name}")
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        first = (
            f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file, {tuple(own[wrong[0]].shape)} in the spec"
            if wrong
            else f"{(missing or extra)[0]} is {'missing from the file' if missing else 'not in the spec'}"
        )
        raise UserError(
            f"{path} does not match the architecture in spec.json ({model.spec.name}): {len(wrong)} tensor(s) differ "
            f"in shape, {len(missing)} missing, {len(extra)} unexpected (first: {first}); the weights and the spec "
            "must come from the same run"
        )
    model.load_state_dict(state, strict=True)


def check_output(path: str | os.PathLike, *, folder: bool = True, option: str = "--out") -> Path:
    """Refuse an output path that cannot be written, before any work starts; nothing is left behind.

    ``folder``: the output is a folder (else a file). An existing path of the other kind, a parent that is a
    file, and a place this process cannot create files in (permissions, a read-only file system) are each
    refused in one line. Writability is probed by creating and removing a temporary folder in the nearest
    existing ancestor, which works where permission bits do not tell (root, read-only mounts).
    """
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder (a new or existing directory)")
    if not folder and path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    probe_in = path if folder and path.is_dir() else path.parent
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UserError(f"{option} {path}: {probe_in} is a file, so no folder can be made below it")
    try:
        tempfile.TemporaryDirectory(prefix=".guided-probe-", dir=probe_in).cleanup()
    except OSError as exc:
        raise UserError(
            f"{option} {path} cannot be written ({probe_in}: {exc.strerror}); choose another place"
        ) from None
    return path


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
