"""Sweeps: a grid of runs (methods x objectives x splits x budgets x class orders x seeds) into one store.

`plan()` resolves every cell's RunConfig first (a typo fails before anything runs), then skips the cells that
already have a FINISHED run in the store with the same method, objective, seed and configuration hash. The
hash (`config_hash`) covers every setting that changes the numbers except the seed: the benchmark name and
version, the spec's values and every `--set` / `--epochs` override. It is computed from a run's logged params,
so runs started by `cromo-bench run` count too, and only values that differ from RunConfig's defaults enter
it (adding a config field does not invalidate old runs; changing a default does).

`run_sweep()` creates the store, the split experiments and one parent run per experiment BEFORE any worker
starts (concurrent first use of a SQLite file races), then launches the cells:
- `local`: `--jobs N` worker processes, each `python -m cromo_bench.cell <cell.json>` (cromo_bench.launchers);
- `slurm`: a submitit job array; a preempted or timed-out job is requeued and resumes from the run's last
  checkpoint in the same MLflow run (the job's `checkpoint()` returns a DelayedSubmission with resume on);
- `submitit-local`: the same job array through submitit's LocalExecutor (tests, machines without SLURM);
- `debug`: in-process, one cell after the other.
Each child run carries `mlflow.parentRunId`, `cromo.sweep_id`, `cromo.cell` and `cromo.config_hash`. A cell
that fails is recorded FAILED (with `cromo.failure`) and the others go on; the summary lists the reasons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cromo_bench import checkpoint as ckpt
from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.tracking import TAG_PREFIX, MlflowTracker

if TYPE_CHECKING:
    from cromo_bench.cell import CellResult
    from cromo_bench.launchers import Slurm

# execution settings (they do not change the numbers) and the seed (matched on its own)
NOT_IDENTITY = (*ckpt.NOT_IDENTITY, "seed")
_DEFAULTS = RunConfig().flat_params()
LAUNCHERS = ("local", "slurm", "submitit-local", "debug")


def config_hash(params: Mapping[str, str]) -> str:
    """12 hex digits over the params (RunConfig.flat_params() strings) that differ from the defaults."""
    items = sorted((k, str(v)) for k, v in params.items()
                   if k not in NOT_IDENTITY and _DEFAULTS.get(k) != str(v))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:12]


# --- the grid -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    method: str
    ssl: str
    split: str
    seed: int
    memory: int | None = None  # None: the benchmark's budget
    class_order_seed: str | None = None  # None: the benchmark's order; "natural" or an integer

    @property
    def key(self) -> str:
        mem = "spec" if self.memory is None else str(self.memory)
        order = "spec" if self.class_order_seed is None else self.class_order_seed
        return f"{self.split}/{self.method}/{self.ssl}/mem{mem}/order{order}/seed{self.seed}"


@dataclass(frozen=True)
class Options:
    """What applies to every cell."""

    sets: tuple[str, ...] = ()
    epochs: int | None = None
    device: str = "auto"
    data_dir: str | None = None
    probe: str | None = None

    def flags(self, cell: Cell) -> dict[str, Any]:
        flags: dict[str, Any] = {"seed": cell.seed, "device": self.device, "data_dir": self.data_dir,
                                 "probe_mode": self.probe}
        if self.epochs is not None:
            flags |= {"epochs_first": self.epochs, "epochs_later": self.epochs}
        if cell.memory is not None:
            flags["memory"] = cell.memory
        if cell.class_order_seed is not None:
            flags["class_order_seed"] = None if cell.class_order_seed == "natural" else cell.class_order_seed
        return flags

    def resolve(self, cell: Cell) -> RunConfig:
        from cromo_bench.experiment import build_config

        return build_config(cell.method, cell.ssl, cell.split, flags=self.flags(cell), sets=list(self.sets))


def cells_for(suite: str | None = None, *, methods: Iterable[str] = (), objectives: Iterable[str] = (),
              splits: Iterable[str] = (), seeds: Iterable[int] = (), memories: Iterable[int] = (),
              class_order_seeds: Iterable[str] = ()) -> list[Cell]:
    """The grid of a named suite, with any axis given here replacing the suite's; without a suite, the
    options alone (objective barlow and split digits-5x2 by default, seeds from each benchmark's spec)."""
    from cromo_bench.registry import lookup

    axes: dict[str, list[Any]] = {"methods": list(methods), "objectives": list(objectives),
                                  "splits": list(splits), "seeds": list(seeds), "memories": list(memories),
                                  "orders": list(class_order_seeds)}
    if suite is not None:
        s = lookup("suite", suite)
        from_suite = {"methods": s.methods, "objectives": s.objectives, "splits": s.benchmarks,
                      "seeds": s.seeds, "memories": s.memories,
                      "orders": [None if o is None else str(o) for o in s.class_order_seeds]}
        axes = {k: v or list(from_suite[k]) for k, v in axes.items()}
    elif not axes["methods"]:
        raise CromoError("give --suite NAME or at least one --method (see `cromo-bench list`)")
    out: list[Cell] = []
    for split in axes["splits"] or ["digits-5x2"]:
        seeds_here = axes["seeds"] or list(lookup("benchmark", split).seeds)
        for method, ssl, mem, order, seed in itertools.product(
                axes["methods"], axes["objectives"] or ["barlow"], axes["memories"] or [None],
                axes["orders"] or [None], seeds_here):
            out.append(Cell(method, ssl, split, int(seed), mem, order))
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Planned:
    cell: Cell
    cfg: RunConfig
    config_hash: str
    done_run: str | None = None  # the FINISHED run that makes this cell a skip


def plan(cells: list[Cell], options: Options, tracking_uri: str | None = None) -> list[Planned]:
    """Resolve every cell (errors name the cell), drop the memory axis for methods without a buffer, and mark
    the cells already FINISHED in the store."""
    from cromo_bench.registry import lookup

    planned: dict[tuple[Any, ...], Planned] = {}
    for cell in cells:
        if cell.memory is not None and not getattr(lookup("method", cell.method), "needs_buffer", False):
            cell = dataclasses.replace(cell, memory=None)  # a budget means nothing without a buffer
        try:
            cfg = options.resolve(cell)
        except CromoError as exc:
            raise CromoError(f"cell {cell.key}: {exc}") from None
        h = config_hash(cfg.flat_params())
        planned.setdefault((cfg.benchmark, cfg.method, cfg.ssl, cfg.seed, h), Planned(cell, cfg, h))
    finished = _finished_runs(tracking_uri, sorted({p.cfg.benchmark for p in planned.values()}))
    return [dataclasses.replace(p, done_run=finished.get(key)) for key, p in planned.items()]


def open_store(tracking_uri: str | None) -> MlflowTracker:
    return MlflowTracker(tracking_uri)


def _finished_runs(tracking_uri: str | None, experiments: list[str]) -> dict[tuple[Any, ...], str]:
    """(split, method, ssl, seed, config hash) -> run id of every FINISHED run in those experiments."""
    from cromo_bench.tracking import tracking_uri as resolve_uri

    if missing_sqlite(resolve_uri(tracking_uri)):
        return {}  # planning never creates a store (opening a SQLite URI does)
    store = open_store(tracking_uri)
    ids = {}
    for name in experiments:
        exp = store.client.get_experiment_by_name(name)
        if exp is not None:
            ids[str(exp.experiment_id)] = name
    out: dict[tuple[Any, ...], str] = {}
    for run in search_runs(store.client, list(ids), "attributes.status = 'FINISHED'"):
        tags = run.data.tags
        if f"{TAG_PREFIX}seed" not in tags:
            continue  # a parent run
        key = (ids[str(run.info.experiment_id)], tags.get(f"{TAG_PREFIX}method"),
               tags.get(f"{TAG_PREFIX}ssl"), int(tags[f"{TAG_PREFIX}seed"]), config_hash(run.data.params))
        out.setdefault(key, run.info.run_id)
    return out


def missing_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///") and ":memory:" not in uri and not Path(uri[len("sqlite:///"):]).exists()


def search_runs(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    from cromo_bench.tracking import search_all_runs

    return search_all_runs(client, experiment_ids, query)


# --- the driver -------------------------------------------------------------------------------------------


@dataclass
class Summary:
    sweep_id: str
    parents: dict[str, str]  # experiment (split) -> parent run id
    results: list[CellResult]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]

    def report(self) -> str:
        lines = [f"sweep {self.sweep_id}: {len(self.results)} cells: {self.count('done')} done, "
                 f"{self.count('skipped')} skipped (already FINISHED), {self.count('failed')} failed"]
        lines += [f"  parent run {run_id} (experiment '{exp}')" for exp, run_id in self.parents.items()]
        lines += [f"  FAILED {r.key} (run {r.run_id}): {r.reason}" for r in self.failed]
        return "\n".join(lines)


def run_sweep(cells: list[Cell], options: Options, *, tracking_uri: str | None = None,
              launcher: str = "local", jobs: int = 1, slurm: Slurm | None = None, name: str = "custom",
              progress: bool = True, log_dir: str | None = None) -> Summary:
    """Plan, skip what is FINISHED, create the parents, launch the rest and wait; see the module docstring."""
    from cromo_bench.cell import CellResult, run_cell
    from cromo_bench.launchers import Progress, Slurm, launch_local, launch_submitit
    from cromo_bench.tracking import tracking_uri as resolve_uri

    if launcher not in LAUNCHERS:
        raise CromoError(f"unknown launcher '{launcher}'; choose one of: {', '.join(LAUNCHERS)}")
    if jobs < 1:
        raise CromoError(f"--jobs must be >= 1, got {jobs}")
    uri = resolve_uri(tracking_uri)
    planned = plan(cells, options, uri)
    sweep_id = uuid.uuid4().hex[:12]
    results = [CellResult(p.cell.key, "skipped", p.done_run) for p in planned if p.done_run]
    todo = [p for p in planned if not p.done_run]
    parents = _create_parents(uri, sweep_id, name, todo, options, launcher) if todo else {}
    logs = Path(log_dir or Path(todo[0].cfg.run_dir if todo else "runs") / "sweeps" / sweep_id)
    tasks = [{"cell": dataclasses.asdict(p.cell), "options": dataclasses.asdict(options), "tracking_uri": uri,
              "parent_run_id": parents[p.cfg.benchmark], "sweep_id": sweep_id} for p in todo]
    bar = Progress(len(planned), len(results), progress)
    try:
        if launcher == "debug":
            new = [bar.add(run_cell(t)) for t in tasks]
        elif launcher == "local":
            new = launch_local(tasks, jobs, logs, bar)
        else:
            new = launch_submitit(tasks, jobs, logs, bar, slurm or Slurm(), launcher == "slurm")
    except BaseException:
        _end_parents(uri, parents, "KILLED")
        raise
    finally:
        bar.close()
    results += new
    _end_parents(uri, parents, "FAILED" if any(r.status == "failed" for r in new) else "FINISHED")
    return Summary(sweep_id, parents, results)


def _create_parents(uri: str, sweep_id: str, name: str, todo: list[Planned], options: Options,
                    launcher: str) -> dict[str, str]:
    """One parent run per split experiment, created (with the store and the experiment) before any worker."""
    parents = {}
    for split in sorted({p.cfg.benchmark for p in todo}):
        store = open_store(uri)
        n = sum(p.cfg.benchmark == split for p in todo)
        tags = {f"{TAG_PREFIX}sweep_id": sweep_id, f"{TAG_PREFIX}sweep": name,
                f"{TAG_PREFIX}sweep_cells": str(n)}
        params = {"launcher": launcher, "sets": " ".join(options.sets), "epochs": str(options.epochs),
                  "cells": str(n)}
        parents[split] = store.start(split, f"sweep-{name}-{sweep_id[:6]}", tags, params)
    return parents


def _end_parents(uri: str, parents: dict[str, str], status: str) -> None:
    store = open_store(uri)
    for run_id in parents.values():
        store.client.set_terminated(run_id, status=status)
