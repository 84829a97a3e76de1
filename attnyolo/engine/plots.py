"""Evaluation plots (matplotlib, no screen needed), each written atomically."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnyolo.utils import atomic_path  # noqa: E402


def save_figure(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_pr_curve(recall, precision, ap: float, class_name: str, path: Path) -> Path:
    """Precision against recall for one class, titled with its AP."""
    figure, axes = plt.subplots(figsize=(5, 4))
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
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.3 * len(order) + 1)))
    shown = [values[i] * (100 if percent else 1) for i in order]
    axes.barh([names[i] for i in order], shown, color="tab:blue")
    for y, value in enumerate(shown):
        axes.text(value, y, f" {value:.2f}" if percent else f" {value:g}", va="center", fontsize=8)
    axes.set(title=title, xlabel=xlabel)
    if percent:
        axes.set_xlim(0, 105)
    return save_figure(figure, path)
