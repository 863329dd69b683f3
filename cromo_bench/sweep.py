"""Sweeps: a grid of runs (methods x objectives x splits x budgets x class orders x seeds) into one store.

`plan()` resolves every cell's RunConfig first (a typo fails before anything runs), then skips the cells that
already have a FINISHED run in the store with the same method, objective, seed and configuration hash. The
hash (`config_hash`) covers every setting that changes the numbers except the seed: the benchmark name and
version, the spec's values and every `--set` / `--epochs` override. It is computed from a run's logged params,
so runs started by `cromo-bench run` count too, and only values that differ from RunConfig's defaults enter
it (adding a config field does not invalidate old runs; changing a default does).

`run_sweep()` creates the store, the split experiments and one parent run per experiment BEFORE any worker
starts (concurrent first use of a SQLite file races), then launches the cells:
- `local`: `--jobs N` worker processes, each `python -m cromo_bench.sweep <cell.json>`;
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
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.tracking import TAG_PREFIX, MlflowTracker

# execution settings (they do not change the numbers) and the seed (matched on its own)
NOT_IDENTITY = ("device", "run_dir", "num_threads", "checkpoint_every", "data_dir", "deterministic", "compile",
                "extra", "seed")
_DEFAULTS = RunConfig().flat_params()
LAUNCHERS = ("local", "slurm", "submitit-local", "debug")
MAX_REQUEUES = 5  # resubmissions of an interrupted cell by the submitit driver


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


def _store(tracking_uri: str | None) -> MlflowTracker:
    return MlflowTracker(tracking_uri)


def _finished_runs(tracking_uri: str | None, experiments: list[str]) -> dict[tuple[Any, ...], str]:
    """(split, method, ssl, seed, config hash) -> run id of every FINISHED run in those experiments."""
    from cromo_bench.tracking import tracking_uri as resolve_uri

    if _missing_sqlite(resolve_uri(tracking_uri)):
        return {}  # planning never creates a store (opening a SQLite URI does)
    store = _store(tracking_uri)
    ids = {}
    for name in experiments:
        exp = store.client.get_experiment_by_name(name)
        if exp is not None:
            ids[str(exp.experiment_id)] = name
    out: dict[tuple[Any, ...], str] = {}
    for run in _search(store.client, list(ids), "attributes.status = 'FINISHED'"):
        tags = run.data.tags
        if f"{TAG_PREFIX}seed" not in tags:
            continue  # a parent run
        key = (ids[str(run.info.experiment_id)], tags.get(f"{TAG_PREFIX}method"),
               tags.get(f"{TAG_PREFIX}ssl"), int(tags[f"{TAG_PREFIX}seed"]), config_hash(run.data.params))
        out.setdefault(key, run.info.run_id)
    return out


def _missing_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///") and ":memory:" not in uri and not Path(uri[len("sqlite:///"):]).exists()


def _search(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    from cromo_bench.tracking import search_all_runs

    return search_all_runs(client, experiment_ids, query)


# --- one cell (every launcher ends here) ------------------------------------------------------------------


@dataclass
class CellResult:
    key: str
    status: str  # done | skipped | failed | interrupted (SIGTERM: checkpointed, to be resumed)
    run_id: str | None = None
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def run_cell(task: dict[str, Any]) -> CellResult:
    """Run one cell as a child of task['parent_run_id']; never raises for a failing run (it is recorded)."""
    from cromo_bench import checkpoint as ckpt
    from cromo_bench.runner import run
    from cromo_bench.train import Interrupted

    cell = Cell(**task["cell"])
    options = Options(**{**task["options"], "sets": tuple(task["options"]["sets"])})
    tags = {f"{TAG_PREFIX}sweep_id": task["sweep_id"], f"{TAG_PREFIX}cell": cell.key}
    tracker: Any = None
    try:
        cfg = options.resolve(cell)
        tags[f"{TAG_PREFIX}config_hash"] = config_hash(cfg.flat_params())
        tracker = _CellTracker(task["tracking_uri"], tags)
        resume = bool(task.get("resume"))
        if resume:  # a requeued job: its finished or stale attempt
            state = ckpt.read_state(ckpt.run_directory(cfg)) or {}
            if state.get("status") == "finished" and state.get("run_id"):
                return CellResult(cell.key, "done", state["run_id"])
            _close_stale(tracker, task, cell)
        result = run(cfg, tracker, progress=False, parent_run_id=task["parent_run_id"], resume=resume)
        return CellResult(cell.key, "done", result.run_id, metrics=dict(result.metrics))
    except Interrupted as exc:  # SIGTERM (e.g. SLURM preemption): the run is checkpointed and KILLED
        return CellResult(cell.key, "interrupted", tracker.run_id if tracker is not None else None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the sweep goes on
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        run_id = tracker.run_id if tracker is not None and tracker.run_id else None
        if run_id is None:
            run_id = _record_failure(task, cell, tags, reason)
        return CellResult(cell.key, "failed", run_id, reason)


class _CellTracker(MlflowTracker):
    """An MlflowTracker that adds the sweep's tags to the run it starts (or resumes)."""

    def __init__(self, uri: str | None, tags: dict[str, str]) -> None:
        super().__init__(uri)
        self.extra_tags = tags

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str],
              run_id: str | None = None, parent_run_id: str | None = None) -> str:
        out = super().start(experiment, run_name, {**tags, **self.extra_tags}, params, run_id, parent_run_id)
        if run_id:
            self.set_tags(self.extra_tags)
        return out


def _record_failure(task: dict[str, Any], cell: Cell, tags: dict[str, str], reason: str) -> str | None:
    """A FAILED child run for a cell that died before its run started (bad data dir, out of memory, ...)."""
    try:
        store = _store(task["tracking_uri"])
        schema = {f"{TAG_PREFIX}method": cell.method, f"{TAG_PREFIX}ssl": cell.ssl,
                  f"{TAG_PREFIX}split": cell.split, f"{TAG_PREFIX}seed": str(cell.seed),
                  f"{TAG_PREFIX}failure": reason}
        store.start(cell.split, f"{cell.method}-{cell.ssl}-{cell.split}-s{cell.seed}", {**schema, **tags}, {},
                    parent_run_id=task["parent_run_id"])
        store.end("FAILED")
        return str(store.run_id)
    except Exception:  # noqa: BLE001 - the store itself is unreachable; the summary still has the reason
        return None


def _close_stale(store: Any, task: dict[str, Any], cell: Cell, reason: str = "") -> None:
    """Mark this cell's RUNNING runs of this sweep as FAILED (a worker died) or KILLED (requeued job)."""
    exp = store.client.get_experiment_by_name(cell.split)
    if exp is None:
        return
    query = (f"attributes.status = 'RUNNING' and tags.`{TAG_PREFIX}sweep_id` = '{task['sweep_id']}' "
             f"and tags.`{TAG_PREFIX}cell` = '{cell.key}'")
    for r in _search(store.client, [str(exp.experiment_id)], query):
        if reason:
            store.client.set_tag(r.info.run_id, f"{TAG_PREFIX}failure", reason)
        store.client.set_terminated(r.info.run_id, status="FAILED" if reason else "KILLED")


# --- the driver -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slurm:
    """submitit / SLURM settings of the `slurm` launcher."""

    partition: str | None = None
    gpus: int = 1
    time: str = "24:00:00"  # HH:MM:SS, D-HH:MM:SS or minutes
    mem: str = "32G"
    cpus: int = 8


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
    bar = _Progress(len(planned), len(results), progress)
    try:
        if launcher == "debug":
            new = [bar.add(run_cell(t)) for t in tasks]
        elif launcher == "local":
            new = _launch_local(tasks, jobs, logs, bar)
        else:
            new = _launch_submitit(tasks, jobs, logs, bar, slurm or Slurm(), launcher == "slurm")
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
        store = _store(uri)
        n = sum(p.cfg.benchmark == split for p in todo)
        tags = {f"{TAG_PREFIX}sweep_id": sweep_id, f"{TAG_PREFIX}sweep": name,
                f"{TAG_PREFIX}sweep_cells": str(n)}
        params = {"launcher": launcher, "sets": " ".join(options.sets), "epochs": str(options.epochs),
                  "cells": str(n)}
        parents[split] = store.start(split, f"sweep-{name}-{sweep_id[:6]}", tags, params)
    return parents


def _end_parents(uri: str, parents: dict[str, str], status: str) -> None:
    store = _store(uri)
    for run_id in parents.values():
        store.client.set_terminated(run_id, status=status)


class _Progress:
    def __init__(self, total: int, skipped: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.counts = {"done": 0, "skipped": skipped, "failed": 0}
        self.bar = tqdm(total=total, initial=skipped, disable=not enabled, desc="sweep", unit="cell")
        self.bar.set_postfix(self.counts)

    def add(self, result: CellResult) -> CellResult:
        if result.status not in self.counts:  # interrupted and not resumed: the cell did not finish
            result = dataclasses.replace(result, status="failed")
        self.counts[result.status] += 1
        self.bar.update(1)
        self.bar.set_postfix(self.counts)
        return result

    def close(self) -> None:
        self.bar.close()


def _launch_local(tasks: list[dict[str, Any]], jobs: int, logs: Path, bar: _Progress) -> list[CellResult]:
    """Up to `jobs` worker processes at a time, each writing a result file; a dead worker fails its cell."""
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    pending, out = list(enumerate(tasks)), []
    running: dict[int, tuple[subprocess.Popen[bytes], dict[str, Any], Path, Path]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, task = pending.pop(0)
                spec, result, log = (logs / f"cell{i}.json", logs / f"cell{i}.result.json",
                                     logs / f"cell{i}.log")
                spec.write_text(json.dumps({**task, "num_threads": threads}))
                command = [sys.executable, "-m", "cromo_bench.sweep", str(spec), str(result)]
                with open(log, "w") as fh:
                    proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env)
                running[i] = (proc, task, result, log)
            for i, (proc, task, result, log) in list(running.items()):
                if proc.poll() is not None:
                    del running[i]
                    out.append(bar.add(_collect(proc.returncode, task, result, log)))
            time.sleep(0.2)
    except BaseException:
        for proc, *_ in running.values():
            proc.terminate()  # the trainer checkpoints on SIGTERM and closes its run KILLED
        for proc, *_ in running.values():
            proc.wait(timeout=60)
        raise
    return out


def _collect(code: int, task: dict[str, Any], result: Path, log: Path) -> CellResult:
    if result.is_file():
        return CellResult(**json.loads(result.read_text()))
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:] or [""]
    reason = f"worker exited with status {code}: {tail[0][:300]} (log: {log})"
    cell = Cell(**task["cell"])
    store = _store(task["tracking_uri"])
    _close_stale(store, task, cell, reason)
    return CellResult(cell.key, "failed", None, reason)


class CellJob:
    """The submitit job: runs one cell; on preemption / timeout, requeues itself with resume on."""

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(run_cell(task))

    def checkpoint(self, task: dict[str, Any]) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CellJob(), {**task, "resume": True})


def _minutes(text: str) -> int:
    """'90' -> 90; 'HH:MM:SS' or 'D-HH:MM:SS' -> minutes (rounded up)."""
    try:
        days, _, rest = text.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if len(parts) == 1:
            return int(days or 0) * 1440 + parts[0]
        h, m, sec = (parts + [0, 0])[:3] if len(parts) == 3 else (parts[0], parts[1], 0)
        return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise CromoError(f"--time expects minutes, HH:MM:SS or D-HH:MM:SS, got '{text}'") from None


def _gigabytes(text: str) -> int:
    value = text.strip().upper().rstrip("B")
    scale = {"G": 1, "M": 1 / 1024, "T": 1024}.get(value[-1:], None)
    try:
        return max(1, int(float(value[:-1]) * scale)) if scale else int(value)
    except ValueError:
        raise CromoError(f"--mem expects e.g. 32G or 16000M, got '{text}'") from None


def _launch_submitit(tasks: list[dict[str, Any]], jobs: int, logs: Path, bar: _Progress, slurm: Slurm,
                     on_slurm: bool) -> list[CellResult]:
    import submitit

    executor = submitit.AutoExecutor(folder=str(logs / "submitit"), cluster="slurm" if on_slurm else "local")
    params: dict[str, Any] = {"timeout_min": _minutes(slurm.time), "mem_gb": _gigabytes(slurm.mem),
                              "cpus_per_task": slurm.cpus, "gpus_per_node": slurm.gpus,
                              "name": "cromo-sweep"}
    if on_slurm:
        params |= {"slurm_array_parallelism": jobs, "slurm_partition": slurm.partition}
        params = {k: v for k, v in params.items() if v is not None}
    else:
        params["gpus_per_node"] = 0
    executor.update_parameters(**params)
    submitted = executor.map_array(CellJob(), tasks)
    waiting, out, requeues = dict(enumerate(submitted)), [], [0] * len(tasks)
    while waiting:
        for i, job in list(waiting.items()):
            if job.done():
                del waiting[i]
                result = _job_result(job, tasks[i])
                if result.status == "interrupted" and requeues[i] < MAX_REQUEUES:
                    requeues[i] += 1  # SIGTERM reached the trainer first: resubmit, resuming the same run
                    waiting[i] = executor.submit(CellJob(), {**tasks[i], "resume": True})
                    continue
                if result.status == "interrupted":
                    result = dataclasses.replace(result, status="failed")
                out.append(bar.add(result))
        time.sleep(1.0)
    return out


def _job_result(job: Any, task: dict[str, Any]) -> CellResult:
    try:
        return CellResult(**job.result())
    except Exception as exc:  # noqa: BLE001 - the job died (node failure, out of memory, not requeued)
        text = str(exc).strip().splitlines() or [type(exc).__name__]
        reason = f"job {job.job_id} failed: {text[-1][:300]}"
        cell = Cell(**task["cell"])
        _close_stale(_store(task["tracking_uri"]), task, cell, reason)
        return CellResult(cell.key, "failed", None, reason)


# --- show one run -------------------------------------------------------------------------------------------


def show_run(run_id: str, tracking_uri: str | None = None) -> str:
    """A run's identity, tags, config (params), final metrics and accuracy matrix, as text."""
    import tempfile

    from cromo_bench.tracking import tracking_uri as resolve_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    if _missing_sqlite(resolve_uri(tracking_uri)):
        raise CromoError(f"no tracking store at '{resolve_uri(tracking_uri)}' "
                         "(pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    store = _store(tracking_uri)
    try:
        run = store.client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - mlflow raises its own types for unknown ids
        raise CromoError(f"no run '{run_id}' in '{store.uri}': {str(exc).splitlines()[0]}") from None
    exp = store.client.get_experiment(run.info.experiment_id)
    lines = [f"run {run.info.run_id}  {run.info.run_name}",
             f"experiment {exp.name}  status {run.info.status}"]
    lines += ["", "tags:"] + [f"  {k} = {v}" for k, v in sorted(run.data.tags.items())
                              if not k.startswith("mlflow.") or k in ("mlflow.parentRunId", "mlflow.runName")]
    lines += ["", "config:"] + [f"  {k} = {v}" for k, v in sorted(run.data.params.items())]
    lines += ["", "results:"] + [f"  {k} = {v:.4f}" for k, v in sorted(run.data.metrics.items())]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = store.client.download_artifacts(run_id, "accuracy_matrix.json", tmp)
            matrix = json.loads(Path(path).read_text()).get("R", [])
    except Exception:  # noqa: BLE001 - no artifact (failed or parent run) or an unreachable artifact store
        matrix = []
    if matrix:
        lines += ["", "accuracy matrix (row: after task i; column: task j):"]
        lines += ["  " + " ".join("   -  " if a is None else f"{a:6.3f}" for a in row) for row in matrix]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: `python -m cromo_bench.sweep TASK.json RESULT.json`."""
    args = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(args[0]).read_text())
    if task.get("num_threads"):
        import torch

        torch.set_num_threads(int(task["num_threads"]))
    result = run_cell(task)
    Path(args[1]).write_text(json.dumps(dataclasses.asdict(result)))
    sys.exit(0 if result.status == "done" else 1)


if __name__ == "__main__":
    main()
