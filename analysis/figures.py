"""Figures (matplotlib, Agg). Every function returns a Figure; :func:`save_figure` writes it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, stem: str | os.PathLike, formats=("pdf", "png")) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` atomically (temporary name, then rename)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=stem.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        out.append(target)
    return out


def plot_solution(solution, reference=None, density_floor: float = 1e-3):
    """m(t, x) and the control ν(t, x) as heatmaps, and the mean inventory.

    ``reference`` (optional): an object with ``mean_inventory(t)`` (e.g. the closed form)
    drawn against the solver's mean. The control is masked where the population density
    is below ``density_floor`` (nobody is there to use it).
    """
    g = solution.grid
    extent = (g.x_min, g.x_max, 0.0, g.T)
    density = solution.density
    control = np.tensordot(solution.weights, solution.control, axes=1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    im = axes[0].imshow(density, origin="lower", aspect="auto", extent=extent, cmap="viridis")
    axes[0].set(title="density m(t, x)", xlabel="inventory x", ylabel="time t")
    fig.colorbar(im, ax=axes[0])
    masked = np.ma.masked_where(density < density_floor, control)
    im = axes[1].imshow(masked, origin="lower", aspect="auto", extent=extent, cmap="coolwarm")
    axes[1].set(title="control ν(t, x) (shares/time)", xlabel="inventory x", ylabel="time t")
    fig.colorbar(im, ax=axes[1])
    axes[2].plot(g.t, solution.mean_inventory(), label="finite differences")
    if reference is not None:
        axes[2].plot(g.t, reference.mean_inventory(g.t), "--", label="closed form")
    axes[2].set(title="mean inventory E(t)", xlabel="time t", ylabel="E(t)")
    axes[2].legend()
    return fig


def plot_market(run):
    """Mid path with the best quotes, and the average depth profile of the book.

    ``run`` is a :class:`simulator.market.MarketRun`. Prices are in ticks; the depth
    profile is the mean over records of the lots resting d ticks behind each best quote
    (bids drawn to the left, asks to the right).
    """
    m = run.market
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    axes[0].fill_between(m["t"], m["best_bid"], m["best_ask"], step="mid", alpha=0.3, label="best bid / ask")
    axes[0].plot(m["t"], m["mid"], lw=1.2, label="mid")
    axes[0].set(title="mid price", xlabel="time t", ylabel="price (ticks)")
    axes[0].legend()
    profile = run.depth.mean(axis=0)
    d = np.arange(profile.shape[1])
    axes[1].bar(-(d + 0.5), profile[0], width=0.9, label="bids")
    axes[1].bar(d + 0.5, profile[1], width=0.9, label="asks")
    axes[1].set(title="mean depth profile", xlabel="ticks behind the best quote (bids < 0 < asks)",
                ylabel="lots")
    axes[1].legend()
    return fig
