"""Evaluation plots (matplotlib, no screen needed), each written atomically.

Figures are `matplotlib.figure.Figure` objects drawn straight to files: pyplot is never used,
so the process's matplotlib backend (a notebook's inline one, say) is left as it is and no
figure is kept open.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from attnyolo.utils import atomic_path


def subplots(*grid: int, **figure_options):
    """`(figure, axes)` as `pyplot.subplots` gives them, on a figure of its own."""
    figure = Figure(**figure_options)
    return figure, figure.subplots(*grid)


def save_figure(figure, path: Path, dpi: int = 100, tight: bool = True) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
    return path


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_pr_curve(recall, precision, ap: float, class_name: str, path: Path) -> Path:
    """Precision against recall for one class, titled with its AP."""
    figure, axes = subplots(figsize=(5, 4))
    if len(recall):
        axes.plot(recall, precision, color="tab:blue")
        axes.fill_between(recall, precision, alpha=0.2, color="tab:blue")
    axes.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    axes.set_title(f"{class_name}: AP {'n/a' if math.isnan(ap) else f'{ap * 100:.2f}%'}")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_bars(
    names: Sequence[str],
    values: Sequence[float],
    title: str,
    xlabel: str,
    path: Path,
    percent: bool = False,
) -> Path:
    """A horizontal bar chart, largest value on top, each bar labelled with its value."""
    order = sorted(range(len(names)), key=lambda i: (math.isnan(values[i]), values[i]))
    order = [i for i in order if not math.isnan(values[i])]
    figure, axes = subplots(figsize=(7, max(2.5, 0.3 * len(order) + 1)))
    shown = [values[i] * (100 if percent else 1) for i in order]
    axes.barh([names[i] for i in order], shown, color="tab:blue")
    for y, value in enumerate(shown):
        axes.text(value, y, f" {value:.2f}" if percent else f" {value:g}", va="center", fontsize=8)
    axes.set(title=title, xlabel=xlabel)
    if percent:
        axes.set_xlim(0, 105)
    return save_figure(figure, path)
