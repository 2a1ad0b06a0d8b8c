"""guided: network pruning as an architecture-discovery engine.

Train CIFAR-style CNNs whose widths are data (`models.ArchSpec`), prune them, summarise what pruning kept
into per-stage patterns, and turn patterns into guided architectures at any budget. The command line is
``guided`` (`guided.cli.main`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
