"""Figures (matplotlib, Agg). Every function returns a Figure; :func:`save_figure` writes it."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mfg.io import atomic_write  # noqa: E402
from mfg.learning import loglog_slope  # noqa: E402


def interval_bars(value, lo, hi) -> np.ndarray:
    """Error-bar lengths below and above ``value`` for an interval [lo, hi].

    A bootstrap interval need not hold its point estimate (a basic interval for a maximum,
    a percentile one for a skewed statistic): the bar on the far side is then drawn as 0.

    Parameters
    ----------
    value, lo, hi : array_like

    Returns
    -------
    numpy.ndarray of float64, shape (2, n)
    """
    value, lo, hi = (np.asarray(x, dtype=np.float64) for x in (value, lo, hi))
    return np.maximum(np.stack([value - lo, hi - value]), 0.0)


def save_figure(fig, stem: str | os.PathLike, formats=("pdf", "png"), close: bool = True) -> list[Path]:
    """Write the figure atomically in each format (temporary name, then rename).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    stem : str or os.PathLike
        The path without its suffix; parent folders are created.
    formats : sequence of str
        File suffixes (matplotlib formats).
    close : bool
        Close the figure afterwards (pyplot keeps figures alive otherwise).

    Returns
    -------
    list of pathlib.Path
        The files written, one per format.
    """
    stem = Path(stem)
    out = [atomic_write(stem.with_suffix(f".{fmt}"),
                        lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
           for fmt in formats]
    if close:
        plt.close(fig)
    return out


def plot_solution(solution, reference=None, density_floor: float = 1e-3):
    """m(t, x) and the control ν(t, x) as heatmaps, and the mean inventory.

    Parameters
    ----------
    solution : mfg.fd.MFGSolution
    reference : object, optional
        Anything with ``mean_inventory(t)`` (e.g. the closed form), drawn against the solver's mean.
    density_floor : float
        The control is masked where the population density is below this (per share):
        nobody is there to use it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    g = solution.grid
    extent = (g.x_min, g.x_max, 0.0, g.T)
    density = solution.density
    control = np.tensordot(solution.weights, solution.control, axes=1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    im = axes[0].imshow(density, origin="lower", aspect="auto", extent=extent, cmap="viridis")
    axes[0].set(title="density m(t, x)", xlabel="inventory x", ylabel="time t")
    fig.colorbar(im, ax=axes[0], label="m (1/inventory)")
    masked = np.ma.masked_where(density < density_floor, control)
    # a diverging map centred at 0: buying and selling read apart at a glance
    span = float(np.max(np.abs(masked))) if masked.count() else 1.0
    im = axes[1].imshow(masked, origin="lower", aspect="auto", extent=extent, cmap="coolwarm",
                        vmin=-span, vmax=span)
    axes[1].set(title=f"control ν(t, x) where m >= {density_floor:g}", xlabel="inventory x", ylabel="time t")
    fig.colorbar(im, ax=axes[1], label="ν (shares/time; > 0 buys)")
    axes[2].plot(g.t, solution.mean_inventory(), label="finite differences")
    if reference is not None:
        axes[2].plot(g.t, reference.mean_inventory(g.t), "--", label="closed form")
    axes[2].set(title="mean inventory E(t)", xlabel="time t", ylabel="E(t)")
    axes[2].legend()
    return fig


def _price_panel(ax, market) -> None:
    """Mid price and the best quotes (ticks) against time. Quotes are step lines: each
    record holds until the next one."""
    ax.step(market["t"], market["mid"], where="post", lw=1.2, label="mid")
    ax.step(market["t"], market["best_bid"], where="post", lw=0.9, label="best bid")
    ax.step(market["t"], market["best_ask"], where="post", lw=0.9, label="best ask")
    ax.set(title="mid price and best quotes", xlabel="time t", ylabel="price (ticks)")
    ax.legend()


def plot_market(run):
    """Mid path with the best quotes, and the average depth profile of the book.

    Prices are in ticks; the depth profile is the mean over records of the lots resting d
    ticks behind each best quote (bids drawn to the left, asks to the right).

    Parameters
    ----------
    run : simulator.market.MarketRun

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    fig.suptitle(f"the book (N={run.spec.n_agents}, seed {run.seed})")
    _price_panel(axes[0], run.market)
    profile = run.depth.mean(axis=0)
    d = np.arange(profile.shape[1])
    axes[1].bar(-(d + 0.5), profile[0], width=0.9, label="bids")
    axes[1].bar(d + 0.5, profile[1], width=0.9, label="asks")
    axes[1].set(title="mean depth profile", xlabel="ticks behind the best quote (bids < 0 < asks)",
                ylabel="lots")
    axes[1].legend()
    return fig


def plot_convergence(n, values, fit, *, metric: str, reference_slope: float | None = None, bias_fit=None,
                     floor: float | None = None):
    """Metric against N (log–log): every run, the seed means, the fitted line and a reference slope.

    Parameters
    ----------
    n : array_like of int
        N of each run.
    values : array_like of float
        The metric of each run.
    fit : analysis.convergence.PowerFit
    metric : str
        The metric's name (axis label).
    reference_slope : float, optional
        A guide line's slope (e.g. -0.5).
    bias_fit : analysis.convergence.BiasFit, optional
        Drawn as b + C N^-r.
    floor : float, optional
        A level the metric cannot go below (the book's lattice floor of KS), drawn flat.

    Returns
    -------
    matplotlib.figure.Figure
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
    if floor is not None:
        ax.axhline(floor, ls="--", color="C1", label=f"lattice floor {floor:.3g}")
    ax.set(xlabel="N (agents)", ylabel=metric, title=f"{metric} against N")
    ax.legend(fontsize=8)
    return fig


def plot_fill_sensitivity(sensitivity, model_slope: float, source: str = ""):
    """A maker's fill rate against its quote relative to the others' (log scale).

    The binned book (Poisson ±1 s.d.), the fitted exp(a - b x) and the model's slope k + ε
    through the same level.

    Parameters
    ----------
    sensitivity : analysis.impact.FillSensitivity
    model_slope : float
        k + ε of the model (per tick).
    source : str
        What the data are, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = sensitivity
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    err = s.fill_rate / np.sqrt(np.maximum(s.fills, 1))  # a Poisson count's relative s.d. is 1/√count
    ax.errorbar(s.relative_quote, s.fill_rate, yerr=err, fmt="o", color="C0", label="book (binned maker-steps)")
    x = np.linspace(s.relative_quote.min(), s.relative_quote.max(), 50) if s.relative_quote.size else np.zeros(0)
    ax.plot(x, s.rate_at_mean * np.exp(-s.slope * x), "-", color="C0",
            label=f"fit: b = {s.slope:.3f} ± {s.slope_se:.3f} per tick")
    ax.plot(x, s.rate_at_mean * np.exp(-model_slope * x), "--", color="C3", label=f"model: k + ε = {model_slope:.3f}")
    ax.set_yscale("log")
    ax.set(xlabel="quote distance minus the makers' mean (ticks)", ylabel="fills per maker and unit time",
           title="fills against the relative quote" + (f" ({source})" if source else ""))
    ax.legend(fontsize=8)
    return fig


def plot_inventory_paths(t, mean_paths, reference=None, source: str = ""):
    """Mean inventory over time: the mean over runs with a ±2 s.d. band, and E(t).

    Parameters
    ----------
    t : numpy.ndarray of float64
        Record times (time units).
    mean_paths : numpy.ndarray of float64, shape (runs, len(t))
        Each run's mean inventory across its agents (model units).
    reference : numpy.ndarray of float64, optional
        The mean field's E(t).
    source : str
        What the runs are (e.g. "N=1000, 12 seeds"), for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    mean_paths = np.asarray(mean_paths, dtype=float)
    centre = mean_paths.mean(axis=0)
    sd = mean_paths.std(axis=0)
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    ax.fill_between(t, centre - 2 * sd, centre + 2 * sd, alpha=0.3, label="±2 s.d. across runs")
    ax.plot(t, centre, label=f"mean over {mean_paths.shape[0]} runs")
    if reference is not None:
        ax.plot(t, reference, "--", color="k", label="mean field E(t)")
    ax.set(xlabel="time t", ylabel="mean inventory",
           title="mean inventory paths" + (f" ({source})" if source else ""))
    ax.legend()
    return fig


def histogram_edges(samples_by_time, bins: int, lattice: float | None = None) -> np.ndarray:
    """Common bin edges for samples at several times.

    ``bins`` equal bins, or, when the values live on a lattice (inventories of ``1/L`` in the
    book), edges half-way between lattice points with a whole number of points per bin, so
    that no bin catches an extra point.

    Parameters
    ----------
    samples_by_time : sequence of numpy.ndarray
        Samples (state units) at each time.
    bins : int
        Number of bins wanted.
    lattice : float, optional
        Spacing of the values (state units).

    Returns
    -------
    numpy.ndarray of float64
        Bin edges (state units).
    """
    lo = min(float(np.min(x)) for x in samples_by_time)
    hi = max(float(np.max(x)) for x in samples_by_time)
    if lattice is None:
        pad = 0.05 * (hi - lo + 1e-9)
        return np.linspace(lo - pad, hi + pad, bins + 1)
    first, last = round(lo / lattice), round(hi / lattice)
    per_bin = max(1, -(-(last - first + 1) // bins))  # ceil
    count = -(-(last - first + 1) // per_bin)
    return (first - 0.5 + per_bin * np.arange(count + 1)) * lattice


def plot_law_vs_histogram(times, samples_by_time, laws, bins: int = 40, lattice: float | None = None,
                          source: str = ""):
    """m(t, ·) against the agents' empirical histogram at a few times (one panel each).

    Parameters
    ----------
    times : sequence of float
        The times shown.
    samples_by_time : sequence of numpy.ndarray
        The agents' inventories at each time (model units).
    laws : sequence of GaussianMixture
        The mean-field law at each time (anything with ``pdf``).
    bins : int
        Histogram bins.
    lattice : float, optional
        Spacing of the values (1/L in the book), to align the bins with it.
    source : str
        What the samples are (e.g. "N=1000, seed 0"), for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.6), constrained_layout=True,
                             squeeze=False)
    if source:
        fig.suptitle(f"inventories against the mean-field law ({source})")
    for ax, t, x, law in zip(axes[0], times, samples_by_time, laws):
        x = np.asarray(x, dtype=float)
        edges = bins if lattice is None else histogram_edges([x], bins, lattice)
        ax.hist(x, bins=edges, density=True, alpha=0.5, label=f"{x.size} agents")
        pad = 4 * max(np.sqrt(law.variance), 1e-3)
        grid = np.linspace(min(x.min(), law.mean - pad), max(x.max(), law.mean + pad), 400)
        ax.plot(grid, law.pdf(grid), "k-", label="m(t, x)")
        ax.set(title=f"t = {t:.2f}", xlabel="inventory x")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    return fig


def plot_market_table(market, source: str = ""):
    """Mid price with the best quotes, and the depth at the best quotes at every record.

    Parameters
    ----------
    market : polars.DataFrame
        A market table (schema ``analysis.schemas.MARKET``; prices in ticks, depth in lots).
    source : str
        What the run is (e.g. "N=1000, seed 0"), for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    if source:
        fig.suptitle(f"the book ({source})")
    t = np.asarray(market["t"])
    _price_panel(axes[0], market)
    axes[1].step(t, market["bid_depth"], where="post", marker=".", ms=3, label="bid depth at best")
    axes[1].step(t, market["ask_depth"], where="post", marker=".", ms=3, label="ask depth at best")
    axes[1].set(title="depth at the best quotes (each record)", xlabel="time t", ylabel="lots")
    axes[1].legend()
    return fig


def plot_calibration(table):
    """The calibration's fixed-point iterations.

    Paths of (κ, k, c) over the iterations, the book's estimates with ±2 s.e., and the
    distance to the fixed point; one line per sweep point.

    Parameters
    ----------
    table : polars.DataFrame
        The calibration history (one row per sweep point and iteration).

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = ("kappa", "k", "c", "rho") if "rho" in table.columns else ("kappa", "k", "c")
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.3 * (len(names) + 1), 4), constrained_layout=True)
    for (point,), g in table.group_by("point", maintain_order=True):
        g = g.sort("iteration")
        it = g["iteration"].to_numpy()
        label = g["sweep"][0] if g["sweep"][0] != "{}" else f"point {point}"
        for ax, name in zip(axes[:-1], names):
            line, = ax.plot(it, g[name].to_numpy(), "o-", label=f"used, {label}")
            ax.errorbar(it, g[f"{name}_hat"].to_numpy(), yerr=2 * g[f"{name}_se"].to_numpy(), fmt="x",
                        color=line.get_color(), alpha=0.6, label=f"book estimate, {label}")
            ax.set(title=name, xlabel="iteration")
        axes[-1].semilogy(it, g["distance"].to_numpy(), "o-", label=label)
    axes[-1].set(title="relative distance to the estimates", xlabel="iteration")
    axes[0].legend(fontsize=7)
    return fig


MEASURED_PRIMITIVES = ("exponent", "permanent_exponent", "permanent", "amplitude_1", "rate_1", "amplitude_2",
                       "rate_2", "amplitude_3", "rate_3", "spread", "k", "crowd")


def plot_measured_calibration(table):
    """The measured loop's iterations: each primitive the agents traded on against what the
    book then measured (±2 s.e.), and the outcomes with their intervals.

    Parameters
    ----------
    table : polars.DataFrame
        ``calibration.parquet`` of ``model = "measured"``: per sweep point and iteration the
        primitives used (``name``, NaN at the configured start), the measured ones
        (``hat_name``, ``hat_name_se``), ``cost_gap_rel`` and ``price_error_rel`` with their
        ``_lo``/``_hi`` bounds.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per primitive present, then one per outcome.
    """
    names = [n for n in MEASURED_PRIMITIVES if f"hat_{n}" in table.columns
             and np.isfinite(table[f"hat_{n}"].to_numpy()).any()]
    outcomes = ("cost_gap_rel", "price_error_rel")
    panels = len(names) + len(outcomes)
    cols = min(panels, 4)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), constrained_layout=True, squeeze=False)
    axes = axes.ravel()
    for (point,), g in table.group_by("point", maintain_order=True):
        g = g.sort("iteration")
        it = g["iteration"].to_numpy()
        label = g["sweep"][0] if g["sweep"][0] != "{}" else f"point {point}"
        for ax, name in zip(axes, names):
            line, = ax.plot(it, g[name].to_numpy(), "o-", label=f"traded on, {label}")
            ax.errorbar(it, g[f"hat_{name}"].to_numpy(), yerr=2 * g[f"hat_{name}_se"].to_numpy(), fmt="x",
                        color=line.get_color(), alpha=0.7, label=f"measured, {label}")
            ax.set(title=name, xlabel="iteration")
        for ax, name in zip(axes[len(names):], outcomes):
            value = g[name].to_numpy()
            ax.errorbar(it, value, yerr=interval_bars(value, g[f"{name}_lo"].to_numpy(), g[f"{name}_hi"].to_numpy()),
                        fmt="o-", label=label)
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set(title=f"{name} (95%)", xlabel="iteration")
    for ax in axes[panels:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return fig


def plot_meta_orders(meta, fit):
    """Meta-order impact: mean paths and peak impact against size.

    Paths are of sell orders, impact in their direction; peak impact against size is on
    log–log axes with the fitted exponent and a square-root line.

    Parameters
    ----------
    meta : polars.DataFrame
        One row per size: lots_per_agent, peak_ticks and the mean impact path (ticks per step).
    fit : polars.DataFrame
        The fitted law, one row with log_a and delta (peak = e^{log_a} size^delta).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for row in meta.iter_rows(named=True):
        axes[0].plot(np.asarray(row["path"]), label=f"{row['lots_per_agent']:g} lots/agent")
    axes[0].set(title="impact of the crowd's meta-order", xlabel="step", ylabel="impact (ticks)")
    axes[0].legend(fontsize=8)
    size = meta["lots_per_agent"].to_numpy()
    peak = meta["peak_ticks"].to_numpy()
    delta = fit["delta"][0]
    axes[1].loglog(size, peak, "o", label="peak impact")
    axes[1].loglog(size, np.exp(fit["log_a"][0]) * size**delta, "-", label=f"fit: exponent {delta:.2f}")
    axes[1].loglog(size, peak[0] * np.sqrt(size / size[0]), "--", label="square root")
    axes[1].set(title="response curve", xlabel="meta-order size (lots per agent)", ylabel="peak impact (ticks)")
    _plain_log_ticks(axes[1].xaxis, size)
    _plain_log_ticks(axes[1].yaxis, peak)
    axes[1].legend()
    return fig


def _plain_log_ticks(axis, values) -> None:
    """Label a log axis that spans less than a few decades at the data's own values only:
    matplotlib's minor labels there overlap each other."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    values = np.unique(np.asarray(values, dtype=float))
    if values.size > 8:
        values = values[np.linspace(0, values.size - 1, 8).round().astype(int)]
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def plot_density_heatmaps(t, samples_by_time, laws, bins: int = 60, lattice: float | None = None,
                          source: str = ""):
    """m(t, x) as a heatmap next to the agents' histogram over (t, inventory), same axes.

    Rows are times, columns bins.

    Parameters
    ----------
    t : numpy.ndarray of float64
        Record times.
    samples_by_time : sequence of numpy.ndarray
        The agents' inventories at each time in ``t`` (model units).
    laws : sequence
        The mean-field law at each time (anything with ``pdf``).
    bins : int
        Histogram bins.
    lattice, source
        As in :func:`plot_law_vs_histogram`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = np.asarray(t, dtype=float)
    edges = histogram_edges(samples_by_time, bins, lattice)
    centres = 0.5 * (edges[1:] + edges[:-1])
    law_map = np.stack([law.pdf(centres) for law in laws])
    hist_map = np.stack([np.histogram(x, bins=edges, density=True)[0] for x in samples_by_time])
    vmax = max(law_map.max(), hist_map.max())
    extent = (edges[0], edges[-1], t[0], t[-1])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True, sharey=True)
    for ax, data, title in ((axes[0], law_map, "mean field m(t, x)"), (axes[1], hist_map, "agents (histogram)")):
        im = ax.imshow(data, origin="lower", aspect="auto", extent=extent, cmap="viridis", vmin=0, vmax=vmax)
        ax.set(title=title, xlabel="inventory x")
    axes[0].set_ylabel("time t")
    if source:
        fig.suptitle(f"inventory densities ({source})")
    fig.colorbar(im, ax=axes, label="density (1/inventory)")
    return fig


def plot_impact_law(laws: dict):
    """Peak impact against participation Q/V on log–log axes, one series per book.

    Each with its fitted power law, and a √(Q/V) guide through the first book's middle point.

    Parameters
    ----------
    laws : dict of str to analysis.impact.ImpactLaw
        By book name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    guide = None
    for i, (name, law) in enumerate(laws.items()):
        x, y = law.participation, law.peaks
        ax.loglog(x, y, "o", color=f"C{i}", label=f"{name}")
        ax.loglog(x, law.prefactor * x**law.exponent, "-", color=f"C{i}",
                  label=f"fit δ = {law.exponent:.2f} [{law.exponent_ci[0]:.2f}, {law.exponent_ci[1]:.2f}]")
        if guide is None:
            mid = len(x) // 2
            guide = (x, y[mid] * np.sqrt(x / x[mid]))
    ax.set(xlabel="participation Q/V", ylabel="peak impact (ticks)", title="meta-order impact against size")
    if guide is None:  # no book had a law: say so instead of an empty legend
        ax.text(0.5, 0.5, "no book's peak impact could be fitted", transform=ax.transAxes, ha="center")
        return fig
    ax.loglog(*guide, "k--", lw=1, label="√(Q/V) guide")
    ax.legend(fontsize=8)
    return fig


def plot_impact_decay(relaxations: dict):
    """Impact after the end of the meta-orders over its peak, I(t)/I_peak, one series per book.

    With the fitted f + (1 - f) e^{-ρt} and the decay time 1/ρ.

    Parameters
    ----------
    relaxations : dict of str to analysis.impact.Relaxation
        By book name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    for i, (name, r) in enumerate(relaxations.items()):
        f = r.permanent_fraction
        ax.plot(r.time, r.normalised, color=f"C{i}", alpha=0.6, label=f"{name}")
        ax.plot(r.time, f + (1 - f) * np.exp(-r.rho * r.time), "--", color=f"C{i}",
                label=f"fit: 1/ρ = {r.decay_time:.3g} ± {r.decay_time * r.rho_se / r.rho:.2g}, f = {f:.2f}")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set(xlabel="time since the end of the meta-order", ylabel="I(t) / I_peak", title="impact decay")
    ax.legend(fontsize=8)
    return fig


def plot_realism(facts: dict, source: str = ""):
    """Six panels of stylized facts (see :mod:`analysis.realism`), each with the literature's reference.

    Spread histogram, trade-sign autocorrelation (log–log, with an l^-0.5 guide), |return|
    autocorrelation, signature plot, depth profile, and the response R(l).

    Parameters
    ----------
    facts : dict
        As :func:`analysis.realism.stylized_facts` returns it.
    source : str
        What the runs are, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    if source:
        fig.suptitle(f"stylized facts ({source})")
    ax = axes[0, 0]
    spreads = np.asarray(facts["spreads"])
    ax.hist(spreads, bins=np.arange(0.5, max(spreads.max(), 2) + 1.5), density=True)
    ax.set(title="spread (mostly 1-2 ticks in large-tick markets)", xlabel="ticks", ylabel="frequency")
    ax = axes[0, 1]
    lags, acf = facts["sign_lags"], facts["sign_acf"]
    positive = acf > 0
    ax.loglog(lags[positive], acf[positive], "o", label="trade signs")
    if positive.any():
        ax.loglog(lags, acf[positive][0] * lags**-0.5, "k--", label="l^-0.5 (Lillo & Farmer 2004)")
    ax.set(title="sign autocorrelation", xlabel="lag (trades)", ylabel="C(l)")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    ax.plot(facts["vol_lags"], facts["vol_acf"], "o-")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set(title="|return| autocorrelation (stays > 0: Cont 2001)", xlabel="lag (records)", ylabel="ACF")
    ax = axes[1, 0]
    ax.semilogx(facts["signature_lags"], facts["signature"], "o-")
    ax.axhline(facts["signature"][-1], color="k", ls="--", lw=0.8, label="long-lag level")
    ax.set(title="signature plot (flat for liquid assets)", xlabel="lag h (records)", ylabel="Var(r_h)/h (ticks²)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    if facts["depth_profile"] is not None:
        prof = facts["depth_profile"]
        d = np.arange(prof.shape[1])
        ax.bar(-(d + 0.5), prof[0], width=0.9, label="bids")
        ax.bar(d + 0.5, prof[1], width=0.9, label="asks")
        ax.legend(fontsize=8)
    ax.set(title="mean depth profile (hump a few ticks in)", xlabel="ticks behind the best (bids < 0 < asks)",
           ylabel="lots")
    ax = axes[1, 2]
    ax.plot(facts["response_lags"], facts["response"], "o-")
    ax.set(title="response R(l) (grows, concave)", xlabel="lag (records)", ylabel="ticks")
    return fig


def plot_market_making(solution):
    """The market-making MFG at a glance.

    Quotes against inventory at three times, the population's mean quotes and spread over
    time, and the inventory law m(t, q) as a heatmap.

    Parameters
    ----------
    solution : mfg.market_making.MarketMakingSolution

    Returns
    -------
    matplotlib.figure.Figure
    """
    model, t = solution.model, solution.t
    q = model.q
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), constrained_layout=True)
    for i, color in zip((0, t.size // 2, t.size - 1), ("C0", "C1", "C2")):
        axes[0].plot(q, solution.bid[i], "-", color=color, label=f"bid, t = {t[i]:.2f}")
        axes[0].plot(q, solution.ask[i], "--", color=color, label=f"ask, t = {t[i]:.2f}")
    axes[0].set(title="quotes δ(t, q)", xlabel="inventory q (quotes)", ylabel="distance from the mid (ticks)")
    axes[0].legend(fontsize=7)
    axes[1].plot(t, solution.mean_bid, label="mean bid δ̄^b")
    axes[1].plot(t, solution.mean_ask, "--", label="mean ask δ̄^a")
    axes[1].plot(t, solution.spread(), label="mean spread")
    axes[1].set(title=f"population's quotes (competition ε = {model.competition:g})", xlabel="time t",
                ylabel="ticks")
    axes[1].legend(fontsize=8)
    im = axes[2].imshow(solution.m, origin="lower", aspect="auto", cmap="viridis",
                        extent=(q[0] - 0.5, q[-1] + 0.5, t[0], t[-1]))
    axes[2].set(title="inventory law m(t, q)", xlabel="inventory q (quotes)", ylabel="time t")
    fig.colorbar(im, ax=axes[2], label="probability")
    return fig


def plot_propagator_fit(curves, propagator, held_out: dict | None = None):
    """Each price path against the propagator's prediction for its own trading.

    Left: every curve (the crowd's, the meta-orders') as the seed-mean price move with a
    ±2 s.e. band and the kernel's path, dashed. Right: the kernel G(τ) with the
    instantaneous exponent δ (and δ∞) in the title; with ``held_out``, the held-out peak and plateau
    errors of each meta-order as a table under it.

    Parameters
    ----------
    curves : sequence of analysis.primitives.ImpactCurve
    propagator : analysis.primitives.Propagator
    held_out : dict of str to (float, float), optional
        Per curve name, (peak error, plateau error), relative.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    longest = 0.0
    for i, c in enumerate(curves):
        t = np.arange(c.prices.shape[1]) * c.dt
        longest = max(longest, t[-1])
        mean = c.mean_prices
        se = c.prices.std(axis=0, ddof=1) / np.sqrt(c.seeds) if c.seeds > 1 else np.zeros_like(mean)
        axes[0].fill_between(t, mean - 2 * se, mean + 2 * se, color=f"C{i}", alpha=0.15, lw=0)
        axes[0].plot(t, mean, color=f"C{i}", label=c.name)
        axes[0].plot(t, propagator.impact(c.mean_rates, c.dt), "--", color=f"C{i}")
    axes[0].set(title="price move: book (solid, ±2 s.e.) and kernel (dashed)", xlabel="t",
                ylabel="price move (model price units)")
    axes[0].legend(fontsize=8)
    tau = np.linspace(0.0, longest, 400)
    axes[1].plot(tau, propagator.kernel(tau), color="k")
    lasting = "" if propagator.permanent_exponent is None else f", δ∞ = {propagator.permanent_exponent:.2f}"
    axes[1].set(title=f"kernel G(τ), instantaneous exponent δ = {propagator.exponent:.2f}{lasting}", xlabel="τ",
                ylabel="G(τ)", ylim=(0, None))
    if held_out:
        rows = [[name, f"{peak:+.1%}", f"{plateau:+.1%}"] for name, (peak, plateau) in held_out.items()]
        table = axes[1].table(cellText=rows, colLabels=["held out", "peak error", "plateau error"],
                              loc="upper right", colWidths=[0.28, 0.22, 0.26])
        table.set_fontsize(8)
    return fig


def plot_learning(table, t):
    """Learning in the book, round by round: the policy's distance to the MFG (log–log, with its
    fitted slope), the exploitability measured in the book with its 95% intervals, and the
    last learned rate path against the MFG's.

    Parameters
    ----------
    table : polars.DataFrame
        ``learning.parquet``: ``round``, ``policy_error``, ``inventory_error``,
        ``exploitability`` with ``_lo``/``_hi``, ``policy_rate`` and ``mfg_rate`` (lists).
    t : numpy.ndarray of float64
        The solver's step midpoints (time units), where the rate lists sit.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    rounds = table["round"].to_numpy() + 1
    error = table["policy_error"].to_numpy()
    axes[0].loglog(rounds, error, "o-", label="learned policy")
    axes[0].loglog(rounds, table["inventory_error"].to_numpy(), "x", alpha=0.7, label="book inventory (conformers)")
    try:
        slope, se = loglog_slope(rounds, error, "policy error")
        guide = error[0] * (rounds / rounds[0]) ** slope
        axes[0].loglog(rounds, guide, "--", color="grey", label=f"slope {slope:.2f} ± {1.96 * se:.2f}")
    except ValueError:
        pass  # fewer than three rounds: no slope to show
    axes[0].set(title="sup |mu - mu*| / sup |mu*|", xlabel="round")
    _exploitability_panel(axes[1], rounds, table, "deviators' gain per agent")
    axes[2].plot(t, np.asarray(table["mfg_rate"][-1]), "k-", label="MFG on the learners' primitives")
    axes[2].plot(t, np.asarray(table["policy_rate"][-1]), "--", label=f"learned after round {int(rounds[-1])}")
    axes[2].set(title="mean trading rate", xlabel="t", ylabel="units per time")
    for ax in (axes[0], axes[2]):
        ax.legend(fontsize=7)
    return fig


def plot_makers_learning(table):
    """Makers learning in the book, round by round: their mean posted spread (95% interval over
    seeds) against the lattice MFG's on the book's own fill table, the P&L gap, and (model-based
    learners) the exploitability in the book.

    Parameters
    ----------
    table : polars.DataFrame
        ``learning.parquet`` of ``population = "makers"``: ``round``, ``spread`` with
        ``_lo``/``_hi``, ``mfg_spread``, ``pnl_gap_rel``, ``exploitability`` with ``_lo``/``_hi``.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    rounds = table["round"].to_numpy() + 1
    spread = table["spread"].to_numpy()
    axes[0].errorbar(rounds, spread, yerr=interval_bars(spread, table["spread_lo"].to_numpy(),
                                                        table["spread_hi"].to_numpy()), fmt="o-", label="book")
    axes[0].plot(rounds, table["mfg_spread"].to_numpy(), "k--", label="lattice MFG on the book's table")
    axes[0].set(title=f"mean spread ({table['learner'][0]} learners)", xlabel="round", ylabel="ticks")
    axes[0].legend(fontsize=7)
    axes[1].plot(rounds, table["pnl_gap_rel"].to_numpy(), "o-")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[1].set(title="pnl_gap_rel", xlabel="round")
    if np.isfinite(table["exploitability"].to_numpy()).any():
        _exploitability_panel(axes[2], rounds, table, "deviators' gain per maker")
    else:
        axes[2].set_visible(False)
    return fig


def _exploitability_panel(ax, rounds, table, ylabel: str) -> None:
    """The exploitability measured in the book, round by round, with its 95% intervals."""
    value = table["exploitability"].to_numpy()
    ax.errorbar(rounds, value, yerr=interval_bars(value, table["exploitability_lo"].to_numpy(),
                                                  table["exploitability_hi"].to_numpy()), fmt="o-")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(title="exploitability in the book (95%)", xlabel="round", ylabel=ylabel)


def plot_learned_spread_by_n(table):
    """The makers' learned spread against N (95% intervals) beside the lattice MFG's.

    Parameters
    ----------
    table : polars.DataFrame
        ``learning_by_n.parquet``: ``n_makers``, ``spread`` with ``_lo``/``_hi``, ``mfg_spread``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    n = table["n_makers"].to_numpy()
    spread = table["spread"].to_numpy()
    ax.errorbar(n, spread, yerr=interval_bars(spread, table["spread_lo"].to_numpy(), table["spread_hi"].to_numpy()),
                fmt="o-", label=f"learned ({table['learner'][0]})")
    ax.plot(n, table["mfg_spread"].to_numpy(), "k--", label="lattice MFG on the book's table")
    ax.set_xscale("log")
    ax.set(xlabel="makers N", ylabel="mean spread (ticks)", title="learned spread against N")
    ax.legend(fontsize=7)
    return fig


def plot_exploitability(histories: dict, start: int = 10):
    """Exploitability against iteration on log–log axes, one line per learner, with the slope
    fitted from ``start`` on and its 95% interval.

    Parameters
    ----------
    histories : dict of str to mfg.learning.LearningHistory
    start : int
        First iteration of the fitted slopes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    for name, history in histories.items():
        e = np.asarray(history.exploitability)
        i = np.arange(e.size)
        positive = (i > 0) & (e > 0)
        label = name
        try:
            slope, se = history.slope(min(start, max(e.size - 4, 1)))
            label = f"{name}: slope {slope:.2f} ± {1.96 * se:.2f}"
        except ValueError:
            pass  # too few positive iterates for a slope (a learner that reached round-off)
        ax.loglog(i[positive], e[positive], "-", label=label)
    ax.set(xlabel="iteration", ylabel="exploitability", title="learners on the model")
    ax.legend(fontsize=7)
    return fig
