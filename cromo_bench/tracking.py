"""Experiment tracking. The only module that imports mlflow.

`train.run()` talks to a `Tracker`; `MemoryTracker` serves tests, `MlflowTracker` serves users. The run
schema (tags `cromo.*`, metrics LA/TP/WP, artifact result.json) is a contract the leaderboard reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cromo_bench.errors import CromoError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_PREFIX = "cromo."
SCHEMA_TAGS = ("method", "ssl", "split", "memory", "seed", "benchmark_version")


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (SQLite)."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class Tracker(Protocol):
    run_id: str

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str],
              run_id: str | None = None, parent_run_id: str | None = None) -> str: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_json(self, name: str, obj: Any) -> None: ...
    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


@dataclass
class MemoryTracker:
    """Keeps everything in lists; for tests."""

    run_id: str = "memory-run"
    experiment: str = ""
    run_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int | None]] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str],
              run_id: str | None = None, parent_run_id: str | None = None) -> str:
        self.experiment, self.run_name = experiment, run_name
        self.tags.update(tags)
        self.params.update(params)
        if run_id:
            self.run_id = run_id
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.extend((k, float(v), step) for k, v in metrics.items())

    def log_json(self, name: str, obj: Any) -> None:
        self.artifacts[name] = json.loads(json.dumps(obj))

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts[str(Path(artifact_path or "") / Path(path).name)] = Path(path).read_bytes()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def end(self, status: str = "FINISHED") -> None:
        self.status = status

    def last(self, key: str) -> float:
        values = [v for k, v, _ in self.metrics if k == key]
        if not values:
            raise KeyError(key)
        return values[-1]


@contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise the creation of a SQLite store across processes (a lock file beside the database)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(uri[len("sqlite:///") :])
    if not db.parent.is_dir():
        raise CromoError(f"tracking store folder '{db.parent}' does not exist; create it or pick another "
                         "--tracking-uri")
    try:
        handle = open(str(db) + ".lock", "a")  # noqa: SIM115 - held for the duration of the block
    except OSError as exc:
        raise CromoError(f"tracking store '{db}' is not writable ({exc.strerror}); pass a writable "
                         "--tracking-uri") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowTracker:
    """Logs to an MLflow tracking store through MlflowClient (no global active-run state)."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(uri)
        try:
            with sqlite_init_lock(self.uri):  # concurrent first use of a new SQLite file races
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)  # creates / migrates the schema now
        except CromoError:
            raise
        except Exception as exc:  # noqa: BLE001 - mlflow raises many types for bad URIs
            raise CromoError(
                f"cannot open tracking store '{self.uri}': {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                "pass a writable --tracking-uri (e.g. sqlite:///mlflow.db or http://host:5000)"
            ) from exc
        self.run_id = ""

    def experiment_id(self, name: str) -> str:
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return str(exp.experiment_id)
            return str(self.client.create_experiment(name))
        except Exception as exc:  # noqa: BLE001
            if "already exists" in str(exc):  # a concurrent worker created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is not None:
                    return str(exp.experiment_id)
            raise CromoError(
                f"cannot write to tracking store '{self.uri}': {str(exc).splitlines()[0]} "
                "(pass a writable --tracking-uri, e.g. sqlite:///mlflow.db)"
            ) from exc

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str],
              run_id: str | None = None, parent_run_id: str | None = None) -> str:
        if run_id:
            self.run_id = run_id
            try:
                self.client.update_run(run_id, status="RUNNING")
            except Exception as exc:  # noqa: BLE001 - the run is not in this store
                raise CromoError(f"cannot resume run {run_id} in tracking store '{self.uri}': "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc!r}; pass the --tracking-uri "
                                 "the run was started with") from exc
            return run_id
        all_tags = dict(tags)
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_json(self, name: str, obj: Any) -> None:
        self.client.log_dict(self.run_id, obj, name)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


# --- reading runs back for the leaderboard ---------------------------------------------------------------

RUN_COLUMNS = ("run_id", "experiment", "status", "start_time", "run_name", *SCHEMA_TAGS, "overrides")


def load_runs(uri: str | None = None, experiments: list[str] | None = None,
              split: str | None = None) -> pd.DataFrame:
    """One row per run (any status): RUN_COLUMNS, then the last value of every metric, one column each.

    `experiments` restricts the search to those experiment names (default: all); `split` keeps only runs
    tagged `cromo.split = split`. Tags are strings; `start_time` is a UTC pandas Timestamp.
    """
    import pandas as pd
    from mlflow.tracking import MlflowClient

    resolved = tracking_uri(uri)
    _require_sqlite_file(resolved)
    if split and "'" in split:
        raise CromoError(f"invalid split name {split!r}")
    try:
        client = MlflowClient(tracking_uri=resolved)
        names = _experiment_names(client, experiments)
        query = f"tags.`{TAG_PREFIX}split` = '{split}'" if split else ""
        rows = [_run_row(run, names) for run in search_all_runs(client, list(names), query)]
    except CromoError:
        raise
    except Exception as exc:  # noqa: BLE001 - mlflow raises many types for unreachable or bad stores
        raise CromoError(f"cannot read tracking store '{resolved}': {str(exc).splitlines()[0]}") from exc
    frame = pd.DataFrame(rows)
    for col in RUN_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="object")
    metrics = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    return frame[[*RUN_COLUMNS, *metrics]].reset_index(drop=True)


def _require_sqlite_file(uri: str) -> None:
    """Reading must not create an empty store: a missing SQLite file is a user error."""
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        path = Path(uri[len("sqlite:///"):])
        if not path.exists():
            raise CromoError(f"no tracking store at '{path}' (run `cromo-bench run` first, "
                             "or pass --tracking-uri / set MLFLOW_TRACKING_URI)")


def _experiment_names(client: Any, wanted: list[str] | None) -> dict[str, str]:
    """Map experiment id -> name for the wanted names (all active experiments when None)."""
    from cromo_bench.errors import unknown_name

    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        found.update({e.name: str(e.experiment_id) for e in page})
        token = page.token
        if not token:
            break
    if wanted is None:
        return {i: n for n, i in found.items()}
    for name in wanted:
        if name not in found:
            raise unknown_name("experiment", name, found)
    return {found[n]: n for n in wanted}


def search_all_runs(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    """Every run of the experiments matching `query`, page by page."""
    if not experiment_ids:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _run_row(run: Any, experiment_names: dict[str, str]) -> dict[str, Any]:
    tags = run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "experiment": experiment_names.get(str(run.info.experiment_id), ""),
        "status": run.info.status,
        "start_time": run.info.start_time,
        "run_name": run.info.run_name,
    }
    row.update({name: tags.get(TAG_PREFIX + name) for name in SCHEMA_TAGS})
    row["overrides"] = tags.get(TAG_PREFIX + "overrides", "")  # settings that differ from the benchmark's
    row.update({k: float(v) for k, v in run.data.metrics.items() if k not in row})
    return row
