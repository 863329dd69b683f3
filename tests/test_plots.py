"""plots.py writes real PNGs for the accuracy matrix, the task curves and the method bars."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.image import imread

from cromo_bench import plots

# as train.py logs it: None above the diagonal
R: list[list[float | None]] = [[0.9, None, None], [0.7, 0.85, None], [0.6, 0.65, 0.8]]


def png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_to_matrix_pads_ragged_rows_with_nan():
    M = plots.to_matrix([[0.9], [0.7, 0.85], [0.6, None, 0.8]])
    assert M.shape == (3, 3)
    assert M[2, 0] == 0.6 and M[1, 1] == 0.85
    assert math.isnan(M[0, 1]) and math.isnan(M[2, 1])


def test_accuracy_matrix_heatmap(tmp_path):
    out = plots.plot_accuracy_matrix(R, tmp_path / "sub" / "R.png", title="finetune")
    image = png(out)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_task_curves(tmp_path):
    image = png(plots.plot_task_curves(np.array(R, dtype=float), tmp_path / "curves.png"))
    assert image.shape[1] > image.shape[0]  # a wide figure


def test_method_bars_one_panel_per_group(tmp_path):
    cells = pd.DataFrame([
        {"split": "s10", "ssl": ssl, "memory": "0", "benchmark_version": "1", "method": m, "metric": k,
         "mean": 0.5 + 0.1 * i, "std": 0.01 if m != "solo" else math.nan}
        for ssl in ("barlow", "simclr")
        for i, m in enumerate(("finetune", "cromo", "solo"))
        for k in ("LA", "WP")
    ])
    two = png(plots.plot_method_bars(cells, tmp_path / "two.png"))
    one = png(plots.plot_method_bars(cells[cells["ssl"] == "barlow"], tmp_path / "one.png", ["LA"]))
    assert two.shape[1] > one.shape[1]
    assert plots.method_bars_png(cells)[:4] == b"\x89PNG"
