"""One sweep cell, the unit every launcher runs: `run_cell` resolves the cell's configuration, runs it as a child
of the sweep's parent run with the sweep's tags, resumes a requeued attempt, and turns any failure into a
recorded FAILED run and a `CellResult` (it never raises). `python -m cromo_bench.cell TASK.json RESULT.json` is
the local launcher's worker process.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cromo_bench.sweep import Cell, Options, config_hash, open_store, search_runs
from cromo_bench.tracking import TAG_PREFIX, MlflowTracker


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
            close_stale(tracker, task, cell)
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
        store = open_store(task["tracking_uri"])
        schema = {f"{TAG_PREFIX}method": cell.method, f"{TAG_PREFIX}ssl": cell.ssl,
                  f"{TAG_PREFIX}split": cell.split, f"{TAG_PREFIX}seed": str(cell.seed),
                  f"{TAG_PREFIX}failure": reason}
        store.start(cell.split, f"{cell.method}-{cell.ssl}-{cell.split}-s{cell.seed}", {**schema, **tags}, {},
                    parent_run_id=task["parent_run_id"])
        store.end("FAILED")
        return str(store.run_id)
    except Exception:  # noqa: BLE001 - the store itself is unreachable; the summary still has the reason
        return None


def close_stale(store: Any, task: dict[str, Any], cell: Cell, reason: str = "") -> None:
    """Mark this cell's RUNNING runs of this sweep as FAILED (a worker died) or KILLED (requeued job)."""
    exp = store.client.get_experiment_by_name(cell.split)
    if exp is None:
        return
    query = (f"attributes.status = 'RUNNING' and tags.`{TAG_PREFIX}sweep_id` = '{task['sweep_id']}' "
             f"and tags.`{TAG_PREFIX}cell` = '{cell.key}'")
    for r in search_runs(store.client, [str(exp.experiment_id)], query):
        if reason:
            store.client.set_tag(r.info.run_id, f"{TAG_PREFIX}failure", reason)
        store.client.set_terminated(r.info.run_id, status="FAILED" if reason else "KILLED")


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: `python -m cromo_bench.cell TASK.json RESULT.json`."""
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
