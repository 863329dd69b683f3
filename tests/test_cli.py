"""The CLI through Typer's runner against a temporary MLflow store."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cromo_bench.cli import app
from tests.helpers import tiny_args

runner = CliRunner()


def test_run_logs_exactly_one_finished_run_with_the_schema(tmp_cwd):
    res = runner.invoke(app, ["run", "--method", "finetune", "--ssl", "barlow", "--split", "digits-5x2",
                              *tiny_args()])
    assert res.exit_code == 0, res.output
    assert "LA " in res.output and "sqlite:///mlflow.db" in res.output
    client = MlflowClient("sqlite:///mlflow.db")
    exp = client.get_experiment_by_name("digits-5x2")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"
    for tag, value in (("method", "finetune"), ("ssl", "barlow"), ("split", "digits-5x2"), ("memory", "0"),
                       ("seed", "0"), ("benchmark_version", "2")):
        assert r.data.tags[f"cromo.{tag}"] == value
    for tag in ("cromo.git_commit", "cromo.torch", "cromo.device"):
        assert r.data.tags[tag]
    m = r.data.metrics
    assert all(0.0 <= m[k] <= 1.0 for k in ("LA", "TP", "WP", "WP_oracle"))
    assert m["LA"] == pytest.approx(m["TP"] * m["WP"], abs=1e-6)
    assert r.data.params["width"] == "4" and r.data.params["method"] == "finetune"
    path = client.download_artifacts(r.info.run_id, "result.json", str(tmp_cwd))
    result = json.loads(open(path).read())
    assert result["metrics"]["LA"] == pytest.approx(m["LA"])


def test_typo_in_method_names_the_choices_and_suggests(tmp_cwd):
    res = runner.invoke(app, ["run", "--method", "cromoo", "--ssl", "barlow"])
    assert res.exit_code == 2
    lines = [line for line in res.output.strip().splitlines() if line]
    assert len(lines) == 1
    assert "Did you mean 'cromo'" in lines[0] and "finetune" in lines[0]


def test_unknown_set_key_is_an_error(tmp_cwd):
    res = runner.invoke(app, ["run", "--method", "finetune", "--set", "learning_rate=1"])
    assert res.exit_code == 2 and "unknown config key 'learning_rate'" in res.output


def test_cifar_without_data_says_how_to_provide_it(tmp_cwd, monkeypatch):
    import cromo_bench.data as data

    original = data.load_cifar
    monkeypatch.setattr(data, "load_cifar", lambda name, d="", download=True: original(name, d, download=False))
    res = runner.invoke(app, ["run", "--method", "finetune", "--split", "cifar100-10x10", "--data-dir",
                              str(tmp_cwd / "none"), "--epochs", "1"])
    assert res.exit_code == 2
    assert "--data-dir" in res.output and "cifar100" in res.output


def test_cuda_requested_without_a_gpu(tmp_cwd):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = runner.invoke(app, ["run", "--method", "finetune", "--device", "cuda", *tiny_args()])
    assert res.exit_code == 2 and "no CUDA device" in res.output


def test_list_prints_every_registry(tmp_cwd):
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for word in ("methods:", "objectives:", "benchmarks:", "finetune", "barlow", "digits-5x2"):
        assert word in res.output
