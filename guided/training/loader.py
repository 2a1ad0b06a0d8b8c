"""Batches from a whole split held as one uint8 tensor on the training device.

No worker processes and no per-sample Python: each batch is gathered, randomly cropped (zero padding of
4) and flipped, converted and normalised with a handful of tensor ops on the device that trains, which
is the same code on CPU and CUDA. Shuffling and augmentation draw from one seeded generator whose state
is saved in checkpoints, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from guided.training.data import Split

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Iterate normalised (and, for training, augmented) batches of one split.

    Args:
        split: uint8 images (N, C, H, W) and labels.
        mean, std: per-channel statistics in [0, 1] units.
        batch_size: images per batch.
        train: shuffle, augment (pad-4 random crop, horizontal flip) and drop the last partial batch.
        device: where the split lives and batches are made.
        seed: seeds the generator for shuffling and augmentation.
        crop_padding: pixels of zero padding for random crops (0 turns crops off).
        flip: random horizontal flips.
        channels_last: return batches in channels-last memory format (faster convs on CPU and GPU).

    Example:
        >>> from guided.training.data import load_dataset
        >>> data = load_dataset("digits")
        >>> loader = DeviceLoader(data.train, data.mean, data.std, batch_size=64, train=True)
        >>> x, y = next(iter(loader))
        >>> x.shape, x.dtype
        (torch.Size([64, 1, 16, 16]), torch.float32)
    """

    def __init__(
        self,
        split: Split,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        batch_size: int,
        train: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(split.images).to(self.device)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.pad = crop_padding if train else 0
        self.flip = flip and train
        self.channels_last = channels_last
        c = self.images.shape[1]
        self.mean = torch.tensor(mean, device=self.device).view(1, c, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(std, device=self.device).view(1, c, 1, 1) * 255)
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self._prepare(self.images[idx]), self.labels[idx]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = self._random_crop(x)
        if self.flip:
            flip = torch.rand(len(x), device=self.device, generator=self.generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x.float() - self.mean) * self.inv_std

    def _random_crop(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), device=self.device, generator=self.generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1), device=self.device, generator=self.generator)
        rows = (dy + torch.arange(h, device=self.device)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * p)
        x = padded.gather(2, rows)
        cols = (dx + torch.arange(w, device=self.device)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
        return x.gather(3, cols)

    def state(self) -> torch.Tensor:
        """The generator state (for checkpoints)."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore a state from `state`."""
        self.generator.set_state(state)
