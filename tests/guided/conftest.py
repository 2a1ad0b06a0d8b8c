"""Fixtures shared by the guided tests."""

from pathlib import Path

from guided.cli import main


def train_tiny_digits_run(out: Path, *extra: str, train_subset: int = 512) -> Path:
    """A 2-epoch `guided train` of vgg-tiny on digits (the source run pruning tests start from)."""
    argv = [
        "train",
        "--arch",
        "vgg-tiny",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--train-subset",
        str(train_subset),
        *extra,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out
