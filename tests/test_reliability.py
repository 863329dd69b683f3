"""Resumable runs, interrupted runs and concurrent runs, with real subprocesses and a real SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_args

ROOT = Path(__file__).resolve().parents[1]
# Long enough tasks that "the middle of task 3" is a window of seconds, not milliseconds.
RESUME_ARGS = ["run", "--method", "finetune", "--ssl", "barlow", "--split", "digits-5x2", *tiny_args(epochs=4),
               "--set", "subset_per_class=100", "--set", "checkpoint_every=1"]


def cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "cromo_bench.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def metrics_line(out: str) -> str:
    return next(line for line in out.splitlines() if " LA " in line)


def wait_for_task(cwd: Path, task: int, epoch: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll the run's checkpoint until training stands in `task` (0-based) at or past `epoch`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        for path in cwd.glob("runs/*/checkpoint.pt"):
            try:
                pos = torch.load(path, weights_only=True)["position"]
            except Exception:  # noqa: BLE001 - caught mid-write: poll again
                continue
            if pos["task"] == task and pos["epoch"] >= epoch:
                return
        time.sleep(0.05)
    raise AssertionError("the run never reached the requested task")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> str:
    cwd = tmp_path_factory.mktemp("straight")
    return metrics_line(finished(cli(RESUME_ARGS, cwd)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_in_task_3_and_resumed_equals_an_uninterrupted_run(sig, uninterrupted, tmp_path):
    proc = cli(RESUME_ARGS, tmp_path)
    wait_for_task(tmp_path, task=2, epoch=1, proc=proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert "checkpoint saved" in out and "--resume" in out
    resumed = finished(cli([*RESUME_ARGS, "--resume"], tmp_path))
    assert metrics_line(resumed) == uninterrupted
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits-5x2").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    again = cli([*RESUME_ARGS, "--resume"], tmp_path)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 2 and "already finished" in out


def test_four_concurrent_runs_into_one_new_sqlite_store(tmp_path):
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [cli(["run", "--method", "finetune", "--ssl", "barlow", "--seed", str(s), "--tracking-uri", store,
                  *tiny_args()], tmp_path) for s in range(4)]
    for p in procs:
        finished(p)
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("digits-5x2").experiment_id])
    assert sorted(r.data.tags["cromo.seed"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_unwritable_tracking_store_is_one_line(tmp_path):
    proc = cli(["run", "--method", "finetune", "--tracking-uri", f"sqlite:///{tmp_path}/missing/dir/m.db",
                *tiny_args()], tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert out.strip().splitlines()[-1].startswith("error: tracking store folder")
