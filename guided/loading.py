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
from guided.folders import PrunedFolder, RunFolder
from guided.io import check_file, load_state, read_spec, read_tensors

__all__ = ["load"]


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
    from models import build

    path = Path(path).expanduser()
    if path.is_dir():
        pruned, run = PrunedFolder(path), RunFolder(path)
        if weights is None and pruned.complete():
            from guided.retrain import load_pruned

            return load_pruned(path)[0].eval()
        if weights is None and run.weights.is_file():
            from guided.train import load_weights

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

        from guided.pruning.unstructured import apply_masks, load_masks

        with torch.no_grad():
            apply_masks(model, load_masks(masks, model))
    return model.eval()
