"""Convergence rates across N with confidence intervals from a bootstrap over seeds.

* ``fit_power_law``: log–log least squares of the seed-mean metric on N,
  ``log W = log C - r log N``; the slope is ``-r``.
* ``fit_with_bias``: ``W = b + C N^{-r}`` (a model error b that does not vanish with N);
  for each r the problem is linear in (b, C), so r is found by a bounded 1-D search.

Confidence intervals: resample the seeds (with replacement) within each N, refit, take
percentiles. Runs that are deterministic in the seed (one seed per N) get no interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerFit:
    """A log-log fit mean(metric) ≈ C N^slope.

    Attributes
    ----------
    slope : float
    intercept : float
        log C.
    slope_ci : tuple of float
        Bootstrap interval of the slope over seeds.
    n_values : tuple of int
        The distinct N.
    means : tuple of float
        Mean metric at each N.
    """
    slope: float
    intercept: float  # log C
    slope_ci: tuple[float, float]
    n_values: tuple[int, ...]
    means: tuple[float, ...]


@dataclass(frozen=True)
class BiasFit:
    """A fit mean(metric) ≈ b + C N^-r.

    Attributes
    ----------
    bias : float
        b, the metric's limit as N -> ∞ (units of the metric).
    scale : float
        C.
    rate : float
        r in [0.02, 3].
    bias_ci, rate_ci : tuple of float
        Bootstrap intervals over seeds.
    n_values : tuple of int
        The distinct N.
    means : tuple of float
        Mean metric at each N.
    """
    bias: float
    scale: float
    rate: float
    bias_ci: tuple[float, float]
    rate_ci: tuple[float, float]
    n_values: tuple[int, ...]
    means: tuple[float, ...]


def _grouped(n, values) -> tuple[np.ndarray, list[np.ndarray]]:
    n = np.asarray(n, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    n, values = n[keep], values[keep]
    ns = np.unique(n)
    if ns.size < 2:
        raise ValueError(f"a convergence fit needs at least two values of N, got {ns.tolist()}")
    return ns, [values[n == k] for k in ns]


def _loglog(ns, means):
    if np.any(means <= 0):
        raise ValueError("a log-log fit needs positive metric values")
    slope, intercept = np.polyfit(np.log(ns), np.log(means), 1)
    return float(slope), float(intercept)


def _bootstrap(groups, fit, n_boot, rng):
    out = []
    for _ in range(n_boot):
        means = np.array([g[rng.integers(0, g.size, g.size)].mean() for g in groups])
        out.append(fit(means))
    return np.array(out)


def fit_power_law(n, values, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> PowerFit:
    """Slope of log(mean metric) on log N with a bootstrap interval over seeds.

    Parameters
    ----------
    n : array_like of int
        N of each value.
    values : array_like of float
        The metric, one value per run (non-finite values are dropped); positive means.
    n_boot : int
        Bootstrap resamples.
    level : float
        Interval coverage.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    PowerFit
    """
    ns, groups = _grouped(n, values)
    means = np.array([g.mean() for g in groups])
    slope, intercept = _loglog(ns, means)
    ci = (slope, slope)
    if any(g.size > 1 for g in groups):
        boot = _bootstrap(groups, lambda m: _loglog(ns, m)[0], n_boot, np.random.default_rng(seed))
        a = (1 - level) / 2
        ci = (float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a)))
    return PowerFit(slope, intercept, ci, tuple(int(k) for k in ns), tuple(float(m) for m in means))


def _bias_fits(ns, means):
    """(b, C, r) minimising Σ (b + C N^-r - W)² over r in [0.02, 3], for each row of ``means``.

    Returns
    -------
    numpy.ndarray of float64, shape (rows, 3)
    """
    ns, means = np.asarray(ns, dtype=float), np.atleast_2d(np.asarray(means, dtype=float))
    average = means.mean(axis=-1, keepdims=True)
    centred = means - average

    def fit(r):
        """(b, C) and the squared error at each r (rows × rates): a straight-line fit of W against x = N^-r."""
        x = ns ** -r[..., None]
        dx = x - x.mean(axis=-1, keepdims=True)
        sxx = np.maximum(np.sum(dx * dx, axis=-1), 1e-300)
        C = np.sum(dx * centred[:, None, :], axis=-1) / sxx
        b = average - C * x.mean(axis=-1)
        return b, C, np.sum((b[..., None] + C[..., None] * x - means[:, None, :]) ** 2, axis=-1)

    grid = np.linspace(0.02, 3.0, 300)
    i = np.argmin(fit(np.broadcast_to(grid, (means.shape[0], grid.size)))[2], axis=1)
    lo, hi = grid[np.maximum(i - 1, 0)], grid[np.minimum(i + 1, grid.size - 1)]
    for _ in range(60):  # golden-section refinement around each row's best grid point
        m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        err = fit(np.stack([m1, m2], axis=1))[2]
        left = err[:, 0] < err[:, 1]
        hi, lo = np.where(left, m2, hi), np.where(left, lo, m1)
    r = 0.5 * (lo + hi)
    b, C, _ = fit(r[:, None])
    return np.stack([b[:, 0], C[:, 0], r], axis=1)


def fit_with_bias(n, values, *, n_boot: int = 300, level: float = 0.95, seed: int = 0) -> BiasFit:
    """Fit W = b + C N^-r with bootstrap intervals for b and r.

    Parameters
    ----------
    n, values, n_boot, level, seed
        As in :func:`fit_power_law`; at least three distinct N.

    Returns
    -------
    BiasFit
    """
    ns, groups = _grouped(n, values)
    if ns.size < 3:
        raise ValueError("the bias model b + C N^-r needs at least three values of N")
    means = np.array([g.mean() for g in groups])
    b, C, r = (float(x) for x in _bias_fits(ns, means)[0])
    b_ci, r_ci = (b, b), (r, r)
    if any(g.size > 1 for g in groups):
        # every resample's fit at once: the same draws and, row by row, the same arithmetic
        boot = _bias_fits(ns, _bootstrap(groups, lambda m: m, n_boot, np.random.default_rng(seed)))
        a = (1 - level) / 2
        b_ci = (float(np.quantile(boot[:, 0], a)), float(np.quantile(boot[:, 0], 1 - a)))
        r_ci = (float(np.quantile(boot[:, 2], a)), float(np.quantile(boot[:, 2], 1 - a)))
    return BiasFit(b, C, r, b_ci, r_ci, tuple(int(k) for k in ns), tuple(float(m) for m in means))
