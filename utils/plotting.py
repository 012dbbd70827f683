"""One plotting style for the course, with a colour-blind-safe palette (Okabe & Ito 2008)."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def use_style() -> None:
    """Course style: Okabe-Ito colours, light grid, white background (readable in dark mode)."""
    mpl.rcParams.update(
        {
            "axes.prop_cycle": mpl.cycler(color=OKABE_ITO),
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "image.cmap": "viridis",
        }
    )


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def show_images(
    images: torch.Tensor | np.ndarray, ncols: int = 8, titles: Sequence[str] | None = None,
    cmap: str = "gray_r", size: float = 1.0,
) -> plt.Figure:
    """A grid of images (N, H, W) or (N, 1, H, W), one subplot each, optional titles."""
    imgs = _numpy(images)
    if imgs.ndim == 4:
        imgs = imgs[:, 0] if imgs.shape[1] == 1 else imgs.transpose(0, 2, 3, 1)
    n = len(imgs)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(imgs[i], cmap=cmap)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_history(history: dict[str, list[float]], keys: Sequence[str] = ("loss",), ax: plt.Axes | None = None,
                 logy: bool = False) -> plt.Axes:
    """Curves of history[key] against epoch, one per key."""
    ax = ax or plt.subplots()[1]
    for key in keys:
        ax.plot(history["epoch"], history[key], marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax


def heatmap(matrix: torch.Tensor | np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
            ax: plt.Axes | None = None, annotate: bool = True, cmap: str = "RdBu_r",
            vmin: float | None = None, vmax: float | None = None, fmt: str = "{:.2f}") -> plt.Axes:
    """A labelled matrix; values written in the cells when annotate is True."""
    m = _numpy(matrix)
    ax = ax or plt.subplots(figsize=(0.55 * len(col_labels) + 2, 0.45 * len(row_labels) + 1))[1]
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.grid(False)
    if annotate:
        lo, hi = im.get_clim()
        for (i, j), v in np.ndenumerate(m):
            dark = abs(v - (lo + hi) / 2) > 0.3 * (hi - lo)
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def scatter_2d(points: torch.Tensor | np.ndarray, groups: Sequence[str] | None = None,
               texts: Sequence[str] | None = None, ax: plt.Axes | None = None, s: float = 25) -> plt.Axes:
    """Points (N, 2) coloured by group, each optionally labelled with a text."""
    p = _numpy(points)
    ax = ax or plt.subplots()[1]
    groups = list(groups) if groups is not None else ["" for _ in range(len(p))]
    markers = "osD^vP*X"
    for k, g in enumerate(dict.fromkeys(groups)):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        ax.scatter(p[idx, 0], p[idx, 1], s=s, color=OKABE_ITO[k % len(OKABE_ITO)],
                   marker=markers[k % len(markers)], label=g or None, alpha=0.85)
    if texts is not None:
        for (x, y), t in zip(p, texts):
            ax.annotate(t, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=8)
    if any(groups):
        ax.legend(fontsize=8, loc="best")
    return ax
