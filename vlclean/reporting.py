"""Plots as DVC plot data (CSV) plus a real PNG rendered with matplotlib, written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlclean.storage import atomic_path, write_csv


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plot(
    frame: pd.DataFrame, *, x: str, y: str, hue: str | None = None, csv_path: str | Path, png_path: str | Path,
    title: str, xlabel: str | None = None, ylabel: str | None = None, horizontal: bool = False,
) -> None:
    """Write ``frame`` as DVC plot data and a (grouped) bar chart PNG of ``y`` per ``x``."""
    write_csv(csv_path, frame)
    plt = _pyplot()
    table = frame.pivot_table(index=x, columns=hue, values=y, aggfunc="sum", sort=False) if hue else frame.set_index(x)[[y]]
    height = max(3.0, 0.25 * len(table)) if horizontal else 4.0
    width = 8.0 if horizontal else max(6.0, 0.35 * len(table) * max(1, table.shape[1]))
    fig, ax = plt.subplots(figsize=(min(width, 24.0), min(height, 24.0)))
    table.plot(kind="barh" if horizontal else "bar", ax=ax, legend=hue is not None)
    ax.set_title(title)
    ax.set_xlabel(xlabel or (y if horizontal else x))
    ax.set_ylabel(ylabel or (x if horizontal else y))
    fig.tight_layout()
    save_figure(fig, png_path)


def save_figure(fig, png_path: str | Path) -> None:
    plt = _pyplot()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
