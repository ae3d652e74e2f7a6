"""Inventory laws: Gaussian mixtures (a Gaussian is a mixture of one component).

A mixture lets buyers and sellers share one population: e.g. 70% sellers around +1 and
30% buyers around -0.5. Under linear feedback strategies a mixture stays a mixture, so
the mean-field law of inventories is known exactly at every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

_SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def _erf_flat(z):
    out = np.empty_like(z)
    for i in range(z.size):
        out[i] = math.erf(z[i])
    return out


def erf(z) -> np.ndarray:
    """Error function of an array (math.erf, compiled: the metrics call it millions of times).

    Parameters
    ----------
    z : array_like of float

    Returns
    -------
    numpy.ndarray of float64
        erf(z), the shape of ``z``.
    """
    z = np.asarray(z, dtype=np.float64)
    return _erf_flat(z.ravel()).reshape(z.shape)


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture of normal laws.

    Parameters
    ----------
    weights : tuple of float
        Positive weights summing to one.
    means : tuple of float
        Component means (state units, e.g. shares).
    stds : tuple of float
        Component standard deviations >= 0 (state units); 0 is a point mass.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self):
        w, m, s = (tuple(float(v) for v in x) for x in (self.weights, self.means, self.stds))
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "stds", s)
        if not (len(w) == len(m) == len(s) >= 1):
            raise ValueError("mixture needs equal, non-zero numbers of weights/means/stds; "
                             f"got {len(w)}/{len(m)}/{len(s)}")
        if any(x <= 0 or not math.isfinite(x) for x in w) or abs(sum(w) - 1.0) > 1e-9:
            raise ValueError(f"mixture weights must be positive and sum to 1; got {w}")
        if any(x < 0 or not math.isfinite(x) for x in s):
            raise ValueError(f"mixture stds must be finite and >= 0; got {s}")
        if any(not math.isfinite(x) for x in m):
            raise ValueError(f"mixture means must be finite; got {m}")

    @classmethod
    def normal(cls, mean: float, std: float) -> GaussianMixture:
        """A single normal law N(mean, std²).

        Parameters
        ----------
        mean : float
            State units.
        std : float
            >= 0, state units.

        Returns
        -------
        GaussianMixture
        """
        return cls((1.0,), (mean,), (std,))

    @property
    def mean(self) -> float:
        return float(np.dot(self.weights, self.means))

    @property
    def variance(self) -> float:
        w, m, s = (np.asarray(x) for x in (self.weights, self.means, self.stds))
        return float(np.dot(w, s**2 + m**2) - np.dot(w, m) ** 2)

    def cdf(self, x) -> np.ndarray:
        """Distribution function.

        Parameters
        ----------
        x : array_like of float
            State values.

        Returns
        -------
        numpy.ndarray of float64
            P(X <= x), the shape of ``x``.
        """
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros_like(x)
        for w, m, s in zip(self.weights, self.means, self.stds):
            if s == 0.0:
                out += w * (x >= m)
            else:
                out += w * 0.5 * (1.0 + erf((x - m) / (s * _SQRT2)))
        return out

    def pdf(self, x) -> np.ndarray:
        """Density; a zero-std component has no density and is left out (use ``cdf``).

        Parameters
        ----------
        x : array_like of float
            State values.

        Returns
        -------
        numpy.ndarray of float64
            Density (per state unit), the shape of ``x``.
        """
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros_like(x)
        for w, m, s in zip(self.weights, self.means, self.stds):
            if s > 0.0:
                out += w * np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Independent draws.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator
            The source of randomness.

        Returns
        -------
        numpy.ndarray of float64, shape (n,)
        """
        comp = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        return np.asarray(self.means)[comp] + np.asarray(self.stds)[comp] * rng.standard_normal(n)

    def affine(self, shift: float, scale: float, extra_var: float) -> GaussianMixture:
        """Law of ``shift + scale * X + N(0, extra_var)`` for X with this law.

        Parameters
        ----------
        shift : float
            State units.
        scale : float
            Dimensionless.
        extra_var : float
            >= 0, state units squared.

        Returns
        -------
        GaussianMixture
        """
        return GaussianMixture(
            self.weights,
            tuple(shift + scale * m for m in self.means),
            tuple(math.sqrt(scale**2 * s**2 + extra_var) for s in self.stds),
        )
