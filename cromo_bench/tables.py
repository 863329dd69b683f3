"""Leaderboard tables: terminal, GitHub markdown, LaTeX (booktabs), CSV and a standalone HTML page.

The only module that imports tabulate. Input is a `leaderboard.Leaderboard`: one cell per (group, method,
metric). Marks: best mean per column within a group in bold; † not significantly different from that best;
↑ / ↓ significantly better / worse than the baseline. Every text format ends with the notes saying which
test, α, correction and n were used and which runs were dropped and why.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import SEPARATING_LINE, tabulate

if TYPE_CHECKING:
    from cromo_bench.leaderboard import Leaderboard

GROUP_KEYS = ("split", "ssl", "memory", "benchmark_version")
LABELS = {"split": "split", "ssl": "ssl", "memory": "memory", "benchmark_version": "version"}
TEST_TEXT = {
    "auto": "paired t-test (scipy.stats.ttest_rel) over the seeds when both methods ran the same seeds, "
            "Welch's t-test (ttest_ind, equal_var=False) otherwise",
    "paired": "paired t-test (scipy.stats.ttest_rel) over the shared seeds, Welch's t-test when fewer than 2 "
              "are shared",
    "welch": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False)",
    "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon) over the shared seeds, Welch's t-test when "
                "fewer than 2 are shared",
}
CSV_COLUMNS = ("split", "ssl", "memory", "benchmark_version", "method", "metric", "n", "mean", "std",
               "ci_low", "ci_high", "is_best", "best_method", "test_vs_best", "statistic_vs_best",
               "p_vs_best", "p_adj_vs_best", "tied_with_best", "baseline", "diff_vs_baseline",
               "test_vs_baseline", "statistic_vs_baseline", "p_vs_baseline", "p_adj_vs_baseline",
               "vs_baseline")


@dataclass(frozen=True)
class Style:
    bold: Callable[[str], str]
    best_word: str
    pm: str = " ± "
    tie: str = "†"
    up: str = "↑"
    down: str = "↓"
    alpha: str = "α"
    escape: Callable[[str], str] = str


TERMINAL = Style(lambda s: s + " *", "*")
MARKDOWN = Style(lambda s: f"**{s}**", "bold")
LATEX = Style(lambda s: f"\\textbf{{{s}}}", "bold", " $\\pm$ ", "$^\\dagger$", "$^\\uparrow$",
              "$^\\downarrow$", "$\\alpha$", lambda s: _latex_escape(s))
HTML = Style(lambda s: f"<strong>{s}</strong>", "bold", tie="<sup>†</sup>", up='<sup class="up">↑</sup>',
             down='<sup class="down">↓</sup>', escape=html.escape)
PLAIN = Style(str, "bold")  # the HTML legend, escaped as a whole


def render(board: Leaderboard, fmt: str, images: Mapping[str, bytes] | None = None) -> str:
    """The leaderboard as `fmt` (terminal, markdown, latex, csv or html); `images` are embedded in html."""
    renderers: dict[str, Callable[[Leaderboard], str]] = {
        "terminal": terminal, "markdown": markdown, "latex": latex, "csv": csv,
        "html": lambda b: html_page(b, images or {}),
    }
    return renderers[fmt](board)


def legend(board: Leaderboard, style: Style) -> list[str]:
    """The sentences every table carries: what the numbers, the marks and the tests are."""
    s = board.settings
    ci = (f"; [low, high]: {s.confidence:.0%} percentile bootstrap CI of the mean (scipy.stats.bootstrap)"
          if s.bootstrap else "")
    has_base = board.cells["baseline"].notna().any()
    base = (f"{style.up} / {style.down} = significantly better / worse than the baseline "
            f"{style.escape(s.baseline)}" if has_base else
            f"baseline {style.escape(s.baseline)} not in the table, so no baseline comparisons")
    correction = "Holm step-down correction" if s.correction == "holm" else "no multiplicity correction"
    return [
        f"Mean{style.pm}sample std (ddof=1) over n seeds (column n){ci}.",
        f"{style.best_word} = best mean per column within each (split, ssl, memory, version) group; "
        f"{style.tie} = not significantly different from that best; {base}.",
        f"Tests: {TEST_TEXT[s.test]}; two-sided, {style.alpha} = {s.alpha:g}, {correction} over the "
        f"{board.n_tests} tests of this table; no test when n < 2.",
    ]


def wide(board: Leaderboard, style: Style) -> tuple[list[str], list[list[str]], list[int], str]:
    """Headers, one row per (group, method), the row indices that start a new group, and the constant keys."""
    cells, metrics = board.cells, board.settings.metrics
    varying = [k for k in GROUP_KEYS if cells[k].nunique() > 1]
    constant = " · ".join(f"{LABELS[k]} {cells[k].iloc[0]}" for k in GROUP_KEYS if k not in varying)
    digits = {m: _digits(cells[cells["metric"] == m]["mean"]) for m in metrics}
    rows: list[list[str]] = []
    starts: list[int] = []
    previous: tuple | None = None
    for key, block in cells.groupby([*GROUP_KEYS, "method"], sort=False):
        if key[:4] != previous:
            starts.append(len(rows))
            previous = key[:4]
        by_metric = {c["metric"]: c for c in block.to_dict("records")}
        n = max(int(c["n"]) for c in by_metric.values())
        row = [style.escape(str(v)) for k, v in zip(GROUP_KEYS, key[:4], strict=True) if k in varying]
        row += [style.escape(str(key[4])), str(n)]
        row += [_cell(by_metric[m], style, digits[m], n) if m in by_metric else "–" for m in metrics]
        rows.append(row)
    headers = [LABELS[k] for k in varying] + ["method", "n"] + [style.escape(m) for m in metrics]
    return headers, rows, starts, constant


def _digits(means: pd.Series) -> int:
    largest = means.abs().max()
    return 2 if pd.notna(largest) and largest >= 1.5 else 3


def _cell(c: Mapping[str, Any], style: Style, digits: int, n_row: int) -> str:
    text = f"{c['mean']:.{digits}f}"
    if _ok(c["std"]):
        text += f"{style.pm}{c['std']:.{digits}f}"
    if _ok(c.get("ci_low")):
        text += f" [{c['ci_low']:.{digits}f}, {c['ci_high']:.{digits}f}]"
    text = style.bold(text) if c["is_best"] else text
    text += style.tie if c["tied_with_best"] else ""
    text += {1: style.up, -1: style.down}.get(int(c["vs_baseline"]), "")
    return text + (f" (n={int(c['n'])})" if int(c["n"]) != n_row else "")


def _ok(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _wrap(lines: list[str], width: int = 110) -> str:
    return "\n".join(textwrap.fill(line, width, initial_indent="- ", subsequent_indent="  ")
                     for line in lines)


def terminal(board: Leaderboard) -> str:
    headers, rows, starts, constant = wide(board, TERMINAL)
    body: list[Any] = []
    for i, row in enumerate(rows):
        if i in starts and i > 0:
            body.append(SEPARATING_LINE)
        body.append(row)
    table = tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
    head = f"{constant}\n\n" if constant else ""
    return f"{head}{table}\n\n{_wrap(legend(board, TERMINAL) + list(board.notes))}\n"


def markdown(board: Leaderboard) -> str:
    headers, rows, _, constant = wide(board, MARKDOWN)
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    head = f"*{constant}*\n\n" if constant else ""
    notes = "\n".join(f"- {line}" for line in legend(board, MARKDOWN) + list(board.notes))
    return f"{head}{table}\n\n{notes}\n"


def latex(board: Leaderboard) -> str:
    headers, rows, starts, constant = wide(board, LATEX)
    n_keys = len(headers) - len(board.settings.metrics)
    lines = ["% cromo-bench leaderboard; needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{_caption(constant)}{' '.join(legend(board, LATEX))}}}",
             "\\label{tab:cromo-leaderboard}",
             f"\\begin{{tabular}}{{{'l' * (n_keys - 1)}r{'c' * len(board.settings.metrics)}}}",
             "\\toprule", " & ".join(headers) + " \\\\", "\\midrule"]
    for i, row in enumerate(rows):
        if i in starts and i > 0:
            lines.append("\\midrule")
        lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {note}" for note in board.notes]
    return "\n".join(lines + ["\\end{table}"]) + "\n"


def _caption(constant: str) -> str:
    return f"{_latex_escape(constant.replace(' · ', ', ').capitalize())}. " if constant else ""


def _latex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(ch, ch) for ch in text)


def csv(board: Leaderboard) -> str:
    """One row per (group, method, metric) with raw and adjusted p-values; the settings come last."""
    cells = board.cells.reindex(columns=list(CSV_COLUMNS))
    s = board.settings
    cells = cells.assign(test=s.test, alpha=s.alpha, correction=s.correction, n_tests=board.n_tests)
    return str(cells.to_csv(index=False))


# --- the standalone HTML page -----------------------------------------------------------------------------

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.35rem .7rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f4f4f7;cursor:pointer;user-select:none;position:sticky;top:0}
th:after{content:' \\2195';color:#aaa}th[aria-sort=ascending]:after{content:' \\2191';color:#222}
th[aria-sort=descending]:after{content:' \\2193';color:#222}
td.k,th.k{text-align:left}tr:hover td{background:#fafaf0}.tie{color:#0a58ca}
sup{line-height:0}.up{color:#198754}.down{color:#dc3545}
.notes li{margin:.2rem 0}img{max-width:100%;border:1px solid #eee}details{margin:1rem 0}"""
JS = """document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
var asc=th.getAttribute('aria-sort')!=='ascending';
t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
th.setAttribute('aria-sort',asc?'ascending':'descending');var b=t.tBodies[0];
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){
var a=x.cells[i].dataset.sort,c=y.cells[i].dataset.sort,na=parseFloat(a),nc=parseFloat(c);
var r=(!isNaN(na)&&!isNaN(nc))?na-nc:(isNaN(na)?1:0)-(isNaN(nc)?1:0)||String(a).localeCompare(String(c));
return asc?r:-r});rows.forEach(function(r){b.appendChild(r)})})})});"""


def html_page(board: Leaderboard, images: Mapping[str, bytes]) -> str:
    """A self-contained page: the sortable leaderboard, the sortable list of tests, plots, notes."""
    headers, rows, _, constant = wide(board, HTML)
    n_text = len(headers) - len(board.settings.metrics) - 1  # group keys and method; then n and metrics
    body = "".join(_tr(row, keys, n_text) for row, keys in zip(rows, _sort_keys(board), strict=True))
    head = "".join(f'<th class="k">{h}</th>' if j < n_text else f"<th>{h}</th>"
                   for j, h in enumerate(headers))
    figures = "".join(f"<h2>{html.escape(t)}</h2><img alt=\"{html.escape(t)}\" "
                      f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">"
                      for t, png in images.items())
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend(board, PLAIN) + list(board.notes))
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>cromo-bench leaderboard"
            f"</title><style>{CSS}</style></head><body><h1>cromo-bench leaderboard</h1>"
            f"<p class=\"sub\">{html.escape(constant)}{_stamp()}</p>"
            f"<table class=\"sortable\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<ul class=\"notes\">{notes}</ul>{figures}"
            f"<details><summary>All {board.n_tests} tests</summary>{_tests_table(board)}</details>"
            f"<script>{JS}</script></body></html>\n")


def _stamp() -> str:
    from cromo_bench import __version__

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f" · generated {now} by cromo-bench {__version__}"


def _tr(row: list[str], keys: list[Any], n_text: int) -> str:
    cells = "".join(_td(v, k, j < n_text) for j, (v, k) in enumerate(zip(row, keys, strict=True)))
    return f"<tr>{cells}</tr>"


def _td(value: str, key: Any, is_key: bool) -> str:
    klass = ' class="k"' if is_key else (' class="tie"' if "†" in value else "")
    return f'<td{klass} data-sort="{html.escape(str(key))}">{value}</td>'


def _sort_keys(board: Leaderboard) -> list[list[Any]]:
    """Per row: the key cells' text, then each metric's mean (sorting is numeric on the mean)."""
    keys = []
    varying = [k for k in GROUP_KEYS if board.cells[k].nunique() > 1]
    for _, block in board.cells.groupby([*GROUP_KEYS, "method"], sort=False):
        means = dict(zip(block["metric"], block["mean"], strict=True))
        first = block.iloc[0]
        keys.append([first[k] for k in varying] + [first["method"], int(block["n"].max())]
                    + [means.get(m, "") for m in board.settings.metrics])
    return keys


def _tests_table(board: Leaderboard) -> str:
    cols = ["split", "ssl", "memory", "benchmark_version", "metric", "method", "best_method",
            "test_vs_best", "p_vs_best", "p_adj_vs_best", "baseline", "test_vs_baseline", "p_vs_baseline",
            "p_adj_vs_baseline"]
    cells = board.cells.reindex(columns=cols)
    head = "".join(f'<th class="k">{html.escape(c)}</th>' for c in cols)
    rows = "".join("<tr>" + "".join(_td(_fmt(v), v if _ok(v) else "", True) for v in r) + "</tr>"
                   for r in cells.itertuples(index=False))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _fmt(value: Any) -> str:
    if not _ok(value):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))
