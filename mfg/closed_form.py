"""Closed-form solutions: Almgren–Chriss and the linear–quadratic trade-crowding MFG.

Conventions (DESIGN §4): inventory ``q`` in shares, time in the model's units, trading
rate ``nu = dq/dt`` (buying > 0). ``k`` is the temporary impact (execution price
``S + k nu + c mu``), ``kappa`` the permanent impact (price drift ``kappa mu``), ``phi``
the running inventory penalty, ``A`` the terminal penalty.

The LQ crowding MFG (Cardaliaguet–Lehalle 2018; Carmona–Delarue's price-impact model)
-----------------------------------------------------------------------------------
Each agent maximises ``E[X_T + Q_T S_T - A Q_T^2 - phi ∫ Q^2 dt]`` with
``dQ = nu dt + sigma dW``, ``dS = kappa mu dt + sigma0 dW0``, cash
``dX = -nu (S + k nu + c mu) dt``. The value is ``x + q s + h(t, q)`` with
``h = h0 + h1 q - h2 q^2 / 2`` and

* ``h2' = h2^2/(2k) - 2 phi``, ``h2(T) = 2A`` (so ``h2/(2k)`` is the Almgren–Chriss rate),
* ``nu*(t, q) = (h1 - c mu - h2 q) / (2k) = mu(t) - h2(t)/(2k) (q - E(t))``,
* mean inventories of preference types ``j`` (weights ``w_j``) solve the linear BVP
  ``2k E_j'' + c mu' + kappa mu - 2 phi_j E_j = 0``, ``mu = sum_j w_j E_j'``,
  ``E_j(0) = E0_j``, ``k E_j'(T) + (c/2) mu(T) + A_j E_j(T) = 0``; one type gives
  ``(2k + c) E'' + kappa E' - 2 phi E = 0``.
* ``h1 = 2k E' + c mu + h2 E`` and ``h0(t) = ∫_t^T [(h1 - c mu)^2/(4k) - sigma^2 h2 / 2] ds``.

Transient impact (Obizhaeva–Wang resilience ``rho``)
----------------------------------------------------
With ``rho > 0`` the crowd's impact decays: the mid is ``S = S0 + Y + sigma0 W0`` with
``dY = (kappa mu - rho Y) dt``, ``Y(0) = 0``, and the execution price stays
``S + k nu + c mu``. Each agent still takes the crowd (so Y) as given, so its problem is
the one above with the price trend ``kappa mu`` replaced by ``D = kappa mu - rho Y``:
``h2`` and the law's dispersion are unchanged, and the means solve the linear BVP
``2k E_j'' + c mu' + kappa mu - rho Y - 2 phi_j E_j = 0``, ``Y' = kappa mu - rho Y``,
``Y(0) = 0``, with the same boundary conditions on E. ``rho = 0`` is the model above
(``Y = kappa (E - E0)``: impact is permanent). A decaying impact weakens the crowd's
incentive to sell early: the trend it front-runs is partly undone before T.

A propagator: ``transient = ((kappa_1, rho_1), ...)`` adds exponentials to the kernel,
``G(tau) = kappa e^{-rho tau} + sum_i kappa_i e^{-rho_i tau}``, so that the impact is
``Y = sum_i Y_i`` with one state per exponential, ``Y_i' = kappa_i mu - rho_i Y_i``, and
the trend is ``D = sum_i (kappa_i mu - rho_i Y_i)``; the BVP carries one Y_i per term. A
kernel measured from the book (a permanent part and up to three exponentials) is
``kappa = permanent, rho = 0, transient = the exponentials``.

Crowding and speed. The crowd's mean rate ``mu`` enters each agent's problem as a price
trend ``kappa mu``: with sellers (``E0 > 0``) the price is expected to fall, which makes
holding inventory costly, so every agent sells *faster* early on than it would alone, and
the more so the larger ``kappa``. For one type the mean decays with the rates
``r = (-kappa ± sqrt(kappa^2 + 8 (2k + c) phi)) / (2 (2k + c))``; with ``A`` large the
mean inventory at any ``t`` in ``(0, T)`` decreases as ``kappa`` grows (tested in
``tests/test_closed_form.py``). The crowd temporary term ``c`` acts as extra temporary
impact on the mean (``2k -> 2k + c``) and slows the crowd down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import validation as check
from ._impact_kernels import decaying_sum
from .laws import GaussianMixture

# Gauss–Legendre nodes for the quadratures of h0 and of the noise variance.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)
_GL_PANELS = 16


def _quad(f, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """∫_a^b f(s) ds for arrays of limits (f vectorised); composite Gauss–Legendre."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    edges = a[..., None] + (b - a)[..., None] * np.linspace(0.0, 1.0, _GL_PANELS + 1)
    lo, hi = edges[..., :-1], edges[..., 1:]
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    s = mid[..., None] + half[..., None] * _GL_X
    return np.sum(f(s) * _GL_W * half[..., None], axis=(-1, -2))


# ---- Almgren–Chriss pieces (also the individual part of the LQ MFG) ------------------------
def almgren_chriss_h(tau, gamma: float, lam: float, phi_T: float) -> np.ndarray:
    """Value coefficient h(τ) of min ∫(γv² + λq²) dt + Φq(T)², so that V = h q².

    Parameters
    ----------
    tau : array_like of float
        Time to the horizon τ = T - t (time units), >= 0.
    gamma : float
        Temporary impact γ > 0 (price per (share/time) per share).
    lam : float
        Inventory risk weight λ >= 0 (price per share² per time).
    phi_T : float
        Terminal penalty Φ >= 0 (price per share²); ``math.inf`` forces q(T) = 0.

    Returns
    -------
    numpy.ndarray of float64
        h(τ) in price per share², the shape of ``tau`` (``inf`` at τ = 0 when Φ = ∞).
    """
    tau = np.asarray(tau, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if lam == 0.0:
            if math.isinf(phi_T):
                return gamma / tau
            return gamma * phi_T / (gamma + phi_T * tau)
        omega, eta = math.sqrt(lam / gamma), math.sqrt(gamma * lam)
        th = np.tanh(omega * tau)
        if math.isinf(phi_T):
            return eta / th
        return eta * (phi_T + eta * th) / (eta + phi_T * th)


def almgren_chriss_ratio(tau, tau0, gamma: float, lam: float, phi_T: float) -> np.ndarray:
    """g(τ)/g(τ0) with g(τ) = η cosh ωτ + Φ sinh ωτ, computed without overflow.

    Along the optimal Almgren–Chriss trajectory q(t)/q(s) = g(T - t)/g(T - s).

    Parameters
    ----------
    tau, tau0 : array_like of float
        Times to the horizon (time units), broadcast together.
    gamma, lam, phi_T : float
        As in `almgren_chriss_h`.

    Returns
    -------
    numpy.ndarray of float64
        The dimensionless ratio, broadcast shape of ``tau`` and ``tau0``.
    """
    tau = np.asarray(tau, dtype=np.float64)
    tau0 = np.asarray(tau0, dtype=np.float64)
    if lam == 0.0:
        if math.isinf(phi_T):
            return tau / tau0
        return (gamma + phi_T * tau) / (gamma + phi_T * tau0)
    omega, eta = math.sqrt(lam / gamma), math.sqrt(gamma * lam)

    def g_scaled(x):  # 2 e^{-ωx} g(x)
        e = np.exp(-2.0 * omega * x)
        return (1.0 - e) if math.isinf(phi_T) else eta * (1.0 + e) + phi_T * (1.0 - e)

    return np.exp(omega * (tau - tau0)) * g_scaled(tau) / g_scaled(tau0)


def instantaneous_impact(mu, exponent: float = 1.0) -> np.ndarray:
    """f(μ) = sign(μ) |μ|^δ: the flow a nonlinear propagator Y = ∫ G(t - s) f(μ_s) ds feeds its kernel.

    δ = 1 is the linear propagator; δ < 1 a concave response (the square-root law of
    meta-orders is δ ≈ 1/2 over their duration).

    Parameters
    ----------
    mu : array_like of float
        Trading rates (inventory units per time).
    exponent : float
        δ > 0.

    Returns
    -------
    numpy.ndarray of float64
        f(μ) (units^δ per time^δ), the shape of ``mu``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if exponent == 1.0:
        return mu
    return np.sign(mu) * np.abs(mu) ** exponent


def decay_gain(rho: float, dt: float) -> tuple[float, float]:
    """(e^{-ρ dt}, (1 - e^{-ρ dt})/ρ): over a step of constant μ, dY = (μ - ρY) dt is exactly
    Y <- decay Y + gain μ (gain = dt when ρ = 0).

    Parameters
    ----------
    rho : float
        Resilience ρ >= 0 (per time).
    dt : float
        Step length (time units).

    Returns
    -------
    (decay, gain) : tuple of float
        (dimensionless, time units).
    """
    return math.exp(-rho * dt), dt if rho == 0 else -math.expm1(-rho * dt) / rho


def decaying_impact(mu, dt: float, rho: float) -> np.ndarray:
    """Impact path of unit κ under dY = (κμ - ρY) dt, Y(0) = 0.

    G(t_n) = ∫_0^{t_n} e^{-ρ(t_n - s)} μ(s) ds for n = 0..len(mu), with μ constant on each
    step of length dt; the running integral of μ when ρ = 0. Exact for piecewise-constant μ.

    Parameters
    ----------
    mu : array_like of float
        Trading rate on each step (shares per time), length n.
    dt : float
        Step length (time units), > 0.
    rho : float
        Resilience ρ >= 0 (per time).

    Returns
    -------
    numpy.ndarray of float64
        G at the n + 1 step edges (shares; multiply by κ for price units).
    """
    mu = np.ascontiguousarray(mu, dtype=np.float64).ravel()
    decay, gain = decay_gain(rho, dt)
    out = np.empty(mu.size + 1)
    decaying_sum(mu, decay, gain, out)  # G_{n+1} = decay G_n + gain μ_n
    return out


@dataclass(frozen=True)
class AlmgrenChriss:
    """Optimal liquidation with quadratic costs: min ∫_0^T (γ v² + λ q²) dt + Φ q(T)².

    ``v = -dq/dt`` is the selling rate. ``terminal_penalty = inf`` forces ``q(T) = 0``.

    Parameters
    ----------
    gamma : float
        Temporary impact γ > 0 (price per (share/time) per share).
    lam : float
        Inventory risk weight λ >= 0 (price per share² per time).
    terminal_penalty : float
        Φ >= 0 (price per share²), possibly ``math.inf``.
    horizon : float
        T > 0 (time units).
    """

    gamma: float
    lam: float
    terminal_penalty: float = math.inf
    horizon: float = 1.0

    def __post_init__(self):
        check.number("gamma", self.gamma, lo=0.0, lo_open=True)
        check.number("lam", self.lam, lo=0.0)
        check.number("terminal_penalty", self.terminal_penalty, lo=0.0, allow_inf=True)
        check.number("horizon", self.horizon, lo=0.0, lo_open=True)

    def h(self, t) -> np.ndarray:
        """Value coefficient h(t) with V(t, q) = h(t) q² (the cost still to pay).

        Parameters
        ----------
        t : array_like of float
            Times in [0, horizon].

        Returns
        -------
        numpy.ndarray of float64
            h(t) in price per share².
        """
        tau = self.horizon - check.times(t, self.horizon)
        return almgren_chriss_h(tau, self.gamma, self.lam, self.terminal_penalty)

    def inventory(self, t, q0: float) -> np.ndarray:
        """Optimal trajectory q(t) = q0 g(T - t)/g(T).

        Parameters
        ----------
        t : array_like of float
            Times in [0, horizon].
        q0 : float
            Initial inventory (shares).

        Returns
        -------
        numpy.ndarray of float64
            Inventory q(t) (shares).
        """
        T = self.horizon
        return q0 * almgren_chriss_ratio(T - check.times(t, T), T, self.gamma, self.lam, self.terminal_penalty)

    def rate(self, t, q0: float) -> np.ndarray:
        """Selling rate v(t) = h(t) q(t)/γ along the optimal trajectory.

        Parameters
        ----------
        t : array_like of float
            Times in [0, horizon].
        q0 : float
            Initial inventory (shares).

        Returns
        -------
        numpy.ndarray of float64
            v(t) (shares per time), finite at T also when the terminal penalty is infinite.
        """
        t = check.times(t, self.horizon)
        if not math.isinf(self.terminal_penalty):
            return self.h(t) * self.inventory(t, q0) / self.gamma
        # Φ = ∞: h -> ∞ while q -> 0 at T; v = q0 g'(τ)/g(T) has a finite limit
        tau, T = self.horizon - t, self.horizon
        if self.lam == 0.0:
            return np.full_like(tau, q0 / T)
        omega = math.sqrt(self.lam / self.gamma)
        return q0 * omega * np.exp(omega * (tau - T)) * (1 + np.exp(-2 * omega * tau)) / (1 - np.exp(-2 * omega * T))

    def value(self, t, q) -> np.ndarray:
        """Optimal cost still to pay, V(t, q) = h(t) q².

        Parameters
        ----------
        t : array_like of float
            Times in [0, horizon].
        q : array_like of float
            Inventories (shares), broadcast against ``t``.

        Returns
        -------
        numpy.ndarray of float64
            V (price × shares).
        """
        return self.h(t) * np.asarray(q, dtype=np.float64) ** 2

    def cost(self, q0: float) -> float:
        """Optimal total cost h(0) q0².

        Parameters
        ----------
        q0 : float
            Initial inventory (shares).

        Returns
        -------
        float
            Cost (price × shares).
        """
        return float(self.h(0.0) * q0**2)


# ---- the LQ trade-crowding MFG -----------------------------------------------------------
@dataclass(frozen=True)
class PreferenceType:
    """A population type of the LQ crowding game.

    Parameters
    ----------
    phi : float
        Running inventory penalty φ >= 0 (price per share² per time).
    A : float
        Terminal inventory penalty >= 0 (price per share²).
    m0 : GaussianMixture
        Law of the type's initial inventory (shares).
    weight : float
        Relative weight > 0 of the type in the population (normalised by `LQCrowding`).
    """

    phi: float
    A: float
    m0: GaussianMixture
    weight: float = 1.0

    def __post_init__(self):
        check.number("phi", self.phi, lo=0.0)
        check.number("A", self.A, lo=0.0)
        check.number("weight", self.weight, lo=0.0, lo_open=True)


def _expm(M: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring of a Taylor series (small matrices)."""
    norm = np.abs(M).sum(axis=1).max()
    s = max(0, int(math.ceil(math.log2(norm))) + 1) if norm > 0 else 0
    A = M / 2.0**s
    out = np.eye(M.shape[0])
    term = np.eye(M.shape[0])
    for n in range(1, 30):
        term = term @ A / n
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


@dataclass(frozen=True)
class LQCrowding:
    """The LQ trade-crowding mean-field game, exact (see the module docstring).

    Parameters
    ----------
    k : float
        Temporary impact > 0 (price per (share/time) per share).
    kappa : float
        Permanent impact >= 0 (price per share).
    T : float
        Horizon > 0 (time units).
    types : tuple of PreferenceType
        Preference types (their weights are normalised to sum to one).
    sigma : float
        Idiosyncratic inventory noise >= 0 (shares per square-root time).
    c : float
        Crowd temporary impact >= 0: execution price S + k ν + c μ (price per (share/time)).
    rho : float
        Resilience of the impact >= 0 (per time): dY = (κ μ - ρ Y) dt; 0 keeps impact permanent.
    transient : tuple of (float, float)
        Further exponentials (κ_i >= 0 in price per share, ρ_i > 0 per time) of the impact
        kernel G(τ) = κ e^{-ρτ} + Σ_i κ_i e^{-ρ_i τ}; empty by default.
    """

    k: float
    kappa: float
    T: float
    types: tuple[PreferenceType, ...]
    sigma: float = 0.0
    c: float = 0.0
    rho: float = 0.0
    transient: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        check.number("k", self.k, lo=0.0, lo_open=True)
        check.number("kappa", self.kappa, lo=0.0)
        check.number("T", self.T, lo=0.0, lo_open=True)
        check.number("sigma", self.sigma, lo=0.0)
        check.number("c", self.c, lo=0.0)
        check.number("rho", self.rho, lo=0.0)
        terms = tuple(tuple(term) for term in self.transient)
        for i, term in enumerate(terms):
            check.require(len(term) == 2, f"transient[{i}]", term, "expected a pair (kappa_i, rho_i)")
            check.number(f"transient[{i}].kappa", term[0], lo=0.0)
            check.number(f"transient[{i}].rho", term[1], lo=0.0, lo_open=True)
        object.__setattr__(self, "transient", tuple((float(a), float(r)) for a, r in terms))
        types = tuple(self.types)
        if not types or not all(isinstance(p, PreferenceType) for p in types):
            raise ValueError("types must be a non-empty sequence of PreferenceType")
        object.__setattr__(self, "types", types)

    @classmethod
    def single(cls, k, kappa, phi, A, T, m0: GaussianMixture, sigma=0.0, c=0.0, rho=0.0,
               transient=()) -> LQCrowding:
        """A one-type game.

        Parameters
        ----------
        k, kappa, T, sigma, c, rho, transient
            As in the class.
        phi, A : float
            The type's running and terminal penalties, as in `PreferenceType`.
        m0 : GaussianMixture
            Law of the initial inventory (shares).

        Returns
        -------
        LQCrowding
        """
        return cls(k=k, kappa=kappa, T=T, types=(PreferenceType(phi, A, m0),), sigma=sigma, c=c, rho=rho,
                   transient=transient)

    # ---- the mean-field mean: a constant-coefficient linear BVP --------------------------
    @cached_property
    def weights(self) -> np.ndarray:
        w = np.array([p.weight for p in self.types])
        return w / w.sum()

    @property
    def impact_terms(self) -> tuple[tuple[float, float], ...]:
        """The kernel's exponentials (κ_i, ρ_i), the first being (kappa, rho).

        Returns
        -------
        tuple of (float, float)
            Price per share, and per time (0 for a permanent term).
        """
        return ((float(self.kappa), float(self.rho)),) + self.transient

    def impact_kernel(self, tau) -> np.ndarray:
        """The propagator G(τ) = Σ_i κ_i e^{-ρ_i τ}: the price move τ after one unit traded per agent.

        Parameters
        ----------
        tau : array_like of float
            Lags >= 0 (time units).

        Returns
        -------
        numpy.ndarray of float64
            Price per share, the shape of ``tau``.
        """
        tau = np.asarray(tau, dtype=np.float64)
        return sum(kappa * np.exp(-rho * tau) for kappa, rho in self.impact_terms)

    @cached_property
    def _bvp(self):
        """State X = (E_1..E_J, E_1'..E_J', Y_1..Y_K): X' = M X, E(0) = E0, Y(0) = 0, and J
        terminal conditions. (Y_i only feeds back into E when rho_i > 0.)"""
        J, k, c, T = len(self.types), self.k, self.c, self.T
        terms = self.impact_terms
        K = len(terms)
        w = self.weights
        phi = np.array([p.phi for p in self.types])
        A = np.array([p.A for p in self.types])
        E0 = np.array([p.m0.mean for p in self.types])
        Binv = np.linalg.inv(2 * k * np.eye(J) + c * np.outer(np.ones(J), w))
        n = 2 * J + K
        M = np.zeros((n, n))
        M[:J, J:2 * J] = np.eye(J)
        M[J:2 * J, :J] = 2 * Binv @ np.diag(phi)
        M[J:2 * J, J:2 * J] = -sum(kappa for kappa, _ in terms) * Binv @ np.outer(np.ones(J), w)
        for i, (kappa, rho) in enumerate(terms):
            M[J:2 * J, 2 * J + i] = rho * Binv @ np.ones(J)
            M[2 * J + i, J:2 * J] = kappa * w
            M[2 * J + i, 2 * J + i] = -rho
        # initial rows pick E and the Y_i; terminal rows: k E_j'(T) + (c/2) mu(T) + A_j E_j(T) = 0
        init = np.zeros((J + K, n))
        init[:J, :J] = np.eye(J)
        init[J:, 2 * J:] = np.eye(K)
        term = np.zeros((J, n))
        term[:, :J] = np.diag(A)
        term[:, J:2 * J] = k * np.eye(J) + 0.5 * c * np.outer(np.ones(J), w)
        start = np.concatenate([E0, np.zeros(K)])
        lam, V = np.linalg.eig(M)
        if np.linalg.cond(V) < 1e10:
            # modes scaled to be <= 1 on [0, T]: growing ones anchored at T, decaying at 0
            anchor = np.where(lam.real > 0, T, 0.0)
            lhs = np.vstack([init @ V * np.exp(-lam * anchor), term @ V * np.exp(lam * (T - anchor))])
            coef = np.linalg.solve(lhs, np.concatenate([start, np.zeros(J)]).astype(complex))
            return ("modes", lam, V, coef, anchor)
        # defective M (e.g. kappa = 0 with a type of phi = 0: a linear mean): shoot with expm
        ET = _expm(M * T)
        free = list(range(J, 2 * J))  # the unknown E'(0)
        X0 = np.zeros(n)
        X0[:J] = E0
        X0[free] = np.linalg.solve(term @ ET[:, free], -(term @ ET) @ X0)
        return ("expm", M, X0)

    def _state(self, t) -> np.ndarray:
        """(2J + K, len(t)): mean inventories E_j, their rates E_j', and the impact terms Y_i."""
        shape = np.shape(t)
        t = np.atleast_1d(check.times(t, self.T)).ravel()
        kind, *rest = self._bvp
        if kind == "modes":
            lam, V, coef, anchor = rest
            X = (V @ (coef[:, None] * np.exp(lam[:, None] * (t[None, :] - anchor[:, None])))).real
        else:
            M, X0 = rest
            X = np.stack([_expm(M * s) @ X0 for s in t], axis=1)
        return X.reshape((X.shape[0],) + shape)

    def mean_inventory(self, t, type_index: int | None = None) -> np.ndarray:
        """Mean inventory E(t) of one type, or of the population (weighted) when type_index is None.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int or None
            Index into ``types``; None for the population mean.

        Returns
        -------
        numpy.ndarray of float64
            E(t) (shares), the shape of ``t``.
        """
        J = len(self.types)
        X = self._state(t)[:J]
        return X[type_index] if type_index is not None else np.tensordot(self.weights, X, axes=1)

    def type_rate(self, t, type_index: int) -> np.ndarray:
        """Mean inventory rate E_j'(t) of type j (shares per time; negative when selling).

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            The shape of ``t``.
        """
        return self._state(t)[len(self.types) + type_index]

    def mean_rate(self, t) -> np.ndarray:
        """Population mean trading rate μ(t) = Σ_j w_j E_j'(t).

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64
            μ(t) (shares per time), the shape of ``t``.
        """
        J = len(self.types)
        return np.tensordot(self.weights, self._state(t)[J:2 * J], axes=1)

    def price_impact(self, t) -> np.ndarray:
        """The crowd's impact on the mid, Y = Σ_i Y_i with dY_i = (κ_i μ - ρ_i Y_i) dt, Y_i(0) = 0.

        One term (κ, ρ) gives dY = (κμ - ρY) dt, and κ(E(t) - E(0)) when ρ = 0.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64
            Y(t) (price units), the shape of ``t``.
        """
        return self._state(t)[2 * len(self.types):].sum(axis=0)

    # ---- individual quantities ---------------------------------------------------------
    def _type(self, j: int) -> PreferenceType:
        if not 0 <= j < len(self.types):
            raise IndexError(f"type_index={j} out of range; model has {len(self.types)} types")
        return self.types[j]

    def h2(self, t, type_index: int = 0) -> np.ndarray:
        """Quadratic coefficient of the value, h(t, q) = h0 + h1 q - h2 q²/2.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            h2(t) (price per share²).
        """
        p = self._type(type_index)
        tau = self.T - check.times(t, self.T)
        return 2 * self.k * almgren_chriss_h(tau, 1.0, p.phi / self.k, p.A / self.k)

    def h1(self, t, type_index: int = 0) -> np.ndarray:
        """Linear coefficient of the value, h(t, q) = h0 + h1 q - h2 q²/2.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            h1(t) (price per share).
        """
        t = np.asarray(t, dtype=np.float64)
        return (2 * self.k * self.type_rate(t, type_index) + self.c * self.mean_rate(t)
                + self.h2(t, type_index) * self.mean_inventory(t, type_index))

    def h0(self, t, type_index: int = 0) -> np.ndarray:
        """Constant term of the value, h0(t) = ∫_t^T ((2kE' + h2 E)²/(4k) - σ² h2/2) ds.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            h0(t) (price × shares).
        """
        t = np.asarray(t, dtype=np.float64)
        k, s2 = self.k, self.sigma**2

        def integrand(s):
            shape = s.shape
            s = s.ravel()
            drift = 2 * k * self.type_rate(s, type_index) + self.h2(s, type_index) * self.mean_inventory(s, type_index)
            return (drift**2 / (4 * k) - 0.5 * s2 * self.h2(s, type_index)).reshape(shape)

        return _quad(integrand, t, np.full_like(t, self.T))

    def value(self, t, q, type_index: int = 0) -> np.ndarray:
        """Expected gain still to come beyond x + q s: h(t, q) = h0 + h1 q - h2 q²/2.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        q : array_like of float
            Inventories (shares), broadcast against ``t``.
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            h (price × shares).
        """
        q = np.asarray(q, dtype=np.float64)
        return self.h0(t, type_index) + self.h1(t, type_index) * q - 0.5 * self.h2(t, type_index) * q**2

    def control(self, t, q, type_index: int = 0) -> np.ndarray:
        """Equilibrium feedback ν*(t, q) = E_j' - h2/(2k) (q - E_j).

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        q : array_like of float
            Inventories (shares), broadcast against ``t``.
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            Inventory rate ν* (shares per time; negative when selling).
        """
        t = np.asarray(t, dtype=np.float64)
        return (self.type_rate(t, type_index)
                - self.h2(t, type_index) / (2 * self.k) * (np.asarray(q) - self.mean_inventory(t, type_index)))

    # ---- the law of inventories ----------------------------------------------------------
    def _ratio(self, t, s, j):
        p = self.types[j]
        return almgren_chriss_ratio(self.T - t, self.T - s, 1.0, p.phi / self.k, p.A / self.k)

    def noise_variance(self, t, type_index: int = 0) -> np.ndarray:
        """Variance added by the idiosyncratic noise, σ² ∫_0^t (g(t)/g(s))² ds.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int
            Index into ``types``.

        Returns
        -------
        numpy.ndarray of float64
            Variance (shares²), the shape of ``t``.
        """
        t = np.asarray(t, dtype=np.float64)
        if self.sigma == 0.0:
            return np.zeros_like(t)
        return self.sigma**2 * _quad(lambda s: self._ratio(t[..., None, None], s, type_index) ** 2,
                                     np.zeros_like(t), t)

    def law(self, t: float, type_index: int | None = None) -> GaussianMixture:
        """Law of the inventory Q_t, of one type or of the whole population.

        Parameters
        ----------
        t : float
            A time in [0, T].
        type_index : int or None
            Index into ``types``; None for the population's mixture.

        Returns
        -------
        GaussianMixture
            Law of Q_t (shares).
        """
        idx = range(len(self.types)) if type_index is None else [type_index]
        w, m, s = [], [], []
        for j in idx:
            p = self._type(j)
            rho = float(self._ratio(t, 0.0, j))
            Ej = float(self.mean_inventory(t, j))
            mix = p.m0.affine(Ej - p.m0.mean * rho, rho, float(self.noise_variance(np.array([t]), j)[0]))
            share = 1.0 if type_index is not None else self.weights[j]
            w += [share * x for x in mix.weights]
            m += list(mix.means)
            s += list(mix.stds)
        return GaussianMixture(tuple(w), tuple(m), tuple(s))

    def variance(self, t, type_index: int | None = None) -> np.ndarray:
        """Variance of the inventory Q_t, of one type or of the whole population.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        type_index : int or None
            Index into ``types``; None for the population.

        Returns
        -------
        numpy.ndarray of float64
            Var Q_t (shares²), one per time.
        """
        return np.array([self.law(float(s), type_index).variance for s in np.atleast_1d(t)])
