"""Named suites: grids of benchmarks x methods x objectives x memory budgets x seeds for `cromo-bench sweep`.

A suite only names things; `cromo_bench.sweep.plan` resolves every cell through the registry, so a suite
that names an unregistered method fails before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_METHODS = ("finetune", "er", "cassle", "cassle_plus", "cromo")
SSL_OBJECTIVES = ("barlow", "corinfomax", "simclr", "byol")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    benchmarks: tuple[str, ...]
    methods: tuple[str, ...]
    objectives: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    memories: tuple[int | None, ...] = (None,)  # None: the benchmark's own budget
    class_order_seeds: tuple[int | None, ...] = (None,)  # None: the benchmark's class order

    def __post_init__(self) -> None:
        for field_name in ("benchmarks", "methods", "objectives", "seeds", "memories", "class_order_seeds"):
            values = getattr(self, field_name)
            if not values:
                raise ValueError(f"suite {self.name}: {field_name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"suite {self.name}: {field_name} has duplicates")
        if any(m is not None and m < 0 for m in self.memories):
            raise ValueError(f"suite {self.name}: memories must be >= 0")

    @property
    def num_cells(self) -> int:
        """Cells before methods without a buffer collapse their memory budgets."""
        return (len(self.benchmarks) * len(self.methods) * len(self.objectives) * len(self.seeds)
                * len(self.memories) * len(self.class_order_seeds))


def _paper(split: str) -> Suite:
    return Suite(
        name=f"paper-{split}",
        description=f"the reference grid on {split}: 5 methods x 4 objectives x 3 seeds, reference budgets",
        benchmarks=(split,),
        methods=PAPER_METHODS,
        objectives=SSL_OBJECTIVES,
    )


ALL_SUITES: tuple[Suite, ...] = (
    Suite(
        name="demo-digits",
        description="every method with Barlow Twins on the embedded digits split, 2 seeds",
        benchmarks=("digits-5x2",),
        methods=PAPER_METHODS,
        objectives=("barlow",),
        seeds=(0, 1),
    ),
    _paper("cifar10-2x5"),
    _paper("cifar100-5x20"),
    _paper("cifar100-10x10"),
    _paper("tinyimagenet-10x20"),
    Suite(
        name="paper-offline",
        description="offline (joint) upper bounds: finetune on all classes at once, 4 objectives x 3 seeds",
        benchmarks=("cifar10-offline", "cifar100-offline", "tinyimagenet-offline"),
        methods=("finetune",),
        objectives=SSL_OBJECTIVES,
    ),
    Suite(
        name="budget-cifar100-5x20",
        description="memory-budget sweep (msize 50 / 100 / 500 per task) of the replay methods with Barlow "
                    "Twins on CIFAR-100 5x20, as the reference's final_commands.sh",
        benchmarks=("cifar100-5x20",),
        methods=("er", "cassle_plus", "cromo"),
        objectives=("barlow",),
        memories=(50, 100, 500),
    ),
    Suite(
        name="task-confusion-cifar100",
        description="CIL- vs DIL-minibatches (and shuffled) on CIFAR-100 jointly: 4 objectives + supervised",
        benchmarks=("confusion-cifar100-cil", "confusion-cifar100-dil", "confusion-cifar100-offline"),
        methods=("finetune",),
        objectives=("barlow", "corinfomax", "simclr", "byol", "supervised"),
    ),
    Suite(
        name="task-confusion-digits",
        description="CIL- vs DIL-minibatches (and shuffled) on digits: 4 objectives + supervised",
        benchmarks=("confusion-digits-cil", "confusion-digits-dil", "confusion-digits-offline"),
        methods=("finetune",),
        objectives=("barlow", "corinfomax", "simclr", "byol", "supervised"),
        seeds=(0, 1),
    ),
    Suite(
        name="cpu-cifar10",
        description="every method with Barlow Twins on real CIFAR-10 images at CPU size, 1 seed",
        benchmarks=("cifar10-cpu-5x2",),
        methods=PAPER_METHODS,
        objectives=("barlow",),
        seeds=(0,),
    ),
)
