"""Datasets and class-incremental splits, on data made here (no downloads)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cromo_bench.data import class_order, load_cifar, load_digits, load_image_folder, make_tasks, task_indices
from cromo_bench.errors import CromoError


def test_natural_split_is_consecutive_disjoint_and_covering():
    tasks = make_tasks(100, (10,) * 10)
    assert tasks[0] == list(range(10)) and tasks[9] == list(range(90, 100))
    flat = [c for t in tasks for c in t]
    assert sorted(flat) == list(range(100)) and len(set(flat)) == 100


def test_uneven_sizes_and_seeded_permutation():
    tasks = make_tasks(10, (5, 3, 2), seed=7)
    assert [len(t) for t in tasks] == [5, 3, 2]
    assert sorted(c for t in tasks for c in t) == list(range(10))
    assert tasks == make_tasks(10, (5, 3, 2), seed=7)  # a pure function of the spec
    assert class_order(10, 7) != list(range(10))
    assert class_order(10, 7) != class_order(10, 8)


def test_sizes_that_do_not_cover_the_classes_are_rejected():
    with pytest.raises(CromoError, match="sum to 9.*10 classes"):
        make_tasks(10, (5, 4))


def test_digits_is_uint8_nchw_with_all_images():
    data = load_digits(16)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (3, 16, 16)
    assert len(data.train_x) + len(data.test_x) == 1797
    assert data.num_classes == 10
    assert set(data.test_y.tolist()) == set(range(10))
    assert torch.equal(data.train_x[:, 0], data.train_x[:, 2])  # replicated channels
    idx = task_indices(data.train_y, [3, 4])
    assert set(data.train_y[idx].tolist()) == {3, 4}


def _write_images(folder: Path, n: int, size: int, color: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), color + i, dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_tree(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, color in (("cat", 10), ("dog", 100)):
            _write_images(tmp_path / split / c, n, 8, color)
    data = load_image_folder(str(tmp_path))
    assert data.classes == ("cat", "dog")
    assert data.train_x.shape == (6, 3, 8, 8) and data.test_x.shape == (4, 3, 8, 8)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(data.train_x[3, 0, 0, 0]) == 100


def test_tinyimagenet_official_val_layout(tmp_path):
    for wnid, color in (("n02", 50), ("n01", 20)):
        _write_images(tmp_path / "train" / wnid / "images", 2, 8, color)
    _write_images(tmp_path / "val" / "images", 3, 8, 200)
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "0.png\tn02\t0\t0\t8\t8\n1.png\tn01\t0\t0\t8\t8\n2.png\tn02\t0\t0\t8\t8\n"
    )
    data = load_image_folder(str(tmp_path), name="tinyimagenet")
    assert data.classes == ("n01", "n02")  # WNIDs sorted, as ImageFolder
    assert data.test_y.tolist() == [1, 0, 1]
    assert int(data.test_x[1, 0, 0, 0]) == 201


def test_corrupt_image_names_the_file(tmp_path):
    _write_images(tmp_path / "train" / "a", 1, 8, 0)
    _write_images(tmp_path / "test" / "a", 1, 8, 0)
    (tmp_path / "train" / "a" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(CromoError, match="bad.png"):
        load_image_folder(str(tmp_path))


def _make_fake_cifar10(root: Path, monkeypatch) -> None:
    """Write CIFAR-10 in torchvision's pickle layout and point its checksums at these files."""
    from torchvision import datasets

    folder = root / datasets.CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, n: int, offset: int) -> list[str]:
        obj = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
               "labels": [(offset + i) % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(obj))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    train = [dump(f"data_batch_{i}", 20, i) for i in range(1, 6)]
    test = [dump("test_batch", 10, 0)]
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    monkeypatch.setattr(datasets.CIFAR10, "train_list", train)
    monkeypatch.setattr(datasets.CIFAR10, "test_list", test)
    monkeypatch.setattr(datasets.CIFAR10, "meta", {
        "filename": "batches.meta", "key": "label_names",
        "md5": hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()})


def test_cifar_through_torchvision_dataset_classes(tmp_path, monkeypatch):
    _make_fake_cifar10(tmp_path, monkeypatch)
    data = load_cifar("cifar10", str(tmp_path), download=False)
    assert data.train_x.shape == (100, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10, 3, 32, 32)
    assert data.classes[0] == "c0" and data.mean[0] == pytest.approx(0.4914)


def test_missing_cifar_says_how_to_provide_it(tmp_path):
    with pytest.raises(CromoError, match="--data-dir"):
        load_cifar("cifar100", str(tmp_path / "nothing"), download=False)
