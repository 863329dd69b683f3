"""Frozen, versioned benchmark specs and named suites. `ALL_BENCHMARKS` and `ALL_SUITES` feed the registry.

- `embedded.py`: digits-5x2, the CPU demo (scikit-learn's digits, no download).
- `cpu.py`: cifar10-cpu-5x2, real CIFAR-10 images at CPU size, and `folder` for any ImageFolder tree.
- `paper.py`: the reference's splits and offline upper bounds, per-objective hyperparameters and budgets.
- `confusion.py`: the task-confusion study, CIL- vs DIL-minibatches (CIFAR-100 and digits).
- `suites.py`: named grids for `cromo-bench sweep --suite`.

Versions (a change that would change a spec's numbers bumps it; tables never pool versions):
- 1: the first release.
- 2: the colour jitter draws its order of adjustments per image, as torchvision does (cromo_bench.jitter;
  kornia's drew one per call); the two views' shared steps run in one call on [x; x]; Barlow Twins through
  N x N Gram matrices when N < D. The same distributions and losses; other random draws and float rounding,
  so other numbers for a given seed. Every spec.
- 3 (the task-confusion specs only): the schedule length counts the CIL / DIL batches an epoch really has
  (each virtual task or shard ends in its own short batch), so BYOL's EMA horizon K is the number of steps
  taken; it was the count of shuffled batches, a few percent short.
"""

from __future__ import annotations

from benchmarks.confusion import CONFUSION_BENCHMARKS
from benchmarks.cpu import CIFAR10_CPU_5X2, FOLDER
from benchmarks.embedded import DIGITS_5X2
from benchmarks.paper import PAPER_BENCHMARKS
from benchmarks.suites import ALL_SUITES, Suite
from cromo_bench.benchmark import BenchmarkSpec

ALL_BENCHMARKS: tuple[BenchmarkSpec, ...] = (DIGITS_5X2, CIFAR10_CPU_5X2, FOLDER, *PAPER_BENCHMARKS,
                                             *CONFUSION_BENCHMARKS)

# classes of each dataset a spec may name (`folder` trees are sized at load time)
DATASET_CLASSES: dict[str, int] = {"digits": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200}

__all__ = ["ALL_BENCHMARKS", "ALL_SUITES", "DATASET_CLASSES", "BenchmarkSpec", "Suite"]
