"""Data loading from files in the real formats, partitions, and the papers' models.

The loaders are tested on small files these tests write themselves: IDX for
Fashion-MNIST and MNIST, pickled batches for CIFAR-10/100; and on the real Fashion-MNIST
files where `make data` installed them. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from decentral_bench.experiment.data import (
    FASHION_MNIST_SYSTEM_FOLDER,
    IDX_FILES,
    NORMALISATION,
    DataError,
    check_available,
    label_histogram,
    load_dataset,
    partition_indices,
    read_idx,
)
from decentral_bench.experiment.models import build_model, parameter_count
from decentral_bench.scenario import DatasetConfig, ModelConfig

RNG = np.random.default_rng(5)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_like(train: int, test: int) -> dict[str, np.ndarray]:
    return {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(train) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(test) * 3) % 10,
    }


def test_fashion_mnist_from_idx_gz_files(tmp_path: Path) -> None:
    arrays = _mnist_like(40, 20)
    for name, array in arrays.items():
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    dataset = load_dataset(DatasetConfig(name="fashion_mnist", root=str(tmp_path)), 0)
    assert dataset.train_x.shape == (40, 1, 28, 28) and dataset.test_x.shape == (20, 1, 28, 28)
    assert dataset.num_classes == 10
    assert dataset.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    mean, std = NORMALISATION["fashion_mnist"]
    pixel = arrays["train-images-idx3-ubyte"][3, 5, 7] / 255.0
    assert dataset.train_x[3, 0, 5, 7].item() == pytest.approx((pixel - mean[0]) / std[0],
                                                                rel=1e-5)


@pytest.mark.skipif(not all((FASHION_MNIST_SYSTEM_FOLDER / name).is_file() for name in IDX_FILES),
                    reason=f"Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_FOLDER}: run `make "
                           "data` (Debian's dataset-fashion-mnist package) to test the real files")
def test_the_installed_fashion_mnist_is_read_from_the_default_folder() -> None:
    """No root: the Debian package's folder. 60,000 + 10,000 images of 28 × 28, 6,000 and
    1,000 of each of the 10 classes, standardised by the training set's own mean and std."""
    assert check_available(DatasetConfig(name="fashion_mnist")) is None
    dataset = load_dataset(DatasetConfig(name="fashion_mnist"), 0)
    assert dataset.train_x.shape == (60_000, 1, 28, 28)
    assert dataset.test_x.shape == (10_000, 1, 28, 28)
    assert dataset.num_classes == 10
    assert torch.bincount(dataset.train_y).tolist() == [6_000] * 10
    assert torch.bincount(dataset.test_y).tolist() == [1_000] * 10
    assert dataset.train_x.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert dataset.train_x.std().item() == pytest.approx(1.0, abs=1e-3)
    pixels = read_idx(FASHION_MNIST_SYSTEM_FOLDER / IDX_FILES[0])
    mean, std = NORMALISATION["fashion_mnist"]
    assert dataset.train_x[7, 0, 14, 9].item() == pytest.approx(
        (pixels[7, 14, 9] / 255.0 - mean[0]) / std[0], rel=1e-6)


def test_missing_fashion_mnist_names_the_files(tmp_path: Path) -> None:
    config = DatasetConfig(name="fashion_mnist", root=str(tmp_path))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*dataset-fashion-mnist"):
        check_available(config)


def test_idx_reader_rejects_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((4, 3, 3)))[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_mnist_through_torchvision(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = _mnist_like(30, 10)
    for name, array in arrays.items():
        (raw / name).write_bytes(_idx_bytes(array))
    dataset = load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), 0)
    assert dataset.train_x.shape == (30, 1, 28, 28)
    assert dataset.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_missing_torchvision_folder_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_1..5"):
        load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path / "none")), 0)
    with pytest.raises(DataError, match=r"needs dataset\.root"):
        check_available(DatasetConfig(name="mnist"))


def _pickle(path: Path, content: dict) -> str:
    path.write_bytes(pickle.dumps(content))
    return hashlib.md5(path.read_bytes()).hexdigest()  # torchvision's own integrity check


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   name: str) -> None:
    from torchvision import datasets

    kind = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = tmp_path / kind.base_folder
    folder.mkdir()
    label_key = "labels" if name == "cifar10" else "fine_labels"
    classes = 10 if name == "cifar10" else 100

    def batch(count: int, offset: int) -> dict:
        return {"data": RNG.integers(0, 256, (count, 3072), dtype=np.uint8),
                label_key: [(offset + i) % classes for i in range(count)]}

    first = batch(6, 0)
    train_list = [[file, _pickle(folder / file, first if i == 0 else batch(6, 6 * i))]
                  for i, (file, _) in enumerate(kind.train_list)]
    test_list = [[file, _pickle(folder / file, batch(4, 0))] for file, _ in kind.test_list]
    meta = dict(kind.meta)
    meta["md5"] = _pickle(folder / meta["filename"],
                          {meta["key"]: [f"class{i}" for i in range(classes)]})
    # torchvision checks each file against the md5 of the real release; point it at ours.
    monkeypatch.setattr(kind, "train_list", train_list)
    monkeypatch.setattr(kind, "test_list", test_list)
    monkeypatch.setattr(kind, "meta", meta)

    dataset = load_dataset(DatasetConfig(name=name, root=str(tmp_path), augment=True), 0)
    assert dataset.train_x.shape == (6 * len(train_list), 3, 32, 32)
    assert dataset.test_x.shape == (4 * len(test_list), 3, 32, 32)
    # Each row holds the red, green and blue planes of 32×32; the loader normalises every
    # channel c as (pixel / 255 − mean_c) / std_c.
    mean, std = NORMALISATION[name]
    for image, channel, row, column in ((0, 0, 0, 0), (2, 1, 5, 7), (5, 2, 31, 30)):
        pixel = first["data"][image][channel * 1024 + row * 32 + column] / 255.0
        assert float(dataset.train_x[image, channel, row, column]) == pytest.approx(
            (pixel - mean[channel]) / std[channel], rel=1e-5, abs=1e-6)


DIGITS = {"iid": {}, "dirichlet": {"alpha": 0.5}, "shards": {"classes_per_agent": 2},
          "by_size": {"sizes": [1, 2, 3, 4, 5]}}


@pytest.mark.parametrize("kind", sorted(DIGITS))
def test_partitions_are_deterministic_disjoint_and_cover(kind: str) -> None:
    config = DatasetConfig(partition={"kind": kind, **DIGITS[kind]})
    parts = partition_indices(config, 4, 5)
    partition_indices.cache_clear()
    again = partition_indices(config, 4, 5)
    other = partition_indices(config, 5, 5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert kind == "by_size" or not all(
        np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    everything = np.concatenate(parts)
    assert len(everything) == len(set(everything.tolist()))  # disjoint
    assert sorted(everything.tolist()) == list(range(len(load_dataset(config, 4).train_y)))


def test_by_size_gives_unequal_shares() -> None:
    config = DatasetConfig(partition={"kind": "by_size", "sizes": [1, 2, 3, 4, 5]})
    sizes = [len(p) for p in partition_indices(config, 0, 5)]
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]


def test_shards_give_each_agent_its_classes() -> None:
    config = DatasetConfig(partition={"kind": "shards", "classes_per_agent": 2})
    histogram = label_histogram(config, 0, 5)
    assert ((histogram > 0).sum(axis=1) == 2).all()
    with pytest.raises(DataError, match="cannot hold all 10 classes"):
        partition_indices(DatasetConfig(partition={"kind": "shards", "classes_per_agent": 1}),
                          0, 5)


def test_dirichlet_alpha_sets_the_skew() -> None:
    def dominant_share(alpha: float) -> float:
        histogram = label_histogram(DatasetConfig(partition={"kind": "dirichlet",
                                                             "alpha": alpha}), 0, 5)
        return float(np.mean(histogram.max(axis=1) / histogram.sum(axis=1)))

    skewed, mild = dominant_share(0.1), dominant_share(100.0)
    assert skewed > 0.4 and mild < 0.2  # IID digits: about 0.1 per class


def test_train_samples_keeps_a_stratified_subset() -> None:
    dataset = load_dataset(DatasetConfig(train_samples=500), 0)
    assert len(dataset.train_y) == 500
    assert np.bincount(dataset.train_y.numpy()).min() >= 45


@pytest.mark.parametrize(("name", "shape", "count"), [
    ("cnn_paper", (1, 28, 28), 1_676_266),
    ("cnn_paper", (3, 32, 32), 2_168_362),
    ("resnet20", (3, 32, 32), 272_474),
])
def test_paper_models(name: str, shape: tuple[int, ...], count: int) -> None:
    model = build_model(ModelConfig(name=name), shape, 10, 0)
    assert parameter_count(model) == count
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_paper_layers() -> None:
    model = build_model(ModelConfig(name="cnn_paper"), (1, 28, 28), 10, 0)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convolutions] == [
        (32, (3, 3)), (32, (3, 3)), (64, (3, 3)), (64, (3, 3))]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [d.out_features for d in dense] == [512, 10]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_agent_data_lives_on_the_gpu() -> None:
    from conftest import tiny_scenario

    from decentral_bench.experiment.agent import AgentSetup
    from decentral_bench.experiment.plan import MethodPlan

    scenario = tiny_scenario(resources={"device": "cuda"})
    setup = AgentSetup.build(MethodPlan.of(scenario, "CDSGD"), 0)
    features, labels = setup.minibatch(0)
    assert features.is_cuda and labels.is_cuda and setup.features.is_cuda
    assert next(setup.model.parameters()).is_cuda
