"""Finite-N vs mean-field metrics.

W1 between the empirical law of N samples and a Gaussian mixture is computed exactly:
``W1 = ∫ |F_N - F| dx``; between consecutive order statistics F_N is the constant k/N,
so each piece is integrated in closed form with the antiderivatives of F (split at the
quantile where F crosses k/N). KS is ``sup |F_N - F|``, attained at the samples.
"""

from __future__ import annotations

import math

import numpy as np

from mfg.laws import GaussianMixture

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _phi(z):
    return np.exp(-0.5 * z * z) / _SQRT2PI


def _Phi(z):
    from mfg.laws import erf

    return 0.5 * (1.0 + erf(z / _SQRT2))


def _lower_area(law: GaussianMixture, x: np.ndarray) -> np.ndarray:
    """H(x) = ∫_{-∞}^x F(y) dy."""
    out = np.zeros_like(x)
    for w, m, s in zip(law.weights, law.means, law.stds):
        if s == 0.0:
            out += w * np.maximum(x - m, 0.0)
        else:
            z = (x - m) / s
            out += w * ((x - m) * _Phi(z) + s * _phi(z))
    return out


def _upper_area(law: GaussianMixture, x: np.ndarray) -> np.ndarray:
    """R(x) = ∫_x^∞ (1 - F(y)) dy = H(x) - x + E[X] (integrate H' - R' = 1 from -∞)."""
    return _lower_area(law, x) - x + law.mean


def quantile(law: GaussianMixture, u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Quantile function F^{-1}(u) by vectorised bisection on [lo, hi] (to ~1e-13 relative).

    Parameters
    ----------
    law : GaussianMixture
    u : numpy.ndarray of float64
        Levels in (0, 1).
    lo, hi : float
        A bracket holding every quantile asked for (state units).

    Returns
    -------
    numpy.ndarray of float64
        The quantiles (state units), the shape of ``u``.
    """
    u = np.asarray(u, dtype=np.float64)
    a = np.full_like(u, lo)
    b = np.full_like(u, hi)
    for _ in range(80):
        mid = 0.5 * (a + b)
        below = law.cdf(mid) < u
        a = np.where(below, mid, a)
        b = np.where(below, b, mid)
    return 0.5 * (a + b)


def wasserstein1(samples, law: GaussianMixture) -> float:
    """Exact W1 between the empirical law of ``samples`` and ``law``.

    Parameters
    ----------
    samples : array_like of float
        At least one sample (state units, e.g. model inventory units).
    law : GaussianMixture

    Returns
    -------
    float
        W1 (state units).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("wasserstein1 needs at least one sample")
    spread = max(law.stds) + max(abs(m) for m in law.means) + 1.0
    lo, hi = min(x[0], min(law.means)) - 40 * spread, max(x[-1], max(law.means)) + 40 * spread
    total = _lower_area(law, x[:1])[0] + _upper_area(law, x[-1:])[0]  # the two tails
    if n > 1:
        level = np.arange(1, n) / n  # F_N on [x_k, x_{k+1})
        left, right = x[:-1], x[1:]
        cross = np.clip(quantile(law, level, lo, hi), left, right)
        H = lambda v: _lower_area(law, v)  # noqa: E731
        pieces = (level * (cross - left) - (H(cross) - H(left))
                  + (H(right) - H(cross)) - level * (right - cross))
        total += pieces.sum()
    return float(total)


def kolmogorov_smirnov(samples, law: GaussianMixture) -> float:
    """Kolmogorov–Smirnov distance sup |F_N - F| between the samples' empirical law and ``law``.

    Evaluated at the samples (both sides of each jump of F_N) and, when the law has atoms
    (zero-std components), on both sides of each atom too.

    Parameters
    ----------
    samples : array_like of float
        State units.
    law : GaussianMixture

    Returns
    -------
    float
        In [0, 1].
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    F = law.cdf(x)
    k = np.arange(1, n + 1)
    sup = max(np.max(np.abs(k / n - F)), np.max(np.abs((k - 1) / n - F)))
    for m, s in zip(law.means, law.stds):
        if s == 0.0:
            at = float(law.cdf(np.array([m]))[0])
            below = at - sum(wi for wi, mi, si in zip(law.weights, law.means, law.stds) if si == 0.0 and mi == m)
            sup = max(sup, abs(np.searchsorted(x, m, side="right") / n - at),
                      abs(np.searchsorted(x, m, side="left") / n - below))
    return float(sup)
