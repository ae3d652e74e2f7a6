"""The makers' loop on the book's own fill table: book -> Λ(π; δ̄) -> tick MFG -> quotes -> book.

``population = "makers"`` in a ``[calibration]`` table (``runs/makers_loop.toml``): N makers
quote the equilibrium of :class:`mfg.market_making.TickMarketMakingMFG` on a lattice of
tick quotes (``[market.makers] lattice``; ``model = "mfg_tick"``). Each iteration runs the
book at ``n_makers`` over ``seeds``, counts every maker's fills by the lattice quote it
posted and the makers' mean posted distance δ̄ of that step and side
(:func:`analysis.primitives.fill_table`), and records what a fill at each quote earned,
π_l (the tick a quote of j ticks goes to is half a tick further when the mid sits between
ticks). The next MFG quotes on the premia π_l with the measured Λ(π_l; δ̄), interpolated in
δ̄; a quote never posted is left off the lattice (reported, not invented), a mean bin
without data at some quote is bridged from that quote's other bins. The rates move a
damped step towards the measured ones until they change by less than ``tol`` (relative to
the largest rate) or lie within two standard errors of them.

At the fixed point the makers run at every N of ``scaling`` over ``scaling_seeds``:

* ``pnl_gap_rel`` = (book P&L per maker - MFG expected P&L) / MFG expected P&L, with a
  bootstrap interval over seeds, at ``n_makers`` and at each N;
* the W1 bias b of W1(N) = b + C N^-r (:func:`analysis.convergence.fit_with_bias`), the
  distance between the makers' inventory law and the MFG's that N does not remove.

Outputs under ``OUT/<name>/``: ``calibration.parquet`` (one row per iteration),
``fill_tables.parquet`` (every iteration's table, long), ``scaling.parquet`` (one row per
N and seed at the fixed point) and the figures ``makers_w1`` and ``makers_pnl_gap`` (W1 and
each run's |pnl_gap_rel| against N, with the fitted rate and the bias fit).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.convergence import fit_power_law, fit_with_bias
from analysis.figures import plot_convergence, save_figure
from analysis.primitives import FillTable, PrimitiveError, fill_table
from mfg.io import atomic_write
from simulator.market import run_market

from ..config import check_memory
from .makers import market_spec, metrics, posted_quotes


@dataclass(frozen=True)
class MakersLoopPlan:
    """A loaded makers loop.

    Parameters
    ----------
    name : str
        The output folder's name.
    source : str
        The file.
    market : dict
        The ``[market]`` table, its makers on ``"mfg_tick"`` with a lattice.
    n_makers : int
        N at which the fill table is measured.
    seeds : tuple of int
        Seeds of each iteration.
    damping : float
        Weight of the measured rates in each step, in (0, 1].
    tol : float
        Stop when the rates change by less than this, relative to the largest.
    max_iter : int
        Iterations allowed.
    mean_bins : int
        Bins of the makers' mean posted distance δ̄.
    scaling : tuple of int
        The N of the evaluation at the fixed point (increasing).
    scaling_seeds : tuple of int
        Seeds of that evaluation (fresh: disjoint from ``seeds``).
    """

    name: str
    source: str
    market: dict
    n_makers: int
    seeds: tuple[int, ...]
    damping: float
    tol: float
    max_iter: int
    mean_bins: int
    scaling: tuple[int, ...]
    scaling_seeds: tuple[int, ...]


def load(root, cal, name: str) -> MakersLoopPlan:
    """Read a makers loop from a calibration file's tables (called by :func:`mfgsim.studies.calibration.load`).

    Parameters
    ----------
    root : mfgsim.config.Section
        The file's top level.
    cal : mfgsim.config.Section
        Its ``[calibration]`` table (``population`` already read).
    name : str
        The output folder's name.

    Returns
    -------
    MakersLoopPlan

    Raises
    ------
    ConfigError
        Naming the file, the key path and the value.
    """
    n_makers = cal.integer("n_makers", lo=2, hi=100_000)
    seeds = cal.integer("seeds", 8, lo=2, hi=100_000)
    scaling = cal.get("scaling", None)
    if (not isinstance(scaling, list) or len(scaling) < 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= 100_000 for n in scaling)
            or scaling != sorted(set(scaling))):
        raise cal.error("scaling", scaling, "expected at least 3 increasing integers in [2, 100000] (the N of the "
                                            "W1 bias fit)")
    scaling_seeds = cal.integer("scaling_seeds", seeds, lo=2, hi=100_000)
    plan = MakersLoopPlan(
        name, root.source, copy.deepcopy(root.get("market")), n_makers, tuple(range(seeds)),
        cal.number("damping", 0.5, lo=0.0, hi=1.0, lo_open=True), cal.number("tol", 0.05, lo=0.0, lo_open=True),
        cal.integer("max_iter", 8, lo=1, hi=1000), cal.integer("mean_bins", 3, lo=1, hi=50), tuple(scaling),
        tuple(range(seeds, seeds + scaling_seeds)))
    cal.done()
    if not isinstance(plan.market, dict) or not isinstance(plan.market.get("makers"), dict):
        raise root.error("market", plan.market, "a makers loop needs [market] with [market.makers]")
    makers = root.table("market").table("makers")
    if makers.get("model", None) != "mfg_tick":
        raise makers.error("model", makers.get("model", None), "a makers loop quotes the tick MFG: model = 'mfg_tick'")
    for key in ("premia", "table_means", "table_rates"):
        if key in makers.data:
            raise makers.error(key, makers.data[key], "the loop measures it", "remove it")
    root.done()
    spec = spec_at(plan, plan.n_makers, None)  # validates the market
    check_memory((len(plan.seeds) + 1) * spec.memory_estimate(), root.source,
                 f"calibration.n_makers={plan.n_makers} over calibration.seeds={len(plan.seeds)}",
                 "lower n_makers, seeds, market.makers.max_inventory or the steps (T/dt)", per="per iteration")
    spec = spec_at(plan, plan.scaling[-1], None)
    check_memory((len(plan.scaling_seeds) + 1) * spec.memory_estimate(), root.source,
                 f"calibration.scaling up to N={plan.scaling[-1]} over {len(plan.scaling_seeds)} seeds",
                 "lower the largest N, scaling_seeds or the steps (T/dt)")
    return plan


def spec_at(plan: MakersLoopPlan, n: int, table: dict | None):
    """The book with ``n`` makers quoting the tick MFG of ``table`` (None: the configured intensity).

    Parameters
    ----------
    plan : MakersLoopPlan
    n : int
        Number of makers.
    table : dict or None
        ``lattice``, ``premia``, ``table_means``, ``table_rates`` (see
        :class:`simulator.agents.MarketMakers`).

    Returns
    -------
    simulator.market.MarketSpec
        Recorded at every step.
    """
    market = copy.deepcopy(plan.market)
    if table is not None:
        market["makers"].update({key: [list(r) if isinstance(r, (list, tuple)) else r for r in value]
                                 for key, value in table.items()})
    spec = market_spec(dataclasses.replace(plan, market=market), n)
    return dataclasses.replace(spec, record_every=1)


def _observe(args) -> dict:
    """One run: the makers' metrics and their quotes, fills and mean posted distances."""
    spec, seed = args
    run = run_market(spec, seed)
    quotes = posted_quotes(spec, run)
    out = {"metrics": metrics(spec, seed, run)}
    for side, filled in (("bid", "bought"), ("ask", "sold")):
        level, posted = quotes[side], quotes[f"{side}_posted"]
        with warnings.catch_warnings():  # a step where no maker posts this side has no mean: NaN, dropped
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.broadcast_to(np.nanmean(posted, axis=1, keepdims=True), posted.shape)
        ok = ~np.isnan(level)
        out[side] = np.stack([level[ok], mean[ok], quotes[filled][ok].astype(np.float64), posted[ok]])
    return out


def measure(observations: list[dict], dt: float, mean_bins: int, mean_edges=None) -> FillTable:
    """The fill table of a set of runs' observations (both sides pooled: the book is symmetric).

    Parameters
    ----------
    observations : list of dict
        What each run's worker observed.
    dt : float
        The step (time units).
    mean_bins : int
        Equal-count bins of δ̄ when ``mean_edges`` is None.
    mean_edges : array_like of float, optional
        Fixed bin edges of δ̄ (ticks).

    Returns
    -------
    analysis.primitives.FillTable
    """
    data = np.concatenate([obs[side] for obs in observations for side in ("bid", "ask")], axis=1)
    return fill_table(data[0], data[1], data[2], dt, mean_bins=mean_bins, lattice=0.5, mean_edges=mean_edges,
                      earned=data[3])


def table_intensity(table: FillTable) -> dict:
    """The tick MFG's inputs from a fill table: the quotes that were posted, their premia and rates.

    A mean bin without data at some quote is bridged from that quote's other bins (linear
    in δ̄, flat beyond); a quote never posted is dropped.

    Parameters
    ----------
    table : analysis.primitives.FillTable

    Returns
    -------
    dict
        ``lattice``, ``premia``, ``table_means`` and ``table_rates`` for
        :class:`simulator.agents.MarketMakers`, and ``dropped`` (quotes in the table left off).

    Raises
    ------
    PrimitiveError
        When fewer than one quote was posted with fills, or the premia do not increase.
    """
    keep = table.quoted.any(axis=1) & (table.fills.sum(axis=1) > 0)
    if not keep.any():
        raise PrimitiveError("fill table: no lattice quote was filled; raise seeds, steps or the flow")
    centres = table.mean_centres
    rates = []
    for i in np.flatnonzero(keep):
        seen = table.quoted[i]
        rates.append(np.interp(centres, centres[seen], table.rate[i, seen]))
    premia = table.premium[keep]
    if np.any(np.diff(premia) <= 0):
        raise PrimitiveError(f"fill table: the premia {np.round(premia, 3).tolist()} of the quotes "
                             f"{table.levels[keep].tolist()} do not increase; use a lattice of whole ticks")
    return {"lattice": table.levels[keep].tolist(), "premia": premia.tolist(), "table_means": centres.tolist(),
            "table_rates": [list(r) for r in rates], "dropped": table.levels[~keep].tolist()}


def pnl_gap(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """``pnl_gap_rel`` = (book P&L per maker - MFG expected P&L) / MFG expected P&L, with a bootstrap interval.

    Parameters
    ----------
    rows : list of dict
        :func:`mfgsim.studies.makers.metrics` rows of one N (pnl, mf_pnl).
    n_boot : int
    seed : int

    Returns
    -------
    dict
        pnl_gap_rel, pnl_gap_rel_lo, pnl_gap_rel_hi (95%), pnl, mf_pnl (ticks × quotes per maker).
    """
    pnl = np.array([r["pnl"] for r in rows])
    expected = float(rows[0]["mf_pnl"])
    rng = np.random.default_rng(seed)
    draws = [pnl[rng.integers(pnl.size, size=pnl.size)].mean() for _ in range(n_boot)]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"pnl_gap_rel": float(pnl.mean() / expected - 1), "pnl_gap_rel_lo": float(lo / expected - 1),
            "pnl_gap_rel_hi": float(hi / expected - 1), "pnl": float(pnl.mean()), "mf_pnl": expected}


def calibrate(plan: MakersLoopPlan, pool, progress=None) -> tuple[list[dict], list[dict], dict | None]:
    """Iterate the fill table to its fixed point.

    Parameters
    ----------
    plan : MakersLoopPlan
    pool : concurrent.futures.Executor
    progress : callable, optional
        Called with each row as it is made.

    Returns
    -------
    (rows, tables, fixed) : tuple of (list of dict, list of dict, dict or None)
        One row per iteration (outcomes, distance, stop); every iteration's measured table
        in long form; the table the last iteration traded on (None: the configured one).
    """
    theta, edges = None, None
    rows, tables = [], []
    for it in range(plan.max_iter + 1):
        spec = spec_at(plan, plan.n_makers, theta)
        observations = list(pool.map(_observe, [(spec, seed) for seed in plan.seeds]))
        table = measure(observations, spec.dt, plan.mean_bins, edges)
        edges = table.mean_edges
        hat = table_intensity(table)
        offered = (theta or plan.market["makers"])["lattice"]  # what the makers could post this time
        hat["dropped"] = sorted(set(map(float, offered)) - set(hat["lattice"]))
        for i, level in enumerate(table.levels):
            for b in range(table.mean_centres.size):
                tables.append({"iteration": it, "level": float(level), "premium": float(table.premium[i]),
                               "mean_quote": float(table.mean_centres[b]), "rate": float(table.rate[i, b]),
                               "rate_se": float(table.rate_se[i, b]), "fills": float(table.fills[i, b]),
                               "observations": int(table.observations[i, b])})
        outcome = pnl_gap([o["metrics"] for o in observations])
        distance, within_noise = math.inf, False
        if theta is not None and theta["lattice"] == hat["lattice"]:
            old, new = np.array(theta["table_rates"]), np.array(hat["table_rates"])
            se = np.array([[table.rate_se[list(table.levels).index(lv), b] for b in range(new.shape[1])]
                           for lv in hat["lattice"]])
            gap = np.abs(new - old)
            distance = float(gap.max() / max(old.max(), 1e-300))
            within_noise = bool(np.all((gap <= 2 * se) | ~np.isfinite(se)))
        rows.append({"iteration": it, "traded_on": "configured" if theta is None else "measured",
                     "levels": len(hat["lattice"]), "dropped": str(hat["dropped"]), "distance": distance,
                     "within_noise": within_noise, "converged": False, **outcome,
                     "w1": float(np.mean([o["metrics"]["w1"] for o in observations]))})
        if progress is not None:
            progress(rows[-1])
        if theta is not None and (distance < plan.tol or within_noise):
            rows[-1]["converged"] = True
            break
        if it < plan.max_iter:
            step = {key: hat[key] for key in ("lattice", "premia", "table_means", "table_rates")}
            if theta is not None and theta["lattice"] == hat["lattice"]:
                for key in ("premia", "table_rates"):
                    old, new = np.array(theta[key]), np.array(hat[key])
                    step[key] = (old + plan.damping * (new - old)).tolist()
            theta = step
    return rows, tables, theta


def scaling(plan: MakersLoopPlan, theta: dict | None, pool) -> tuple[list[dict], dict, dict]:
    """The makers of the fixed point at every N of ``scaling``, on fresh seeds.

    Parameters
    ----------
    plan : MakersLoopPlan
    theta : dict or None
        The fixed point's table (None: the configured intensity).
    pool : concurrent.futures.Executor

    Returns
    -------
    (rows, summary, fits) : tuple of (list of dict, dict, dict)
        One metrics row per N and seed, with its own ``pnl_gap_rel``; ``w1_bias`` with its
        interval and rate (W1 = b + C N^-r), ``pnl_gap_bias`` likewise for the runs'
        |pnl_gap_rel|, and ``pnl_gap_rel`` with its interval at each N (``pnl_gap_rel_N<n>``);
        the two bias fits (:class:`analysis.convergence.BiasFit`) by metric, ``w1`` and
        ``pnl_gap``.
    """
    jobs = [(spec_at(plan, n, theta), seed) for n in plan.scaling for seed in plan.scaling_seeds]
    rows = [o["metrics"] for o in pool.map(_observe, jobs)]
    for r in rows:
        r["pnl_gap_rel"] = r["pnl"] / r["mf_pnl"] - 1
    summary, fits = {}, {}
    for metric, values in (("w1", [r["w1"] for r in rows]), ("pnl_gap", [abs(r["pnl_gap_rel"]) for r in rows])):
        fit = fits[metric] = fit_with_bias([r["N"] for r in rows], values)
        summary.update({f"{metric}_bias": fit.bias, f"{metric}_bias_lo": fit.bias_ci[0],
                        f"{metric}_bias_hi": fit.bias_ci[1], f"{metric}_rate": fit.rate})
    for n in plan.scaling:
        gap = pnl_gap([r for r in rows if r["N"] == n])
        summary.update({f"{key}_N{n}": value for key, value in gap.items() if key.startswith("pnl_gap")})
    return rows, summary, fits


@dataclass(frozen=True)
class MakersLoopResult:
    """What a makers loop measured.

    Parameters
    ----------
    plan : MakersLoopPlan
    rows : list of dict
        One row per iteration.
    tables : list of dict
        Every iteration's fill table, one row per quote and mean bin.
    fixed : dict or None
        The table the last iteration traded on.
    scaling : list of dict
        One metrics row per N and seed at the fixed point.
    summary : dict
        ``w1_bias``, ``pnl_gap_bias`` and the P&L gaps by N (:func:`scaling`).
    fits : dict
        The bias fits of W1 and of the runs' |pnl_gap_rel| (:func:`scaling`), for the figures.
    """

    plan: MakersLoopPlan
    rows: list[dict]
    tables: list[dict]
    fixed: dict | None
    scaling: list[dict]
    summary: dict
    fits: dict

    @property
    def converged(self) -> bool:
        """Whether the fill table reached its fixed point."""
        return bool(self.rows[-1]["converged"])


def run(plan: MakersLoopPlan, pool, verbose: bool = True, keep=None) -> MakersLoopResult:
    """The loop to its fixed point, then the fixed point at every N of ``scaling``.

    Parameters
    ----------
    plan : MakersLoopPlan
    pool : concurrent.futures.Executor
    verbose : bool
        Print one line per iteration.
    keep : callable, optional
        Called with each iteration's row as it is made (a checkpoint, say).

    Returns
    -------
    MakersLoopResult
    """
    def say(row):
        if keep is not None:
            keep(row)
        if verbose:
            print(f"it {row['iteration']}: traded on {row['traded_on']} -> {row['levels']} quotes measured "
                  f"(never posted: {row['dropped']}); distance {row['distance']:.3g}; pnl_gap_rel "
                  f"{row['pnl_gap_rel']:+.3f} [{row['pnl_gap_rel_lo']:+.3f}, {row['pnl_gap_rel_hi']:+.3f}], "
                  f"W1 {row['w1']:.3f}", flush=True)

    rows, tables, fixed = calibrate(plan, pool, say)
    return MakersLoopResult(plan, rows, tables, fixed, *scaling(plan, fixed, pool))


def write(result: MakersLoopResult, out) -> None:
    """Write the loop's tables and its figures into the folder ``out`` (which exists and is locked).

    Parameters
    ----------
    result : MakersLoopResult
    out : pathlib.Path
    """
    atomic_write(out / "calibration.parquet", pl.DataFrame(result.rows).write_parquet)
    atomic_write(out / "fill_tables.parquet", pl.DataFrame(result.tables).write_parquet)
    runs = pl.DataFrame(result.scaling)
    atomic_write(out / "scaling.parquet", runs.write_parquet)
    n = runs["N"].to_numpy()
    for key, metric, values, stem in (
            ("w1", "w1", runs["w1"].to_numpy(), "makers_w1"),
            ("pnl_gap", "|pnl_gap_rel|", np.abs(runs["pnl_gap_rel"].to_numpy()), "makers_pnl_gap")):
        save_figure(plot_convergence(n, values, fit_power_law(n, values), metric=metric,
                                     bias_fit=result.fits[key]), out / stem)


def summary_text(result: MakersLoopResult) -> str:
    """Start against fixed point, and the fixed point across N.

    Parameters
    ----------
    result : MakersLoopResult

    Returns
    -------
    str
    """
    first, last = result.rows[0], result.rows[-1]
    status = (f"converged after {last['iteration']} iterations" + (" (rates within 2 s.e.)" if last["within_noise"]
                                                                   else "")
              if last["converged"] else f"NOT converged after {last['iteration']} iterations")
    s = result.summary
    lines = [f"makers loop at N={result.plan.n_makers}: {status} (distance {last['distance']:.3g})"]
    for label, row in (("start (configured intensity)", first), ("fixed" if last["converged"] else "last", last)):
        lines.append(f"  {label}: pnl_gap_rel {row['pnl_gap_rel']:+.3f} [{row['pnl_gap_rel_lo']:+.3f}, "
                     f"{row['pnl_gap_rel_hi']:+.3f}] (book {row['pnl']:.2f}, MFG {row['mf_pnl']:.2f} ticks per "
                     f"maker), W1 {row['w1']:.3f}")
    lines.append(f"  across N {list(result.plan.scaling)}: W1 = b + C N^-r with b = {s['w1_bias']:.4f} "
                 f"[{s['w1_bias_lo']:.4f}, {s['w1_bias_hi']:.4f}], r = {s['w1_rate']:.2f}")
    lines.append("  pnl_gap_rel by N: " + ", ".join(f"{n}: {s[f'pnl_gap_rel_N{n}']:+.3f}" for n in result.plan.scaling))
    lines.append(f"  each run's |pnl_gap_rel| = b + C N^-r with b = {s['pnl_gap_bias']:.4f} "
                 f"[{s['pnl_gap_bias_lo']:.4f}, {s['pnl_gap_bias_hi']:.4f}], r = {s['pnl_gap_rate']:.2f}")
    return "\n".join(lines)
