"""Datasets: registry, image folders, caching, splits, and clear errors for bad input."""

import tarfile

import numpy as np
import pytest
from PIL import Image

from guided.errors import UserError
from guided.training.data import load_dataset, subsample, validation_split
from tests.conftest import SHARED_DATA


def make_tree(root, classes=("cat", "ant"), per_class=3, size=10, splits=("train", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.slow
def test_digits_is_offline_split_and_upsampled(tmp_path):
    data = load_dataset("digits", cache_dir=tmp_path)
    assert data.num_classes == 10 and data.in_channels == 1 and data.input_size == 16
    assert len(data.train) + len(data.test) == 1797
    assert abs(len(data.test) / 1797 - 0.2) < 0.01
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64
    assert set(np.unique(data.test.labels)) == set(range(10))
    again = load_dataset("digits", cache_dir=tmp_path)  # from the cache
    assert np.array_equal(again.train.images, data.train.images) and again.mean == data.mean
    assert load_dataset("digits", size=32, cache_dir=tmp_path).input_size == 32


def test_image_folder_reads_sorted_classes_and_resizes(tmp_path):
    root = make_tree(tmp_path / "tree")
    data = load_dataset(f"imagefolder:{root}", size=8, cache_dir=tmp_path / "cache")
    assert data.classes == ("ant", "cat")
    assert data.train.images.shape == (6, 3, 8, 8)
    assert list(data.train.labels) == [0, 0, 0, 1, 1, 1]
    native = load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")
    first = np.asarray(Image.open(root / "train" / "ant" / "0.png")).transpose(2, 0, 1)
    assert np.array_equal(native.train.images[0], first)


def test_image_folder_cache_notices_new_files(tmp_path):
    root = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    assert len(load_dataset(f"imagefolder:{root}", cache_dir=cache).train) == 6
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "train" / "cat" / "extra.png")
    assert len(load_dataset(f"imagefolder:{root}", cache_dir=cache).train) == 7


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "train").mkdir(parents=True), "has no class subfolders"),
        (lambda root: make_tree(root, splits=("train",)), "has no test/ folder"),
        (lambda root: (make_tree(root), (root / "test" / "bee").mkdir()), "different class folders"),
        (
            lambda root: (make_tree(root), (root / "train" / "bee").mkdir(), (root / "test" / "bee").mkdir()),
            "holds no PNG or JPEG",
        ),
        (lambda root: make_tree(root, classes=("cat",)), "one class folder"),
    ],
)
def test_bad_image_folders_give_one_clear_error(tmp_path, setup, message):
    root = tmp_path / "tree"
    setup(root)
    with pytest.raises(UserError, match=message):
        load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")


def test_a_fifo_named_like_an_image_is_skipped_not_read(tmp_path):
    import os

    root = make_tree(tmp_path / "tree")
    os.mkfifo(root / "train" / "cat" / "pipe.png")  # opening it to read would wait forever
    data = load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")
    assert len(data.train) == 6


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    root = make_tree(tmp_path / "tree")
    ramp = (np.arange(100).reshape(10, 10) * 650).astype(np.uint16)  # 0 .. 64350 of 65535
    Image.fromarray(ramp).save(root / "train" / "cat" / "0.png")
    data = load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")
    grey = data.train.images[data.train.labels == 1][0, 0]  # "cat" sorts after "ant"
    assert len(np.unique(grey)) > 90  # Pillow's own conversion leaves 2 levels (0 and 255)
    assert grey.max() == round(64350 * 255 / 65535)


@pytest.mark.slow
def test_unknown_dataset_and_missing_torchvision_root(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'mnist2'.*digits"):
        load_dataset("mnist2")
    with pytest.raises(UserError, match="could not find or download CIFAR10"):
        load_dataset("cifar10", root=tmp_path / "nothing-here", cache_dir=tmp_path)


def test_torchvision_cifar_files_are_read(tmp_path, monkeypatch):
    """Real torchvision loader on files in the official pickle layout (written here, no download)."""
    import pickle

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)

    import torchvision.datasets.cifar as tv_cifar

    # Our hand-made files have other checksums than the official ones.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    data = load_dataset("cifar10", root=tmp_path, cache_dir=tmp_path / "cache")
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    assert data.classes[0] == "c0"


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    data = load_dataset("digits", cache_dir=tmp_path)
    a = validation_split(data, 0.1, seed=1)
    b = validation_split(data, 0.1, seed=1)
    c = validation_split(data, 0.1, seed=2)
    assert len(a.test) == round(0.1 * len(data.train)) and len(a.train) + len(a.test) == len(data.train)
    assert np.array_equal(a.test.images, b.test.images) and not np.array_equal(a.test.images, c.test.images)
    with pytest.raises(UserError, match="fraction"):
        validation_split(data, 1.5)


def test_subsample_keeps_requested_counts(tmp_path):
    data = subsample(load_dataset("digits", cache_dir=tmp_path), train=100, test=50, seed=0)
    assert len(data.train) == 100 and len(data.test) == 50


@pytest.mark.data
@pytest.mark.slow
def test_shared_cifar10_images_load(tmp_path):
    tarball = SHARED_DATA / "cifar10.tar.gz"
    if not tarball.exists():
        pytest.skip(f"{tarball} not present")
    wanted, taken = 5, {}
    with tarfile.open(tarball) as tar:  # take a few images per class and split, streaming
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4:
                key = (parts[1], parts[2])
                if taken.get(key, 0) < wanted:
                    taken[key] = taken.get(key, 0) + 1
                    tar.extract(member, tmp_path, filter="data")
            if len(taken) == 20 and all(v == wanted for v in taken.values()):
                break
    data = load_dataset(f"imagefolder:{tmp_path / 'cifar10'}", cache_dir=tmp_path / "cache")
    assert data.num_classes == 10 and data.train.images.shape[1:] == (3, 32, 32)
    assert len(data.train) == 50 and len(data.test) == 50
