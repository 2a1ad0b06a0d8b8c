"""Datasets as uint8 arrays, registered by name, decoded once and cached.

Every dataset yields an `ImageData`: uint8 images (N, C, H, W), int64 labels, class names and per-channel
normalisation statistics, for a train and a test split. Names:

* ``cifar10``, ``cifar100``, ``svhn``, ``fashion-mnist``: torchvision's own loaders, reading ``root``
  (they download there when the machine is online).
* ``imagefolder:PATH``: any tree ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` of PNG/JPEG
  images, classes in sorted folder order, resized to ``size`` if given (e.g. the shared CIFAR-10 and
  ``tin100a`` tarballs, extracted).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (always offline), split 80/20 per class with a
  fixed seed, upsampled to ``size`` (default 16).

Decoded arrays are cached as ``.npz`` under ``cache_dir`` (default ``$GUIDED_CACHE`` or
``~/.cache/guided``), keyed by source, size and a fingerprint of the files, so a second load takes about a
second.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from guided.errors import UserError
from guided.storage.io import atomic_write_bytes

__all__ = [
    "DataConfig",
    "ImageData",
    "Split",
    "DATASETS",
    "load_dataset",
    "list_datasets",
    "validation_split",
    "subsample",
    "fingerprint",
    "default_cache_dir",
]

#: The largest side images are resized to (``--image-size``), and the most pixels a stored image may have:
#: beyond them decoding would exhaust memory (a decompression bomb) rather than fail clearly.
MAX_IMAGE_SIZE = 1024
MAX_IMAGE_PIXELS = 64 * 2**20
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        """The samples at ``index``."""
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class ImageData:
    """A dataset ready for training.

    Attributes:
        name: the name it was loaded by.
        train, test: the splits (``test`` may be a validation split carved from train).
        classes: class names, index = label.
        mean, std: per-channel statistics of the training images, in [0, 1] units.
        crop_padding: training augmentation: zero padding of random crops, in pixels.
        flip: training augmentation: random horizontal flips (off for digits, whose mirror images
            are other glyphs).
    """

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    flip: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def input_size(self) -> int:
        return self.train.images.shape[2]

    def shape(self) -> DataShape:
        """Its sizes: classes, input side and channels, image counts."""
        return DataShape(self.num_classes, self.input_size, self.in_channels, len(self.train), len(self.test))

    def describe(self) -> str:
        """One line: name, sizes, classes."""
        c, h, w = self.train.images.shape[1:]
        return (
            f"{self.name}: {len(self.train)} train / {len(self.test)} test images, "
            f"{c}x{h}x{w}, {self.num_classes} classes"
        )


# ---------------------------------------------------------------------- registry
#: name -> loader(root, size) -> (train, test, classes). ``imagefolder:`` is handled by prefix.
DATASETS: dict[str, Callable[[Path | None, int | None], tuple[Split, Split, tuple[str, ...]]]] = {}
#: name -> (crop_padding, flip) where the CIFAR default (4, True) does not suit.
AUGMENTATION: dict[str, tuple[int, bool]] = {}


def register_dataset(name: str, *, crop_padding: int = 4, flip: bool = True):
    """Register a loader ``fn(root, size) -> (train, test, classes)`` under ``name``, with its augmentation."""

    def deco(fn):
        DATASETS[name] = fn
        AUGMENTATION[name] = (crop_padding, flip)
        return fn

    return deco


def list_datasets() -> list[str]:
    """Registered dataset names, plus the ``imagefolder:PATH`` form."""
    return sorted(DATASETS) + ["imagefolder:PATH"]


def default_cache_dir() -> Path:
    """``$GUIDED_CACHE`` or ``~/.cache/guided``."""
    return Path(os.environ.get("GUIDED_CACHE", Path.home() / ".cache" / "guided"))


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ImageData:
    """Load a dataset by name, from the cache when it was decoded before.

    Args:
        name: a registered name (``cifar10``, ``digits``, ...) or ``imagefolder:PATH``.
        root: where torchvision datasets live (or are downloaded to).
        size: resize images to ``size`` x ``size`` (default: their own size; digits: 16).
        cache_dir: where decoded arrays are kept (default `default_cache_dir`).

    Example:
        >>> data = load_dataset("digits")
        >>> data.num_classes, data.train.images.dtype
        (10, dtype('uint8'))
    """
    if size is not None and not 1 <= size <= MAX_IMAGE_SIZE:
        raise UserError(f"image size must lie in [1, {MAX_IMAGE_SIZE}] pixels, got {size}")
    if name.startswith("imagefolder:"):
        path = Path(name.split(":", 1)[1]).expanduser()
        loader = lambda _root, sz: _imagefolder(path, sz)  # noqa: E731
        fingerprint = _tree_fingerprint(path)
    elif name in DATASETS:
        loader = DATASETS[name]
        fingerprint = str(Path(root).expanduser().resolve()) if root else ""
    else:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")

    key = hashlib.sha256(f"{name}|{size}|{fingerprint}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache / f"{_slug(name)}-{size or 'native'}-{key}.npz"
    crop_padding, flip = AUGMENTATION.get(name, (4, True))
    data = _from_npz(name, cached) if cached.is_file() else None
    if data is None:
        train, test, classes = loader(Path(root).expanduser() if root else None, size)
        data = _with_stats(name, train, test, classes)
        try:
            _to_npz(data, cached)
        except (OSError, UserError) as exc:  # a read-only or misplaced cache costs time, not the run
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(
                f"note: cannot keep the decoded images in {cache} ({reason}); they are decoded again next time "
                f"(set GUIDED_CACHE to a writable folder)",
                file=sys.stderr,
            )
    return replace(data, crop_padding=crop_padding, flip=flip)


def fingerprint(data: ImageData) -> dict[str, Any]:
    """Image counts and a SHA-256 of the decoded arrays (images and labels, train then test): two results
    with the same hash were computed on the same pixels."""
    digest = hashlib.sha256()
    for split in (data.train, data.test):
        digest.update(np.ascontiguousarray(split.images).tobytes())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    return {"name": data.name, "train": len(data.train), "test": len(data.test), "sha256": digest.hexdigest()}


def validation_split(data: ImageData, fraction: float, *, seed: int = 0) -> ImageData:
    """Carve a seeded validation split from train; it replaces ``test`` (the test set is never seen).

    Args:
        data: the dataset.
        fraction: share of the training images held out, in (0, 1).
        seed: which images are held out.
    """
    if not 0 < fraction < 1:
        raise UserError(f"validation fraction must lie in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(len(data.train))
    n_val = max(1, int(round(fraction * len(perm))))
    return replace(data, train=data.train.take(np.sort(perm[n_val:])), test=data.train.take(np.sort(perm[:n_val])))


def subsample(data: ImageData, *, train: int | None = None, test: int | None = None, seed: int = 0) -> ImageData:
    """Keep a seeded random subset of each split (for CPU protocols); ``None`` keeps a split whole."""

    def pick(split: Split, n: int | None, salt: int) -> Split:
        if n is None or n >= len(split):
            return split
        if n < 1:
            raise UserError(f"a subset needs at least one image, got {n}")
        idx = np.random.default_rng([seed, salt]).permutation(len(split))[:n]
        return split.take(np.sort(idx))

    return replace(data, train=pick(data.train, train, 0), test=pick(data.test, test, 1))


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and how much of it (``[data]`` of a study; ``--dataset`` and friends of a command).

    Subsets and the validation split are drawn with seed 0: every run and every seed sees the same images,
    so seeds vary initialisation and data order only.
    """

    dataset: str
    data_root: str = "./data"
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    val_fraction: float | None = None

    @property
    def name(self) -> str:
        """The dataset's name, an image folder's path expanded."""
        if self.dataset.startswith("imagefolder:"):
            return "imagefolder:" + str(Path(self.dataset.split(":", 1)[1]).expanduser())
        return self.dataset

    def load(self) -> ImageData:
        """The dataset, split (``val_fraction``: a validation split replaces test) and subsampled."""
        data = load_dataset(self.name, root=self.data_root, size=self.image_size)
        if self.val_fraction is not None:
            data = validation_split(data, self.val_fraction)
        return subsample(data, train=self.train_subset, test=self.test_subset)

    def shape(self) -> DataShape:
        """What sizing a model and planning a study need: classes, input side and channels, image counts.
        An image folder (without a validation split) is counted and one image header read, nothing
        decoded; other datasets are loaded (from the cache, or small)."""
        if not self.name.startswith("imagefolder:") or self.val_fraction is not None:
            return self.load().shape()
        from PIL import Image

        root = Path(self.name.split(":", 1)[1])
        classes = _classes_of(root / "train", root)
        _classes_of(root / "test", root)
        files = {split: _image_files(root / split, classes) for split in ("train", "test")}
        first = files["train"][0]
        try:
            with Image.open(first) as im:
                side = self.image_size or im.height
        except OSError as exc:
            raise UserError(f"cannot read image {first}: {exc}") from None
        train, test = len(files["train"]), len(files["test"])
        return DataShape(
            len(classes), side, 3, min(train, self.train_subset or train), min(test, self.test_subset or test)
        )


@dataclass(frozen=True)
class DataShape:
    """A dataset's sizes (`DataConfig.shape`): what a model is built for and a plan counts."""

    num_classes: int
    input_size: int
    in_channels: int
    train: int
    test: int


# ---------------------------------------------------------------------- cache
def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]


def _with_stats(name: str, train: Split, test: Split, classes: tuple[str, ...]) -> ImageData:
    x = train.images.astype(np.float64) / 255.0
    mean = tuple(float(v) for v in x.mean(axis=(0, 2, 3)))
    std = tuple(float(max(v, 1e-3)) for v in x.std(axis=(0, 2, 3)))
    return ImageData(name, train, test, tuple(classes), mean, std)


def _to_npz(data: ImageData, path: Path) -> None:
    buf = io.BytesIO()
    np.savez(
        buf,
        train_x=data.train.images,
        train_y=data.train.labels,
        test_x=data.test.images,
        test_y=data.test.labels,
        classes=np.array(data.classes),
        mean=np.array(data.mean),
        std=np.array(data.std),
    )
    atomic_write_bytes(path, buf.getvalue())


def _from_npz(name: str, path: Path) -> ImageData | None:
    """The cached arrays, or ``None`` (with a one-line notice) when the cache file is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageData(
                name,
                Split(z["train_x"], z["train_y"]),
                Split(z["test_x"], z["test_y"]),
                tuple(str(c) for c in z["classes"]),
                tuple(float(v) for v in z["mean"]),
                tuple(float(v) for v in z["std"]),
            )
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        print(
            f"note: dataset cache {path} is unreadable ({type(exc).__name__}); decoding the images again",
            file=sys.stderr,
        )
        return None


# ---------------------------------------------------------------------- image folders
def _tree_fingerprint(path: Path) -> str:
    """A SHA-256 over every file's relative path, size and modification time: changes when an image is
    added, removed, replaced, renamed or moved to another class folder (its label)."""
    if not path.is_dir():
        found = "is a file, not a folder" if os.path.lexists(path) else "does not exist"
        raise UserError(f"image folder {path} {found}; expected {path}/train/<class>/*.jpg and test/")
    digest = hashlib.sha256(str(path.resolve()).encode())
    for split in ("train", "test"):
        for dirpath, dirs, files in os.walk(path / split):
            dirs.sort()
            for f in sorted(files):
                file = os.path.join(dirpath, f)
                try:
                    st = os.stat(file)
                except OSError as exc:
                    raise UserError(f"cannot read {file}: {exc.strerror} (a broken link?); remove or fix it") from None
                digest.update(f"{os.path.relpath(file, path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _imagefolder(path: Path, size: int | None) -> tuple[Split, Split, tuple[str, ...]]:
    classes = _classes_of(path / "train", path)
    test_classes = _classes_of(path / "test", path)
    if test_classes != classes:
        missing = sorted(set(classes) ^ set(test_classes))[:5]
        raise UserError(
            f"{path}/train and {path}/test have different class folders (e.g. {missing}); "
            f"both need the same <class> subfolders"
        )
    return _read_split(path / "train", classes, size), _read_split(path / "test", classes, size), classes


def _classes_of(split_dir: Path, root: Path) -> tuple[str, ...]:
    if not split_dir.is_dir():
        raise UserError(
            f"{root} has no {split_dir.name}/ folder; expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg"
        )
    classes = tuple(sorted(d.name for d in split_dir.iterdir() if d.is_dir()))
    if not classes:
        raise UserError(f"{split_dir} has no class subfolders; expected {split_dir}/<class>/*.jpg")
    if len(classes) < 2:
        raise UserError(
            f"{split_dir} has one class folder ({classes[0]}); a classifier needs at least two classes, each a "
            "subfolder of images"
        )
    return classes


def _image_files(split_dir: Path, classes: tuple[str, ...]) -> list[Path]:
    """A split's image files, class by class in sorted order (what `_read_split` decodes)."""
    files = []
    for cls in classes:
        images = sorted(p for p in (split_dir / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _regular(p))
        if not images:
            raise UserError(f"class folder {split_dir / cls} holds no PNG or JPEG images")
        files += images
    return files


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (through a link): a FIFO, device or socket named like an image is
    skipped, never opened (reading a FIFO would wait forever). A broken link counts, to be refused by name."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return os.path.islink(path)


def _to_rgb(im):
    """An image as 8-bit RGB. 16- and 32-bit greyscale (``I;16``, ``I``) is scaled by its bit depth, not clipped
    (Pillow's own conversion clips every value above 255 to white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        from PIL import Image

        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return im.convert("RGB")


def _read_split(split_dir: Path, classes: tuple[str, ...], size: int | None) -> Split:
    from PIL import Image

    files, labels = [], []
    for label, cls in enumerate(classes):
        images = _image_files(split_dir, (cls,))
        files += images
        labels += [label] * len(images)

    def decode(p: Path) -> np.ndarray:
        try:
            with Image.open(p) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise UserError(
                        f"image {p} is {im.width}x{im.height} pixels, above the {MAX_IMAGE_PIXELS:,} guided decodes "
                        "(a decompression bomb, or a photo to shrink first)"
                    )
                im = _to_rgb(im)
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im)
        except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UserError(f"cannot read image {p}: {exc}") from None

    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is refused, not a warning
        arrays = list(_progress(pool.map(decode, files, chunksize=256), len(files), f"decoding {split_dir}"))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"images in {split_dir} differ in size ({sorted(shapes)[:3]}...); pass a size to resize them")
    images = np.stack(arrays).transpose(0, 3, 1, 2).copy()
    return Split(images, np.asarray(labels, dtype=np.int64))


def _progress(it, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="img", leave=False, mininterval=1.0, disable=None)


# ---------------------------------------------------------------------- torchvision datasets
def _torchvision(cls_name: str, split_kw: Callable[[bool], dict]):
    def load(root: Path | None, size: int | None) -> tuple[Split, Split, tuple[str, ...]]:
        import torchvision.datasets as tvd

        if root is None:
            raise UserError(f"{cls_name} needs --data-root (where it is, or where to download it)")
        cls = getattr(tvd, cls_name)
        try:
            train = cls(str(root), download=True, **split_kw(True))
            test = cls(str(root), download=True, **split_kw(False))
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise UserError(
                f"could not find or download {cls_name} under {root} ({str(exc).splitlines()[0][:120]}); "
                f"put the torchvision files there, or use imagefolder:PATH for an image-folder tree"
            ) from None
        classes = tuple(getattr(train, "classes", None) or [str(i) for i in range(10)])
        return _tv_split(train, size), _tv_split(test, size), classes

    return load


def _tv_split(ds, size: int | None) -> Split:
    images = np.asarray(ds.data)
    if images.ndim == 3:  # (N, H, W) grayscale
        images = images[:, None]
    elif images.shape[-1] in (1, 3):  # (N, H, W, C)
        images = images.transpose(0, 3, 1, 2)
    labels = np.asarray(ds.targets if hasattr(ds, "targets") else ds.labels, dtype=np.int64)
    return Split(_resize(np.ascontiguousarray(images), size), labels)


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    """Bilinear resize of uint8 (N, C, H, W) to ``size`` x ``size`` (no-op when already that size)."""
    if size is None or images.shape[2:] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


register_dataset("cifar10")(_torchvision("CIFAR10", lambda train: {"train": train}))
register_dataset("cifar100")(_torchvision("CIFAR100", lambda train: {"train": train}))
register_dataset("svhn", flip=False)(_torchvision("SVHN", lambda train: {"split": "train" if train else "test"}))
register_dataset("fashion-mnist")(_torchvision("FashionMNIST", lambda train: {"train": train}))


@register_dataset("digits", crop_padding=2, flip=False)
def _digits(root: Path | None, size: int | None) -> tuple[Split, Split, tuple[str, ...]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[: int(round(0.2 * (labels == c).sum()))] for c in range(10)]
    )
    is_test = np.zeros(len(labels), bool)
    is_test[test_idx] = True
    images = _resize(images, size or 16)
    classes = tuple(str(c) for c in range(10))
    return Split(images[~is_test], labels[~is_test]), Split(images[is_test], labels[is_test]), classes
