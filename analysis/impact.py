"""Price impact measured from the book (DESIGN §6).

All estimators are least squares with standard errors (Newey–West when the residuals may
be autocorrelated), and every coefficient is converted to the units of the LQ model:
a unit of inventory is ``L`` lots, a price S per unit is ``L * tick_size * mid_ticks``,
rates are units per time.

* permanent impact κ: ΔS = κ μ Δt. Over blocks of ``h`` steps, the mid change (ticks) is
  regressed on the crowd's net flow (lots): slope β, and κ = β · tick_size · N · L².
* temporary impact: the crowd orders' cost per unit against each step's starting mid,
  pooled per agent over blocks of h steps, y = a + k |ν| + c μ sign(ν) with ν the agent's
  rate and μ the crowd's mean rate in the block. ``a`` is the half-spread, which the LQ
  model does not have: it enters the model as its least-squares quadratic projection
  a E|ν|³/E|ν|⁴ added to k (own impact alone vanishes under mean-field scaling).
* diagnostics: Kyle's λ (ΔP on the net taker flow) and the order-flow imbalance of
  Cont–Kukanov–Stoikov (ΔP on OFI, with R²).
* meta-orders: the response exponent δ of peak impact ~ size^δ (square root: δ = 1/2) and
  the ratio of permanent to peak impact after the order ends; :func:`impact_law` fits δ
  against the participation Q/V with a bootstrap interval over seeds, and
  :func:`relaxation` fits the decay after the end, I(t) = I_perm + (I_peak - I_perm) e^{-ρt},
  whose ρ is the resilience of the transient-impact MFG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Regression:
    """An OLS result.

    Attributes
    ----------
    names : tuple of str
        The coefficients' names; ``reg[name]`` gives (coefficient, standard error).
    coef, stderr : numpy.ndarray of float64
        Coefficients and standard errors, in the units of y per unit of each regressor.
    r2 : float
        R² (NaN when y does not vary).
    n_obs : int
        Observations used (rows with a non-finite value are dropped).
    """

    names: tuple[str, ...]
    coef: np.ndarray
    stderr: np.ndarray
    r2: float
    n_obs: int

    def __getitem__(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return float(self.coef[i]), float(self.stderr[i])

    def ci(self, name: str, z: float = 1.96) -> tuple[float, float]:
        """Normal-approximation interval of one coefficient.

        Parameters
        ----------
        name : str
        z : float
            Half-width in standard errors (1.96 for 95%).

        Returns
        -------
        (low, high) : tuple of float
        """
        b, se = self[name]
        return b - z * se, b + z * se


def ols(X: np.ndarray, y: np.ndarray, names, hac_lags: int = 0) -> Regression:
    """Least squares with homoskedastic (lags 0) or Newey–West (lags > 0) standard errors.

    Parameters
    ----------
    X : numpy.ndarray of float64, shape (n, p)
        Regressors (include a column of ones for a constant).
    y : numpy.ndarray of float64, shape (n,)
    names : sequence of str
        The p coefficients' names.
    hac_lags : int
        Bartlett-kernel lags of the Newey–West covariance; 0 for homoskedastic errors.

    Returns
    -------
    Regression

    Raises
    ------
    ValueError
        With too few observations or collinear regressors (naming those that do not vary).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.all(np.isfinite(X), axis=1) & np.isfinite(y)
    X, y = X[keep], y[keep]
    n, p = X.shape
    if n <= p:
        raise ValueError(f"regression needs more observations ({n}) than coefficients ({p})")
    if np.linalg.matrix_rank(X) < p:
        constant = [name for name, col in zip(names, X.T) if np.ptp(col) == 0 and name not in ("const", "a", "log_a")]
        raise ValueError(f"regressors {list(names)} are collinear" + (
            f"; {constant} do not vary (pool over a longer horizon)" if constant else ""))
    XtX_inv = np.linalg.inv(X.T @ X)
    coef = XtX_inv @ X.T @ y
    resid = y - X @ coef
    if hac_lags <= 0:
        cov = XtX_inv * (resid @ resid) / (n - p)
    else:
        u = X * resid[:, None]
        S = u.T @ u
        for lag in range(1, hac_lags + 1):
            w = 1.0 - lag / (hac_lags + 1.0)  # Bartlett kernel
            G = u[lag:].T @ u[:-lag]
            S += w * (G + G.T)
        cov = XtX_inv @ S @ XtX_inv * n / (n - p)
    tss = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else float("nan")
    return Regression(tuple(names), coef, np.sqrt(np.diag(cov)), r2, n)


def _blocks(x: np.ndarray, h: int) -> np.ndarray:
    m = (x.size // h) * h
    return x[:m].reshape(-1, h).sum(axis=1)


@dataclass(frozen=True)
class ImpactEstimate:
    """(κ, k, c) in model units with standard errors, plus the spread cost and diagnostics.

    Attributes
    ----------
    kappa, kappa_se : float
        Permanent impact κ (price per inventory unit).
    k, k_se : float
        The model's temporary impact: max(own-rate slope, 0) plus the quadratic projection
        of the spread cost (price per (unit/time) per unit).
    c, c_se : float
        Crowd temporary impact, floored at 0 (price per (unit/time)).
    spread_cost : float
        a, the half-spread per unit traded (price units).
    permanent, temporary : Regression
        The underlying regressions.
    rho, rho_se : float
        Resilience (per time) when estimated with ``transient=True``, else 0.
    """

    kappa: float
    kappa_se: float
    k: float
    k_se: float
    c: float
    c_se: float
    spread_cost: float
    permanent: Regression
    temporary: Regression
    rho: float = 0.0  # resilience (1/time) when estimated with transient=True, else 0
    rho_se: float = 0.0


def permanent_impact(markets, n_agents: int, lots_per_unit: int, tick_size: float, horizon: int = 10,
                     n_steps: int | None = None) -> Regression:
    """Mid change over blocks of ``horizon`` steps on the crowd's net flow.

    Only steps the crowd trades on (the first ``n_steps``) are used.

    Parameters
    ----------
    markets : sequence of dict or polars.DataFrame
        Market tables recorded every step.
    n_agents : int
        N.
    lots_per_unit : int
        L, lots per model inventory unit.
    tick_size : float
        Price units per tick.
    horizon : int
        Steps per block.
    n_steps : int, optional
        Steps the crowd trades on (default: all).

    Returns
    -------
    Regression
        Coefficients const and beta (ticks per lot), and kappa = beta · tick_size · N · L²
        (price per inventory unit).
    """
    dmid, flow, _ = _impact_blocks(markets, horizon, n_steps)
    reg = ols(np.stack([np.ones_like(flow), flow], axis=1), dmid, ("const", "beta"), hac_lags=2)
    scale = tick_size * n_agents * lots_per_unit**2
    return Regression(reg.names + ("kappa",), np.append(reg.coef, reg.coef[1] * scale),
                      np.append(reg.stderr, reg.stderr[1] * scale), reg.r2, reg.n_obs)


def _impact_blocks(markets, horizon: int, n_steps: int | None):
    """Per block of ``horizon`` steps while the crowd trades: the mid change (ticks), the
    crowd's net flow (lots) and Σ (mid - mid(0)) over the block (ticks·steps)."""
    dmid, flow, level = [], [], []
    for m in markets:
        mid = np.asarray(m["mid"], dtype=np.float64)
        crowd = np.asarray(m["crowd_flow"], dtype=np.float64)
        last = mid.size - 1 if n_steps is None else min(n_steps, mid.size - 1)
        # record r+1 holds the flow of the step that moved the mid from record r
        dmid.append(_blocks(np.diff(mid[: last + 1]), horizon))
        flow.append(_blocks(crowd[1: last + 1], horizon))
        level.append(_blocks(mid[:last] - mid[0], horizon))
    return np.concatenate(dmid), np.concatenate(flow), np.concatenate(level)


def transient_impact(markets, n_agents: int, lots_per_unit: int, tick_size: float, dt: float,
                     horizon: int = 10, n_steps: int | None = None) -> Regression:
    """Obizhaeva–Wang impact from the mid: dY = (κ μ - ρ Y) dt with Y = mid - mid(0).

    Over blocks of ``horizon`` steps the mid change (ticks) is regressed on the crowd's net
    flow (lots) and on -dt Σ Y over the block (ticks·time), with Newey–West errors; it is
    :func:`permanent_impact` with a ρ. The noise flow's own random walk sits in Y too; over
    horizons much longer than 1/ρ the crowd's impact dominates it, over short ones ρ is
    biased upwards (the Dickey–Fuller effect).

    Parameters
    ----------
    markets, n_agents, lots_per_unit, tick_size, horizon, n_steps
        As in :func:`permanent_impact`.
    dt : float
        The step (time units).

    Returns
    -------
    Regression
        Coefficients const, beta (ticks per lot), rho (per time) and kappa (price per unit).
    """
    dmid, flow, level = _impact_blocks(markets, horizon, n_steps)
    level = -dt * level
    reg = ols(np.stack([np.ones_like(flow), flow, level], axis=1), dmid, ("const", "beta", "rho"), hac_lags=2)
    scale = tick_size * n_agents * lots_per_unit**2
    return Regression(reg.names + ("kappa",), np.append(reg.coef, reg.coef[1] * scale),
                      np.append(reg.stderr, reg.stderr[1] * scale), reg.r2, reg.n_obs)


@dataclass(frozen=True)
class ExecutionCells:
    """The crowd's executions pooled per agent and block of steps (DESIGN §6).

    Per order the own rate is not identified (mean-field scaling makes every order a lot or
    two), so each agent's orders are pooled over blocks of ``horizon`` steps.

    Attributes
    ----------
    cost : numpy.ndarray of float64
        Shortfall per unit traded against each order's pre-trade mid (model price units;
        positive is a cost).
    rate : numpy.ndarray of float64
        |ν|, the agent's traded volume rate in the block (model units per time).
    crowd : numpy.ndarray of float64
        μ sign ν, the crowd's mean rate in the block signed by the agent's direction
        (model units per time).
    run : numpy.ndarray of int64
        Index of the run each cell comes from (for resampling runs).
    """

    cost: np.ndarray
    rate: np.ndarray
    crowd: np.ndarray
    run: np.ndarray


def execution_cells(executions, markets, n_agents: int, lots_per_unit: int, tick_size: float, dt: float,
                    horizon: int = 10) -> ExecutionCells:
    """Pool the crowd's executions into agent × block-of-``horizon``-steps cells.

    Parameters
    ----------
    executions : sequence of dict
        The runs' crowd executions (step, agent, filled lots, shortfall in ticks·lots).
    markets : sequence of dict or polars.DataFrame
        The same runs' market tables, recorded every step.
    n_agents, lots_per_unit, tick_size, horizon
        As in :func:`permanent_impact`.
    dt : float
        The step (time units).

    Returns
    -------
    ExecutionCells
    """
    L = lots_per_unit
    ys, own, crowd_term, runs = [], [], [], []
    for i, (ex, m) in enumerate(zip(executions, markets)):
        filled = np.asarray(ex["filled"], dtype=np.float64)
        ok = filled != 0
        step = np.asarray(ex["step"])[ok]
        agent = np.asarray(ex["agent"])[ok]
        filled = filled[ok]
        cost = np.asarray(ex["shortfall"], dtype=np.float64)[ok]
        block = step // horizon
        n_blocks = int(block.max()) + 1 if block.size else 1
        cells, inv = np.unique(agent * n_blocks + block, return_inverse=True)
        volume = np.bincount(inv, np.abs(filled))
        net = np.bincount(inv, filled)
        total_cost = np.bincount(inv, cost)
        cell_block = cells % n_blocks
        flow = np.asarray(m["crowd_flow"], dtype=np.float64)[1:]
        block_flow = _blocks(np.append(flow, np.zeros((-flow.size) % horizon)), horizon)
        mu = block_flow[cell_block] / (n_agents * L * horizon * dt)
        ys.append(total_cost / volume * tick_size * L)
        own.append(volume / (L * horizon * dt))
        crowd_term.append(mu * np.sign(net))
        runs.append(np.full(cells.size, i, dtype=np.int64))
    if not ys:
        return ExecutionCells(*(np.zeros(0) for _ in range(3)), np.zeros(0, dtype=np.int64))
    return ExecutionCells(np.concatenate(ys), np.concatenate(own), np.concatenate(crowd_term), np.concatenate(runs))


def temporary_impact(executions, markets, n_agents: int, lots_per_unit: int, tick_size: float, dt: float,
                     horizon: int = 10) -> Regression:
    """Cost per unit on (1, |ν|, μ sign ν) over agent × block-of-``horizon``-steps cells.

    The cells are those of :func:`execution_cells`: y = an agent's shortfall per unit
    traded in a block (model price units), |ν| = its traded volume rate, μ sign ν = the
    crowd's mean rate in the block signed by the agent's direction.

    Parameters
    ----------
    executions, markets, n_agents, lots_per_unit, tick_size, dt, horizon
        As in :func:`execution_cells`.

    Returns
    -------
    Regression
        Coefficients a (half-spread, price units), k (price per (unit/time)), c, and
        ``spread_as_k`` = a E|ν|³/E|ν|⁴, the least-squares projection of a|ν| on k ν².
    """
    cells = execution_cells(executions, markets, n_agents, lots_per_unit, tick_size, dt, horizon)
    y, nu, mu_s = cells.cost, cells.rate, cells.crowd
    reg = ols(np.stack([np.ones_like(y), nu, mu_s], axis=1), y, ("a", "k", "c"), hac_lags=0)
    projection = float(np.mean(nu**3) / np.mean(nu**4))
    return Regression(reg.names + ("spread_as_k",), np.append(reg.coef, reg.coef[0] * projection),
                      np.append(reg.stderr, reg.stderr[0] * projection), reg.r2, reg.n_obs)


def estimate_impact(runs, n_agents: int, lots_per_unit: int, tick_size: float, dt: float, n_steps: int,
                    horizon: int = 10, transient: bool = False) -> ImpactEstimate:
    """κ, k, c (and ρ with ``transient``) from market runs recorded every step.

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Runs with their crowd executions.
    n_agents, lots_per_unit, tick_size, horizon
        As in :func:`permanent_impact`.
    dt : float
        The step (time units).
    n_steps : int
        Steps the crowd trades on.
    transient : bool
        Fit the resilience ρ too (:func:`transient_impact`).

    Returns
    -------
    ImpactEstimate
    """
    markets = [r.market for r in runs]
    if transient:
        perm = transient_impact(markets, n_agents, lots_per_unit, tick_size, dt, horizon, n_steps)
        rho, rho_se = perm["rho"]
    else:
        perm = permanent_impact(markets, n_agents, lots_per_unit, tick_size, horizon, n_steps)
        rho, rho_se = 0.0, 0.0
    temp = temporary_impact([r.executions for r in runs], markets, n_agents, lots_per_unit, tick_size, dt, horizon)
    kappa, kappa_se = perm["kappa"]
    k, k_se = temp["k"]
    spread_k, spread_k_se = temp["spread_as_k"]
    c, c_se = temp["c"]
    # the model needs k > 0 and c >= 0: own impact is floored at zero before the spread term
    return ImpactEstimate(kappa, kappa_se, max(k, 0.0) + spread_k, float(np.hypot(k_se, spread_k_se)),
                          max(c, 0.0), c_se, temp["a"][0], perm, temp, max(rho, 0.0), rho_se)


def kyle_lambda(markets, horizon: int = 1) -> Regression:
    """Kyle's λ: ΔP (ticks) on the net taker flow (lots) of all traders.

    Parameters
    ----------
    markets : sequence of dict or polars.DataFrame
        Market tables.
    horizon : int
        Records per block.

    Returns
    -------
    Regression
        Coefficients const and lambda (ticks per lot).
    """
    dmid, flow = [], []
    for m in markets:
        mid = np.asarray(m["mid"], dtype=np.float64)
        signed = np.asarray(m["signed_volume"], dtype=np.float64)
        dmid.append(_blocks(np.diff(mid), horizon))
        flow.append(_blocks(signed[1:], horizon))
    dmid, flow = np.concatenate(dmid), np.concatenate(flow)
    return ols(np.stack([np.ones_like(flow), flow], axis=1), dmid, ("const", "lambda"))


def order_flow_imbalance(markets, horizon: int = 1) -> Regression:
    """ΔP on OFI (Cont–Kukanov–Stoikov), from best quotes and their depths each step.

    Both are summed over blocks of ``horizon`` steps.

    Parameters
    ----------
    markets : sequence of dict or polars.DataFrame
        Market tables recorded every step.
    horizon : int
        Records per block.

    Returns
    -------
    Regression
        Coefficients const and ofi (ticks per lot), with R².
    """
    dmid, ofi = [], []
    for m in markets:
        bid = np.asarray(m["best_bid"], dtype=np.float64)
        ask = np.asarray(m["best_ask"], dtype=np.float64)
        qb = np.asarray(m["bid_depth"], dtype=np.float64)
        qa = np.asarray(m["ask_depth"], dtype=np.float64)
        e = ((bid[1:] >= bid[:-1]) * qb[1:] - (bid[1:] <= bid[:-1]) * qb[:-1]
             - (ask[1:] <= ask[:-1]) * qa[1:] + (ask[1:] >= ask[:-1]) * qa[:-1])
        ofi.append(_blocks(e, horizon))
        dmid.append(_blocks(np.diff(np.asarray(m["mid"], dtype=np.float64)), horizon))
    dmid, ofi = np.concatenate(dmid), np.concatenate(ofi)
    return ols(np.stack([np.ones_like(ofi), ofi], axis=1), dmid, ("const", "ofi"))


def response_exponent(sizes, impacts) -> Regression:
    """Fit log impact = log a + δ log size; δ = 1/2 is the square-root law.

    Parameters
    ----------
    sizes : array_like of float
        Positive meta-order sizes (lots).
    impacts : array_like of float
        Positive peak impacts (ticks).

    Returns
    -------
    Regression
        Coefficients log_a and delta.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    impacts = np.asarray(impacts, dtype=np.float64)
    if np.any(sizes <= 0) or np.any(impacts <= 0):
        raise ValueError("the response exponent needs positive sizes and impacts")
    x = np.log(sizes)
    return ols(np.stack([np.ones_like(x), x], axis=1), np.log(impacts), ("log_a", "delta"))


def decay_profile(mid_paths, sides, end_index: int, tail: int) -> dict:
    """Mean impact path of meta-orders (in the direction of trading) and its summary.

    Parameters
    ----------
    mid_paths : array_like of float, shape (orders, times)
        Mid prices (ticks).
    sides : array_like of float
        +1 buy / -1 sell per order.
    end_index : int
        The record where execution ended.
    tail : int
        Records averaged for the permanent level at the end of the path.

    Returns
    -------
    dict
        impact (the mean path, ticks), peak and permanent (ticks), permanent_fraction.
    """
    paths = np.asarray(mid_paths, dtype=np.float64)
    impact = (paths - paths[:, :1]) * np.asarray(sides, dtype=np.float64)[:, None]
    mean = impact.mean(axis=0)
    peak = float(mean[end_index])
    permanent = float(mean[-tail:].mean())
    return {"impact": mean, "peak": peak, "permanent": permanent,
            "permanent_fraction": permanent / peak if peak != 0 else float("nan")}


# ---- meta-order impact laws: the square root, its decay, and the resilience ρ --------------
@dataclass(frozen=True)
class ImpactLaw:
    """Peak impact against meta-order size, fitted on log–log axes.

    Attributes
    ----------
    sizes : numpy.ndarray of float64
        Meta-order volumes Q (lots).
    participation : numpy.ndarray of float64
        Q/V, V the rest of the market's volume over the execution.
    peaks : numpy.ndarray of float64
        Mean peak impact per size (ticks, in the direction of trading).
    exponent : float
        δ of I ∝ Q^δ.
    exponent_ci : tuple of float
        Its bootstrap interval over seeds.
    prefactor : float
        I = prefactor · (Q/V)^δ (ticks).
    """

    sizes: np.ndarray
    participation: np.ndarray
    peaks: np.ndarray
    exponent: float
    exponent_ci: tuple[float, float]
    prefactor: float


def _loglog_slope(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    X = np.stack([np.ones_like(x), np.log(x)], axis=1)
    w = np.ones_like(x) if weights is None else np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(X * w[:, None], np.log(y) * w, rcond=None)
    return float(coef[1]), float(np.exp(coef[0]))


def impact_law(sizes, participation, peaks_by_seed, n_boot: int = 2000, seed: int = 0) -> ImpactLaw:
    """Fit I ∝ (Q/V)^δ to the seed-mean peak impacts (least squares on log–log axes, each
    size weighted by the inverse variance of its log mean).

    Parameters
    ----------
    peaks_by_seed : (sizes, seeds) peak impact of each run. The interval resamples seeds
    with replacement (the same draw for every size, as a seed is one market), refits, and
    takes the 2.5 and 97.5 percentiles; a resample whose mean at some size is not positive
    is skipped (its log is undefined) and counted against the coverage.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    participation = np.asarray(participation, dtype=np.float64)
    peaks = np.asarray(peaks_by_seed, dtype=np.float64)
    if peaks.ndim != 2 or peaks.shape[0] != sizes.size or sizes.size < 3:
        raise ValueError("impact_law needs peaks of shape (sizes >= 3, seeds)")
    mean = peaks.mean(axis=1)
    if np.any(mean <= 0):
        raise ValueError(f"mean peak impacts must be positive to fit a power law; got {mean}")
    # weighted least squares: var(log m) ≈ var(m)/m², so small, noisy sizes count less
    weights = mean**2 / np.maximum(peaks.var(axis=1, ddof=1) / peaks.shape[1], 1e-300)
    exponent, prefactor = _loglog_slope(participation, mean, weights)
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_boot):
        pick = rng.integers(peaks.shape[1], size=peaks.shape[1])
        m = peaks[:, pick].mean(axis=1)
        if np.all(m > 0):
            slopes.append(_loglog_slope(participation, m, weights)[0])
    if len(slopes) < 0.9 * n_boot:
        raise ValueError("too few resamples with positive impacts at every size: use more seeds or larger sizes")
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return ImpactLaw(sizes, participation, mean, exponent, (float(lo), float(hi)), prefactor)


@dataclass(frozen=True)
class Relaxation:
    """Impact after a meta-order ends: I(t) = permanent + (peak - permanent) e^{-ρ t}.

    Attributes
    ----------
    time : numpy.ndarray of float64
        Time since the end (time units).
    normalised : numpy.ndarray of float64
        The mean path I(t)/I_peak.
    rho, rho_se : float
        The decay rate (per time) and its bootstrap standard error over seeds.
    permanent_fraction, permanent_fraction_se : float
        The fitted asymptote over the peak, and its standard error.
    """

    time: np.ndarray
    normalised: np.ndarray
    rho: float
    rho_se: float
    permanent_fraction: float
    permanent_fraction_se: float

    @property
    def decay_time(self) -> float:
        return 1.0 / self.rho


def _fit_relaxation(time: np.ndarray, path: np.ndarray) -> tuple[float, float]:
    """(ρ, asymptote/peak) for one normalised path: least squares in (a, b) for each ρ on a
    log grid, then a golden-section refinement of the best bracket (no scipy needed)."""
    def sse(rho):
        X = np.stack([np.ones_like(time), np.exp(-rho * time)], axis=1)
        coef, *_ = np.linalg.lstsq(X, path, rcond=None)
        return float(np.sum((X @ coef - path) ** 2)), float(coef[0])

    span = max(float(time[-1]), 1e-12)
    rho = minimise_on_grid(lambda r: sse(r)[0], np.geomspace(0.1 / span, 1000.0 / span, 121))
    return rho, sse(rho)[1]


def minimise_on_grid(objective, grid: np.ndarray, iterations: int = 40) -> float:
    """Minimise a one-dimensional objective: the best point of ``grid``, then a golden-section
    search of the bracket around it (no scipy needed).

    Parameters
    ----------
    objective : callable
        float -> float.
    grid : numpy.ndarray of float64
        Increasing points; the minimum should lie inside.
    iterations : int
        Golden-section steps (each shrinks the bracket by 0.618); 0 returns the best grid point.

    Returns
    -------
    float
        The minimiser (to about 1e-8 of the bracket after 40 steps).
    """
    errors = [objective(r) for r in grid]
    i = int(np.argmin(errors))
    if iterations == 0:
        return float(grid[i])
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    golden = (np.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = objective(a), objective(b)
    for _ in range(iterations):  # one new evaluation per step: the other interior point is kept
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = objective(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = objective(b)
    return 0.5 * (lo + hi)


def relaxation(mid_paths, sides, end_index: int, dt: float, n_boot: int = 400, seed: int = 0) -> Relaxation:
    """Fit the decay of meta-order impact after the order ends.

    ρ estimates the resilience of :class:`mfg.closed_form.LQCrowding` (Obizhaeva–Wang:
    dY = (κμ - ρY) dt makes impact relax like e^{-ρt} once trading stops); a book with a
    permanent part relaxes to ``permanent_fraction`` of the peak instead of to zero.

    Parameters
    ----------
    mid_paths : array_like of float, shape (runs, records)
        Mid prices (ticks).
    sides : array_like of float, shape (runs,)
        +1 buy / -1 sell per run.
    end_index : int
        The record where execution ended.
    dt : float
        Time between records.
    n_boot : int
        Bootstrap resamples of the runs for the standard errors.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Relaxation
    """
    paths = np.asarray(mid_paths, dtype=np.float64)
    impact = (paths - paths[:, :1]) * np.asarray(sides, dtype=np.float64)[:, None]
    after = impact[:, end_index:]
    if after.shape[1] < 4 or after[:, 0].mean() <= 0:
        raise ValueError("relaxation needs a positive mean peak and at least 4 records after the end")
    time = np.arange(after.shape[1]) * dt

    def fit(rows):
        mean = after[rows].mean(axis=0)
        return _fit_relaxation(time, mean / mean[0])

    rho, fraction = fit(np.arange(after.shape[0]))
    rng = np.random.default_rng(seed)
    boot = np.array([fit(rng.integers(after.shape[0], size=after.shape[0])) for _ in range(n_boot)])
    mean = after.mean(axis=0)
    return Relaxation(time, mean / mean[0], rho, float(boot[:, 0].std(ddof=1)), fraction,
                      float(boot[:, 1].std(ddof=1)))


@dataclass(frozen=True)
class PathFit:
    """κ and ρ of the model impact path fitted to the book's mean price path.

    The model's impact is Y(t) = κ ∫_0^t e^{-ρ(t-s)} μ(s) ds (dY = (κμ - ρY) dt) for the
    crowd's measured mean rate μ; κ is linear given ρ, ρ is found on a log grid refined by
    golden section (``rho_fixed`` pins it, e.g. 0 for permanent impact). Standard errors
    resample the runs with replacement.

    Attributes
    ----------
    kappa, kappa_se : float
        Price per inventory unit.
    rho, rho_se : float
        Per time.
    rmse : float
        Root-mean-square misfit of the path (price units).
    """

    kappa: float
    kappa_se: float
    rho: float
    rho_se: float
    rmse: float


def fit_impact_path(price, mu, dt: float, rho_fixed: float | None = None) -> tuple[float, float, float]:
    """Fit κ (and ρ) minimising |price - κ G_ρ| for one mean price path.

    Parameters
    ----------
    price : array_like of float
        Mean price move (model price units), starting at 0, length len(mu) + 1.
    mu : array_like of float
        The crowd's mean rate per step (units per time).
    dt : float
        Step (time units).
    rho_fixed : float, optional
        Pin ρ (0 for permanent impact); otherwise it is fitted, and the permanent model is
        kept when it fits at least as well.

    Returns
    -------
    (kappa, rho, rmse) : tuple of float
    """
    from mfg.closed_form import decaying_impact

    price = np.asarray(price, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)

    def fit(rho):
        G = decaying_impact(mu, dt, rho)
        denom = float(np.dot(G, G))
        kappa = float(np.dot(G, price) / denom) if denom > 0 else 0.0
        return float(np.mean((price - kappa * G) ** 2)), kappa

    if rho_fixed is not None:
        err, kappa = fit(rho_fixed)
        return kappa, rho_fixed, float(np.sqrt(err))
    horizon = mu.size * dt
    grid = np.concatenate([[0.0], np.geomspace(0.01 / horizon, 200.0 / horizon, 80)])
    rho = minimise_on_grid(lambda r: fit(r)[0], grid)
    err, kappa = fit(rho)
    permanent_err, permanent_kappa = fit(0.0)
    if permanent_err <= err:  # the permanent model is at least as good
        err, kappa, rho = permanent_err, permanent_kappa, 0.0
    return kappa, rho, float(np.sqrt(err))


def impact_path_fit(markets, n_agents: int, lots_per_unit: int, tick_size: float, dt: float, n_steps: int,
                    rho_fixed: float | None = None, n_boot: int = 100, seed: int = 0) -> PathFit:
    """Fit κ (and ρ) to the mean over runs of the mid path while the crowd trades.

    Prices are converted to model units (tick_size · L per tick) and the crowd's flow per
    step to its mean rate μ (units per time per agent), as in :func:`permanent_impact`.

    Parameters
    ----------
    markets : sequence of dict or polars.DataFrame
        Market tables recorded every step.
    n_agents, lots_per_unit, tick_size
        As in :func:`permanent_impact`.
    dt : float
        Step (time units).
    n_steps : int
        Steps the crowd trades on.
    rho_fixed : float, optional
        As in :func:`fit_impact_path`.
    n_boot : int
        Bootstrap resamples of the runs.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    PathFit
    """
    scale = tick_size * lots_per_unit
    prices = np.stack([(np.asarray(m["mid"], dtype=np.float64)[: n_steps + 1]
                        - float(m["mid"][0])) * scale for m in markets])
    rates = np.stack([np.asarray(m["crowd_flow"], dtype=np.float64)[1: n_steps + 1]
                      / (n_agents * lots_per_unit * dt) for m in markets])

    def fit(rows):
        return fit_impact_path(prices[rows].mean(axis=0), rates[rows].mean(axis=0), dt, rho_fixed)

    kappa, rho, rmse = fit(np.arange(len(markets)))
    rng = np.random.default_rng(seed)
    boot = np.array([fit(rng.integers(len(markets), size=len(markets)))[:2] for _ in range(n_boot)])
    return PathFit(kappa, float(boot[:, 0].std(ddof=1)), rho, float(boot[:, 1].std(ddof=1)), rmse)


@dataclass(frozen=True)
class FillSensitivity:
    """How the book splits its flow between makers (:func:`fit_fill_sensitivity`).

    Λ = exp(a - b (δ - δ̄_posted)) / dt.

    Attributes
    ----------
    slope, slope_se : float
        b and its standard error (per tick).
    rate_at_mean : float
        e^a / dt, the fill rate of a maker at the mean quote (fills per time).
    relative_quote : numpy.ndarray of float64
        Bin means of the relative quote (ticks), equal-count bins.
    fill_rate : numpy.ndarray of float64
        Fills per time in each bin.
    fills, observations : numpy.ndarray
        Fills and maker-steps per bin.
    """

    slope: float
    slope_se: float
    rate_at_mean: float
    relative_quote: np.ndarray
    fill_rate: np.ndarray
    fills: np.ndarray
    observations: np.ndarray


def fit_fill_sensitivity(relative_quote: np.ndarray, filled: np.ndarray, dt: float, bins: int = 12) -> FillSensitivity:
    """Fit Λ = exp(a - b x) / dt to per-step fill indicators by Poisson regression.

    Parameters
    ----------
    relative_quote : ndarray
        x: a maker's posted distance from the mid minus the makers' mean distance, ticks,
        one entry per maker, side and step in which the side was posted.
    filled : ndarray
        1.0 where that side was filled in that step, else 0.0 (a Poisson count while
        Λ dt ≪ 1).
    dt : float
        The step (model time units).
    bins : int
        Equal-count bins of ``relative_quote`` for the binned rates (fewer when there are
        under 50 observations a bin).

    Returns
    -------
    FillSensitivity
    """
    x, y = relative_quote, filled
    a, b, se = poisson_slope(x, y)
    order = np.argsort(x, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, max(x.size // 50, 1))) if g.size]
    fills = np.array([y[g].sum() for g in groups])
    steps = np.array([g.size for g in groups], dtype=np.int64)
    return FillSensitivity(b, se, float(np.exp(a) / dt), np.array([x[g].mean() for g in groups]),
                           fills / (steps * dt), fills, steps)


def poisson_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Maximum-likelihood (a, b) of counts y ~ Poisson(exp(a - b x)) by Newton's method.

    Parameters
    ----------
    x : numpy.ndarray of float64
        Regressor.
    y : numpy.ndarray of float64
        Counts.

    Returns
    -------
    (a, b, se) : tuple of float
        se is b's standard error from the Fisher information; NaNs when x does not vary or
        there are no counts (b is not identified).
    """
    if x.size < 3 or np.ptp(x) == 0.0 or y.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    X = np.stack([np.ones_like(x), -x], axis=1)
    beta = np.array([np.log(y.mean()), 0.0])
    for _ in range(100):
        mu = np.exp(X @ beta)
        info = X.T @ (mu[:, None] * X)
        step = np.linalg.solve(info, X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1]), float(np.sqrt(np.linalg.inv(info)[1, 1]))
