"""How a sweep's cells are executed (`cromo_bench.sweep.run_sweep` chooses): `launch_local` runs up to
`--jobs` worker processes (`python -m cromo_bench.cell CELL.json RESULT.json`) and fails the cell of a worker
that dies; `launch_submitit` submits a job array through submitit (SLURM, or its LocalExecutor), whose
`CellJob` requeues itself on preemption or timeout and resumes the same MLflow run from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cromo_bench.cell import CellResult, close_stale, run_cell
from cromo_bench.errors import CromoError
from cromo_bench.sweep import Cell, open_store

MAX_REQUEUES = 5  # resubmissions of an interrupted cell by the submitit driver


@dataclass(frozen=True)
class Slurm:
    """submitit / SLURM settings of the `slurm` launcher."""

    partition: str | None = None
    gpus: int = 1
    time: str = "24:00:00"  # HH:MM:SS, D-HH:MM:SS or minutes
    mem: str = "32G"
    cpus: int = 8


class Progress:
    """The sweep's progress bar over cells: done, skipped, failed."""

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


def launch_local(tasks: list[dict[str, Any]], jobs: int, logs: Path, bar: Progress) -> list[CellResult]:
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
                command = [sys.executable, "-m", "cromo_bench.cell", str(spec), str(result)]
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
    store = open_store(task["tracking_uri"])
    close_stale(store, task, cell, reason)
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


def launch_submitit(tasks: list[dict[str, Any]], jobs: int, logs: Path, bar: Progress, slurm: Slurm,
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
        close_stale(open_store(task["tracking_uri"]), task, cell, reason)
        return CellResult(cell.key, "failed", None, reason)
