"""Experiment tracking. The only module that imports mlflow.

`train.run()` talks to a `Tracker`; `MemoryTracker` serves tests, `MlflowTracker` serves users. The run
schema (tags `cromo.*`, metrics LA/TP/WP, artifact result.json) is a contract the leaderboard reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cromo_bench.errors import CromoError

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


class MlflowTracker:
    """Logs to an MLflow tracking store through MlflowClient (no global active-run state)."""

    def __init__(self, uri: str | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(uri)
        self._mlflow = mlflow
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
        except Exception as exc:  # noqa: BLE001 - mlflow raises many types for bad URIs
            raise CromoError(f"cannot open tracking store '{self.uri}': {exc}") from exc
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
            self.client.update_run(run_id, status="RUNNING")
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


def write_temp_json(obj: Any, name: str) -> Path:
    """Write `obj` as JSON into a fresh temporary directory and return the file path."""
    path = Path(tempfile.mkdtemp(prefix="cromo-")) / name
    path.write_text(json.dumps(obj, indent=2))
    return path
