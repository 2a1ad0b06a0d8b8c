"""Where a result came from: code version, library versions, device, host."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from guided.errors import UserError
from guided.version import __version__

__all__ = ["provenance", "git_revision", "device_name", "parse_device", "resolve_device"]


#: What decides results: the code and its dependencies (not results/, the README, tests or benchmarks).
CODE_PATHS = ("guided", "models", "search", "pyproject.toml")


def git_revision(root: Path | None = None) -> str:
    """The checkout's commit, or ``unknown``; with uncommitted changes to the code (`CODE_PATHS`),
    ``COMMIT+dirty.HASH`` where HASH is the start of the SHA-256 of their ``git diff HEAD`` and of the
    code files git does not track yet (so two different dirty trees never look the same). Where the code
    is no git checkout (a copied tree, a container image), the environment variable ``GUIDED_REVISION``
    names it, marked ``(declared)``."""
    import hashlib

    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        rev = git("rev-parse", "HEAD").strip()
        new_files = sorted(git("ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS).splitlines())
        if not new_files and not git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS).strip():
            return rev
        digest = hashlib.sha256(git("diff", "HEAD", "--", *CODE_PATHS).encode())
        for path in new_files:  # code not yet added to git changes results as much as edited code
            digest.update(f"\0{path}\0".encode() + (root / path).read_bytes())
        return f"{rev}+dirty.{digest.hexdigest()[:12]}"
    except (OSError, subprocess.SubprocessError):
        declared = os.environ.get("GUIDED_REVISION", "").strip()
        return f"{declared} (declared)" if declared else "unknown"


def parse_device(name: str) -> torch.device | None:
    """A device name guided trains on (``auto``: None, ``cpu``, ``cuda``, ``cuda:N``), checked without
    asking whether this machine has it; anything else (``mps``, ``xla``, a typo) is a one-line `UserError`."""

    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; guided trains on auto, cpu, cuda or cuda:N")
    return device


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as `parse_device` takes
    them, refused where this machine has no CUDA device."""

    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} was asked for but this machine has no CUDA device; use cpu "
            '(--device cpu, or device = "cpu" under [study] in a study file)'
        )
    return device


def device_name(device: torch.device) -> str:
    """A readable device description, e.g. ``cuda: NVIDIA H100`` or ``cpu: x86_64, 2 threads``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


def provenance(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, code revision, device and host for a result file."""
    import numpy

    info = {
        "guided": __version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if device is not None:
        info["device"] = device_name(device)
    return info
