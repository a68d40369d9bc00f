"""Data sets, their per-agent partitions, and the minibatch schedule.

Images are held as float tensors N×C×H×W, normalised per data set. Nothing
is downloaded unless a scenario says `download: true`. Everything is
deterministic under the scenario seed, so that a Flower client and the
plain-PyTorch reference loop draw the same minibatches.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from decentral_bench.scenario import DatasetConfig

if TYPE_CHECKING:
    from flwr_datasets.partitioner import Partitioner

FASHION_MNIST_SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Per-channel mean and std of each training set.
NORMALISATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
TORCHVISION_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta",
    "cifar100": "cifar-100-python/train, test, meta",
}


class DataError(ValueError):
    """A data set that cannot be found or read, with what to do about it."""


@dataclass(frozen=True)
class Dataset:
    """A training and a held-out test split as tensors, features already normalised."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


# ---------------------------------------------------------------- loading


def _images(pixels: np.ndarray, name: str) -> torch.Tensor:
    """uint8 N×H×W or N×H×W×C → normalised float N×C×H×W."""
    images = torch.tensor(pixels, dtype=torch.float32) / 255.0
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    mean, std = NORMALISATION[name]
    return ((images - torch.tensor(mean).view(1, -1, 1, 1))
            / torch.tensor(std).view(1, -1, 1, 1)).contiguous()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except OSError as error:  # unreadable, or not the gzip file it is named as
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dimensions))
    offset = 4 + 4 * dimensions
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def fashion_mnist_folder(config: DatasetConfig) -> Path:
    """Where the four Fashion-MNIST IDX files are: `root`, else the Debian package's folder."""
    candidates = [Path(config.root)] if config.root else [FASHION_MNIST_SYSTEM_FOLDER]
    for folder in candidates:
        if all((folder / name).is_file() for name in IDX_FILES):
            return folder
    where = candidates[0]
    raise DataError(
        f"Fashion-MNIST not found in {where}: it needs {', '.join(IDX_FILES)}. Install "
        "Debian's dataset-fashion-mnist package (`make data`), or put the four files in a "
        "folder and set dataset.root to it")


def _fashion_mnist(config: DatasetConfig) -> tuple[torch.Tensor, ...]:
    folder = fashion_mnist_folder(config)
    train_x, train_y, test_x, test_y = (read_idx(folder / name) for name in IDX_FILES)
    return (_images(train_x, "fashion_mnist"), torch.tensor(train_y, dtype=torch.int64),
            _images(test_x, "fashion_mnist"), torch.tensor(test_y, dtype=torch.int64))


def _torchvision(config: DatasetConfig) -> tuple[torch.Tensor, ...]:
    from torchvision import datasets

    if config.root is None:
        raise DataError(f"dataset '{config.name}' needs dataset.root, the folder holding "
                        f"{TORCHVISION_LAYOUT[config.name]} (or download: true with internet)")
    kind = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10,
            "cifar100": datasets.CIFAR100}[config.name]
    try:
        splits = [kind(config.root, train=train, download=config.download)
                  for train in (True, False)]
    except RuntimeError as error:
        raise DataError(f"{config.name} not found or incomplete in {config.root}: expected "
                        f"{TORCHVISION_LAYOUT[config.name]} ({error}); set download: true to "
                        "fetch it") from None
    tensors = []
    for split in splits:
        pixels = split.data.numpy() if isinstance(split.data, torch.Tensor) else split.data
        tensors += [_images(np.asarray(pixels), config.name),
                    torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)]
    return tuple(tensors)


def _digits(config: DatasetConfig, seed: int) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = digits.data.astype(np.float32)
    train_x, test_x, train_y, test_y = train_test_split(
        features, digits.target, test_size=config.test_fraction or 0.2, random_state=seed,
        stratify=digits.target)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - mean) / std, dtype=torch.float32).reshape(-1, 1, 8, 8)

    return (images(train_x), torch.as_tensor(train_y, dtype=torch.int64),
            images(test_x), torch.as_tensor(test_y, dtype=torch.int64))


def _stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` training indices, each class in proportion, chosen with `seed`."""
    if size >= len(labels):
        return torch.arange(len(labels))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, random_state=seed,
                               stratify=labels.numpy())
    return torch.as_tensor(np.sort(keep))


@lru_cache(maxsize=4)
def load_dataset(config: DatasetConfig, seed: int) -> Dataset:
    """The data set a scenario names (digits split into train and test with `seed`)."""
    if config.name == "digits":
        train_x, train_y, test_x, test_y = _digits(config, seed)
    elif config.name == "fashion_mnist":
        train_x, train_y, test_x, test_y = _fashion_mnist(config)
    else:
        train_x, train_y, test_x, test_y = _torchvision(config)
    if config.train_samples is not None:
        keep = _stratified_subset(train_y, config.train_samples, seed)
        train_x, train_y = train_x[keep], train_y[keep]
    return Dataset(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                   num_classes=int(max(train_y.max(), test_y.max())) + 1)


def check_available(config: DatasetConfig) -> None:
    """Raise `DataError` now if a data set's files are missing (cheap; reads nothing)."""
    if config.name == "fashion_mnist":
        fashion_mnist_folder(config)
    elif config.name != "digits" and not config.download:
        if config.root is None:
            raise DataError(f"dataset '{config.name}' needs dataset.root, the folder holding "
                            f"{TORCHVISION_LAYOUT[config.name]} (or download: true)")
        if not Path(config.root).is_dir():
            raise DataError(f"dataset.root {config.root} does not exist: it should hold "
                            f"{TORCHVISION_LAYOUT[config.name]} (or set download: true)")


# ---------------------------------------------------------------- partitions


def _partitioner(config: DatasetConfig, seed: int, agents: int, size: int) -> Partitioner:
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        SizePartitioner,
    )

    partition = config.partition
    if partition.kind == "iid":
        return IidPartitioner(num_partitions=agents)
    if partition.kind == "dirichlet":
        return DirichletPartitioner(num_partitions=agents, partition_by="label",
                                    alpha=partition.alpha,
                                    min_partition_size=min(10, size // (2 * agents)),
                                    self_balancing=False, shuffle=True, seed=seed)
    weights = np.asarray(partition.sizes or np.arange(1, agents + 1), dtype=float)
    if len(weights) != agents:
        raise DataError(f"by_size: {len(weights)} sizes given for {agents} agents")
    counts = np.floor(weights / weights.sum() * size).astype(int)
    counts[-1] += size - counts.sum()
    if counts.min() < 1:
        raise DataError("by_size: some agent would get no sample; make the sizes less uneven")
    return SizePartitioner(partition_sizes=[int(c) for c in counts])


def _class_shards(labels: np.ndarray, agents: int, classes_per_agent: int,
                  seed: int) -> tuple[np.ndarray, ...]:
    """The pathological split: agent j holds only the classes (j·k + m) mod C, m < k; each
    class's samples are shuffled and dealt evenly to the agents that hold it.

    flwr-datasets' PathologicalPartitioner assigns classes so that some go unused (its
    samples then belong to no agent); this assignment covers every class when N·k ≥ C.
    """
    classes = int(labels.max()) + 1
    if agents * classes_per_agent < classes:
        raise DataError(f"shards: {agents} agents × {classes_per_agent} classes cannot hold "
                        f"all {classes} classes; raise classes_per_agent")
    if classes_per_agent > classes:
        raise DataError(f"shards: classes_per_agent {classes_per_agent} exceeds the {classes} "
                        "classes")
    holders: dict[int, list[int]] = {c: [] for c in range(classes)}
    for agent in range(agents):
        for m in range(classes_per_agent):
            holders[(agent * classes_per_agent + m) % classes].append(agent)
    rng = np.random.default_rng([seed, 4])
    parts: list[list[np.ndarray]] = [[] for _ in range(agents)]
    for label, owners in holders.items():
        members = rng.permutation(np.flatnonzero(labels == label))
        for owner, share in zip(owners, np.array_split(members, len(owners)), strict=True):
            parts[owner].append(share)
    return tuple(np.sort(np.concatenate(part)) for part in parts)


@lru_cache(maxsize=16)
def partition_indices(config: DatasetConfig, seed: int, agents: int) -> tuple[np.ndarray, ...]:
    """Disjoint index sets into the training split, one per agent, covering all of it.

    IID, Dirichlet and by-size splits use flwr-datasets' partitioners on an
    in-memory Hugging Face `Dataset` of the labels, shuffled with `seed` first
    (the IID and size partitioners cut consecutive ranges); shards are dealt
    by `_class_shards`.
    """
    from datasets import Dataset as HuggingFaceDataset

    labels = load_dataset(config, seed).train_y.numpy()
    if agents > len(labels):
        raise DataError(f"{agents} agents but only {len(labels)} training samples")
    if agents == 1:
        return (np.arange(len(labels)),)
    if config.partition.kind == "shards":
        return _class_shards(labels, agents, config.partition.classes_per_agent or 1, seed)
    order = np.random.default_rng([seed, 1]).permutation(len(labels))
    table = HuggingFaceDataset.from_dict({"label": labels[order], "index": order})
    partitioner = _partitioner(config, seed, agents, len(labels))
    partitioner.dataset = table
    parts = tuple(np.sort(np.asarray(partitioner.load_partition(j)["index"], dtype=np.int64))
                  for j in range(agents))
    empty = [j for j, part in enumerate(parts) if len(part) == 0]
    if empty:
        raise DataError(f"partition '{config.partition.kind}' left agents {empty} without data")
    return parts


def label_histogram(config: DatasetConfig, seed: int, agents: int) -> np.ndarray:
    """agents × classes matrix of sample counts."""
    dataset = load_dataset(config, seed)
    labels = dataset.train_y.numpy()
    return np.stack([np.bincount(labels[part], minlength=dataset.num_classes)
                     for part in partition_indices(config, seed, agents)])


# ---------------------------------------------------------------- minibatches


def epoch_order(size: int, seed: int, agent: int, epoch: int) -> np.ndarray:
    """Agent `agent`'s shuffle of its `size` samples for epoch `epoch`."""
    return np.random.default_rng([seed, 2, agent, epoch]).permutation(size)


_cached_epoch_order = lru_cache(maxsize=256)(epoch_order)


def batch_slot(size: int, batch_size: int, step: int) -> tuple[int, int, int]:
    """(epoch, start, stop): the `step`-th minibatch is `epoch_order(..., epoch)[start:stop]`.

    Each epoch is a fresh shuffle without replacement (Algorithm 1, line 3);
    the batches of an epoch are consecutive slices of it, the remainder that
    does not fill a batch is left to later epochs' shuffles. A batch as large
    as the data is the whole data, freshly shuffled every step.
    """
    if batch_size >= size:
        return step, 0, size
    epoch, position = divmod(step, size // batch_size)
    return epoch, position * batch_size, (position + 1) * batch_size


def minibatch_indices(size: int, batch_size: int, seed: int, agent: int, step: int) -> np.ndarray:
    """Positions (into an agent's own data) of the minibatch of its `step`-th SGD step."""
    epoch, start, stop = batch_slot(size, batch_size, step)
    return _cached_epoch_order(size, seed, agent, epoch)[start:stop]


def evaluation_indices(size: int, limit: int | None, seed: int) -> np.ndarray:
    """The positions of at most `limit` of `size` samples, the same seeded choice every
    round (all of them, in order, without a limit)."""
    if limit is None or limit >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng([seed, 3]).choice(size, limit, replace=False))


def evaluation_subset(features: torch.Tensor, labels: torch.Tensor, limit: int | None,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """At most `limit` samples of a labelled set, the same seeded choice every round."""
    if limit is None or limit >= len(labels):
        return features, labels
    index = torch.as_tensor(evaluation_indices(len(labels), limit, seed), device=labels.device)
    return features[index], labels[index]


def steps_per_epoch(size: int, batch_size: int) -> int:
    """Number of minibatch steps that make one pass over `size` samples."""
    return max(1, size // batch_size)


def augment(images: torch.Tensor, seed: int, agent: int, step: int) -> torch.Tensor:
    """Standard CIFAR augmentation, seeded: random 32×32 crop of the 4-padded image, random flip."""
    generator = torch.Generator().manual_seed(hash((seed, agent, step)) & 0x7FFF_FFFF)
    count, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    rows = torch.randint(0, 9, (count,), generator=generator).tolist()
    cols = torch.randint(0, 9, (count,), generator=generator).tolist()
    flips = (torch.rand(count, generator=generator) < 0.5).tolist()
    crops = []
    for image, row, col, flip in zip(padded, rows, cols, flips, strict=True):
        crop = image[:, row:row + height, col:col + width]
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)
