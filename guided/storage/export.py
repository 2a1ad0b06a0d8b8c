"""Write a guided network in a format that runs without guided, and check the written file computes what the
network computes.

Formats:

* ``torchscript``: `torch.jit.trace` on one batch (guided networks have no data-dependent control flow, so
  the trace is the network), saved with `torch.jit.save`; load it with ``torch.jit.load(FILE)``.
* ``pt2``: `torch.export.export`, saved with `torch.export.save`; load it with
  ``torch.export.load(FILE).module()``. PyTorch's successor to TorchScript.
* ``torchvision``: for a network that came from torchvision (``guided prune --torchvision NAME``), the
  torchvision module of that class with the pruned widths and torchvision's own layer names
  (`models.to_torchvision`), saved whole with `torch.save`; load it with ``torch.load(FILE,
  weights_only=False)`` (it holds torchvision classes only: torchvision must be installed, guided need not).
* ``onnx``: `torch.onnx.export` (needs the ``export`` extra: ``pip install -e '.[export]'``, for ``onnx``
  and ``onnxscript``); checked with ``onnxruntime`` when it is installed, else only by ``onnx.checker``.

Every format is reloaded from the bytes written and run on a fixed random batch against the network; a
difference above `TOLERANCE` (relative to the outputs' scale) refuses the file, so nothing wrong is written.

Example:
    >>> from guided.storage.export import export                # doctest: +SKIP
    >>> export(guided.load("pruned/slim60"), "torchscript", "slim60.ts")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from guided.errors import UserError
from guided.storage.io import atomic_write_bytes, check_output
from models import BridgeError, to_torchvision

__all__ = ["FORMATS", "TOLERANCE", "export"]

#: The formats `export` writes.
FORMATS = ("torchscript", "pt2", "torchvision", "onnx")

#: The largest difference between the written file's outputs and the network's, over the outputs' scale.
TOLERANCE = 1e-5

EXTRA = "pip install -e '.[export]' (onnx and onnxscript; onnxruntime to check the file)"


def export(
    model: nn.Module, fmt: str, out: str | Path, *, batch: int = 2, torchvision: str | None = None
) -> dict[str, Any]:
    """Write ``model`` (a guided network, ``model.spec``) as ``fmt`` to ``out``, checked; returns what was
    checked: ``format``, ``out``, ``max_abs_diff`` (``None`` for ONNX without onnxruntime), ``checked_with``.
    ``torchvision``: the torchvision network ``model`` came from (the ``torchvision`` format needs it)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "torchvision" and not torchvision:
        raise UserError(
            "the torchvision format needs the torchvision network this one came from: give --torchvision NAME "
            "(a folder guided prune --torchvision wrote records it)"
        )
    out = check_output(out, folder=False)
    spec = model.spec
    model = model.eval().cpu()
    x = torch.randn(
        batch, spec.in_channels, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = model(x)
    write = _WRITERS[fmt] if fmt != "torchvision" else lambda m, x: _torchvision(m, x, torchvision)
    data, reloaded, checked_with = write(model, x)
    if reloaded is None:
        diff = None
    else:
        diff = float((reloaded - expected).abs().max())
        scale = float(expected.abs().max()) or 1.0
        if not diff <= TOLERANCE * max(1.0, scale):
            raise AssertionError(f"the {fmt} file computes differently from the network (max difference {diff:.3g})")
    atomic_write_bytes(out, data)
    return {"format": fmt, "out": str(out), "max_abs_diff": diff, "checked_with": checked_with}


def _torchscript(model: nn.Module, x: torch.Tensor) -> tuple[bytes, torch.Tensor, str]:
    with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export; it still runs
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        data = buf.getvalue()
        with torch.no_grad():
            reloaded = torch.jit.load(io.BytesIO(data))(x)
    return data, reloaded, "torch.jit.load"


def _pt2(model: nn.Module, x: torch.Tensor) -> tuple[bytes, torch.Tensor, str]:
    program = torch.export.export(model, (x,), dynamic_shapes=_BATCH)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    data = buf.getvalue()
    with torch.no_grad():
        reloaded = torch.export.load(io.BytesIO(data)).module()(x)
    return data, reloaded, "torch.export.load"


def _torchvision(model: nn.Module, x: torch.Tensor, name: str) -> tuple[bytes, torch.Tensor, str]:
    try:
        module = to_torchvision(model, name).eval()
    except BridgeError as exc:
        raise UserError(f"--torchvision {name}: {exc}") from None
    buf = io.BytesIO()
    torch.save(module, buf)
    data = buf.getvalue()
    with torch.no_grad():
        reloaded = torch.load(io.BytesIO(data), weights_only=False)(x)  # our own bytes, just written
    return data, reloaded, "torch.load"


def _onnx(model: nn.Module, x: torch.Tensor) -> tuple[bytes, torch.Tensor | None, str]:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise UserError(f"ONNX export needs the export extra: {EXTRA}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, dynamic_shapes=_BATCH)
    data = program.model_proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    try:
        import onnxruntime
    except ImportError:
        return data, None, "onnx.checker (onnxruntime not installed: outputs not compared)"
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reloaded = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    return data, reloaded, "onnxruntime"


#: The batch dimension stays free in the exported graph (any batch size runs, not only the one traced).
_BATCH = ({0: torch.export.Dim("batch", min=1, max=2**16)},)

_WRITERS = {"torchscript": _torchscript, "pt2": _pt2, "onnx": _onnx}
