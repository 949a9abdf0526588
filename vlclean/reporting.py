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


def line_plot(
    frame: pd.DataFrame, *, x: str, ys: list[str], facet: str | None = None, csv_path: str | Path,
    png_path: str | Path, title: str,
) -> None:
    """Write ``frame`` as DVC plot data and a PNG of ``ys`` against ``x`` (one panel per ``facet``)."""
    write_csv(csv_path, frame)
    plt = _pyplot()
    groups = list(frame.groupby(facet, sort=False)) if facet else [(None, frame)]
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5.5 * max(1, len(groups)), 4), squeeze=False)
    for ax, (name, g) in zip(axes[0], groups):
        for y in ys:
            ax.plot(g[x], g[y], marker="o", markersize=3, label=y)
        ax.set_xlabel(str(name) if name is not None else x)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, png_path)


def distance_histogram_plot(pairs: pd.DataFrame, *, csv_path: str | Path, png_path: str | Path) -> None:
    """Distances of found pairs per method (pHash bits for perceptual/exact, 1 - cosine for embedding)."""
    import numpy as np

    rows = []
    for tier, g in pairs.groupby("tier"):
        values = g["distance"].astype(float).to_numpy()
        counts, edges = np.histogram(values, bins=10, range=(0.0, max(1.0, float(values.max(initial=0.0)))))
        rows.extend((tier, round(float(a), 4), int(c)) for a, c in zip(edges[:-1], counts))
    frame = pd.DataFrame(rows, columns=["tier", "distance", "pairs"])
    write_csv(csv_path, frame)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for tier, g in pairs.groupby("tier"):
        ax.hist(g["distance"].astype(float), bins=20, alpha=0.6, label=f"{tier} ({len(g)})")
    ax.set_xlabel("distance (pHash bits; 1 - cosine for embedding-only pairs)")
    ax.set_ylabel("test-train pairs")
    ax.set_title("Distances of the leak pairs found")
    if len(pairs):
        ax.legend()
    fig.tight_layout()
    save_figure(fig, png_path)


def confusion_heatmap(confusion: pd.DataFrame, class_names: list[str], png_path: str | Path, title: str, *,
                      xlabel: str = "predicted", ylabel: str = "actual") -> None:
    """A counts heatmap of actual (rows) x predicted (columns), annotated when the classes are few."""
    import numpy as np

    plt = _pyplot()
    table = pd.crosstab(pd.Categorical(confusion["actual"], class_names),
                        pd.Categorical(confusion["predicted"], class_names), dropna=False).to_numpy()
    side = min(24.0, max(5.0, 0.45 * len(class_names)))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(table, cmap="Blues")
    if len(class_names) <= 30:
        ax.set_xticks(range(len(class_names)), class_names, rotation=90)
        ax.set_yticks(range(len(class_names)), class_names)
        for (i, j), v in np.ndenumerate(table):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > table.max() / 2 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, png_path)
