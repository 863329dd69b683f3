"""Sweeps: the grid, the configuration hash, skipping FINISHED cells, failures, and every launcher.

The launcher tests run tiny digits cells (1 epoch, 30 images per class, a 2-epoch probe). The local launcher
test is the default path; the submitit and `mlflow server` variants are opt-in (`-m slow`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cromo_bench import cell, launchers
from cromo_bench import sweep as sw
from cromo_bench.cli import app
from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.registry import names

TINY = ["--epochs", "1", "--set", "probe_epochs=2", "--set", "eval_every_task=false", "--set", "knn_k=10",
        "--set", "subset_per_class=30"]
TINY_OPTIONS = sw.Options(("probe_epochs=2", "eval_every_task=false", "knn_k=10", "subset_per_class=30"), 1)


def second_method() -> str:
    """A second registered method (the baselines are registered by their owners as they land)."""
    available = [m for m in ("cassle", "er", "cassle_plus", "cromo") if m in names("method")]
    return available[0] if available else "finetune"


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str = "digits-5x2") -> list[Any]:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else list(c.search_runs([exp.experiment_id], max_results=1000))


def children_and_parents(uri: str) -> tuple[list[Any], list[Any]]:
    runs = all_runs(uri)
    return ([r for r in runs if "mlflow.parentRunId" in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" not in r.data.tags])


def check_grid(uri: str, methods: set[str]) -> None:
    """Four FINISHED children (methods x seeds 0, 1) under one FINISHED parent, with the schema tags."""
    children, parents = children_and_parents(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.tags["cromo.method"], r.data.tags["cromo.seed"]) for r in children} == {
        (m, s) for m in methods for s in ("0", "1")}
    assert {r.data.params["seed"] for r in children} == {"0", "1"}
    assert {r.data.tags["cromo.class_order"] for r in children} == {"natural"}
    assert all("LA" in r.data.metrics and "TP" in r.data.metrics for r in children)
    assert len({r.data.tags["cromo.config_hash"] for r in children}) == len(methods)  # seeds share a hash


# --- the grid and the hash (fast) ---------------------------------------------------------------------------


def test_config_hash_separates_overrides_not_seeds() -> None:
    base = RunConfig()
    h = sw.config_hash(base.flat_params())
    assert sw.config_hash(dataclasses.replace(base, seed=7, device="cpu", num_threads=2).flat_params()) == h
    assert sw.config_hash(dataclasses.replace(base, probe_epochs=3).flat_params()) != h
    assert sw.config_hash(dataclasses.replace(base, benchmark_version=2).flat_params()) != h
    assert sw.config_hash(dataclasses.replace(base, class_order_seed=3).flat_params()) != h
    params = dataclasses.replace(base, lr=0.5).flat_params()
    older = {k: v for k, v in params.items() if k != "minibatch"}  # a run logged before a field existed
    assert sw.config_hash(older) == sw.config_hash(params)
    assert sw.config_hash({**params, "lr": "0.25"}) != sw.config_hash(params)


def test_cells_for_options_and_suites() -> None:
    cells = sw.cells_for(methods=["finetune", "cromo"], seeds=[0, 1], memories=[50, 100])
    assert len(cells) == 8 and {c.split for c in cells} == {"digits-5x2"} and {c.ssl for c in cells} == {"barlow"}
    assert len(sw.cells_for(methods=["finetune"])) == 3  # the spec's seeds
    suite = sw.cells_for("paper-cifar100-10x10")
    assert len(suite) == 5 * 4 * 3 and {c.split for c in suite} == {"cifar100-10x10"}
    one_seed = sw.cells_for("paper-cifar100-10x10", seeds=[0], objectives=["barlow"])
    assert len(one_seed) == 5 and {c.seed for c in one_seed} == {0}
    budget = sw.cells_for("budget-cifar100-5x20")
    assert {c.memory for c in budget} == {50, 100, 500}
    assert {c.split for c in sw.cells_for("task-confusion-digits")} == {
        "confusion-digits-cil", "confusion-digits-dil", "confusion-digits-offline"}
    with pytest.raises(CromoError, match="--method"):
        sw.cells_for()
    with pytest.raises(CromoError, match="Did you mean"):
        sw.cells_for("paper-cifar100-10x1")


def test_plan_resolves_every_cell_and_collapses_budgets(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    cells = sw.cells_for(methods=["finetune"], seeds=[0], memories=[50, 100], class_order_seeds=["natural", "3"])
    planned = sw.plan(cells, TINY_OPTIONS, uri)
    assert len(planned) == 2  # finetune has no buffer: the two budgets are one cell per class order
    assert {p.cfg.class_order_seed for p in planned} == {None, 3}
    assert all(p.done_run is None and p.cfg.epochs_first == 1 and p.cfg.probe_epochs == 2 for p in planned)
    assert not (tmp_path / "none.db").exists()  # planning never creates a store
    if "er" in names("method"):
        er = sw.plan(sw.cells_for(methods=["er"], seeds=[0], memories=[50, 100]), TINY_OPTIONS, uri)
        assert sorted(p.cfg.memory for p in er) == [50, 100]
    with pytest.raises(CromoError, match="cell digits-5x2/finetune/barlow"):
        sw.plan(sw.cells_for(methods=["finetune"], seeds=[0]), sw.Options(("nonsense_key=1",)), uri)


def test_slurm_option_parsing() -> None:
    assert [launchers._minutes(t) for t in ("90", "02:30:00", "1-00:00:00", "00:10:30")] == [90, 150, 1440, 11]
    assert [launchers._gigabytes(m) for m in ("32G", "16000M", "1T", "8")] == [32, 15, 1024, 8]
    with pytest.raises(CromoError):
        launchers._minutes("soon")


def test_cell_job_requeues_itself_with_resume() -> None:
    job = launchers.CellJob()
    delayed = job.checkpoint({"cell": {}, "resume": False})
    assert isinstance(delayed.function, launchers.CellJob) and delayed.args[0]["resume"] is True


def test_dead_worker_fails_its_running_run(tmp_cwd: Path) -> None:
    from cromo_bench.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_cwd / 'm.db'}"
    cell = sw.Cell("finetune", "barlow", "digits-5x2", 0)
    parent = MlflowTracker(uri)
    parent_id = parent.start("digits-5x2", "sweep", {}, {})
    child = MlflowTracker(uri)
    child.start("digits-5x2", "cell", {"cromo.sweep_id": "abc", "cromo.cell": cell.key}, {},
                parent_run_id=parent_id)
    log = tmp_cwd / "cell0.log"
    log.write_text("Traceback ...\nKilled\n")
    task = {"cell": dataclasses.asdict(cell), "tracking_uri": uri, "sweep_id": "abc", "parent_run_id": parent_id}
    result = launchers._collect(-9, task, tmp_cwd / "missing.json", log)
    assert result.status == "failed" and "status -9" in result.reason and "Killed" in result.reason
    run = client(uri).get_run(child.run_id)
    assert run.info.status == "FAILED" and "Killed" in run.data.tags["cromo.failure"]
    assert client(uri).get_run(parent_id).info.status == "RUNNING"  # only the cell's own runs


# --- launchers ----------------------------------------------------------------------------------------------


def test_debug_sweep_logs_both_seeds_and_records_a_failing_cell(tmp_cwd: Path) -> None:
    uri = f"sqlite:///{tmp_cwd / 'm.db'}"
    runner = CliRunner()
    ok = runner.invoke(app, ["sweep", "--method", "finetune", "--seed", "4", "--class-order-seed", "3",
                             "--launcher", "debug", "--tracking-uri", uri, *TINY])
    assert ok.exit_code == 0, ok.output
    assert "1 done, 0 skipped" in ok.output
    (run,) = [r for r in all_runs(uri) if "mlflow.parentRunId" in r.data.tags]
    assert (run.data.tags["cromo.seed"], run.data.tags["cromo.class_order"]) == ("4", "seed3")
    assert (run.data.params["seed"], run.data.params["class_order_seed"]) == ("4", "3")
    # a cell that fails at run time (CIL-minibatches without virtual tasks) is recorded, the sweep goes on
    bad = runner.invoke(app, ["sweep", "--method", "finetune", "--seed", "4", "--seed", "5", "--launcher", "debug",
                              "--tracking-uri", uri, *TINY, "--set", "minibatch=cil"])
    assert bad.exit_code == 1, bad.output
    assert "0 done, 0 skipped (already FINISHED), 2 failed" in bad.output and "eval_task_sizes" in bad.output
    failed = [r for r in all_runs(uri) if r.info.status == "FAILED" and "mlflow.parentRunId" in r.data.tags]
    assert len(failed) == 2 and all("eval_task_sizes" in r.data.tags["cromo.failure"] for r in failed)
    parents = [r for r in all_runs(uri) if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]
    shown = runner.invoke(app, ["show", run.info.run_id, "--tracking-uri", uri])
    assert shown.exit_code == 0, shown.output
    for text in ("cromo.seed = 4", "class_order_seed = 3", "probe_epochs = 2", "LA = ", "accuracy matrix"):
        assert text in shown.output
    missing = runner.invoke(app, ["show", "0123456789abcdef", "--tracking-uri", uri])
    assert missing.exit_code == 2 and "no run" in missing.output


def test_local_sweep_two_jobs_then_nothing_new(tmp_cwd: Path) -> None:
    """2 methods x 2 seeds, --jobs 2, into a fresh SQLite store; the identical call runs nothing."""
    uri = f"sqlite:///{tmp_cwd / 'store' / 'mlflow.db'}"
    (tmp_cwd / "store").mkdir()
    other = second_method()
    args = ["sweep", "--method", "finetune", "--method", other, "--seed", "0", "--seed", "1", "--jobs", "2",
            "--tracking-uri", uri, *TINY]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 done, 0 skipped" in first.output
    check_grid(uri, {"finetune", other})
    before = {r.info.run_id for r in all_runs(uri)}
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 done, 4 skipped" in second.output
    assert {r.info.run_id for r in all_runs(uri)} == before  # not even a new parent
    # a different --set is a different configuration: nothing would be skipped
    changed = sw.plan(sw.cells_for(methods=["finetune", other], seeds=[0, 1]),
                      dataclasses.replace(TINY_OPTIONS, sets=TINY_OPTIONS.sets + ("probe_epochs=3",)), uri)
    assert [p.done_run for p in changed] == [None] * 4
    same = sw.plan(sw.cells_for(methods=["finetune", other], seeds=[0, 1]), TINY_OPTIONS, uri)
    assert all(p.done_run in before for p in same)


@pytest.mark.slow
def test_submitit_local_executor_sweep(tmp_cwd: Path) -> None:
    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    other = second_method()
    cells = sw.cells_for(methods=["finetune", other], seeds=[0, 1])
    summary = sw.run_sweep(cells, TINY_OPTIONS, tracking_uri=uri, launcher="submitit-local", jobs=2,
                           slurm=launchers.Slurm(time="00:20:00", mem="4G", cpus=1), progress=False)
    assert summary.count("done") == 4 and not summary.failed, summary.report()
    check_grid(uri, {"finetune", other})
    assert list((tmp_cwd / "runs" / "sweeps" / summary.sweep_id / "submitit").glob("*_result.pkl"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Any:
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
         f"sqlite:///{tmp_path / 'server.db'}", "--default-artifact-root", str(tmp_path / "mlruns"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_sweep_against_a_real_mlflow_server_loses_no_run(tmp_cwd: Path, mlflow_server: str) -> None:
    other = second_method()
    args = ["sweep", "--method", "finetune", "--method", other, "--seed", "0", "--seed", "1", "--jobs", "2",
            "--tracking-uri", mlflow_server, *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    check_grid(mlflow_server, {"finetune", other})
    again = CliRunner().invoke(app, args)
    assert "0 done, 4 skipped" in again.output, again.output
    child = next(r for r in all_runs(mlflow_server) if "mlflow.parentRunId" in r.data.tags)
    shown = CliRunner().invoke(app, ["show", child.info.run_id, "--tracking-uri", mlflow_server])
    assert "accuracy matrix" in shown.output and json.dumps(child.info.run_id).strip('"') in shown.output


def test_an_interrupted_cell_that_is_not_resumed_counts_as_failed() -> None:
    bar = launchers.Progress(2, 0, enabled=False)
    out = bar.add(cell.CellResult("k", "interrupted", "r1", "Interrupted: received SIGTERM"))
    assert out.status == "failed" and bar.counts == {"done": 0, "skipped": 0, "failed": 1}
    summary = sw.Summary("s", {}, [out, cell.CellResult("j", "done", "r2")])
    assert "1 done, 0 skipped (already FINISHED), 1 failed" in summary.report()
    assert "FAILED k (run r1): Interrupted" in summary.report()
