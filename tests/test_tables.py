"""Every output format renders, with the marks and notes, from a synthetic run frame (no MLflow needed)."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from cromo_bench import tables
from cromo_bench.leaderboard import Settings, build_leaderboard
from cromo_bench.tracking import RUN_COLUMNS

# LA per seed: cromo is clearly best; cassle_plus is close to it (not significantly different); finetune low.
LA = {
    "cromo": [0.700, 0.710, 0.690, 0.705],
    "cassle_plus": [0.695, 0.712, 0.684, 0.699],
    "finetune": [0.500, 0.520, 0.480, 0.515],
}


def runs_frame(extra: list[dict] | None = None) -> pd.DataFrame:
    rows: list[dict] = []
    for method, values in LA.items():
        for seed, la in enumerate(values):
            rows.append({"run_id": f"{method}-{seed}".ljust(32, "0"), "experiment": "s10",
                         "status": "FINISHED",
                         "start_time": pd.Timestamp(1000 + len(rows), unit="s", tz="UTC"), "run_name": method,
                         "method": method, "ssl": "barlow", "split": "s10", "memory": "0", "seed": str(seed),
                         "benchmark_version": "1", "LA": la, "TP": la + 0.05 + 0.01 * seed, "WP": la - 0.1})
    rows += extra or []
    return pd.DataFrame(rows).reindex(columns=[*RUN_COLUMNS, "LA", "TP", "WP"])


@pytest.fixture(scope="module")
def board():
    return build_leaderboard(runs_frame(), Settings(bootstrap=True))


def cell(board, method: str, metric: str = "LA") -> pd.Series:
    c = board.cells
    return c[(c["method"] == method) & (c["metric"] == metric)].iloc[0]


def test_marks_best_tie_and_baseline(board):
    assert cell(board, "cromo")["is_best"]
    assert cell(board, "cassle_plus")["tied_with_best"]
    assert not cell(board, "finetune")["tied_with_best"]
    assert cell(board, "cromo")["vs_baseline"] == 1
    assert list(dict.fromkeys(board.cells["method"])) == ["cromo", "cassle_plus", "finetune"]


def test_terminal(board):
    text = tables.render(board, "terminal")
    row = next(line for line in text.splitlines() if line.startswith("cassle_plus"))
    assert "†" in row and "*" not in row
    assert re.search(r"cromo\s+4\s+0\.701 ± 0\.009 \[[0-9.]+, [0-9.]+\] \*↑", text)
    assert "split s10 · ssl barlow · memory 0 · version 1" in text
    assert "Holm step-down correction over the" in text and "α = 0.05" in text


def test_markdown(board):
    text = tables.render(board, "markdown")
    assert "| method " in text and "|---" in text
    assert "**0.701 ± 0.009" in text
    assert "- Tests: paired t-test" in text


def test_latex_is_booktabs_and_escaped(board):
    text = tables.render(board, "latex")
    bold = "\\textbf{0.701 $\\pm$ 0.009"
    for command in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}", bold):
        assert command in text
    assert "cassle\\_plus" in text and "cassle_plus" not in text
    assert "$^\\dagger$" in text and "$\\alpha$ = 0.05" in text
    body = text[text.index("\\midrule"):text.index("\\bottomrule")]
    assert all(line.count("&") == 4 for line in body.splitlines() if line.endswith("\\\\"))


def test_csv_parses_with_p_values(board):
    frame = pd.read_csv(io.StringIO(tables.render(board, "csv")))
    assert len(frame) == 3 * 3  # methods x metrics
    for column in ("p_vs_best", "p_adj_vs_best", "p_vs_baseline", "p_adj_vs_baseline", "test_vs_best",
                   "ci_low", "alpha", "correction"):
        assert column in frame.columns
    tested = frame.dropna(subset=["p_vs_baseline"])
    assert len(tested) == 2 * 3
    assert (tested["p_adj_vs_baseline"] >= tested["p_vs_baseline"]).all()
    assert set(frame["n_tests"]) == {board.n_tests}


def test_html_is_self_contained_and_sortable(board):
    page = tables.render(board, "html", {"bars": b"\x89PNG fake"})
    assert page.startswith("<!doctype html>")
    assert '<table class="sortable">' in page and "<script>" in page and "aria-sort" in page
    assert "data:image/png;base64,iVBORyBmYWtl" in page
    assert not re.search(r"(src|href)=\"https?:", page)
    assert "<strong>0.701 ± 0.009" in page and 'data-sort="0.70' in page


def test_names_are_escaped_in_html_and_latex():
    extra = [{"run_id": f"x{s}", "experiment": "s10", "status": "FINISHED",
              "start_time": pd.Timestamp(5000 + s, unit="s", tz="UTC"), "run_name": "x", "method": "<b>&_x",
              "ssl": "barlow", "split": "s10", "memory": "0", "seed": str(s), "benchmark_version": "1",
              "LA": 0.3 + s / 100, "TP": 0.3, "WP": 0.3} for s in range(2)]
    board = build_leaderboard(runs_frame(extra), Settings())
    assert "&lt;b&gt;&amp;_x" in tables.render(board, "html")
    assert "<b>\\&\\_x" in tables.render(board, "latex")


def test_missing_baseline_is_stated():
    board = build_leaderboard(runs_frame(), Settings(baseline="er"))
    assert board.cells["p_vs_baseline"].isna().all()
    assert "baseline er not in the table" in tables.render(board, "markdown")
