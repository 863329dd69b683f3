"""Named suites: grids of benchmarks x methods x objectives x memory budgets x seeds for `cromo-bench sweep`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    benchmarks: tuple[str, ...]
    methods: tuple[str, ...]
    objectives: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    memories: tuple[int | None, ...] = (None,)  # None: the benchmark's own budget


ALL_SUITES: tuple[Suite, ...] = (
    Suite(
        name="demo-digits",
        description="every method with Barlow Twins on the embedded digits split, 2 seeds",
        benchmarks=("digits-5x2",),
        methods=("finetune",),
        objectives=("barlow",),
        seeds=(0, 1),
    ),
)
