"""guided: network pruning as an architecture-discovery engine.

Train CIFAR-style CNNs whose widths are data (`models.ArchSpec`), prune them, summarise what pruning kept
into per-stage patterns, and turn patterns into guided architectures at any budget. The command line is
``guided`` (`guided.cli.main`); ``guided.load(FOLDER)`` gives back the network a folder holds
(`guided.storage.loading.load`).
"""

from guided.version import __version__

__all__ = ["__version__", "load"]


def load(path, weights=None, *, seed: int = 0):
    """The network a run, pruned or design folder (or a spec file, with ``weights``) holds
    (`guided.storage.loading.load`)."""
    from guided.storage.loading import load as _load

    return _load(path, weights, seed=seed)
