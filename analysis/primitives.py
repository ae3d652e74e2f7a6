"""The market's primitives measured from the book: what the MFG the book is compared with
is built on (DESIGN §6).

* **Propagator.** The mid moves by ``Y(t) = ∫_0^t G(t - s) μ(s) ds`` for the trading rate μ
  (model units per time per agent), with ``G(τ) = G_∞ + Σ_{i<=3} κ_i e^{-ρ_i τ}``: a
  permanent part and up to three decaying exponentials, all non-negative. G is fitted
  *jointly* to several mean price paths (the crowd's own trading, meta-orders of several
  sizes with their relaxation), so one kernel has to explain all of them. For fixed rates
  ρ_i the amplitudes are a non-negative least-squares problem (exact for μ constant on
  each step, :func:`mfg.closed_form.decaying_impact`); the rates are found by coordinate
  descent on log ρ, adding one exponential at a time, and the number of exponentials by
  BIC. Each path's points are weighted by the inverse variance of its seed mean (floored
  at the path's median variance, so that the first points, known almost exactly, do not
  dominate). :func:`held_out_error` refits without one path and predicts it. The permanent
  part may have an instantaneous impact of its own, f∞(μ) = sign(μ)|μ|^δ∞: every
  meta-order of one duration has the same plateau/peak ratio under one exponent, while the
  book's lasting impact grows with size faster than its transient one.
* **Temporary cost.** The cost per unit traded against the pre-trade mid, pooled per agent
  and block (:func:`analysis.impact.execution_cells`), is ``a + k |ν|^(α-1) + c μ sign ν``:
  ``a`` is the half-spread (a fixed cost per share), ``k |ν|^α`` the depth slippage as a cost
  rate, ``c`` the crowd's simultaneous orders. α is found on a grid refined by a parabola,
  (a, k, c) by least squares given α, all from per-run sums of the normal equations (so
  that resampling runs costs no pass over the cells).
* **Makers' fill table.** Λ(j; j̄): the fill rate of a quote j ticks from the mid when the
  makers' mean posted quote is j̄, counted from per-step fill indicators (a Poisson count
  while Λ dt ≪ 1); levels never quoted are reported as such (NaN), never filled in.

Every primitive carries bootstrap standard errors over seeds (runs resampled with
replacement). What cannot be identified raises :class:`PrimitiveError`, naming the
quantity and what to raise (seeds, horizon, N), rather than returning NaN.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mfg import validation as check
from mfg.closed_form import decay_gain, decaying_impact, instantaneous_impact

from ._nnls_kernels import nnls_normal, weighted_column
from .impact import ExecutionCells, minimise_on_grid

MAX_EXPONENTIALS = 3


class PrimitiveError(ValueError):
    """A primitive cannot be identified from the data; the message says which and what to raise."""


# ---- the propagator ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ImpactCurve:
    """One price path and the trading that made it, per seed, in model units.

    Parameters
    ----------
    name : str
        What the path is (``"crowd"``, ``"meta 0.5"``).
    rates : numpy.ndarray of float64, shape (seeds, n)
        The trading rate on each step (units per time per agent; negative when selling).
    prices : numpy.ndarray of float64, shape (seeds, n + 1)
        The mid's move from the start at each step edge (model price units).
    dt : float
        The step (time units).
    """

    name: str
    rates: np.ndarray
    prices: np.ndarray
    dt: float

    def __post_init__(self):
        rates = np.atleast_2d(np.asarray(self.rates, dtype=np.float64))
        prices = np.atleast_2d(np.asarray(self.prices, dtype=np.float64))
        check.number(f"{self.name}.dt", self.dt, lo=0.0, lo_open=True)
        check.require(rates.shape[1] >= 2 and prices.shape == (rates.shape[0], rates.shape[1] + 1),
                      f"{self.name}.prices", prices.shape, f"expected shape (seeds, n + 1) = "
                      f"({rates.shape[0]}, {rates.shape[1] + 1}) for rates of shape {rates.shape}, n >= 2")
        check.require(bool(np.all(np.isfinite(rates)) and np.all(np.isfinite(prices))), f"{self.name}", "non-finite",
                      "rates and prices must be finite")
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "prices", prices)

    @property
    def seeds(self) -> int:
        """Number of seeds (runs)."""
        return self.rates.shape[0]

    @functools.cached_property
    def mean_rates(self) -> np.ndarray:
        """The seeds' mean trading rate on each step (units per time per agent)."""
        return self.rates.mean(axis=0)

    @functools.cached_property
    def mean_prices(self) -> np.ndarray:
        """The seeds' mean price move at each step edge (model price units)."""
        return self.prices.mean(axis=0)

    @property
    def end_index(self) -> int:
        """The step edge where trading stopped: one past the last step with a non-zero mean rate."""
        moving = np.flatnonzero(self.mean_rates != 0.0)
        return int(moving[-1]) + 1 if moving.size else 0

    def with_seeds(self, pick) -> ImpactCurve:
        """The same curve over the seeds ``pick`` (indices, repeats allowed: a bootstrap resample).

        Parameters
        ----------
        pick : numpy.ndarray of int64

        Returns
        -------
        ImpactCurve
        """
        return ImpactCurve(self.name, self.rates[pick], self.prices[pick], self.dt)


def impact_curve(name: str, markets, n_agents: int, lots_per_unit: int, tick_size: float, dt: float,
                 n_steps: int | None = None) -> ImpactCurve:
    """An :class:`ImpactCurve` from market tables recorded every step.

    The crowd's net flow per step becomes its mean rate per agent (units per time) and the
    mid its move in model price units (tick_size · L per tick), as in
    :func:`analysis.impact.permanent_impact`.

    Parameters
    ----------
    name : str
    markets : sequence of dict or polars.DataFrame
        One market table per seed, recorded every step.
    n_agents : int
        N.
    lots_per_unit : int
        L.
    tick_size : float
        Price units per tick.
    dt : float
        The step (time units).
    n_steps : int, optional
        Steps to use (default: every recorded step, relaxation included).

    Returns
    -------
    ImpactCurve
    """
    scale = tick_size * lots_per_unit
    mids = [np.asarray(m["mid"], dtype=np.float64) for m in markets]
    n = min(mid.size for mid in mids) - 1 if n_steps is None else int(n_steps)
    prices = np.stack([(mid[: n + 1] - mid[0]) * scale for mid in mids])
    rates = np.stack([np.asarray(m["crowd_flow"], dtype=np.float64)[1: n + 1] / (n_agents * lots_per_unit * dt)
                      for m in markets])
    return ImpactCurve(name, rates, prices, dt)


@dataclass(frozen=True)
class Propagator:
    """A fitted nonlinear propagator: Y(t) = ∫ G(t - s) f(μ_s) ds, G(τ) = G_∞ + Σ_i κ_i e^{-ρ_i τ}.

    f(μ) = sign(μ)|μ|^δ (:func:`mfg.closed_form.instantaneous_impact`); δ = 1 is linear.
    With a permanent exponent δ∞ the permanent part acts on f∞(μ) = sign(μ)|μ|^δ∞ instead:
    Y(t) = G_∞ ∫ f∞(μ_s) ds + Σ_i κ_i ∫ e^{-ρ_i (t-s)} f(μ_s) ds.

    Parameters
    ----------
    permanent : float
        G_∞ >= 0 (price per unit of f(μ) integrated over time).
    amplitudes : tuple of float
        κ_i >= 0 (same units), ordered by increasing rate.
    rates : tuple of float
        ρ_i > 0 (per time), increasing.
    exponent : float
        δ > 0.
    permanent_se, exponent_se : float
    amplitudes_se, rates_se : tuple of float
        Bootstrap standard errors over seeds (NaN, or empty, without a bootstrap).
    curve_errors : dict of str to float
        Per fitted curve, the rms misfit over the largest |mean price| of the curve.
    permanent_exponent : float or None
        δ∞ > 0 of the permanent part; None: δ.
    permanent_exponent_se : float
    """

    permanent: float
    amplitudes: tuple[float, ...]
    rates: tuple[float, ...]
    exponent: float = 1.0
    permanent_se: float = math.nan
    amplitudes_se: tuple[float, ...] = ()
    rates_se: tuple[float, ...] = ()
    exponent_se: float = math.nan
    curve_errors: dict = field(default_factory=dict)
    permanent_exponent: float | None = None
    permanent_exponent_se: float = math.nan

    @property
    def lasting_exponent(self) -> float:
        """δ∞ of the permanent part: :attr:`permanent_exponent`, or δ when it has none."""
        return self.exponent if self.permanent_exponent is None else self.permanent_exponent

    def kernel(self, tau) -> np.ndarray:
        """G(τ).

        Parameters
        ----------
        tau : array_like of float
            Lags >= 0 (time units).

        Returns
        -------
        numpy.ndarray of float64
            The shape of ``tau``.
        """
        tau = np.asarray(tau, dtype=np.float64)
        decaying = sum(a * np.exp(-r * tau) for a, r in zip(self.amplitudes, self.rates))
        return np.full_like(tau, self.permanent) + decaying

    def impact(self, rates, dt: float) -> np.ndarray:
        """The price path of a rate constant on each step, exactly.

        Parameters
        ----------
        rates : array_like of float
            Rate per step (units per time per agent), length n.
        dt : float
            Step (time units).

        Returns
        -------
        numpy.ndarray of float64, shape (n + 1,)
            Price move at the step edges (model price units).
        """
        rates = np.asarray(rates, dtype=np.float64)
        flow = instantaneous_impact(rates, self.exponent)
        lasting = None if self.permanent_exponent is None else instantaneous_impact(rates, self.permanent_exponent)
        return _design(flow, dt, self.rates, lasting) @ np.array((self.permanent,) + tuple(self.amplitudes))

    def model_terms(self) -> dict:
        """The kernel as the impact terms of :class:`mfg.closed_form.LQCrowding` and the FD model.

        Returns
        -------
        dict
            ``kappa`` (the permanent part), ``rho`` (0), ``transient`` (the exponentials),
            ``impact_exponent`` (δ) and ``permanent_exponent`` (δ∞ or None), for
            :class:`mfg.fd.LQCrowdingModel`.
        """
        return {"kappa": float(self.permanent), "rho": 0.0,
                "transient": tuple((float(a), float(r)) for a, r in zip(self.amplitudes, self.rates)),
                "impact_exponent": float(self.exponent),
                "permanent_exponent": None if self.permanent_exponent is None else float(self.permanent_exponent)}


def _design(flow: np.ndarray, dt: float, decay: tuple[float, ...] | np.ndarray,
            lasting: np.ndarray | None = None) -> np.ndarray:
    """Columns: the path of unit permanent impact (of ``lasting``, f∞(μ), when given), then of
    a unit exponential of each rate."""
    return np.stack([decaying_impact(flow if lasting is None else lasting, dt, 0.0)]
                    + [decaying_impact(flow, dt, float(r)) for r in decay], axis=1)


class _Objective:
    """The weighted misfit of all curves for given decay rates (amplitudes solved inside),
    at one exponent δ of the instantaneous impact."""

    def __init__(self, curves: list[ImpactCurve], weights: list[np.ndarray], exponent: float = 1.0,
                 permanent_exponent: float | None = None):
        self.curves = curves
        self.weights = weights
        self.sqrt_w = [np.sqrt(w) for w in weights]
        self.y = np.concatenate([c.mean_prices * s for c, s in zip(curves, self.sqrt_w)])
        # the curves end to end, for one compiled call per column
        self._rates = np.concatenate([c.mean_rates for c in curves])
        self._splits = np.cumsum([c.mean_rates.size for c in curves])[:-1]
        self._starts = np.cumsum([0] + [c.mean_rates.size + 1 for c in curves]).astype(np.int64)
        self._sqrt_w = np.concatenate(self.sqrt_w)
        self._dts = [c.dt for c in curves]
        self.n_points = self.y.size
        self.yty = float(self.y @ self.y)
        self.exponent = self.permanent_exponent = None
        self._exponents(exponent, permanent_exponent)

    def _exponents(self, exponent: float, permanent_exponent: float | None) -> _Objective:
        """Set δ and δ∞ (None: δ), making only the flows that change; the caches start empty."""
        if exponent != self.exponent:
            self._flow = instantaneous_impact(self._rates, exponent)
        if permanent_exponent is None:
            self._lasting = self._flow
        elif permanent_exponent != self.permanent_exponent:
            self._lasting = instantaneous_impact(self._rates, permanent_exponent)
        self.exponent, self.permanent_exponent = exponent, permanent_exponent
        self._columns: dict[float, np.ndarray] = {}  # the weighted column of each decay rate seen
        self._dots: dict[tuple[float, float], float] = {}  # their inner products (rate, rate or y)
        return self

    @property
    def flows(self) -> list[np.ndarray]:
        """f(μ) of each curve's mean rates."""
        return np.split(self._flow, self._splits)

    @property
    def lasting_exponent(self) -> float:
        """δ∞ of the permanent part, δ when it has none of its own."""
        return self.exponent if self.permanent_exponent is None else self.permanent_exponent

    @property
    def lasting(self) -> list[np.ndarray] | None:
        """f∞(μ) of each curve's mean rates (None without a δ∞ of its own)."""
        return None if self.permanent_exponent is None else np.split(self._lasting, self._splits)

    def at(self, exponent: float) -> _Objective:
        """The same curves, weights and permanent exponent at another exponent δ."""
        # a shallow copy: the curves' weighted prices and rates are shared, read-only
        return copy.copy(self)._exponents(exponent, self.permanent_exponent)

    def lasting_at(self, permanent_exponent: float | None) -> _Objective:
        """The same curves, weights and δ with the permanent part at δ∞ (None: δ)."""
        return copy.copy(self)._exponents(self.exponent, permanent_exponent)

    def column(self, rate: float) -> np.ndarray:
        """The weighted path of a unit exponential of ``rate`` (0: permanent) over all curves."""
        rate = float(rate)
        if rate not in self._columns:
            if len(self._columns) > 256:  # a search visits each rate once or twice
                self._columns.clear()
            decay, gain = np.array([decay_gain(rate, dt) for dt in self._dts]).T
            self._columns[rate] = column = np.empty(self._sqrt_w.size)
            weighted_column(self._lasting if rate == 0.0 else self._flow, self._starts, decay, gain, self._sqrt_w,
                            column)
        return self._columns[rate]

    def _dot(self, a: float, b: float | None) -> float:
        """column(a) · column(b), or column(a) · y when b is None (cached: a search revisits them)."""
        key = (a, math.inf if b is None else b) if b is None or a <= b else (b, a)
        if key not in self._dots:
            if len(self._dots) > 65536:
                self._dots.clear()
            self._dots[key] = float(self.column(a) @ (self.y if b is None else self.column(b)))
        return self._dots[key]

    def solve(self, decay) -> tuple[np.ndarray, float]:
        rates = [0.0] + [float(r) for r in decay]
        p = len(rates)
        xtx = np.empty((p, p))
        for i in range(p):
            for j in range(i, p):
                xtx[i, j] = xtx[j, i] = self._dot(rates[i], rates[j])
        xty = np.array([self._dot(r, None) for r in rates])
        return nnls_normal(xtx, xty, self.yty)

    def __call__(self, decay) -> float:
        return self.solve(decay)[1]


def _weights(curves: list[ImpactCurve]) -> list[np.ndarray]:
    """Inverse variance of each seed-mean price, floored at the curve's median variance."""
    out = []
    for c in curves:
        scale = max(float(np.max(np.abs(c.mean_prices))), 1e-300)
        if c.seeds > 1:
            var = c.prices.var(axis=0, ddof=1) / c.seeds
            floor = max(float(np.median(var[1:])), (1e-6 * scale) ** 2)
            out.append(1.0 / np.maximum(var, floor))
        else:  # one seed: every point of the curve counts alike, scaled to the curve's size
            out.append(np.full(c.prices.shape[1], 1.0 / scale**2))
    return out


def _rate_grid(curves: list[ImpactCurve]) -> np.ndarray:
    span = max(c.rates.shape[1] * c.dt for c in curves)
    dt = min(c.dt for c in curves)
    return np.geomspace(0.05 / span, 0.5 / dt, 60)


def _refine(objective: _Objective, decay: list[float], grid: np.ndarray, sweeps: int,
            iterations: int = 30) -> list[float]:
    """Coordinate descent on log ρ_i, each a golden search (``iterations`` steps) of the bracket around it."""
    lo, hi = np.log(grid[0]), np.log(grid[-1])
    for _ in range(sweeps):
        for i in range(len(decay)):
            centre = math.log(decay[i])
            local = np.exp(np.linspace(max(lo, centre - 1.5), min(hi, centre + 1.5), 13))

            def with_rate(r, i=i):
                trial = list(decay)
                trial[i] = r
                return objective(trial)

            decay[i] = float(minimise_on_grid(with_rate, local, iterations=iterations))
    return sorted(decay)


def _nested_fits(objective: _Objective, up_to: int, grid: np.ndarray) -> list[list[float]]:
    """The decay rates of the best kernels with 0 .. ``up_to`` exponentials, adding one at a
    time: scan the grid for the new rate, then refine all of them."""
    fits: list[list[float]] = [[]]
    for _ in range(up_to):
        decay = fits[-1]
        errors = [objective(decay + [r]) for r in grid]
        fits.append(_refine(objective, decay + [float(grid[int(np.argmin(errors))])], grid, sweeps=3))
    return fits


def _best_kernel(objective: _Objective, n_exponentials: int | None, grid: np.ndarray) -> tuple[list[float], float]:
    """(decay rates, score) at the objective's exponent: BIC over 0..3 exponentials, or the
    weighted SSE of ``n_exponentials`` of them (scores compare across exponents)."""
    fits = _nested_fits(objective, MAX_EXPONENTIALS if n_exponentials is None else n_exponentials, grid)
    n = objective.n_points
    if n_exponentials is not None:
        return fits[-1], objective(fits[-1])
    bic = [n * math.log(max(objective(d), 1e-300) / n) + (2 * len(d) + 2) * math.log(n) for d in fits]
    best = int(np.argmin(bic))
    return fits[best], bic[best]


_EXPONENT_GRID = np.linspace(0.2, 1.4, 13)


def _parabola_vertex(points: np.ndarray, values: np.ndarray) -> float:
    """The vertex of the parabola through the least of ``values`` on evenly spaced ``points``
    and its two neighbours; the least point itself at the ends (or without curvature)."""
    i = int(np.argmin(values))
    if 0 < i < points.size - 1:
        lo, mid, hi = values[i - 1: i + 2]
        curvature = lo - 2 * mid + hi
        if curvature > 0:
            return float(points[i] + 0.5 * (points[1] - points[0]) * (lo - hi) / curvature)
    return float(points[i])


def _parabolic_minimum(objective, centre: float, step: float) -> float:
    """:func:`_parabola_vertex` over five points ``step`` apart around ``centre`` (kept > 0)."""
    points = centre + step * np.arange(-2, 3)
    points = points[points > 0]
    return _parabola_vertex(points, np.array([objective(x) for x in points]))


def _exponent_pair(objective: _Objective, decay: list[float], fit_exponent: bool) -> _Objective:
    """The objective at the (δ, δ∞) of least misfit for the rates ``decay`` (δ held unless
    ``fit_exponent``): the best pair on the exponent grid, then on a grid a quarter as fine
    around it (within the grid's range, as δ's own search), each coordinate refined by a
    parabola through its neighbours."""
    lo, hi = _EXPONENT_GRID[0], _EXPONENT_GRID[-1]
    deltas = _EXPONENT_GRID if fit_exponent else np.array([objective.exponent])
    lastings = _EXPONENT_GRID
    for _ in range(2):
        values = _pair_misfits(objective, decay, deltas, lastings)
        i, j = np.unravel_index(int(np.argmin(values)), values.shape)
        delta = _parabola_vertex(deltas, values[:, j]) if deltas.size > 2 else float(deltas[i])
        lasting = _parabola_vertex(lastings, values[i, :])
        fine = 0.25 * (_EXPONENT_GRID[1] - _EXPONENT_GRID[0]) * np.arange(-4, 5)
        if fit_exponent:
            deltas = np.unique(np.clip(deltas[i] + fine, lo, hi))
        lastings = np.unique(np.clip(lastings[j] + fine, lo, hi))
    return objective.at(delta).lasting_at(lasting)


def _pair_misfits(objective: _Objective, decay: list[float], deltas: np.ndarray, lastings: np.ndarray) -> np.ndarray:
    """The weighted misfit at every (δ, δ∞) of ``deltas`` × ``lastings`` for the rates ``decay``.

    The exponentials' columns depend on δ only and the permanent one on δ∞ only, so each is
    made once and every pair is a least-squares solve on their inner products.
    """
    y = objective.y
    lasting_columns = [objective.lasting_at(e).column(0.0) for e in lastings]
    out = np.empty((deltas.size, lastings.size))
    for i, d in enumerate(deltas):
        at = objective.at(d)
        decaying = np.stack([at.column(r) for r in decay], axis=1) if decay else np.empty((y.size, 0))
        gram, decaying_y = decaying.T @ decaying, decaying.T @ y
        for j, lasting in enumerate(lasting_columns):
            cross = decaying.T @ lasting
            xtx = np.block([[np.array([[lasting @ lasting]]), cross[None, :]], [cross[:, None], gram]])
            out[i, j] = nnls_normal(xtx, np.concatenate([[lasting @ y], decaying_y]), objective.yty)[1]
    return out


def _propagator(objective: _Objective, decay: list[float]) -> Propagator:
    coef, _ = objective.solve(decay)
    errors = {}
    lasting_flows = objective.lasting or [None] * len(objective.curves)
    for c, f, f_lasting in zip(objective.curves, objective.flows, lasting_flows):
        mean = c.mean_prices
        fit = _design(f, c.dt, decay, f_lasting) @ coef
        errors[c.name] = float(np.sqrt(np.mean((fit - mean) ** 2)) / max(np.max(np.abs(mean)), 1e-300))
    lasting = objective.permanent_exponent
    return Propagator(float(coef[0]), tuple(float(a) for a in coef[1:]), tuple(float(r) for r in decay),
                      float(objective.exponent), curve_errors=errors,
                      permanent_exponent=None if lasting is None else float(lasting))


def fit_propagator(curves, n_exponentials: int | None = None, n_boot: int = 100, seed: int = 0,
                   shares=None, exponent: float | None = 1.0, mapper: Callable = map,
                   permanent_exponent: float | str | None = "shared",
                   on_point: Callable[[Propagator], None] | None = None) -> Propagator:
    """Fit one propagator to several price paths jointly, with bootstrap errors over seeds.

    Parameters
    ----------
    curves : sequence of ImpactCurve
        The crowd's mean price path and meta-order paths (with their relaxation), say.
    n_exponentials : int, optional
        0 .. 3 decaying terms; by default chosen by BIC on the weighted misfit.
    n_boot : int
        Bootstrap resamples of each curve's seeds (0: no errors).
    seed : int
        Seed of the bootstrap.
    shares : sequence of float, optional
        Each curve's share of the total weight (normalised to sum to one); within a curve
        the points keep their inverse-variance weights. By default every point weighs its
        inverse variance, so long or precise curves count more.
    exponent : float or None
        δ of the instantaneous impact f(μ) = sign(μ)|μ|^δ: 1 for a linear propagator, None
        to fit it (on a grid over [0.2, 1.4] refined by golden section).
    mapper : callable
        ``map`` or an executor's ``map``: the bootstrap's refits go through it in chunks
        (the resamples are drawn here, so the errors do not depend on it).
    permanent_exponent : float, None or "shared"
        δ∞ of the permanent part's f∞(μ) = sign(μ)|μ|^δ∞: ``"shared"`` for δ∞ = δ, a number,
        or None to fit it (with δ when ``exponent`` is None: the best pair on δ's grid with
        the rates held, then the rates, twice; then the number of exponentials, and the pair
        and the rates once more).
    on_point : callable, optional
        Called with the point fit (no errors yet) once the bootstrap's refits are handed to
        ``mapper``: work that needs only the kernel can start beside them.

    Returns
    -------
    Propagator

    Raises
    ------
    PrimitiveError
        When no curve trades, or there are fewer points than parameters.
    """
    return _fit(curves, n_exponentials, n_boot, seed, shares, exponent, mapper, permanent_exponent, on_point)[0]


def _fit(curves, n_exponentials: int | None, n_boot: int, seed: int, shares, exponent: float | None,
         mapper: Callable, permanent_exponent: float | str | None,
         on_point: Callable[[Propagator], None] | None = None) -> tuple[Propagator, list[Propagator]]:
    """:func:`fit_propagator`'s kernel and the kernel of each of its bootstrap draws (none
    without ``n_boot`` or with one seed per curve)."""
    curves = list(curves)
    check.require(len(curves) >= 1 and all(isinstance(c, ImpactCurve) for c in curves), "curves", curves,
                  "expected a non-empty sequence of ImpactCurve")
    if n_exponentials is not None:
        check.integer("n_exponentials", n_exponentials, lo=0, hi=MAX_EXPONENTIALS)
    if exponent is not None:
        check.number("exponent", exponent, lo=0.0, lo_open=True)
    shared = isinstance(permanent_exponent, str)
    if shared:
        check.choice("permanent_exponent", permanent_exponent, ("shared",))
    elif permanent_exponent is not None:
        check.number("permanent_exponent", permanent_exponent, lo=0.0, lo_open=True)
    fit_lasting = permanent_exponent is None
    check.integer("n_boot", n_boot, lo=0, hi=100_000)
    if not any(np.any(c.rates != 0) for c in curves):
        raise PrimitiveError("propagator: no curve has any trading (all rates are zero); raise the crowd's "
                             "inventory, the horizon or N")
    weights = _weights(curves)
    if shares is not None:
        shares = np.asarray(shares, dtype=np.float64)
        check.require(shares.shape == (len(curves),) and bool(np.all(shares >= 0)) and shares.sum() > 0, "shares",
                      shares.tolist(), f"expected {len(curves)} non-negative weights, not all zero")
        weights = [w / w.sum() * share / shares.sum() for w, share in zip(weights, shares)]
    objective = _Objective(curves, weights, 1.0 if exponent is None else exponent,
                           None if shared or fit_lasting else float(permanent_exponent))
    if objective.n_points < 4 * (MAX_EXPONENTIALS + 1):
        raise PrimitiveError(f"propagator: {objective.n_points} price points cannot identify a kernel of up to "
                             f"{2 * MAX_EXPONENTIALS + 2} parameters; record more steps (a longer horizon)")
    grid = _rate_grid(curves)
    decay = _best_kernel(objective, n_exponentials, grid)[0]
    if exponent is None:
        # δ with the number of exponentials of the linear fit, each δ's rates refined from
        # those; then the number of exponentials again at the best δ
        def misfit(delta):
            at = objective.at(delta)
            return at(_refine(at, list(decay), grid, sweeps=2, iterations=10))

        objective = objective.at(minimise_on_grid(misfit, _EXPONENT_GRID, iterations=10))
        decay = _best_kernel(objective, n_exponentials, grid)[0]
    if fit_lasting:
        # (δ, δ∞) together with the rates held (each trial one least-squares solve: the two
        # trade off along a valley that one at a time does not leave), then the rates; twice,
        # then the number of exponentials, then once more
        for sweep in range(3):
            if sweep == 2:
                decay = _best_kernel(objective, n_exponentials, grid)[0]
            objective = _exponent_pair(objective, decay, exponent is None)
            decay = _refine(objective, list(decay), grid, sweeps=2) if decay else []
        if not decay:  # no exponential for δ to act on: δ∞ is the kernel's one exponent, reported as δ
            objective = objective.at(objective.permanent_exponent).lasting_at(None)
            fit_lasting, exponent = False, None
    point = _propagator(objective, decay)
    if n_boot == 0 or all(c.seeds == 1 for c in curves):
        if on_point is not None:
            on_point(point)
        return point, []
    rng = np.random.default_rng(seed)
    picks = [[rng.integers(c.seeds, size=c.seeds) for c in curves] for _ in range(n_boot)]
    chunks = [picks[i::_BOOT_CHUNKS] for i in range(min(_BOOT_CHUNKS, n_boot))]
    refits = mapper(_bootstrap_draws, *zip(*[(curves, weights, exponent is None, point.exponent, decay, grid,
                                              chunk, fit_lasting, point.permanent_exponent) for chunk in chunks]))
    if on_point is not None:  # an executor's map has queued the refits: what on_point starts comes after
        on_point(point)
    done = list(refits)
    draws = [done[i % len(chunks)][i // len(chunks)] for i in range(n_boot)]  # in the order drawn
    se = np.array(draws).std(axis=0, ddof=1)
    K = len(decay)
    point = dataclasses.replace(point, permanent_se=float(se[0]), amplitudes_se=tuple(float(x) for x in se[1:1 + K]),
                                rates_se=tuple(float(x) for x in se[1 + K:1 + 2 * K]),
                                exponent_se=float(se[-2]) if exponent is None else math.nan,
                                permanent_exponent_se=float(se[-1]) if fit_lasting else math.nan)
    return point, [_drawn_propagator(point, draw) for draw in draws]


def _drawn_propagator(point: Propagator, draw: np.ndarray) -> Propagator:
    """The kernel of one bootstrap draw ([coefficients, rates, δ, δ∞] of :func:`_bootstrap_draws`)."""
    K = len(point.rates)
    return Propagator(float(draw[0]), tuple(float(a) for a in draw[1:1 + K]),
                      tuple(float(r) for r in draw[1 + K:1 + 2 * K]), float(draw[-2]),
                      permanent_exponent=None if point.permanent_exponent is None else float(draw[-1]))


_BOOT_CHUNKS = 4  # bootstrap refits per mapper call: a few, so two workers share them evenly


def _bootstrap_draws(curves, weights, fit_exponent: bool, exponent: float, decay, grid, picks,
                     fit_lasting: bool = False, lasting: float | None = None) -> list:
    """The propagator refitted on each resample of the curves' seeds in ``picks`` (one index
    array per curve), from the point fit's exponents and rates: [coefficients, rates, δ, δ∞]
    each (δ∞ = δ without a permanent exponent of its own)."""
    draws = []
    for pick in picks:
        sample = _Objective([c.with_seeds(p) for c, p in zip(curves, pick)], weights, exponent, lasting)
        if fit_exponent:  # δ: a parabola through a local grid with the rates held; then the rates
            sample = sample.at(_parabolic_minimum(lambda d: sample.at(d)(decay), exponent, 0.05))
        if fit_lasting:  # δ∞ likewise, with δ held
            sample = sample.lasting_at(_parabolic_minimum(lambda d: sample.lasting_at(d)(decay), lasting, 0.05))
        boot_decay = _refine(sample, list(decay), grid, sweeps=1, iterations=15) if decay else []
        coef, _ = sample.solve(boot_decay)
        draws.append(np.concatenate([coef, boot_decay, [sample.exponent, sample.lasting_exponent]]))
    return draws


def held_out_error(curves, held_out: str, n_exponentials: int | None = None, tail: float = 0.2,
                   exponent: float | None = 1.0, shares=None, observed: ImpactCurve | None = None,
                   permanent_exponent: float | str | None = "shared", n_boot: int = 0, seed: int = 0,
                   mapper: Callable = map) -> dict:
    """Fit the propagator without one curve and predict that curve's peak and plateau.

    Parameters
    ----------
    curves : sequence of ImpactCurve
    held_out : str
        The name of the curve left out; it must stop trading before its end.
    n_exponentials, exponent, shares, permanent_exponent, mapper
        As in :func:`fit_propagator` (``shares`` for the curves kept, in their order).
    tail : float
        Fraction of the post-trading records averaged for the plateau.
    observed : ImpactCurve, optional
        The same trading on other seeds (as many as its plateau needs): the prediction is
        compared with its peak and plateau instead of the held-out curve's own.
    n_boot : int
        Bootstrap draws for the errors' intervals (0: none). Each refits the kernel on a
        resample of the kept curves' seeds (from the point fit's exponents and rates, as
        :func:`fit_propagator`'s errors) and compares it with a resample of the observed seeds.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``peak`` and ``plateau`` (observed, model price units), ``peak_predicted``,
        ``plateau_predicted``, their relative errors ``peak_error`` and ``plateau_error``
        ((predicted - observed)/|observed|), the observed values' standard errors over the
        curve's seeds relative to them (``peak_se``, ``plateau_se``: the noise an error is
        measured against; NaN for one seed), with ``n_boot`` the 95% percentile intervals of
        the errors (``peak_error_lo``, ``peak_error_hi``, ``plateau_error_lo``,
        ``plateau_error_hi``: the fit's noise and the observations' together), and the
        ``propagator`` fitted without it.
    """
    curves = list(curves)
    names = [c.name for c in curves]
    check.choice("held_out", held_out, names)
    target = curves[names.index(held_out)] if observed is None else observed
    check.require(isinstance(target, ImpactCurve), "observed", observed, "expected an ImpactCurve")
    end = target.end_index
    n = target.rates.shape[1]
    if not 0 < end < n - 1:
        raise PrimitiveError(f"propagator: the held-out curve {held_out!r} has no relaxation after its trading "
                             "(record post_steps after the meta-order)")
    fit, draws = _fit([c for c in curves if c.name != held_out], n_exponentials, n_boot, seed, shares, exponent,
                      mapper, permanent_exponent)
    last = max(1, int(round(tail * (n - end))))

    def peak_and_plateau(path):
        return np.array([path[..., end], path[..., -last:].mean(axis=-1)])

    observed_values = peak_and_plateau(target.mean_prices)
    predicted = peak_and_plateau(fit.impact(target.mean_rates, target.dt))
    errors = (predicted - observed_values) / np.maximum(np.abs(observed_values), 1e-300)
    per_seed_se = peak_and_plateau(target.prices).std(axis=1, ddof=1) / math.sqrt(target.seeds) \
        if target.seeds > 1 else np.full(2, math.nan)
    out = {"propagator": fit}
    for i, key in enumerate(("peak", "plateau")):
        out |= {key: float(observed_values[i]), f"{key}_predicted": float(predicted[i]),
                f"{key}_error": float(errors[i]),
                f"{key}_se": float(per_seed_se[i] / max(abs(observed_values[i]), 1e-300))}
    if draws:
        rng = np.random.default_rng([seed, 1])  # the observed seeds' resamples, apart from the fit's
        drawn = []
        for kernel in draws:
            sample = target.with_seeds(rng.integers(target.seeds, size=target.seeds))
            seen = peak_and_plateau(sample.mean_prices)
            drawn.append((peak_and_plateau(kernel.impact(sample.mean_rates, sample.dt)) - seen)
                         / np.maximum(np.abs(seen), 1e-300))
        lo, hi = np.percentile(np.array(drawn), [2.5, 97.5], axis=0)
        for i, key in enumerate(("peak", "plateau")):
            out |= {f"{key}_error_lo": float(lo[i]), f"{key}_error_hi": float(hi[i])}
    return out


# ---- the temporary cost -----------------------------------------------------------------------
@dataclass(frozen=True)
class TemporaryCost:
    """Cost per unit traded, a + k |ν|^(α-1) + c μ sign ν, with bootstrap errors over runs.

    Parameters
    ----------
    spread, spread_se : float
        a, the fixed cost per unit (the half-spread; model price units).
    k, k_se : float
        Depth slippage: the cost rate is k |ν|^α (price per unit per (unit/time)^(α-1)).
    alpha, alpha_se : float
        α in (1, 2].
    crowd, crowd_se : float
        c, the cost per unit of the crowd's simultaneous rate (price per (unit/time)).
    n_cells : int
        Agent × block cells fitted.
    r2 : float
        R² of the fit.
    """

    spread: float
    spread_se: float
    k: float
    k_se: float
    alpha: float
    alpha_se: float
    crowd: float
    crowd_se: float
    n_cells: int
    r2: float

    def cost_per_share(self, rate, crowd_rate=0.0) -> np.ndarray:
        """The fitted cost per unit traded.

        Parameters
        ----------
        rate : array_like of float
            |ν| (units per time).
        crowd_rate : array_like of float
            μ sign ν (units per time).

        Returns
        -------
        numpy.ndarray of float64
            Model price units.
        """
        rate = np.abs(np.asarray(rate, dtype=np.float64))
        return self.spread + self.k * rate ** (self.alpha - 1.0) + self.crowd * np.asarray(crowd_rate)


_BETA_GRID = np.linspace(0.02, 1.0, 50)


def _cost_statistics(cost, rate, crowd, run, runs) -> np.ndarray:
    """Per run and grid β, the sums the normal equations of y = a + k ν^β + c μ need:
    X^T X (3 × 3), X^T y (3) and y^T y, shape (runs, grid, 13). A resample of the runs is
    then a weighted sum of rows, which makes the bootstrap cheap."""
    out = np.zeros((len(runs), _BETA_GRID.size, 13))
    for r, label in enumerate(runs):
        rows = run == label
        y, nu, mu = cost[rows], rate[rows], crowd[rows]
        one = np.ones_like(y)
        # the sums without ν^β are the same at every β; X^T X is symmetric
        one_mu = np.dot(one, mu)
        out[r][:, [0, 2, 6, 8, 9, 11, 12]] = [np.dot(one, one), one_mu, one_mu, np.dot(mu, mu),
                                               np.dot(one, y), np.dot(mu, y), np.dot(y, y)]
        for b, beta in enumerate(_BETA_GRID):
            x = nu**beta
            one_x, x_mu = np.dot(one, x), np.dot(x, mu)
            out[r, b, [1, 3, 4, 5, 7, 10]] = [one_x, one_x, np.dot(x, x), x_mu, x_mu, np.dot(x, y)]
    return out


def _cost_solution(stats: np.ndarray, use_crowd: bool) -> tuple[float, float, float, float, float]:
    """(a, k, c, β, sse) from summed statistics (grid, 13): the grid β of least SSE, refined
    by a parabola through it and its neighbours (coefficients at the nearest grid β)."""
    n = 3 if use_crowd else 2
    sse = np.empty(_BETA_GRID.size)
    coefs = np.zeros((_BETA_GRID.size, 3))
    xtx = stats[:, :9].reshape(-1, 3, 3)[:, :n, :n]
    xty = stats[:, 9:12][:, :n]
    coefs[:, :n] = np.linalg.solve(xtx, xty[:, :, None])[:, :, 0]  # one LAPACK solve per β, as in a loop
    for b in range(_BETA_GRID.size):
        coef = coefs[b, :n]
        sse[b] = stats[b, 12] - 2 * coef @ xty[b] + coef @ xtx[b] @ coef
    i = int(np.argmin(sse))
    beta = _parabola_vertex(_BETA_GRID, sse)
    return float(coefs[i, 0]), float(coefs[i, 1]), float(coefs[i, 2]), beta, float(sse[i])


def fit_temporary_cost(cells: ExecutionCells, crowd: bool = True, n_boot: int = 200, seed: int = 0,
                       require_slippage: bool = True) -> TemporaryCost:
    """Fit the cost per unit traded against the rate, from every fill against the pre-trade mid.

    Parameters
    ----------
    cells : analysis.impact.ExecutionCells
        The crowd's executions pooled per agent and block.
    crowd : bool
        Fit the crowd term c μ sign ν (False: c = 0).
    n_boot : int
        Bootstrap resamples of the runs (0: no errors).
    seed : int
        Seed of the bootstrap.
    require_slippage : bool
        Refuse a fit whose slippage does not grow with the rate (k <= 0); False reports it
        (a caller that does not use k, say).

    Returns
    -------
    TemporaryCost

    Raises
    ------
    PrimitiveError
        With too few cells, rates that do not vary, or (``require_slippage``) a slippage
        that does not grow with the rate.
    """
    check.integer("n_boot", n_boot, lo=0, hi=100_000)
    cost, rate, crowd_term, runs = (np.asarray(x) for x in (cells.cost, cells.rate, cells.crowd, cells.run))
    keep = np.isfinite(cost) & np.isfinite(rate) & np.isfinite(crowd_term) & (rate > 0)
    cost, rate, crowd_term, runs = cost[keep], rate[keep], crowd_term[keep], runs[keep]
    if cost.size < 30:
        raise PrimitiveError(f"temporary cost: {cost.size} agent-block cells with fills, at least 30 are needed; "
                             "raise seeds, N or the horizon")
    if np.ptp(np.log(rate)) < 0.1:
        raise PrimitiveError("temporary cost: the agents' trading rates hardly vary (spread of log rate < 0.1), "
                             "so the cost curve is not identified; give the crowd a wider initial law or more types")
    unique_runs = np.unique(runs)
    stats = _cost_statistics(cost, rate, crowd_term, runs, unique_runs)
    a, k, c, beta, sse = _cost_solution(stats.sum(axis=0), crowd)
    tss = float(np.sum((cost - cost.mean()) ** 2))
    r2 = 1.0 - sse / tss if tss > 0 else math.nan
    if k <= 0 and require_slippage:
        raise PrimitiveError(f"temporary cost: the depth slippage k={k:.3g} does not grow with the rate in these "
                             "runs; raise seeds or the spread of trading rates (N, the initial law)")
    se = (math.nan,) * 4
    if n_boot and unique_runs.size > 1:
        rng = np.random.default_rng(seed)
        flat = stats.reshape(unique_runs.size, -1)
        draws = []
        for _ in range(n_boot):
            counts = np.bincount(rng.integers(unique_runs.size, size=unique_runs.size), minlength=unique_runs.size)
            draws.append(_cost_solution((counts @ flat).reshape(stats.shape[1:]), crowd)[:4])
        se = tuple(float(x) for x in np.std(draws, axis=0, ddof=1))
    return TemporaryCost(a, se[0], k, se[1], 1.0 + beta, se[3], c, se[2], int(cost.size), r2)


# ---- the makers' fill table -------------------------------------------------------------------
@dataclass(frozen=True)
class FillTable:
    """Λ(j; j̄): the fill rate of a quote j ticks from the mid when the makers' mean posted quote is j̄.

    Parameters
    ----------
    levels : numpy.ndarray of float64
        The quoted distances j from the mid (ticks; a lattice of ``lattice`` ticks), increasing.
    mean_edges : numpy.ndarray of float64
        Edges of the j̄ bins (ticks).
    mean_centres : numpy.ndarray of float64
        The mean j̄ observed in each bin (ticks).
    rate, rate_se : numpy.ndarray of float64, shape (levels, bins)
        Fills per unit time and their Poisson standard error; NaN where never quoted.
    fills : numpy.ndarray of float64, shape (levels, bins)
        Quotes filled (fractional where a quote of several lots was partly filled).
    observations : numpy.ndarray of int64, shape (levels, bins)
        Quoted maker-side-steps.
    dt : float
        The step (time units).
    premium : numpy.ndarray of float64, shape (levels,)
        What a fill at each level earned on average: the distance from the mid of the tick
        the quote went to (a quote of j ticks may land half a tick further when the mid sits
        between ticks); the level itself when not given.
    """

    levels: np.ndarray
    mean_edges: np.ndarray
    mean_centres: np.ndarray
    rate: np.ndarray
    rate_se: np.ndarray
    fills: np.ndarray
    observations: np.ndarray
    dt: float
    premium: np.ndarray | None = None

    @property
    def quoted(self) -> np.ndarray:
        """Where the table has data: (levels, bins) of bool."""
        return self.observations > 0

    def intensity(self, level: float, mean_quote: float) -> float:
        """Λ(j; j̄), interpolated linearly in j̄ between the bins' centres (flat beyond them).

        Parameters
        ----------
        level : float
            j, one of ``levels`` (ticks).
        mean_quote : float
            j̄ (ticks).

        Returns
        -------
        float
            Fills per unit time.

        Raises
        ------
        PrimitiveError
            When the level, or a bin the interpolation needs, was never quoted.
        """
        i = np.flatnonzero(np.isclose(self.levels, level))
        if i.size == 0:
            raise PrimitiveError(f"fill table: level {level} ticks was never quoted (quoted levels: "
                                 f"{self.levels.tolist()}); run more seeds or steps, or keep the quotes on them")
        row = self.rate[i[0]]
        centres = self.mean_centres
        j = int(np.clip(np.searchsorted(centres, mean_quote), 1, max(centres.size - 1, 1)))
        needed = [0] if centres.size == 1 else ([j - 1, j] if centres[0] <= mean_quote <= centres[-1]
                                                else [0 if mean_quote < centres[0] else centres.size - 1])
        if not np.all(np.isfinite(row[needed])):
            raise PrimitiveError(f"fill table: level {level} ticks was never quoted while the mean quote was near "
                                 f"{mean_quote:.3g} ticks; run more seeds or steps")
        if len(needed) == 1:
            return float(row[needed[0]])
        w = (mean_quote - centres[j - 1]) / (centres[j] - centres[j - 1])
        return float((1 - w) * row[j - 1] + w * row[j])


def fill_table(distance, mean_distance, filled, dt: float, mean_bins: int = 4, lattice: float = 0.5,
               mean_edges=None, earned=None) -> FillTable:
    """Count fills of posted quotes by their distance from the mid and the makers' mean quote.

    Parameters
    ----------
    distance : array_like of float
        The posted quote's distance from the mid (ticks), one entry per maker, side and step
        in which the side was posted.
    mean_distance : array_like of float
        The makers' mean posted distance in that step and side (ticks).
    filled : array_like of float
        The quotes filled in that step (1: the whole quote once; 0: none).
    dt : float
        The step (time units).
    mean_bins : int
        Equal-count bins of the mean quote.
    lattice : float
        The distances' lattice (ticks): half a tick when the mid can sit between ticks.
    mean_edges : array_like of float, optional
        Fixed edges of the mean-quote bins (ticks), instead of ``mean_bins`` equal-count bins
        (to compare tables across iterations); means outside go to the end bins.
    earned : array_like of float, optional
        Per observation, what a fill would earn (the posted tick's distance from the mid);
        its mean over the fills of each level is the table's ``premium``.

    Returns
    -------
    FillTable

    Raises
    ------
    PrimitiveError
        With no quotes, or no fills at all.
    """
    check.number("dt", dt, lo=0.0, lo_open=True)
    check.integer("mean_bins", mean_bins, lo=1, hi=1000)
    check.number("lattice", lattice, lo=0.0, lo_open=True)
    distance = np.asarray(distance, dtype=np.float64)
    mean_distance = np.asarray(mean_distance, dtype=np.float64)
    filled = np.asarray(filled, dtype=np.float64)
    earned = distance if earned is None else np.asarray(earned, dtype=np.float64)
    keep = np.isfinite(distance) & np.isfinite(mean_distance) & np.isfinite(filled) & np.isfinite(earned)
    distance, mean_distance, filled, earned = distance[keep], mean_distance[keep], filled[keep], earned[keep]
    if distance.size == 0 or filled.sum() == 0:
        raise PrimitiveError(f"fill table: {distance.size} posted quotes and {int(filled.sum())} fills; "
                             "raise seeds, steps or the makers' count")
    snapped = np.round(distance / lattice) * lattice
    levels = np.unique(snapped)
    if mean_edges is not None:
        edges = np.asarray(mean_edges, dtype=np.float64)
        check.require(edges.ndim == 1 and edges.size >= 2 and bool(np.all(np.diff(edges) > 0)), "mean_edges",
                      edges.tolist(), "expected at least two increasing edges")
    else:
        edges = np.unique(np.quantile(mean_distance, np.linspace(0, 1, mean_bins + 1)))
    if edges.size < 2:
        edges = np.array([mean_distance[0] - 0.5 * lattice, mean_distance[0] + 0.5 * lattice])
    column = np.clip(np.searchsorted(edges, mean_distance, side="right") - 1, 0, edges.size - 2)
    row = np.searchsorted(levels, snapped)
    shape = (levels.size, edges.size - 1)
    flat = row * shape[1] + column
    observations = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape)
    fills = np.bincount(flat, filled, minlength=shape[0] * shape[1]).reshape(shape)
    sums = _TableSums(np.bincount(column, minlength=shape[1]), np.bincount(column, mean_distance, minlength=shape[1]),
                      np.bincount(row, filled * earned, minlength=levels.size),
                      np.bincount(row, filled, minlength=levels.size),
                      np.bincount(row, earned, minlength=levels.size), np.bincount(row, minlength=levels.size))
    return _table(levels, edges, fills, observations, float(dt), sums)


class _TableSums(NamedTuple):
    """What a fill table's centres and premia are made of: per mean-quote bin its
    observations and their summed means; per level what its fills earned and how many there
    were, and what its posts would have earned and how many there were."""

    bin_counts: np.ndarray
    bin_mean_sums: np.ndarray
    earned_by_fills: np.ndarray
    fills_by_level: np.ndarray
    earned_by_posts: np.ndarray
    posts_by_level: np.ndarray


def _table(levels, edges, fills, observations, dt: float, sums: _TableSums) -> FillTable:
    """A FillTable from its counts (level × bin) and sums."""
    centres = np.where(sums.bin_counts > 0, sums.bin_mean_sums / np.maximum(sums.bin_counts, 1),
                       0.5 * (edges[:-1] + edges[1:]))  # an empty bin: its middle
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(observations > 0, fills / (observations * dt), np.nan)
        rate_se = np.where(observations > 0, np.sqrt(fills) / (observations * dt), np.nan)
    filled = sums.fills_by_level > 0  # fills may be fractions of a quote: divide by them, not by at least one
    premium = np.where(filled,  # what fills earned; without fills, what posts would have
                       sums.earned_by_fills / np.where(filled, sums.fills_by_level, 1.0),
                       sums.earned_by_posts / np.maximum(sums.posts_by_level, 1))
    return FillTable(levels, edges, centres, rate, rate_se, fills.astype(np.float64), observations.astype(np.int64),
                     dt, premium)


def pool_fill_tables(tables) -> FillTable:
    """One fill table from several measured with the same mean-quote bins (fills and
    observations summed, on the union of their levels).

    What :func:`fill_table` gives on all the tables' observations at once, with ``mean_edges``
    the tables' common edges; a learner keeps its rounds' tables instead of their raw
    observations.

    Parameters
    ----------
    tables : sequence of FillTable
        With equal ``mean_edges`` and ``dt``.

    Returns
    -------
    FillTable

    Raises
    ------
    InvalidValue
        When the tables' bins or steps differ.
    """
    tables = list(tables)
    check.require(len(tables) >= 1 and all(isinstance(t, FillTable) for t in tables), "tables", tables,
                  "expected a non-empty sequence of FillTable")
    first = tables[0]
    check.require(all(np.array_equal(t.mean_edges, first.mean_edges) and t.dt == first.dt for t in tables),
                  "tables", "bins or steps differ", "tables measured with the same mean_edges and dt")
    levels = np.unique(np.concatenate([t.levels for t in tables]))
    shape = (levels.size, first.mean_edges.size - 1)
    fills, observations = np.zeros(shape), np.zeros(shape)
    column_counts, centre_sums = np.zeros(shape[1]), np.zeros(shape[1])
    earned_by_fills, fills_by_level = np.zeros(levels.size), np.zeros(levels.size)
    earned_by_posts, posts_by_level = np.zeros(levels.size), np.zeros(levels.size)
    for t in tables:
        rows = np.searchsorted(levels, t.levels)
        fills[rows] += t.fills
        observations[rows] += t.observations
        counts = t.observations.sum(axis=0)
        column_counts += counts
        centre_sums += counts * t.mean_centres
        level_fills, level_posts = t.fills.sum(axis=1), t.observations.sum(axis=1)
        # a level's premium is its fills' mean earning where it was filled, its posts' elsewhere
        earned_by_fills[rows] += np.where(level_fills > 0, level_fills * t.premium, 0.0)
        fills_by_level[rows] += level_fills
        earned_by_posts[rows] += level_posts * t.premium
        posts_by_level[rows] += level_posts
    return _table(levels, first.mean_edges.copy(), fills, observations, first.dt,
                  _TableSums(column_counts, centre_sums, earned_by_fills, fills_by_level, earned_by_posts,
                             posts_by_level))
