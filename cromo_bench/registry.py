"""Explicit registries of methods, objectives and benchmarks, with lookups that suggest the closest name.

Registries are built from tuples on first use (no import side effects). Adding a method means adding one
line to `_methods()`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cromo_bench.errors import unknown_name

KINDS = ("method", "objective", "benchmark", "suite")


@cache
def _methods() -> dict[str, Any]:
    from baselines.cassle import CaSSLe
    from baselines.cassle_plus import CaSSLePlus
    from baselines.er import ER
    from baselines.finetune import Finetune
    from methods.cromo_mixup import CromoMixup, CromoNoDistill

    entries: list[Any] = [Finetune, ER, CaSSLe, CaSSLePlus, CromoMixup, CromoNoDistill]
    return {cls.name: cls for cls in entries}


@cache
def _objectives() -> dict[str, Any]:
    from cromo_bench.objectives.barlow import BarlowTwins
    from cromo_bench.objectives.byol import BYOL
    from cromo_bench.objectives.corinfomax import CorInfoMax
    from cromo_bench.objectives.simclr import SimCLR
    from cromo_bench.objectives.supervised import Supervised

    entries: list[Any] = [BarlowTwins, CorInfoMax, SimCLR, BYOL, Supervised]
    return {cls.name: cls for cls in entries}


@cache
def _benchmarks() -> dict[str, Any]:
    from benchmarks import ALL_BENCHMARKS

    return {spec.name: spec for spec in ALL_BENCHMARKS}


@cache
def _suites() -> dict[str, Any]:
    from benchmarks import ALL_SUITES

    return {suite.name: suite for suite in ALL_SUITES}


def table(kind: str) -> dict[str, Any]:
    tables = {"method": _methods, "objective": _objectives, "benchmark": _benchmarks, "suite": _suites}
    if kind not in tables:
        raise unknown_name("registry kind", kind, KINDS)
    return tables[kind]()


def lookup(kind: str, name: str) -> Any:
    """Return the registered entry or raise a CromoError listing the valid names and the closest one."""
    entries = table(kind)
    if name not in entries:
        raise unknown_name(kind, name, entries)
    return entries[name]


def names(kind: str) -> list[str]:
    return sorted(table(kind))
