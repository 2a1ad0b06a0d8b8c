"""The on-device loader: shapes, normalisation, augmentation that is a real crop/flip, seeding."""

import numpy as np
import torch

from guided.training.data import Split
from guided.training.loader import DeviceLoader


def ramp_split(n=8, size=6):
    # Each image is distinct and every pixel value encodes its position, so crops can be checked exactly.
    base = np.arange(size * size, dtype=np.uint8).reshape(1, 1, size, size) + 10
    images = np.concatenate([base + i for i in range(n)]).astype(np.uint8)
    return Split(images, np.arange(n, dtype=np.int64))


def test_eval_batches_cover_the_split_in_order_without_augmentation():
    split = ramp_split()
    loader = DeviceLoader(split, (0.0,), (1 / 255,), batch_size=3, train=False)
    xs, ys = zip(*loader)
    assert len(loader) == 3 and [len(y) for y in ys] == [3, 3, 2]
    assert torch.equal(torch.cat(ys), torch.arange(8))
    assert torch.equal(torch.cat(xs), torch.from_numpy(split.images).float())


def test_normalisation_uses_mean_and_std():
    split = Split(np.full((4, 3, 4, 4), 51, np.uint8), np.zeros(4, np.int64))
    x, _ = next(iter(DeviceLoader(split, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), batch_size=4, train=False)))
    expected = (torch.tensor([0.2, 0.2, 0.2]) - torch.tensor([0.1, 0.2, 0.3])) / 0.5
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-6)


def test_training_batches_are_padded_crops_or_their_flips():
    split = ramp_split(n=16, size=6)
    loader = DeviceLoader(split, (0.0,), (1 / 255,), batch_size=16, train=True, crop_padding=2, seed=3)
    x, y = next(iter(loader))
    assert len(loader) == 1 and sorted(y.tolist()) == list(range(16))
    for img, label in zip(x, y):
        padded = torch.nn.functional.pad(torch.from_numpy(split.images[label]).float(), (2, 2, 2, 2))
        crops = [padded[:, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(img, c) or torch.equal(img, c.flip(2)) for c in crops)


def test_same_seed_same_batches_and_state_round_trip():
    split = ramp_split(n=32)
    a = DeviceLoader(split, (0.0,), (1.0,), batch_size=8, train=True, seed=7)
    b = DeviceLoader(split, (0.0,), (1.0,), batch_size=8, train=True, seed=7)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    state = a.state()
    first = [x for x, _ in a]
    a.set_state(state)
    assert all(torch.equal(x, y) for x, y in zip(first, (x for x, _ in a)))


def test_batches_are_channels_last():
    split = Split(np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4, np.int64))
    x, _ = next(iter(DeviceLoader(split, (0, 0, 0), (1, 1, 1), batch_size=4, train=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
