"""The `table` pipeline end to end on a real (temporary, SQLite) MLflow store written with MlflowClient."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from cromo_bench import leaderboard
from cromo_bench.errors import CromoError
from cromo_bench.leaderboard import Settings, build_leaderboard, render_table
from cromo_bench.tracking import load_runs

METRICS = ("LA", "TP", "WP")
BASE = {"finetune": 0.50, "cassle": 0.60, "cromo": 0.66, "er": 0.56}
SEEDS = {"finetune": (0, 1, 2), "cassle": (0, 1, 2), "cromo": (0, 1, 2), "er": (3, 4, 5)}  # er: unpaired
_rng = np.random.default_rng(0)
VALUES = {(m, s): {k: round(BASE[m] + 0.05 * i + _rng.normal(0, 0.02), 4) for i, k in enumerate(METRICS)}
          for m, seeds in SEEDS.items() for s in seeds}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store per module (creating an MLflow SQLite store takes seconds)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("s10")
    other = client.create_experiment("s5")
    clock = iter(range(1_000_000, 2_000_000, 1000))

    def log(method, seed, values, status="FINISHED", version="1", experiment=exp, tags=True):
        cromo = {"cromo.method": method, "cromo.ssl": "barlow", "cromo.split": "s10", "cromo.memory": "0",
                 "cromo.seed": str(seed), "cromo.benchmark_version": version}
        run = client.create_run(experiment, start_time=next(clock), run_name=f"{method}-{seed}",
                                tags=cromo if tags else {})
        rid = run.info.run_id
        first = [Metric(k, 0.0, 0, 0) for k in values]  # step 0: a stale value; the last one must win
        client.log_batch(rid, metrics=first + [Metric(k, v, 1, 1) for k, v in values.items()])
        client.set_terminated(rid, status)
        return rid

    ids: dict[Any, Any] = {"stale_dup": log("cromo", 1, {k: 0.1 for k in METRICS})}  # older than seed 1's
    for (method, seed), values in VALUES.items():
        ids[(method, seed)] = log(method, seed, values)
    ids["failed"] = log("cassle", 3, {k: 0.99 for k in METRICS}, status="FAILED")
    ids["v2"] = [log("finetune", s, {k: 0.9 + s / 100 for k in METRICS}, version="2") for s in (0, 1)]
    ids["lonely"] = log("lonely", 0, {k: 0.3 for k in METRICS})
    ids["parent"] = log("sweep", 0, {}, tags=False)
    ids["s5"] = log("finetune", 0, {"LA": 0.4}, experiment=other)
    client.set_tag(ids["s5"], "cromo.split", "s5")
    return uri, ids


@pytest.fixture(scope="module")
def board(store):
    return build_leaderboard(load_runs(store[0], ["s10"]), Settings())


def cell(board, method, metric, version="1"):
    c = board.cells
    hit = c[(c["method"] == method) & (c["metric"] == metric) & (c["benchmark_version"] == version)]
    assert len(hit) == 1
    return hit.iloc[0]


def values(method, metric):
    return [VALUES[(method, s)][metric] for s in SEEDS[method]]


def test_load_runs_one_row_per_run_with_tags_and_last_metric(store):
    uri, ids = store
    runs = load_runs(uri)
    assert len(runs) == len(VALUES) + 7
    assert set(runs["experiment"]) == {"s10", "s5"}
    row = runs.set_index("run_id").loc[ids[("er", 4)]]
    assert (row["method"], row["seed"], row["status"]) == ("er", "4", "FINISHED")
    assert row["benchmark_version"] == "1"
    assert row["LA"] == VALUES[("er", 4)]["LA"]  # the last value, not the stale step-0 one
    assert runs.set_index("run_id").loc[ids["failed"], "status"] == "FAILED"
    assert list(load_runs(uri, split="s5")["run_id"]) == [ids["s5"]]
    assert len(load_runs(uri, ["s5"])) == 1


def test_means_stds_and_n_equal_numpy(board):
    for method in SEEDS:
        for metric in METRICS:
            c = cell(board, method, metric)
            x = values(method, metric)
            assert c["n"] == 3
            assert c["mean"] == pytest.approx(np.mean(x), abs=1e-12)
            assert c["std"] == pytest.approx(np.std(x, ddof=1), abs=1e-12)


def test_p_values_equal_scipy_and_holm_is_applied(board):
    c = cell(board, "cassle", "LA")
    assert c["best_method"] == "cromo" and c["test_vs_best"] == "paired"
    assert c["p_vs_best"] == pytest.approx(st.ttest_rel(values("cassle", "LA"), values("cromo", "LA")).pvalue)
    assert c["p_vs_baseline"] == pytest.approx(
        st.ttest_rel(values("cassle", "LA"), values("finetune", "LA")).pvalue)
    f = cell(board, "finetune", "WP")  # the pair is tested once; the statistic is oriented per row
    assert f["statistic_vs_best"] == pytest.approx(
        st.ttest_rel(values("finetune", "WP"), values("cromo", "WP")).statistic)
    assert cell(board, "cromo", "WP")["statistic_vs_baseline"] == pytest.approx(-f["statistic_vs_best"])
    e = cell(board, "er", "TP")
    assert e["test_vs_baseline"] == "welch"
    assert e["p_vs_baseline"] == pytest.approx(
        st.ttest_ind(values("er", "TP"), values("finetune", "TP"), equal_var=False).pvalue)
    tested = board.cells.dropna(subset=["p_vs_best"])
    raw = pd.concat([tested["p_vs_best"], board.cells["p_vs_baseline"].dropna()])
    assert board.n_tests == len(set(raw.round(15)))  # duplicate pairs (baseline is the best) counted once
    smallest = raw.min()
    adjusted = pd.concat([tested["p_adj_vs_best"], board.cells["p_adj_vs_baseline"].dropna()])
    assert adjusted[raw == smallest].iloc[0] == pytest.approx(min(1.0, board.n_tests * smallest))


def test_dropped_runs_and_exceptions_are_reported(board, store):
    _, ids = store
    notes = "\n".join(board.notes)
    assert f"FAILED: {ids['failed'][:8]} (cassle, seed 3" in notes
    assert f"dropped 1 older run(s): {ids['stale_dup'][:8]} (cromo, seed 1" in notes
    assert cell(board, "cromo", "LA")["mean"] == pytest.approx(np.mean(values("cromo", "LA")))
    assert "without cromo.method / cromo.seed tags" in notes and ids["parent"][:8] in notes
    assert "er vs finetune" in notes and "seed sets differ" in notes and "Welch" in notes
    assert "cromo vs lonely" in notes and "n<2 (n=3 vs n=1): no test" in notes
    assert "Benchmark versions 1, 2" in notes


def test_versions_are_separate_groups(board):
    v2 = cell(board, "finetune", "LA", version="2")
    assert (v2["n"], v2["is_best"]) == (2, True)
    assert v2["mean"] == pytest.approx(0.905)
    assert cell(board, "finetune", "LA")["n"] == 3


@pytest.mark.parametrize("fmt", leaderboard.FORMATS)
def test_every_format_renders_from_the_store(store, tmp_path, fmt):
    out, plot = tmp_path / f"table.{fmt}", tmp_path / "bars.png"
    text = render_table(store[0], "s10", fmt=fmt, output=out, plot=plot if fmt == "html" else None)
    assert out.read_text(encoding="utf-8") == text
    assert "cassle" in text and "finetune" in text
    if fmt == "latex":
        assert "\\toprule" in text and "\\bottomrule" in text
    if fmt == "csv":
        frame = pd.read_csv(io.StringIO(text))
        assert {"p_vs_best", "p_adj_vs_best", "p_vs_baseline", "p_adj_vs_baseline"} <= set(frame.columns)
    if fmt == "html":
        assert "data:image/png;base64," in text
        assert plot.read_bytes()[:4] == b"\x89PNG"
    if fmt in ("terminal", "markdown"):
        assert "Welch" in text and "FAILED" in text


def test_filters_keep_the_baseline(store):
    text = render_table(store[0], split="s10", methods=["cromo"], metrics=["LA"], fmt="csv")
    assert set(pd.read_csv(io.StringIO(text))["method"]) == {"cromo", "finetune"}


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ["crom"]}, "Did you mean 'cromo'"),
    ({"metrics": ["forgetting"]}, "unknown metric 'forgetting'"),
    ({"test": "welsh"}, "unknown test"),
    ({"fmt": "pdf"}, "unknown format"),
    ({"experiment": "nope"}, "unknown experiment"),
    ({"split": "nope"}, "no runs found for split 'nope'"),
    ({"alpha": 1.5}, "--alpha"),
])
def test_user_errors(store, kwargs, message):
    with pytest.raises(CromoError, match=message):
        render_table(store[0], **kwargs)


def test_missing_store_is_a_user_error_and_is_not_created(tmp_path):
    with pytest.raises(CromoError, match="no tracking store"):
        load_runs(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_cli_table_and_ui(store, monkeypatch):
    from typer.testing import CliRunner

    from cromo_bench.cli import app

    args = ["--split", "s10", "--format", "markdown", "--metric", "LA", "--test", "welch",
            "--correction", "none"]
    result = CliRunner().invoke(app, ["table", "--tracking-uri", store[0], *args])
    assert result.exit_code == 0, result.output
    assert "| cromo " in result.output and "no multiplicity correction" in result.output
    bad = CliRunner().invoke(app, ["table", "--tracking-uri", store[0], "--format", "pdf"])
    assert bad.exit_code == 2 and "unknown format" in bad.output
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], check: bool) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert CliRunner().invoke(app, ["ui", "--tracking-uri", store[0]]).exit_code == 0
    assert calls[0][-6:] == ["--backend-store-uri", store[0], "--host", "127.0.0.1", "--port", "5000"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_html_page_in_headless_chromium(store, tmp_path):
    """Render the page in a real browser, click the LA header twice, and read the sorted DOM back."""
    page = tmp_path / "leaderboard.html"
    html = render_table(store[0], "s10", fmt="html")
    click = "<script>var h=document.querySelectorAll('th')[3];h.click();h.click();</script></body>"
    page.write_text(html.replace("</body>", click), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1400,1000"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    first_row = dom[dom.index("<tbody>"):].split("</tr>")[0]
    assert 'aria-sort="descending"' in dom
    assert "finetune" in first_row and "0.905" in first_row  # version 2's finetune has the highest LA
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={tmp_path / 'shot.png'}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert (tmp_path / "shot.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_with_other_settings_never_replace_the_benchmark_runs():
    rows = []
    for i, (seed, overrides, la) in enumerate([(0, "", 0.6), (1, "", 0.7), (0, "epochs_first=1,epochs_later=1", 0.1)]):
        rows.append({"run_id": f"r{i}", "experiment": "s10", "status": "FINISHED", "start_time": pd.Timestamp(i),
                     "run_name": "x", "method": "finetune", "ssl": "barlow", "split": "s10", "memory": "0",
                     "seed": str(seed), "benchmark_version": "1", "overrides": overrides, "LA": la})
    board = build_leaderboard(pd.DataFrame(rows), Settings(metrics=("LA",)))
    cells = board.cells.set_index("split")
    assert cells.loc["s10", "n"] == 2 and cells.loc["s10", "mean"] == pytest.approx(0.65)
    assert cells.loc["s10 [epochs_first=1,epochs_later=1]", "mean"] == pytest.approx(0.1)
    assert any("separate groups" in note for note in board.notes)
