"""`mfgsim makers CONFIG.toml`: experiment (d), N market makers in the book against their
mean-field game (:mod:`mfg.market_making`).

N makers quote the MFG equilibrium quotes (``model = "mfg"``) in a book whose flow is the
noise flow, scaled with N (``scale_with = "makers"``: each maker meets the same flow at
every N). For each N and seed the study records

* ``w1``: the Wasserstein distance between the makers' empirical inventory law and the
  MFG law m(t, ·) on the inventory lattice (Σ_q |F_N(q) - F(q)|), averaged over records;
* ``mean_quote_error``: |empirical mean bid quote - δ̄^b(t)| averaged over records (ticks);
* ``spread`` and ``mf_spread``: the makers' mean quoted spread and the MFG's (ticks);
* ``pnl`` and ``mf_pnl``: the mean P&L per maker at T (ticks per quote unit, marked to the
  mid) and the MFG's expected P&L ∫ Σ_q m (Λ^b δ^b + Λ^a δ^a) dt (the mid is a martingale).

and fits each against N (log–log with a bootstrap interval over seeds; W1 also as
b + C N^-r: b is what the book's fills do that A e^{-kδ} does not). With
``fit_intensity = k`` under ``[study]`` the makers' A is first fitted to the book's fills in k
fixed-point steps (:func:`fit_intensity`), and the comparison is with that MFG; with
``fit_competition = true`` the competition ε is fitted too, from the book's sensitivity of
a maker's fills to its quote relative to the others' (:func:`fill_sensitivity`, reported
in every case against the model's k + ε). Outputs under
``OUT/<name>/``: ``makers_runs.parquet``, ``makers_fits.parquet``, the figures
``makers_<metric>`` (against N) and ``makers_fill_sensitivity`` (the book's fill rate against
the relative quote, with the fit and the model's k + ε).
See ``runs/experiment_d_makers.toml``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import polars as pl

from analysis.convergence import fit_power_law, fit_with_bias
from analysis.figures import plot_convergence, plot_fill_sensitivity, save_figure
from analysis.impact import FillSensitivity, fit_fill_sensitivity
from mfg.io import atomic_write
from simulator.agents import MarketMakers, NoiseFlow
from simulator.book import MAX_TICKS
from simulator.market import MarketSpec, run_market

from ..config import ConfigError, Section, check_memory, output_name, read_toml
from ..engines import make_engine, warm_kernels
from ..io import check_writable, output_lock


METRICS = ("w1", "mean_quote_error", "spread_gap", "pnl_gap")  # fitted against N


@dataclass(frozen=True)
class MakersStudy:
    """A parsed makers study.

    Parameters
    ----------
    name : str
        The output folder's name.
    source : str
        The file.
    n_makers : tuple of int
        The N values.
    seeds : tuple of int
    market : dict
        The ``[market]`` table with ``[market.makers]`` and ``[market.noise]``.
    fit_intensity : int
        Fixed-point steps fitting the makers' A to the book's fills first.
    fit_competition : bool
        In those steps, fit ε too, from the book's fill sensitivity.
    """

    name: str
    source: str
    n_makers: tuple[int, ...]
    seeds: tuple[int, ...]
    market: dict  # the [market] table with [market.makers] and [market.noise]
    fit_intensity: int = 0  # fixed-point steps fitting the makers' A to the book's fills first
    fit_competition: bool = False  # in those steps, fit ε too, from the book's fill sensitivity


@dataclass(frozen=True)
class MakersResult:
    """What :func:`run` measured.

    Parameters
    ----------
    study : MakersStudy
        The study as fitted.
    runs : polars.DataFrame
        One row per run.
    fits : list of dict
        One fit row per metric.
    curves : dict
        The fit objects by metric: PowerFit and, for W1, BiasFit.
    sensitivity : analysis.impact.FillSensitivity
        The book's fill sensitivity at the largest N.
    model_sensitivity : float
        The model's k + ε (per tick).
    """

    study: MakersStudy
    runs: pl.DataFrame
    fits: list[dict]
    curves: dict
    sensitivity: FillSensitivity
    model_sensitivity: float


def load(path: str | Path) -> MakersStudy:
    """Read and validate a makers study (``runs/experiment_d_makers.toml``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MakersStudy

    Raises
    ------
    ConfigError
        Naming the file, the key path and the value.
    """
    root = read_toml(path)
    study = root.table("study")
    name = output_name(study, path)
    n_makers = study.get("n_makers")
    if (not isinstance(n_makers, list) or len(n_makers) < 3 or not all(isinstance(n, int) and n >= 2 for n in n_makers)
            or n_makers != sorted(set(n_makers))):
        raise study.error("n_makers", n_makers, "expected at least 3 increasing integers >= 2")
    seeds = study.integer("seeds", 8, lo=2, hi=100_000)
    fit = study.integer("fit_intensity", 0, lo=0, hi=20)
    fit_competition = study.get("fit_competition", False)
    if not isinstance(fit_competition, bool):
        raise study.error("fit_competition", fit_competition, "expected true or false")
    study.done()
    market = root.get("market")
    if not isinstance(market, dict):
        raise ConfigError(f"{root.source}: [market] must be a table")
    root.done()
    out = MakersStudy(name, root.source, tuple(n_makers), tuple(range(seeds)), market, fit, fit_competition)
    market_spec(out, n_makers[0])  # validates
    largest = market_spec(out, n_makers[-1])
    check_memory(largest.memory_estimate(), root.source,
                 f"n_makers={n_makers[-1]} with market.makers.max_inventory={largest.makers.max_inventory}",
                 "lower n_makers, market.makers.max_inventory or the steps (T/dt)", per="per run")
    return out


def market_spec(study, n: int):
    """The book of a makers study (or loop) with ``n`` makers, liquidity scaled with them.

    Parameters
    ----------
    study : MakersStudy or mfgsim.studies.makers_loop.MakersLoopPlan
        Anything with the ``market`` table and its ``source``.
    n : int
        Number of makers.

    Returns
    -------
    simulator.market.MarketSpec
    """
    sec = Section(copy.deepcopy(study.market), "market", study.source)
    with sec.located():
        noise = sec.table("noise", {}).dataclass(NoiseFlow)
        makers_sec = sec.table("makers")
        makers_sec.data["count"] = n
        makers_sec.data.setdefault("model", "mfg")
        makers = makers_sec.dataclass(MarketMakers)
        spec = MarketSpec(T=sec.number("T", 1.0, lo=0.0, lo_open=True), dt=sec.number("dt", lo=0.0, lo_open=True),
                          n_ticks=sec.integer("n_ticks", 4096, lo=16, hi=MAX_TICKS),
                          initial_mid=sec.integer("initial_mid", 2048, lo=0, hi=MAX_TICKS),
                          noise=noise, makers=makers, crowd=None, warmup_steps=0, scale_with="makers",
                          record_every=sec.integer("record_every", 10, lo=1, hi=10**9), max_trades_kept=0)
        sec.done()
    return spec


def run_metrics(args) -> dict:
    """One run: the makers' metrics against their mean field.

    Parameters
    ----------
    args : tuple of (simulator.market.MarketSpec, int)
        The spec (its makers quote an MFG: ``"mfg"`` or ``"mfg_tick"``) and the seed.

    Returns
    -------
    dict
        N, seed, w1, mean_quote_error, spread and mf_spread (ticks), pnl and mf_pnl (ticks ×
        quotes per maker), inventory_sd and mf_inventory_sd (quotes).
    """
    spec, seed = args
    return metrics(spec, seed, run_market(spec, seed))


def metrics(spec, seed: int, run) -> dict:
    """The makers' metrics of a run against their mean field (see :func:`run_metrics`).

    Parameters
    ----------
    spec : simulator.market.MarketSpec
    seed : int
    run : simulator.market.MarketRun
        The run of ``spec`` on ``seed``.

    Returns
    -------
    dict
        As :func:`run_metrics`.
    """
    makers = spec.makers
    sol, sub = makers.mean_field(spec.T, spec.n_steps)
    steps = run.market["step"]
    Q, size = makers.max_inventory, makers.quote_size
    inv = run.accounts_inventory[:, 1:1 + makers.count] / size
    q_grid = np.arange(-Q, Q + 1)
    law = sol.m[steps * sub]  # the MFG law at the recorded steps
    counts = np.stack([np.bincount(np.clip(np.round(row).astype(int) + Q, 0, 2 * Q), minlength=2 * Q + 1)
                       for row in inv]) / makers.count
    w1 = np.abs(np.cumsum(counts - law, axis=1)).sum(axis=1)
    idx = np.clip(np.round(inv).astype(int) + Q, 0, 2 * Q)
    rows = steps * sub
    bids = sol.bid[rows[:, None], idx]
    asks = sol.ask[rows[:, None], idx]
    emp_bid = np.nanmean(bids, axis=1)
    spread = emp_bid + np.nanmean(asks, axis=1)
    cash = run.accounts_cash[:, 1:1 + makers.count]
    pnl = (cash[-1] - cash[0] + run.accounts_inventory[-1, 1:1 + makers.count] * run.market["mid"][-1]) / size
    return {"N": makers.count, "seed": seed, "w1": float(w1.mean()),
            "mean_quote_error": float(np.nanmean(np.abs(emp_bid - sol.mean_bid[rows]))),
            "spread": float(np.nanmean(spread)), "mf_spread": float(np.mean(sol.spread()[rows])),
            "pnl": float(pnl.mean()), "mf_pnl": sol.expected_pnl(), "inventory_sd": float(inv[-1].std()),
            "mf_inventory_sd": float(np.sqrt(law[-1] @ q_grid**2 - (law[-1] @ q_grid) ** 2))}


def posted_quotes(spec, run) -> dict:
    """Per step and maker, the quotes posted and whether each side was filled in that step.

    From a run recorded at every step. ``bid`` / ``ask`` are the intended distances from the
    mid (the quote tables, ticks; NaN where a side is not posted), ``bid_posted`` /
    ``ask_posted`` the distances of the ticks they went to (floor(mid - δ), ceil(mid + δ)).

    Parameters
    ----------
    spec : simulator.market.MarketSpec
    run : simulator.market.MarketRun

    Returns
    -------
    dict
        bid, ask, bid_posted, ask_posted (float64, steps × makers) and bought, sold (float64:
        the quotes filled on each side in that step, 1 for a whole quote).

    Notes
    -----
    A step in which both of a maker's quotes are filled leaves its inventory where it was:
    the fills are read from its inventory and cash together, B - S = Δq and S a - B b = Δcash
    at its posted ticks b < a, not from the sign of Δq (which missed them: 4% of the fills
    at the fixed point of ``runs/makers_loop.toml``, where each side is filled in 4% of the
    steps). Against the book's trade records this counts 99.98% of the fills there.
    """
    makers = spec.makers
    Q, size = makers.max_inventory, makers.quote_size
    bid_off, ask_off, groups = makers.group_quote_offsets(spec.T - np.arange(spec.n_steps) * spec.dt, run.seed)
    accounts = slice(1, 1 + makers.count)
    inv = run.accounts_inventory[:, accounts]
    mid = run.market["mid"][:-1, None]
    q = np.clip(np.round(inv[:-1] / size).astype(int), -Q, Q)
    rows = np.arange(spec.n_steps)[:, None]
    bid = np.where(q < Q, bid_off[groups[None, :], rows, q + Q], np.nan)
    ask = np.where(q > -Q, ask_off[groups[None, :], rows, q + Q], np.nan)
    bid_tick, ask_tick = np.floor(mid - bid), np.ceil(mid + ask)
    change = np.diff(inv, axis=0).astype(np.float64)
    income = np.diff(run.accounts_cash[:, accounts], axis=0).astype(np.float64)  # tick × lots
    with np.errstate(invalid="ignore"):
        bought = np.where(np.isnan(bid_tick), 0.0, np.where(np.isnan(ask_tick), change,
                                                            (income + change * ask_tick) / (ask_tick - bid_tick)))
    sold = bought - change
    # a market order that met the maker's previous quote, at another tick, before its cancel
    # (the step's messages arrive in random order) leaves no such decomposition: the sign of Δq
    exact = (bought >= 0) & (sold >= 0) & (np.abs(bought - np.rint(bought)) < 1e-9)
    bought = np.where(exact, np.rint(bought), np.maximum(change, 0.0))
    sold = np.where(exact, np.rint(sold), np.maximum(-change, 0.0))
    return {"bid": bid, "ask": ask, "bid_posted": mid - bid_tick, "ask_posted": ask_tick - mid,
            "bought": bought / size, "sold": sold / size}


def fill_sensitivity(spec, seeds, bins: int = 12) -> FillSensitivity:
    """The book's sensitivity b of a maker's fill rate to its quote relative to the others'.

    Λ ∝ exp(-b (δ - δ̄_posted)), fitted by Poisson regression (Newton) over every step, maker
    and side of runs recorded at every step (a fill indicator per step is a Poisson count
    while Λ dt ≪ 1; here about 0.04). It is the book's k̃ = k + ε of the model when the
    crowd's mean quote is fixed.

    Parameters
    ----------
    spec : simulator.market.MarketSpec
    seeds : sequence of int
    bins : int
        Equal-count bins for the binned rates.

    Returns
    -------
    analysis.impact.FillSensitivity
    """
    spec = dataclasses.replace(spec, record_every=1)
    xs, ys = [], []
    for seed in seeds:
        quotes = posted_quotes(spec, run_market(spec, seed))
        for dist, filled in ((quotes["bid_posted"], quotes["bought"]), (quotes["ask_posted"], quotes["sold"])):
            posted = ~np.isnan(dist)
            rel = dist - np.nanmean(dist, axis=1, keepdims=True)
            xs.append(rel[posted])
            ys.append(filled[posted].astype(np.float64))
    return fit_fill_sensitivity(np.concatenate(xs), np.concatenate(ys), spec.dt, bins)


def _fill_rate(args) -> float:
    """Fills per maker, per side and unit time in one run (every trade has a maker side)."""
    spec, seed = args
    return float(run_market(spec, seed).market["volume"].sum()) / (spec.makers.count * spec.T * 2)


def fit_intensity(study: MakersStudy, pool) -> tuple[MakersStudy, list[float], list[float]]:
    """Fit the makers' intensity to the book at the largest N, ``study.fit_intensity`` times.

    With the MFG's mean quote δ̄, set A so that A e^{-k δ̄} (the intensity a maker at the mean
    quote expects) is the fill rate the book delivers; with ``fit_competition`` also set
    ε = b - k, b the book's sensitivity to a maker's quote relative to the others'
    (:func:`fill_sensitivity`, on up to 4 seeds); re-solve, repeat.

    Parameters
    ----------
    study : MakersStudy
    pool : concurrent.futures.Executor

    Returns
    -------
    (study, A_path, competition_path) : tuple of (MakersStudy, list of float, list of float)
        The study with the fitted values and the paths of A and ε.
    """
    makers = study.market["makers"]
    a_path = [float(makers.get("fill_intensity", 100.0))]
    eps_path = [float(makers.get("competition", 0.0))]
    for _ in range(study.fit_intensity):
        spec = market_spec(study, study.n_makers[-1])
        makers = spec.makers
        sol, sub = makers.mean_field(spec.T, spec.n_steps)
        rate = float(np.mean(list(pool.map(_fill_rate, [(spec, seed) for seed in study.seeds]))))
        mean_quote = 0.5 * float(np.mean(sol.mean_bid) + np.mean(sol.mean_ask))
        market = copy.deepcopy(study.market)
        market["makers"]["fill_intensity"] = rate * float(np.exp(makers.fill_decay * mean_quote))
        if study.fit_competition:
            b = fill_sensitivity(spec, study.seeds[:4]).slope
            if np.isfinite(b):
                market["makers"]["competition"] = max(b - makers.fill_decay, 0.0)
        study = dataclasses.replace(study, market=market)
        a_path.append(market["makers"]["fill_intensity"])
        eps_path.append(float(market["makers"].get("competition", 0.0)))
    return study, a_path, eps_path


def run(study: MakersStudy, workers: int | None = None, dask: str | None = None) -> MakersResult:
    """Run every N and seed on an engine and fit each metric against N.

    With ``fit_intensity`` the makers' A (and with ``fit_competition`` ε) is first fitted to
    the book's fills (:func:`fit_intensity`); the paths are in every fit row.

    Parameters
    ----------
    study : MakersStudy
    workers, dask
        As in :func:`mfgsim.engines.make_engine`.

    Returns
    -------
    MakersResult
    """
    warm_kernels()
    with make_engine(workers, dask) as pool:
        study, intensity_path, competition_path = fit_intensity(study, pool)
        jobs = [(market_spec(study, n), seed) for n in study.n_makers for seed in study.seeds]
        rows = list(pool.map(run_metrics, jobs))
    final = market_spec(study, study.n_makers[-1]).makers
    sensitivity = fill_sensitivity(market_spec(study, study.n_makers[-1]), study.seeds[:4])
    runs = pl.DataFrame(rows).with_columns(pnl_gap=(pl.col("pnl") - pl.col("mf_pnl")).abs(),
                                           spread_gap=(pl.col("spread") - pl.col("mf_spread")).abs())
    fits, curves = [], {}
    for metric in METRICS:
        n, values = runs["N"].to_numpy(), runs[metric].to_numpy()
        fit = fit_power_law(n, values)
        bias = fit_with_bias(n, values) if metric == "w1" else None
        curves[metric] = (fit, bias)
        fits.append({"metric": metric, "slope": fit.slope, "slope_lo": fit.slope_ci[0], "slope_hi": fit.slope_ci[1],
                     "bias": bias.bias if bias else None, "rate": bias.rate if bias else None,
                     "value_at_max_N": float(fit.means[-1]), "fill_intensity_path": intensity_path,
                     "competition_path": competition_path, "book_sensitivity": sensitivity.slope,
                     "book_sensitivity_se": sensitivity.slope_se,
                     "model_sensitivity": final.fill_decay + final.competition})
    return MakersResult(study, runs, fits, curves, sensitivity, final.fill_decay + final.competition)


def write(result: MakersResult, out_root: str | Path) -> Path:
    """Write ``makers_runs.parquet``, ``makers_fits.parquet`` and the figures under ``out_root / <study name>``.

    Parameters
    ----------
    result : MakersResult
    out_root : str or os.PathLike

    Returns
    -------
    pathlib.Path
        The study's folder.
    """
    study, runs = result.study, result.runs
    out = check_writable(Path(out_root) / study.name, "study output folder")
    figures = {}
    for metric, (fit, bias) in result.curves.items():
        figures[metric] = plot_convergence(runs["N"].to_numpy(), runs[metric].to_numpy(), fit, metric=metric,
                                           reference_slope=-0.5, bias_fit=bias)
    figures["fill_sensitivity"] = plot_fill_sensitivity(result.sensitivity, result.model_sensitivity,
                                                        source=f"N={study.n_makers[-1]}, {len(study.seeds[:4])} seeds")
    with output_lock(out):
        atomic_write(out / "makers_runs.parquet", runs.write_parquet)
        atomic_write(out / "makers_fits.parquet", pl.DataFrame(result.fits).write_parquet)
        for metric, fig in figures.items():
            save_figure(fig, out / f"makers_{metric}")
    return out
