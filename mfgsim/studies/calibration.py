"""Closing the loop: trades -> order flow -> impact measured from the book -> MFG -> trades.

``mfgsim calibrate runs/closed_loop.toml`` (:func:`load`, :func:`run`, :func:`write`) starts
from the model's (κ, k, c), runs the book with the crowd on that model's MFG feedback over
several seeds, re-estimates (κ, k, c) from the book (:mod:`analysis.impact`), and moves
the calibrated parameters (``parameters``, default κ and c) a damped step towards the
estimates, until they change by less than ``tol`` (relative) or by less than two standard
errors of the estimates (the book cannot tell them apart), or ``max_iter`` is reached. With
``rho`` among the parameters the model is the transient-impact MFG (dY = (κμ - ρY) dt).
``impact = "path"`` measures κ (and ρ) by fitting the model's impact path to the book's
mean price path (what the price error scores) instead of the block regression of mid
changes on flow.

``model = "measured"`` replaces the LQ parameters by the book's own primitives (a nonlinear
propagator, the half-spread, the crowd term): see :mod:`mfgsim.studies.measured`.

Why k is not fed back by default: under mean-field scaling one agent's orders are a lot or
two, so its own temporary impact is not identified (the fitted slope is ~0); what the book
charges it is the half-spread, a linear cost. Its quadratic projection a E|ν|³/E|ν|⁴ is
reported as ``k_hat``, but feeding it back has no interior fixed point (a smaller k makes
the crowd trade faster, which shrinks the projection further), so k stays the agents'
configured speed friction unless ``parameters`` includes it.

Outputs under ``runs/out/<name>/``:

* ``calibration.parquet``: per sweep point and iteration, the parameters used, the book's
  estimates with standard errors, the distance, the price error (book price move against
  the model's κ (E(t) - E(0))), the cost gap (the agents' realised gain against the MFG
  value) and the finite-N gap (W1, mean inventory, mean rate) of the agents to the MFG law
  of the parameters they traded on;
* ``meta_orders.parquet`` (when ``[meta_orders]`` is given): impact of crowd meta-orders
  of several sizes, peak and after ``post_steps`` of relaxation, and the fitted exponent;
* figures of the parameter paths and of the meta-order study.

A ``[sweep]`` over book parameters (e.g. ``"market.noise.limit_rate"``) calibrates each
point: the fixed point moves with the book.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from analysis.compare import compare_run
from analysis.convergence import fit_power_law, fit_with_bias
from analysis.figures import (plot_calibration, plot_convergence, plot_measured_calibration, plot_meta_orders,
                              plot_propagator_fit, save_figure)
from analysis.impact import (decay_profile, estimate_impact, impact_path_fit, kyle_lambda, order_flow_imbalance,
                             response_exponent)
from mfg.io import atomic_write
from simulator.market import run_market

from ..build import build_run, market_objects
from ..config import check_memory, output_name, read_toml
from ..engines import SeedRuns, make_engine, warm_kernels
from ..io import check_writable, output_lock
from ..specs import resolve_point, sweep_points
from . import makers_loop, measured


@dataclass(frozen=True)
class CalibrationSettings:
    """The loop's settings from ``[calibration]``.

    Parameters
    ----------
    seeds : tuple of int
        Seeds of the book runs of each iteration.
    damping : float
        Weight of the new estimate in each update, in (0, 1].
    tol : float
        Stop when the parameters move by less than this (relative), or by less than two
        standard errors of the estimates.
    max_iter : int
        Iterations allowed.
    horizon : int
        Steps per block in the impact regressions.
    w1_records : int
        Records used for the finite-N comparison.
    parameters : tuple of str
        Fed back from the book (among kappa, k, c, rho); the others stay fixed.
    impact : str
        How κ (and ρ) are measured: ``"blocks"`` (block regression) or a fit of the price path.
    model : str
        ``"parameters"``: the LQ model's (κ, k, c, ρ) are fed back; ``"measured"``: the book's
        own primitives (:mod:`mfgsim.studies.measured`).
    n_exponentials : int or None
        The measured kernel's decaying terms (None: chosen by BIC on the first measurement).
    n_boot : int
        Bootstrap resamples of the seeds for the measured primitives' errors.
    scaling : tuple of int
        With ``model = "measured"``: the N at which the fixed point is evaluated (liquidity
        scaled with N), on ``scaling_seeds`` fresh seeds; empty for none.
    scaling_seeds : tuple of int
    scaling_recalibrate : bool
        Also find each N's own fixed point (:func:`mfgsim.studies.measured.scaling`).
    crowd_share : float
        With ``model = "measured"``: the crowd's path's share of the kernel fit's weight.
    permanent_exponent : {"shared", "fitted"}
        With ``model = "measured"``: whether the kernel's permanent part has an exponent δ∞
        of its own.
    """

    seeds: tuple[int, ...]
    damping: float
    tol: float
    max_iter: int
    horizon: int  # steps per block in the impact regressions
    w1_records: int  # records used for the finite-N comparison
    parameters: tuple[str, ...] = ("kappa", "c")  # fed back from the book; the others stay fixed
    impact: str = "blocks"  # how κ (and ρ) are measured: block regression, or a fit of the price path
    model: str = "parameters"
    n_exponentials: int | None = None
    n_boot: int = 100
    scaling: tuple[int, ...] = ()
    scaling_seeds: tuple[int, ...] = ()
    scaling_recalibrate: bool = False
    crowd_share: float = 0.5
    permanent_exponent: str = "shared"


@dataclass(frozen=True)
class MetaOrderSettings:
    """The meta-order study from ``[meta_orders]``.

    Parameters
    ----------
    sizes : tuple of float
        Per-agent meta-order sizes (model units).
    seeds : tuple of int
    post_steps : int
        Steps of relaxation recorded after the orders end.
    held_out_seeds : tuple of int
        Fresh seeds on which each size held out of the kernel's fit is observed (its peak
        and plateau); empty: the fit's own ``seeds``.
    """

    sizes: tuple[float, ...]  # per-agent meta-order sizes, model units
    seeds: tuple[int, ...]
    post_steps: int
    held_out_seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class CalibrationPlan:
    """A loaded calibration.

    Parameters
    ----------
    name : str
        The output folder's name.
    source : str
        The file.
    settings : CalibrationSettings
    points : tuple of dict
        Resolved configs, one per sweep point.
    labels : tuple of str
        The sweep values of each point (JSON).
    meta_orders : MetaOrderSettings or None
    """

    name: str
    source: str
    settings: CalibrationSettings
    points: tuple[dict, ...]  # resolved configs, one per sweep point
    labels: tuple[str, ...]  # the sweep values of each point (JSON)
    meta_orders: MetaOrderSettings | None


PARAMETERS = ("kappa", "k", "c", "rho")


def _parameters(cal) -> tuple[str, ...]:
    value = cal.get("parameters", ["kappa", "c"])
    if not isinstance(value, list) or not value or not set(value) <= set(PARAMETERS) or len(set(value)) != len(value):
        raise cal.error("parameters", value, "expected a non-empty list of distinct names among "
                                             + ", ".join(repr(p) for p in PARAMETERS))
    return tuple(value)


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`run` measured.

    Parameters
    ----------
    plan : CalibrationPlan
    rows : list of dict
        One row per sweep point and iteration (parameters, estimates with standard errors,
        the finite-N gap).
    meta_orders : list of dict
        The meta-order rows (empty without ``[meta_orders]``, and with ``model = "measured"``,
        whose meta-orders are part of the loop).
    held_out : list of dict
        With ``model = "measured"``: per meta-order size, its peak and plateau predicted by
        the kernel fitted without it.
    fits : list of dict
        With ``model = "measured"``: per sweep point, the last iteration's curves and
        measured propagator.
    scaling : list of dict
        With ``scaling``: per sweep point, N and seed, the run's cost_gap_rel and
        price_error_rel at the fixed point.
    scaling_by_n : list of dict
        The same pooled over seeds per N, with intervals.
    """

    plan: CalibrationPlan
    rows: list[dict]
    meta_orders: list[dict]
    held_out: list[dict] = dataclasses.field(default_factory=list)
    fits: list[dict] = dataclasses.field(default_factory=list)
    scaling: list[dict] = dataclasses.field(default_factory=list)
    scaling_by_n: list[dict] = dataclasses.field(default_factory=list)

    @property
    def converged(self) -> bool:
        """Whether every sweep point reached its fixed point."""
        table = pl.DataFrame(self.rows)
        return bool(table.group_by("point").agg(pl.col("converged").any())["converged"].all())


def load(path: str | Path) -> CalibrationPlan:
    """Read and validate a calibration file (``runs/closed_loop.toml``), building every sweep point once.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    CalibrationPlan

    Raises
    ------
    ConfigError
        Naming the file, the key path and the value.
    """
    root = read_toml(path)
    cal = root.table("calibration")
    name = output_name(cal, path)
    if cal.choice("population", ("crowd", "makers"), "crowd") == "makers":
        return makers_loop.load(root, cal, name)
    seeds = cal.integer("seeds", 4, lo=1, hi=100_000)
    model = cal.choice("model", ("parameters", "measured"), "parameters")
    if model == "measured":
        for key in ("parameters", "impact"):
            if key in cal.data:
                raise cal.error(key, cal.data[key], "not used with model = 'measured' (the book's primitives are "
                                                    "all measured)", "remove it")
    n_exponentials = cal.get("n_exponentials", None)
    if n_exponentials is not None:
        n_exponentials = cal.integer("n_exponentials", lo=0, hi=3)
    scaling = cal.get("scaling", [])
    if scaling and (model != "measured" or not isinstance(scaling, list) or len(scaling) < 3
                    or not all(isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= 1_000_000 for n in scaling)
                    or scaling != sorted(set(scaling))):
        raise cal.error("scaling", scaling, "expected at least 3 increasing integers in [2, 1000000] (the N of the "
                                            "evaluation at the fixed point), with model = 'measured'")
    scaling_seeds = cal.integer("scaling_seeds", seeds, lo=2, hi=100_000)
    recalibrate = cal.boolean("scaling_recalibrate", False)
    if recalibrate and not scaling:
        raise cal.error("scaling_recalibrate", True, "needs a scaling list (the N at which to recalibrate)")
    settings = CalibrationSettings(
        seeds=tuple(range(seeds)), damping=cal.number("damping", 0.5, lo=0.0, hi=1.0, lo_open=True),
        tol=cal.number("tol", 0.05, lo=0.0, lo_open=True), max_iter=cal.integer("max_iter", 10, lo=1, hi=1000),
        horizon=cal.integer("horizon", 10, lo=2, hi=10**6), w1_records=cal.integer("w1_records", 11, lo=2, hi=10**6),
        parameters=_parameters(cal), impact=cal.choice("impact", ("blocks", "path"), "blocks"), model=model,
        n_exponentials=n_exponentials, n_boot=cal.integer("n_boot", 100, lo=2, hi=100_000), scaling=tuple(scaling),
        scaling_seeds=tuple(range(10_000, 10_000 + scaling_seeds)), scaling_recalibrate=recalibrate,
        crowd_share=cal.number("crowd_share", 0.5, lo=0.0, hi=1.0, lo_open=True),
        permanent_exponent=cal.choice("permanent_exponent", ("shared", "fitted"), "shared"))
    cal.done()
    if settings.permanent_exponent != "shared" and model != "measured":
        raise cal.error("permanent_exponent", settings.permanent_exponent, "a measured kernel's option: needs "
                                                                            "model = 'measured'")
    meta = meta_order_settings(root)
    if model == "measured":
        if meta is None:
            raise cal.error("model", "measured", "needs a [meta_orders] table: the kernel is fitted jointly to the "
                                                 "crowd's path and to meta-orders of several sizes")
        if len(meta.sizes) < 2:
            raise root.table("meta_orders").error("sizes", list(meta.sizes),
                                                  "model = 'measured' needs at least two sizes (one is held out of "
                                                  "the fit to check the kernel)")
        crowd = root.data.get("crowd", {})
        if "fd_grid" not in crowd:
            raise root.table("crowd").error("fd_grid", None, "model = 'measured' trades on the FD solution: give "
                                                             "a [crowd.fd_grid] table (x_min, x_max, n_x, n_t)")
    points = sweep_points(root.table("sweep", {}))
    base = {k: v for k, v in root.data.items() if k not in ("calibration", "meta_orders", "sweep")}
    base["campaign"] = {"kind": "market", "record_every": 1}
    resolved, labels = [], []
    for point in points:
        cfg = resolve_point(base, point, root.source)
        _, spec = market_objects(cfg, root.source)  # builds the run: every value is checked
        resolved.append(cfg)
        labels.append(json.dumps(point, sort_keys=True))
        # the driver holds an iteration's runs (recorded at every step) while it measures them,
        # and each seed's warm start
        check_memory((len(settings.seeds) + 1) * spec.memory_estimate() + len(settings.seeds) * spec.state_estimate(),
                     root.source,
                     f"crowd.n_agents={spec.n_agents} over calibration.seeds={len(settings.seeds)}",
                     "lower crowd.n_agents, calibration.seeds or the steps (T/dt)", per="per iteration")
        if settings.scaling:
            big = copy.deepcopy(cfg)
            big["crowd"]["n_agents"] = settings.scaling[-1]
            _, spec = market_objects(big, root.source)
            # recalibrating at N holds an iteration's runs there
            held = max(len(settings.scaling_seeds), len(settings.seeds) if settings.scaling_recalibrate else 0)
            check_memory((held + 1) * spec.memory_estimate() + held * spec.state_estimate(), root.source,
                         f"calibration.scaling up to N={settings.scaling[-1]} over {held} seeds",
                         "lower the largest N, calibration.scaling_seeds (or seeds, with scaling_recalibrate)")
    return CalibrationPlan(name, root.source, settings, tuple(resolved), tuple(labels), meta)


def meta_order_settings(root) -> MetaOrderSettings | None:
    """The ``[meta_orders]`` table of a file, validated (None when it has none).

    Parameters
    ----------
    root : mfgsim.config.Section
        The file's top level.

    Returns
    -------
    MetaOrderSettings or None
    """
    if "meta_orders" not in root.data:
        return None
    mo = root.table("meta_orders")
    n_seeds = mo.integer("seeds", 4, lo=1, hi=100_000)
    n_held_out = mo.integer("held_out_seeds", 0, lo=0, hi=100_000)
    if n_held_out == 1:
        raise mo.error("held_out_seeds", 1, "0 (the fit's own seeds) or at least 2 (their spread is the "
                                            "observed plateau's error)")
    meta = MetaOrderSettings(sizes=mo.numbers("sizes"), seeds=tuple(range(n_seeds)),
                             post_steps=mo.integer("post_steps", 250, lo=1, hi=10**8),
                             held_out_seeds=tuple(range(20_000, 20_000 + n_held_out)))
    if any(s <= 0 for s in meta.sizes):
        raise mo.error("sizes", list(meta.sizes), "meta-order sizes must be > 0")
    mo.done()
    return meta


def with_params(cfg: dict, kappa: float, k: float, c: float, rho: float = 0.0) -> dict:
    """A copy of the resolved config whose model has these impact parameters.

    Parameters
    ----------
    cfg : dict
        A resolved config.
    kappa, k, c : float
        Permanent, own temporary and crowd temporary impact (model units).
    rho : float
        Resilience (per time).

    Returns
    -------
    dict
    """
    out = copy.deepcopy(cfg)
    out["model"].update(kappa=float(kappa), k=float(k), c=float(c), rho=float(rho))
    return out


def finite_n_gap(runs, model, spec, n_records: int) -> dict:
    """The agents against the MFG of the parameters they traded on.

    W1, mean inventory and mean rate measure how well the agents execute their feedback
    (lots, fills): they are blind to a wrong κ, because the law is that of the same feedback.
    ``price_error`` is what a wrong impact model gets wrong: the mean book price move against
    the model's impact Y(t) (κ (E(t) - E(0)) when ρ = 0), in model price units (max over
    time).

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
    model : mfg.closed_form.LQCrowding
    spec : simulator.market.MarketSpec
    n_records : int
        Records compared.

    Returns
    -------
    dict
        w1, mean_inventory_error, mean_rate_error, cost_gap and price_error (model units).
    """
    stride = max(1, (runs[0].market["t"].size - 1) // (n_records - 1))
    rows = [compare_run(r, model, stride)[1] for r in runs]
    out = {key: float(np.mean([row[key] for row in rows]))
           for key in ("w1_mean", "mean_inventory_error", "mean_rate_error", "cost_gap")}
    t = runs[0].market["t"]
    inside = t <= model.T * (1 + 1e-12)
    mids = np.stack([r.market["mid"][inside] for r in runs])
    book = (mids - mids[:, :1]).mean(axis=0) * spec.tick_size * spec.crowd.lots_per_unit
    out["price_error"] = float(np.max(np.abs(book - model.price_impact(t[inside]))))
    return out


def calibrate_point(cfg: dict, plan: CalibrationPlan, pool, point: int = 0, progress=None) -> list[dict]:
    """Iterate one sweep point to its fixed point.

    Parameters
    ----------
    cfg : dict
        The point's resolved config.
    plan : CalibrationPlan
    pool : concurrent.futures.Executor
        Where the book runs go.
    point : int
        The point's index (in the rows).
    progress : callable, optional
        Called with each row as it is made.

    Returns
    -------
    list of dict
        One row per iteration.
    """
    s = plan.settings
    theta = np.array([cfg["model"]["kappa"], cfg["model"]["k"], cfg["model"].get("c", 0.0),
                      cfg["model"].get("rho", 0.0)], dtype=float)
    transient = "rho" in s.parameters or theta[3] > 0
    book_runs = SeedRuns(pool, s.seeds)  # the same seeds every iteration: each warms up once
    rows = []
    for it in range(s.max_iter + 1):
        started = time.perf_counter()
        model, spec = market_objects(with_params(cfg, *theta), plan.source)
        runs = book_runs(spec)
        crowd = spec.crowd
        est = estimate_impact(runs, crowd.n_agents, crowd.lots_per_unit, spec.tick_size, spec.dt, spec.n_steps,
                              s.horizon, transient=transient)
        hat = np.array([est.kappa, est.k, est.c, est.rho])
        se = np.array([est.kappa_se, est.k_se, est.c_se, est.rho_se])
        if s.impact == "path":  # κ and ρ that reproduce the book's mean price path
            fit = impact_path_fit([r.market for r in runs], crowd.n_agents, crowd.lots_per_unit, spec.tick_size,
                                  spec.dt, spec.n_steps, rho_fixed=None if "rho" in s.parameters else theta[3])
            hat[[0, 3]] = fit.kappa, fit.rho
            se[[0, 3]] = fit.kappa_se, fit.rho_se
        free = np.array([name in s.parameters for name in PARAMETERS])
        scale = np.maximum(np.abs(theta), [1e-3, 1e-3, 0.05, 0.05])
        distance = float(np.max((np.abs(hat - theta) / scale)[free]))
        # the estimates are noisy: a step inside their own ±2 s.e. is as close as the
        # book can tell, whatever tol says
        within_noise = bool(np.all((np.abs(hat - theta) <= 2 * se)[free]))
        markets = [r.market for r in runs]
        rows.append({
            "point": point, "sweep": plan.labels[point], "iteration": it, "seconds": time.perf_counter() - started,
            "kappa": theta[0], "k": theta[1], "c": theta[2], "rho": theta[3],
            "kappa_hat": hat[0], "kappa_se": se[0], "k_hat": est.k, "k_se": est.k_se,
            "rho_hat": hat[3], "rho_se": se[3],
            "c_hat": est.c, "c_se": est.c_se, "spread_cost": est.spread_cost,
            "k_own": est.temporary["k"][0], "distance": distance,
            **finite_n_gap(runs, model, spec, s.w1_records),
            "kyle_lambda": kyle_lambda(markets, s.horizon)["lambda"][0],
            "ofi_r2": order_flow_imbalance(markets, s.horizon).r2,
            "within_noise": within_noise, "converged": False,
        })
        if progress is not None:
            progress(rows[-1])
        if distance < s.tol or within_noise:
            rows[-1]["converged"] = True
            break
        if it < s.max_iter:
            theta = np.where(free, theta + s.damping * (hat - theta), theta)
    return rows


def meta_order_study(cfg: dict, plan: CalibrationPlan, pool, kappa: float, k: float, c: float) -> list[dict]:
    """Crowd meta-orders (TWAP sells of each size per agent), then ``post_steps`` of relaxation.

    Parameters
    ----------
    cfg : dict
        A resolved config.
    plan : CalibrationPlan
        Its ``meta_orders`` gives the sizes and seeds.
    pool : concurrent.futures.Executor
    kappa, k, c : float
        The model's impact parameters for the runs.

    Returns
    -------
    list of dict
        One row per size: peak and permanent impact (ticks), the mean path.
    """
    meta = plan.meta_orders
    rows = []
    for size in meta.sizes:
        sized = with_params(cfg, kappa, k, c)
        sized["model"]["types"] = [{**sized["model"]["types"][0], "m0": {"means": [float(size)], "stds": [0.0]},
                                    "weight": 1.0}]
        sized["crowd"] = {**sized["crowd"], "strategy": "twap", "stop_at_target": True}
        obj = build_run(sized, plan.source)
        spec = dataclasses.replace(obj["spec"], post_steps=meta.post_steps, record_every=1, max_trades_kept=0)
        runs = list(pool.map(run_market, [spec] * len(meta.seeds), meta.seeds))
        paths = np.stack([r.market["mid"] for r in runs])
        prof = decay_profile(paths, -np.ones(len(runs)), spec.n_steps, max(1, meta.post_steps // 5))
        rows.append({"size": float(size), "lots_per_agent": float(size) * spec.crowd.lots_per_unit,
                     "peak_ticks": prof["peak"], "permanent_ticks": prof["permanent"],
                     "permanent_fraction": prof["permanent_fraction"],
                     "path": prof["impact"].tolist()})
    return rows


def run(plan, workers: int | None = None, dask: str | None = None, verbose: bool = True,
        checkpoint: str | Path | None = None):
    """Calibrate every sweep point to its fixed point, then (with ``[meta_orders]``) run the
    meta-orders at the last point's parameters.

    Parameters
    ----------
    plan : CalibrationPlan or mfgsim.studies.makers_loop.MakersLoopPlan
    workers, dask
        As in :func:`mfgsim.engines.make_engine`.
    verbose : bool
        Print one line per iteration.
    checkpoint : str or os.PathLike, optional
        A folder where ``calibration.parquet`` is rewritten (atomically) after every
        iteration, so that a loop that dies or never converges keeps every iteration on disk.

    Returns
    -------
    CalibrationResult or mfgsim.studies.makers_loop.MakersLoopResult
    """
    seen: list[dict] = []

    def keep(row):
        seen.append(row)
        if checkpoint is not None:
            with output_lock(checkpoint):
                atomic_write(Path(checkpoint) / "calibration.parquet", pl.DataFrame(seen).write_parquet)

    def say(row):
        keep(row)
        if verbose:
            print(f"point {row['point']} it {row['iteration']}: kappa={row['kappa']:.4g} k={row['k']:.4g} "
                  f"c={row['c']:.4g} rho={row['rho']:.4g} -> book kappa={row['kappa_hat']:.4g}±{row['kappa_se']:.2g} "
                  f"k={row['k_hat']:.4g}±{row['k_se']:.2g} c={row['c_hat']:.4g}±{row['c_se']:.2g} "
                  f"rho={row['rho_hat']:.4g}±{row['rho_se']:.2g}; "
                  f"distance {row['distance']:.3g}, price error {row['price_error']:.4g}, "
                  f"W1 {row['w1_mean']:.4g}", flush=True)

    def say_measured(row):
        keep(row)
        if verbose:
            print(f"point {row['point']} it {row['iteration']}: traded on {row['started_from']} -> book G_inf="
                  f"{row['hat_permanent']:.4g}±{row['hat_permanent_se']:.2g} "
                  + " ".join(f"(kappa={row[f'hat_amplitude_{i}']:.3g}, rho={row[f'hat_rate_{i}']:.3g})"
                             for i in (1, 2, 3) if math.isfinite(row[f"hat_rate_{i}"]))
                  + f" delta={row['hat_exponent']:.3g}"
                  + (f" delta_inf={row['hat_permanent_exponent']:.3g}"
                     if math.isfinite(row["hat_permanent_exponent"]) else "")
                  + f" a={row['hat_spread']:.3g} k={row['hat_k']:.3g} alpha={row['hat_alpha']:.3g} "
                  f"c={row['hat_crowd']:.3g}; distance {row['distance']:.3g}; cost_gap_rel "
                  f"{row['cost_gap_rel']:+.3f}, price_error_rel {row['price_error_rel']:.3f}", flush=True)

    def say_own(n, row):
        if verbose:
            print(f"N={n} own loop it {row['iteration']}: distance {row['distance']:.3g}; cost_gap_rel "
                  f"{row['cost_gap_rel']:+.3f}, price_error_rel {row['price_error_rel']:.3f}", flush=True)

    warm_kernels()
    if isinstance(plan, makers_loop.MakersLoopPlan):
        with make_engine(workers, dask) as pool:
            return makers_loop.run(plan, pool, verbose, keep)
    rows, meta_rows, held_out, fits = [], [], [], []
    with make_engine(workers, dask) as pool:
        if plan.settings.model == "measured":
            scaling_runs, scaling_by_n = [], []
            for i, cfg in enumerate(plan.points):
                point_rows, point_held_out, last = measured.calibrate_point(cfg, plan, pool, i, say_measured)
                rows += point_rows
                held_out += point_held_out
                fits.append(last)
                if plan.settings.scaling:
                    fixed = (measured.Primitives.from_columns(point_rows[-1])
                             if point_rows[-1]["started_from"] == "primitives" else None)
                    runs_n, by_n = measured.scaling(cfg, plan, fixed, pool, say_own)
                    scaling_runs += [{"point": i, **r} for r in runs_n]
                    scaling_by_n += [{"point": i, **r} for r in by_n]
            return CalibrationResult(plan, rows, [], held_out, fits, scaling_runs, scaling_by_n)
        for i, cfg in enumerate(plan.points):
            rows += calibrate_point(cfg, plan, pool, i, say)
        if plan.meta_orders is not None:
            last = rows[-1]
            meta_rows = meta_order_study(plan.points[0], plan, pool, last["kappa"], last["k"], last["c"])
    return CalibrationResult(plan, rows, meta_rows)


def write(result, out_root: str | Path, verbose: bool = True) -> Path:
    """Write a calibration's tables and figures under ``out_root / <name>``.

    The parameter loop: ``calibration.parquet``, ``meta_orders.parquet``, figures
    ``calibration`` and ``meta_orders``. The measured loop: ``calibration.parquet``,
    ``held_out.parquet``, the figure ``propagator`` and, with ``scaling``,
    ``scaling_runs.parquet``, ``scaling.parquet`` and their figures. The makers' loop: see
    :func:`mfgsim.studies.makers_loop.write`.

    Parameters
    ----------
    result : CalibrationResult or mfgsim.studies.makers_loop.MakersLoopResult
    out_root : str or os.PathLike
    verbose : bool
        Print the meta-order fit.

    Returns
    -------
    pathlib.Path
        The study's folder.
    """
    out = check_writable(Path(out_root) / result.plan.name, "calibration output folder")
    with output_lock(out):
        if isinstance(result, makers_loop.MakersLoopResult):
            makers_loop.write(result, out)
            return out
        table = pl.DataFrame(result.rows)
        atomic_write(out / "calibration.parquet", table.write_parquet)
        if result.plan.settings.model == "measured":
            held_out = pl.DataFrame(result.held_out)
            atomic_write(out / "held_out.parquet", held_out.write_parquet)
            save_figure(plot_measured_calibration(table), out / "calibration")
            for i, fit in enumerate(result.fits):
                errors = {r["held_out"]: (r["peak_error"], r["plateau_error"])
                          for r in held_out.filter(pl.col("point") == i).iter_rows(named=True)}
                save_figure(plot_propagator_fit(fit["curves"], fit["propagator"], errors),
                            out / ("propagator" if len(result.fits) == 1 else f"propagator_point{i}"))
            if result.scaling:
                runs = pl.DataFrame(result.scaling)
                atomic_write(out / "scaling_runs.parquet", runs.write_parquet)
                atomic_write(out / "scaling.parquet", pl.DataFrame(result.scaling_by_n).write_parquet)
                for (point, fixed_point), g in runs.group_by("point", "fixed_point", maintain_order=True):
                    n = g["N"].to_numpy()
                    for metric in ("cost_gap_rel", "price_error_rel"):
                        values = np.abs(g[metric].to_numpy())
                        fig = plot_convergence(n, values, fit_power_law(n, values), metric=f"|{metric}|",
                                               bias_fit=fit_with_bias(n, values))
                        save_figure(fig, out / (f"scaling_{metric}" + ("_own" if fixed_point == "own" else "")
                                                + ("" if len(result.fits) == 1 else f"_point{point}")))
            return out
        save_figure(plot_calibration(table), out / "calibration")
        if result.meta_orders:
            meta = pl.DataFrame(result.meta_orders)
            atomic_write(out / "meta_orders.parquet", meta.drop("path").write_parquet)
            measured = meta.filter(pl.col("peak_ticks") > 0)
            if measured.height >= 2:
                fit = response_exponent(measured["lots_per_agent"].to_numpy(), measured["peak_ticks"].to_numpy())
                save_figure(plot_meta_orders(measured, fit), out / "meta_orders")
                if verbose:
                    delta, se = fit["delta"]
                    print(f"meta-order response: peak impact ~ size^{delta:.3f} (± {se:.3f}) over {measured.height} "
                          "sizes; permanent fraction " + ", ".join(f"{f:.2f}" for f in measured["permanent_fraction"]))
            if verbose and measured.height < meta.height:
                print(f"meta-orders: {meta.height - measured.height} size(s) moved the price less than the noise "
                      "(no positive peak); `mfgsim impact` measures the impact law with many seeds")
    return out


def missing_estimates(result) -> list[str]:
    """What a calibration could not estimate at its last iteration, one line each.

    Parameters
    ----------
    result : CalibrationResult or mfgsim.studies.makers_loop.MakersLoopResult

    Returns
    -------
    list of str
        Empty when every headline estimate is finite.
    """
    if isinstance(result, makers_loop.MakersLoopResult):
        keys = ("pnl_gap_rel", "w1")
        rows = [result.rows[-1]]
        extra = [] if math.isfinite(result.summary["w1_bias"]) else ["the W1 bias across N could not be fitted; "
                                                                    "raise scaling_seeds or the range of N"]
    else:
        last = {}
        for row in result.rows:
            last[row["point"]] = row
        rows = list(last.values())
        measured_loop = result.plan.settings.model == "measured"
        keys = (("hat_permanent", "hat_exponent", "hat_spread", "cost_gap_rel", "price_error_rel") if measured_loop
                else ("kappa_hat", "c_hat", "price_error", "cost_gap"))
        extra = []
    out = []
    for row in rows:
        bad = [key for key in keys if not math.isfinite(row[key])]
        if bad:
            where = f"point {row['point']} " if "point" in row else ""
            out.append(f"{where}iteration {row['iteration']}: {', '.join(bad)} could not be estimated (NaN); "
                       "raise the seeds, N or the horizon")
    return out + extra


def summary_text(result) -> str:
    """The summary a calibration prints: :func:`summarize` of its rows, or the makers loop's.

    Parameters
    ----------
    result : CalibrationResult or mfgsim.studies.makers_loop.MakersLoopResult

    Returns
    -------
    str
    """
    if isinstance(result, makers_loop.MakersLoopResult):
        return makers_loop.summary_text(result)
    text = summarize(pl.DataFrame(result.rows))
    if result.held_out:
        text += "\n" + _held_out_text(result.held_out)
    if result.scaling:
        text += "\n" + _scaling_text(pl.DataFrame(result.scaling), pl.DataFrame(result.scaling_by_n))
    return text


def _held_out_text(rows: list[dict]) -> str:
    """Each meta-order size predicted by the kernel fitted without it: peak and plateau errors."""
    lines, point = [], None
    for r in rows:
        if r["point"] != point:
            point = r["point"]
            lines.append(f"point {point}: each meta-order size predicted by the kernel fitted without it "
                         "(relative errors; 95% bootstrap intervals over the fit's and the observed seeds):")
        lines.append(f"  {r['held_out']:<10} over {r['observed_seeds']} seeds: " + "  ".join(
            f"{key} {r[f'{key}_error']:+.1%} [{r[f'{key}_error_lo']:+.1%}, {r[f'{key}_error_hi']:+.1%}]"
            for key in ("peak", "plateau")))
    return "\n".join(lines)


_FIXED_POINTS = {"carried": "at the loop's fixed point", "own": "at each N's own fixed point"}


def _scaling_text(runs: pl.DataFrame, by_n: pl.DataFrame) -> str:
    """The fixed point against N: the pooled outcomes per N and the fitted biases b + C N^-r."""
    lines = []
    for (point, fixed_point), g in by_n.group_by("point", "fixed_point", maintain_order=True):
        lines.append(f"point {point} {_FIXED_POINTS[fixed_point]}, against N (liquidity scaled):")
        for r in g.iter_rows(named=True):
            iterations = f"{r['iterations']} iteration" + ("s" if r["iterations"] != 1 else "")
            lasting = r.get("permanent_exponent", math.nan)
            own = (f"  ({iterations}, delta {r['exponent']:.2f}"
                   + (f", delta_inf {lasting:.2f}" if math.isfinite(lasting) else "")
                   + f", G_inf {r['permanent']:.2f})" if fixed_point == "own" and r["iterations"] else "")
            lines.append(f"  N={r['N']:>5}: cost_gap_rel {r['cost_gap_rel']:+.3f} [{r['cost_gap_rel_lo']:+.3f}, "
                         f"{r['cost_gap_rel_hi']:+.3f}]  price_error_rel {r['price_error_rel']:.3f} "
                         f"[{r['price_error_rel_lo']:.3f}, {r['price_error_rel_hi']:.3f}]{own}")
        one = runs.filter((pl.col("point") == point) & (pl.col("fixed_point") == fixed_point))
        n = one["N"].to_numpy()
        for metric in ("cost_gap_rel", "price_error_rel"):
            fit = fit_power_law(n, np.abs(one[metric].to_numpy()))
            lines.append(f"  |{metric}| per run ~ N^slope: slope {fit.slope:+.3f} [{fit.slope_ci[0]:+.3f}, "
                         f"{fit.slope_ci[1]:+.3f}]")
    return "\n".join(lines)


def summarize(table) -> str:
    """Start against fixed point for each sweep point: parameters and the finite-N gap.

    Parameters
    ----------
    table : polars.DataFrame
        The calibration rows.

    Returns
    -------
    str
        A text table.
    """
    lines = []
    for (point,), g in table.group_by("point", maintain_order=True):
        g = g.sort("iteration")
        first, last = g.row(0, named=True), g.row(-1, named=True)
        if not last["converged"]:
            status = f"NOT converged after {last['iteration']} iterations"
        else:
            status = "converged" + (" (estimates within 2 s.e.)" if last["within_noise"] else "")
        if last.get("model") == "measured":
            lines.append(f"point {point} {first['sweep']}: {status} (distance {last['distance']:.3g})")
            for label, row in (("start (configured model)", first), ("fixed" if last["converged"] else "last", last)):
                lines.append(f"  {label}: cost_gap_rel {row['cost_gap_rel']:+.3f} [{row['cost_gap_rel_lo']:+.3f}, "
                             f"{row['cost_gap_rel_hi']:+.3f}]  price_error_rel {row['price_error_rel']:.3f} "
                             f"[{row['price_error_rel_lo']:.3f}, {row['price_error_rel_hi']:.3f}] (halves "
                             f"{row['price_error_rel_half_a']:.3f}, {row['price_error_rel_half_b']:.3f})")
            continue
        first["abs_cost_gap"], last["abs_cost_gap"] = abs(first["cost_gap"]), abs(last["cost_gap"])

        def pct(key, first=first, last=last):
            return (last[key] / first[key] - 1) * 100 if first[key] > 0 else math.nan

        lines.append(
            f"point {point} {first['sweep']}: {status} (distance {last['distance']:.3g})\n"
            f"  start : kappa={first['kappa']:.4g} k={first['k']:.4g} c={first['c']:.4g} rho={first['rho']:.4g}  "
            f"price error={first['price_error']:.4g}  cost gap={first['cost_gap']:.4g}  "
            f"W1={first['w1_mean']:.4g}  mean-inventory error={first['mean_inventory_error']:.4g}\n"
            f"  {'fixed' if last['converged'] else 'last '} : "
            f"kappa={last['kappa']:.4g} k={last['k']:.4g} c={last['c']:.4g} rho={last['rho']:.4g}  "
            f"price error={last['price_error']:.4g}  cost gap={last['cost_gap']:.4g}  "
            f"W1={last['w1_mean']:.4g}  mean-inventory error={last['mean_inventory_error']:.4g}\n"
            f"  change: price error {pct('price_error'):+.0f}%, |cost gap| {pct('abs_cost_gap'):+.0f}%, "
            f"W1 {pct('w1_mean'):+.0f}%, "
            f"mean-inventory error {pct('mean_inventory_error'):+.0f}%")
    return "\n".join(lines)
