"""Training throughput of the guided engine against a reference loop written the usual way.

Reference: torchvision-style pipeline: a Dataset yielding PIL images, ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` in a ``DataLoader`` with 2 worker processes, NCHW
tensors, a plain SGD loop. Engine: `guided.training.loader.DeviceLoader` (whole split as one uint8 tensor,
augmentation in batches on the device, channels-last) and the engine's own training step.

Both train the same model (fresh copies of one initialisation) with the same batch size and thread
count, in one process, for the same number of images; each is repeated and the median images/s kept.
The engine is measured in fp32 (the reference's precision) and, where the device computes bf16
natively, with bf16 autocast (what ``--precision auto`` picks there).
Achieved GFLOP/s counts 3 x the forward FLOPs per training image (forward + backward), and is compared
with the GFLOP/s of a large fp32 matmul measured in the same run, the machine's practical limit.

Run: ``python benchmarks/throughput.py`` (add ``--data imagefolder:PATH`` to read real CIFAR images;
by default random uint8 images of CIFAR's shape, which cost the same to process). Writes
``results/benchmarks/throughput.json`` and prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from guided.storage.io import write_json
from guided.storage.provenance import provenance
from guided.timing.speed import benchmark_condition, other_load
from guided.training.data import ImageData, Split, load_dataset
from guided.training.loader import DeviceLoader
from guided.training.recipes import get_recipe
from guided.training.train import resolve_precision, train_epoch
from models import build, cost, create_spec

MODELS = [("vgg16", 0.25), ("resnet20", 1.0)]


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matmul: the practical peak for dense compute on this device."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PILDataset(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per sample: uint8 array -> PIL image -> transforms."""

    def __init__(self, split: Split, transform) -> None:
        self.images = split.images.transpose(0, 2, 3, 1)  # HWC for PIL
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_images_per_s(model, data: ImageData, batch_size: int, n_batches: int, device) -> float:
    import torchvision.transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(data.mean, data.std),
        ]
    )
    loader = torch.utils.data.DataLoader(
        PILDataset(data.train, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=2,
        drop_last=True,
        persistent_workers=False,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    it = iter(loader)
    x, y = next(it)  # warm-up batch: worker start-up is not counted
    _step(model, opt, x.to(device), y.to(device))
    _sync(device)
    t = time.perf_counter()
    for _ in range(n_batches):
        x, y = next(it)
        _step(model, opt, x.to(device), y.to(device))
    _sync(device)
    return n_batches * batch_size / (time.perf_counter() - t)


def _step(model, opt, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def engine_images_per_s(model, data: ImageData, batch_size: int, n_batches: int, device, amp: bool) -> float:
    n = batch_size * (n_batches + 1)
    sub = Split(data.train.images[:n], data.train.labels[:n])
    loader = DeviceLoader(sub, data.mean, data.std, batch_size=batch_size, train=True, device=device)
    model.to(device=device, memory_format=torch.channels_last)
    recipe = get_recipe("quick").override(batch_size=batch_size, epochs=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    warm = DeviceLoader(
        Split(sub.images[:batch_size], sub.labels[:batch_size]),
        data.mean,
        data.std,
        batch_size=batch_size,
        train=True,
        device=device,
    )
    state = {"step": 0, "epoch": 0}
    train_epoch(model, model, warm, opt, recipe, (), state, 10**9, amp, desc="warm-up")
    _sync(device)
    t = time.perf_counter()
    train_epoch(model, model, loader, opt, recipe, (), state, 10**9, amp, desc="engine")
    _sync(device)
    return len(loader) * batch_size / (time.perf_counter() - t)


def main(argv=None) -> int:
    load_before = other_load(1.0)  # the machine before: recorded with the numbers
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="dataset name (e.g. imagefolder:PATH); default: random CIFAR-shaped images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=30, help="timed batches per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="results/benchmarks/throughput.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    n = args.batch_size * (args.batches + 2)
    if args.data:
        data = load_dataset(args.data)
    else:
        rng = np.random.default_rng(0)
        split = Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))
        data = ImageData("random-cifar-shaped", split, split, tuple(map(str, range(10))), (0.5,) * 3, (0.25,) * 3)

    precisions = ["fp32"] + (["bf16"] if resolve_precision("auto", device) == "bf16" else [])
    peak = matmul_gflops(device)
    print(f"fp32 matmul: {peak:.1f} GFLOP/s on {device}, {torch.get_num_threads()} threads", file=sys.stderr)
    rows = []
    for name, width in MODELS:
        spec = create_spec(name, width_mult=width)
        base = build(spec, seed=0)
        flops_per_image = 3 * 2 * cost(spec).macs
        runs = {"reference": [], **{p: [] for p in precisions}}
        for r in range(args.repeats):  # interleaved, so drifts of machine speed hit every variant alike
            runs["reference"].append(
                reference_images_per_s(copy.deepcopy(base).to(device), data, args.batch_size, args.batches, device)
            )
            for p in precisions:
                runs[p].append(
                    engine_images_per_s(
                        copy.deepcopy(base), data, args.batch_size, args.batches, device, amp=p == "bf16"
                    )
                )
            print(
                f"{name} x{width} repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in runs.items()),
                file=sys.stderr,
            )
        ref_m = statistics.median(runs["reference"])
        for p in precisions:
            eng_m = statistics.median(runs[p])
            rows.append(
                {
                    "model": f"{name} x{width}",
                    "engine_precision": p,
                    "params": cost(spec).params,
                    "macs": cost(spec).macs,
                    "reference_img_s": round(ref_m, 1),
                    "engine_img_s": round(eng_m, 1),
                    "speedup": round(eng_m / ref_m, 2),
                    "engine_gflop_s": round(eng_m * flops_per_image / 1e9, 1),
                    "fraction_of_matmul": round(eng_m * flops_per_image / 1e9 / peak, 3),
                    "reference_runs": [round(v, 1) for v in runs["reference"]],
                    "engine_runs": [round(v, 1) for v in runs[p]],
                }
            )
    result = {
        "benchmark": "training throughput, engine vs torchvision-style reference loop",
        "command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": data.name,
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "matmul_gflop_s": round(peak, 1),
        "rows": rows,
        "provenance": provenance(device),
        "condition": benchmark_condition(load_before, other_load(1.0)),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(Path(args.out), result)
    print("| model | engine precision | reference img/s | engine img/s | speed-up | engine GFLOP/s | of fp32 matmul |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['engine_precision']} | {r['reference_img_s']:.0f} | {r['engine_img_s']:.0f} | "
            f"{r['speedup']:.2f}x | "
            f"{r['engine_gflop_s']:.1f} | {r['fraction_of_matmul']:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
