"""`cromo-bench show RUN_ID`: one run's identity, tags, configuration, final metrics and accuracy matrix."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cromo_bench.errors import CromoError
from cromo_bench.sweep import missing_sqlite, open_store


def show_run(run_id: str, tracking_uri: str | None = None) -> str:
    """A run's identity, tags, config (params), final metrics and accuracy matrix, as text."""
    import tempfile

    from cromo_bench.tracking import tracking_uri as resolve_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    if missing_sqlite(resolve_uri(tracking_uri)):
        raise CromoError(f"no tracking store at '{resolve_uri(tracking_uri)}' "
                         "(pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    store = open_store(tracking_uri)
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
