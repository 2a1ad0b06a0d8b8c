"""Take a network away: `load` turns any folder guided writes (or a spec file and a weights file) into the
`torch.nn.Module` it describes, with its `ArchSpec` as ``model.spec``.

Example:
    >>> import torch, guided
    >>> from models import cost
    >>> model = guided.load("pruned/slim60")            # doctest: +SKIP
    >>> logits = model(torch.randn(1, 3, 32, 32))        # doctest: +SKIP
    >>> cost(model.spec).params                          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from guided.errors import UserError
from guided.pruning.unstructured import apply_masks, load_masks
from guided.storage.folders import PrunedFolder, RunFolder
from guided.storage.io import check_file, check_state_dict, load_state, read_spec, read_tensors, state_mismatch
from guided.training.retrain import load_pruned
from guided.training.train import load_weights
from models import BridgeError, build, from_torchvision
from models.bridge import TORCHVISION_MODELS

__all__ = ["load", "load_torchvision"]


def load(path: str | Path, weights: str | Path | None = None, *, seed: int = 0) -> nn.Module:
    """The network ``path`` holds, in eval mode, with ``model.spec``.

    Args:
        path: a training run folder (``guided train``, a study's training stage: its final weights), a pruned
            folder (``guided prune``: the inherited weights; masked weights stay zero), a folder with a
            ``spec.json`` and no weights (a sparsity design: its masks applied), or a spec file (``guided
            spec``, ``guided design``).
        weights: a state_dict file for a spec file or a weightless folder (``torch.save`` of
            ``model.state_dict()``; loaded as tensors only).
        seed: the initialisation of a network that comes without weights.

    A folder or file with a spec and no weights gives a freshly initialised network (``seed``): an
    architecture to train. Anything else is a one-line `UserError`.
    """

    path = Path(path).expanduser()
    if path.is_dir():
        pruned, run = PrunedFolder(path), RunFolder(path)
        if weights is None and pruned.complete():
            return load_pruned(path)[0].eval()
        if weights is None and run.weights.is_file():
            return load_weights(path).eval()
        if not run.spec.is_file():
            raise UserError(
                f"{path} holds no spec.json; give a folder guided train, prune or design wrote, or a spec file"
            )
        spec = run.read_spec()
    else:
        check_file(path, "spec file", "a folder guided wrote or a spec .json file")
        spec = read_spec(path)
    model = build(spec, seed=seed)
    if weights is not None:
        weights = Path(weights).expanduser()
        load_state(model, read_tensors(weights, "weights file"), weights)
    masks = PrunedFolder(path).masks if path.is_dir() else None
    if masks is not None and masks.is_file():  # a sparsity design: its masked weights are zero
        import torch

        with torch.no_grad():
            apply_masks(model, load_masks(masks, model))
    return model.eval()


def load_torchvision(
    name: str,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    default_classes: int = 1000,
    width_mult: float | None = None,
    input_size: int = 224,
) -> nn.Module:
    """torchvision's network ``name`` as the equal guided one (`models.from_torchvision`), with ``weights``
    (a ``state_dict`` file of that torchvision network: plain, under ``state_dict``/``model``, or saved from
    ``DataParallel``) or torchvision's random initialisation; nothing is downloaded. Its classes are
    ``num_classes``, else the weights' classifier's, else ``default_classes``; ``width_mult`` reaches
    ``mobilenet_v2`` only.

    Example:
        >>> load_torchvision("resnet18", num_classes=10, input_size=32).spec.name
        'resnet18'
    """
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise UserError(
            f"unknown torchvision model {name!r}; the bridge converts {', '.join(TORCHVISION_MODELS)} and the "
            "other ResNets and VGG-BNs"
        )
    state = _torchvision_state(weights) if weights else None
    classes = num_classes if num_classes is not None else _classes(state)
    kwargs = {"num_classes": classes or default_classes}
    if width_mult is not None:
        if name != "mobilenet_v2":
            raise UserError(f"--width-mult reaches torchvision's mobilenet_v2 only, not {name}")
        kwargs["width_mult"] = width_mult
    module = tvm.get_model(name, weights=None, **kwargs)
    if state is not None:
        mismatch = state_mismatch(module.state_dict(), state, name)
        if mismatch:
            raise UserError(
                f"weights file {weights} is not a state_dict of torchvision's {name}: {mismatch}; give that "
                "network's weights, and --width-mult if it was built with one"
            )
        module.load_state_dict(state, strict=True)
    try:
        return from_torchvision(module, input_size=input_size)
    except BridgeError as exc:
        raise UserError(f"--torchvision {name}: {exc}") from None


def _torchvision_state(path: str | Path) -> dict:
    """A torchvision ``state_dict`` from a file: plain, under ``state_dict``/``model``, or saved from
    ``DataParallel`` (``module.`` prefixes)."""
    import torch

    state = read_tensors(path, "weights file")
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} is not a state_dict: save one with torch.save(model.state_dict(), PATH)")
    check_state_dict(state, path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _classes(state: dict | None) -> int | None:
    """Outputs of the last linear layer in a state_dict (its last 2-D weight)."""
    weights = [v for k, v in (state or {}).items() if k.endswith(".weight") and v.ndim == 2]
    return int(weights[-1].shape[0]) if weights else None
