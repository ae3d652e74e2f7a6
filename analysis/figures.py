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


def plot_convergence(n, values, fit, *, metric: str, reference_slope: float | None = None, bias_fit=None):
    """Metric against N (log–log): every run, the seed means, the fitted line and a reference slope.

    ``fit`` is a :class:`analysis.convergence.PowerFit`; ``bias_fit`` (optional) a
    :class:`analysis.convergence.BiasFit` drawn as b + C N^-r.
    """
    n = np.asarray(n, dtype=float)
    values = np.asarray(values, dtype=float)
    ns = np.asarray(fit.n_values, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    ax.loglog(n, values, ".", alpha=0.35, color="0.4", label="runs")
    ax.loglog(ns, fit.means, "o", color="C0", label="mean over seeds")
    line = np.exp(fit.intercept) * ns**fit.slope
    ax.loglog(ns, line, "-", color="C0",
              label=f"fit: slope {fit.slope:.3f} [{fit.slope_ci[0]:.3f}, {fit.slope_ci[1]:.3f}]")
    if reference_slope is not None:
        ref = fit.means[0] * (ns / ns[0]) ** reference_slope
        ax.loglog(ns, ref, "--", color="C3", label=f"reference slope {reference_slope:g}")
    if bias_fit is not None:
        ax.loglog(ns, bias_fit.bias + bias_fit.scale * ns**-bias_fit.rate, ":", color="C2",
                  label=f"b + C N^-r: b={bias_fit.bias:.3g}, r={bias_fit.rate:.2f}")
    ax.set(xlabel="N (agents)", ylabel=metric, title=f"{metric} against N")
    ax.legend(fontsize=8)
    return fig


def plot_inventory_paths(t, mean_paths, reference=None):
    """Mean inventory over time: the mean over runs with a ±2 s.d. band, and E(t).

    ``mean_paths``: (runs, times) each run's mean inventory across its agents.
    """
    mean_paths = np.asarray(mean_paths, dtype=float)
    centre = mean_paths.mean(axis=0)
    sd = mean_paths.std(axis=0)
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    ax.fill_between(t, centre - 2 * sd, centre + 2 * sd, alpha=0.3, label="±2 s.d. across runs")
    ax.plot(t, centre, label=f"mean over {mean_paths.shape[0]} runs")
    if reference is not None:
        ax.plot(t, reference, "--", color="k", label="mean field E(t)")
    ax.set(xlabel="time t", ylabel="mean inventory", title="mean inventory paths")
    ax.legend()
    return fig


def plot_law_vs_histogram(times, samples_by_time, laws, bins: int = 40):
    """m(t, ·) against the agents' empirical histogram at a few times (one panel each)."""
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.6), constrained_layout=True,
                             squeeze=False)
    for ax, t, x, law in zip(axes[0], times, samples_by_time, laws):
        x = np.asarray(x, dtype=float)
        ax.hist(x, bins=bins, density=True, alpha=0.5, label=f"{x.size} agents")
        pad = 4 * max(np.sqrt(law.variance), 1e-3)
        grid = np.linspace(min(x.min(), law.mean - pad), max(x.max(), law.mean + pad), 400)
        ax.plot(grid, law.pdf(grid), "k-", label="m(t, x)")
        ax.set(title=f"t = {t:.2f}", xlabel="inventory x")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    return fig


def plot_market_table(market):
    """Mid price with the best quotes, and the depth at the best quotes, from a market table."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    t = np.asarray(market["t"])
    axes[0].fill_between(t, market["best_bid"], market["best_ask"], step="mid", alpha=0.3, label="best bid / ask")
    axes[0].plot(t, market["mid"], label="mid")
    axes[0].set(title="mid price", xlabel="time t", ylabel="price (ticks)")
    axes[0].legend()
    axes[1].plot(t, market["bid_depth"], label="bid depth at best")
    axes[1].plot(t, market["ask_depth"], label="ask depth at best")
    axes[1].set(title="depth at the best quotes", xlabel="time t", ylabel="lots")
    axes[1].legend()
    return fig
