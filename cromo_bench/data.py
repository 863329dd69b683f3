"""Datasets held in memory as uint8 tensors (N, C, H, W) with int64 labels, and class-incremental splits.

Sources: scikit-learn's bundled digits (the embedded default), CIFAR-10/100 through torchvision's dataset
classes, TinyImageNet (official layout, val annotations handled) and any ImageFolder tree.
Splits follow REFERENCE.md section 1.2: task k owns consecutive ids of the (possibly permuted) class order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cromo_bench.errors import CromoError

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".jpeg")


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset in memory. Images are uint8 (N, C, H, W); labels int64 (N,)."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def subset_per_class(self, n: int) -> ImageData:
        """Keep the first `n` training images of every class (test set unchanged)."""
        if n <= 0:
            return self
        keep = torch.cat([torch.nonzero(self.train_y == c).flatten()[:n] for c in range(self.num_classes)])
        keep = keep.sort().values
        return ImageData(self.name, self.train_x[keep], self.train_y[keep], self.test_x, self.test_y,
                         self.classes, self.mean, self.std)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 (N, C, H, W) -> float32 normalised with per-channel mean/std."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


# --- class-incremental splits -----------------------------------------------------------------------


def class_order(num_classes: int, seed: int | None) -> list[int]:
    """Natural order (the reference) when `seed` is None, else a permutation seeded by `seed`."""
    if seed is None:
        return list(range(num_classes))
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_classes, generator=g).tolist()


def make_tasks(num_classes: int, task_sizes: tuple[int, ...], seed: int | None = None) -> list[list[int]]:
    """Split the class order into consecutive tasks of the given sizes; disjoint and covering."""
    if sum(task_sizes) != num_classes:
        raise CromoError(
            f"task sizes {','.join(map(str, task_sizes))} sum to {sum(task_sizes)}, but the dataset has "
            f"{num_classes} classes; sizes must add up to {num_classes}"
        )
    if any(s <= 0 for s in task_sizes):
        raise CromoError(f"task sizes must be positive, got {','.join(map(str, task_sizes))}")
    order = class_order(num_classes, seed)
    tasks, start = [], 0
    for size in task_sizes:
        tasks.append(order[start : start + size])
        start += size
    return tasks


def task_indices(labels: Tensor, classes: list[int]) -> Tensor:
    """Indices of the samples whose label is in `classes`."""
    mask = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))
    return torch.nonzero(mask).flatten()


# --- sources ------------------------------------------------------------------------------------------


def _resize_uint8(x: Tensor, size: int) -> Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_digits(image_size: int = 16) -> ImageData:
    """scikit-learn's 8x8 digits, upsampled and replicated to 3 channels; a fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy((bunch.images / 16.0 * 255.0).round().astype(np.uint8))  # (N, 8, 8)
    x = images.unsqueeze(1).repeat(1, 3, 1, 1)  # (N, 3, 8, 8)
    x = _resize_uint8(x, image_size)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    g = torch.Generator().manual_seed(1234)  # fixed: the split is part of the benchmark, not the run seed
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test_mask[idx[: len(idx) // 4]] = True
    xs = x.float() / 255.0
    mean = tuple(float(v) for v in xs[~test_mask].mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in xs[~test_mask].std(dim=(0, 2, 3)))
    return ImageData("digits", x[~test_mask], y[~test_mask], x[test_mask], y[test_mask],
                     tuple(str(i) for i in range(10)), mean, std)  # type: ignore[arg-type]


def _from_numpy_hwc(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)


def load_cifar(name: str, data_dir: str = "", download: bool = True) -> ImageData:
    """CIFAR-10 / CIFAR-100 through torchvision's dataset classes; an ImageFolder tree also works."""
    from torchvision import datasets

    root = Path(data_dir or "data").expanduser()
    if data_dir and (root / "train").is_dir():
        return load_image_folder(str(root), name=name)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    stats = CIFAR10_STATS if name == "cifar10" else CIFAR100_STATS
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError) as exc:  # no files and no internet, or corrupt files
        raise CromoError(
            f"cannot load {name} from '{root}' ({str(exc).splitlines()[0]}). Download it on a machine with "
            f"internet (torchvision fetches it into --data-dir), or pass --data-dir pointing at a folder holding "
            f"torchvision's extracted '{cls.base_folder}' directory or an ImageFolder tree with train/ and test/"
        ) from exc
    return ImageData(
        name,
        _from_numpy_hwc(train.data), torch.tensor(train.targets, dtype=torch.int64),
        _from_numpy_hwc(test.data), torch.tensor(test.targets, dtype=torch.int64),
        tuple(train.classes), stats[0], stats[1],
    )


def _read_images(paths: list[Path], size: int | None) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in paths:
        try:
            with Image.open(p) as opened:
                im = opened.convert("RGB")
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                out.append(np.asarray(im, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as exc:
            raise CromoError(f"corrupt or unreadable image '{p}': {exc}; remove or replace the file") from exc
    if not out:
        return torch.zeros(0, 3, size or 32, size or 32, dtype=torch.uint8)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise CromoError(f"images under '{paths[0].parent.parent}' differ in size {sorted(shapes)[:3]}; "
                         "pass --set image_size=N to resize them")
    return _from_numpy_hwc(np.stack(out))


def _list_class_dir(split_dir: Path) -> dict[str, list[Path]]:
    return {
        d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        for d in sorted(split_dir.iterdir()) if d.is_dir()
    }


def load_image_folder(root: str, name: str = "folder", image_size: int | None = None) -> ImageData:
    """Any tree `train/<class>/...` plus `val/` or `test/` (`<class>/...`, or TinyImageNet's official val
    layout `val/images/*.JPEG` with `val/val_annotations.txt`). Labels: class folder names sorted."""
    base = Path(root).expanduser()
    if not (base / "train").is_dir():
        raise CromoError(f"'{base}' has no train/ folder; expected train/<class>/<image> and val/ or test/")
    train_files = _list_class_dir(base / "train")
    classes = sorted(train_files)
    if not classes:
        raise CromoError(f"'{base / 'train'}' holds no class folders")
    index = {c: i for i, c in enumerate(classes)}
    eval_dir = next((base / d for d in ("test", "val") if (base / d).is_dir()), None)
    if eval_dir is None:
        raise CromoError(f"'{base}' has no val/ or test/ folder next to train/")
    annotations = eval_dir / "val_annotations.txt"
    if annotations.is_file():  # TinyImageNet's official val split: one images/ folder plus a label file
        test_pairs = []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                test_pairs.append((eval_dir / "images" / parts[0], index[parts[1]]))
    else:
        test_pairs = [(p, index[c]) for c, ps in _list_class_dir(eval_dir).items() if c in index for p in ps]
    train_pairs = [(p, index[c]) for c in classes for p in train_files[c]]
    if not train_pairs or not test_pairs:
        raise CromoError(f"'{base}' has no images in train/ or in {eval_dir.name}/")
    train_x = _read_images([p for p, _ in train_pairs], image_size)
    test_x = _read_images([p for p, _ in test_pairs], image_size or int(train_x.shape[-1]))
    xs = train_x[:: max(1, len(train_x) // 5000)].float() / 255.0
    mean = tuple(float(v) for v in xs.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in xs.std(dim=(0, 2, 3)))
    if name == "cifar10":
        mean, std = CIFAR10_STATS
    elif name == "cifar100":
        mean, std = CIFAR100_STATS
    elif name == "tinyimagenet":
        mean, std = IMAGENET_STATS
    return ImageData(name, train_x, torch.tensor([y for _, y in train_pairs]), test_x,
                     torch.tensor([y for _, y in test_pairs]), tuple(classes), mean, std)  # type: ignore[arg-type]


def load_dataset(name: str, data_dir: str = "", image_size: int = 32, download: bool = True) -> ImageData:
    """Load a dataset by name: digits | cifar10 | cifar100 | tinyimagenet | folder."""
    if name == "digits":
        return load_digits(image_size)
    if name in ("cifar10", "cifar100"):
        data = load_cifar(name, data_dir, download)
    elif name == "tinyimagenet":
        root = Path(data_dir or "data").expanduser()
        root = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
        data = load_image_folder(str(root), name="tinyimagenet", image_size=image_size)
    elif name == "folder":
        if not data_dir:
            raise CromoError("dataset 'folder' needs --data-dir pointing at a tree with train/ and val/ or test/")
        data = load_image_folder(data_dir, image_size=image_size)
    else:
        raise CromoError(f"unknown dataset '{name}'; choose one of: digits, cifar10, cifar100, tinyimagenet, folder")
    if data.image_size != image_size:
        data = ImageData(data.name, _resize_uint8(data.train_x, image_size), data.train_y,
                         _resize_uint8(data.test_x, image_size), data.test_y, data.classes, data.mean, data.std)
    return data
