"""The N-player game of the LQ crowding model, with own impact.

N symmetric players, price drift ``kappa (1/N) Σ_j ν_j``: each player's own trading moves
the price it marks its inventory at (by kappa/N), which the mean field ignores.

Open-loop Nash (players take the others' rates as given processes)
    Pontryagin for player i: ``ν_i = (p_i + κ Q_i/N)/(2k)``,
    ``p_i' = -(κ/N) Σ_j ν_j + 2φ Q_i``, ``p_i(T) = -2A Q_i(T)``. Averaging over players,
    the mean inventory solves the MFG's mean equation with ``κ -> κ(N-1)/N`` and
    ``A -> A - κ/(2N)``. The deviations ``D_i = Q_i - Q̄`` do *not* follow the shifted
    MFG's dispersion: ``ν_i - ν̄ = -P(t)/(2k) D_i`` with
    ``P' = P²/(2k) + κP/(2kN) - 2φ``, ``P(T) = 2A - κ/N`` (a player's own trade enters its
    costate through ``κ ν_i/N``). With ``Π = P + κ/(2N)`` this is the Almgren–Chriss
    Riccati ``Π' = Π²/(2k) - 2(φ + κ²/(16kN²))``, ``Π(T) = 2(A - κ/(4N))``, solved in
    closed form. (Reusing the shifted MFG's gain is wrong at O(1/N): for N=2, κ=1, k=φ=1,
    A=10 it gives an own gain of -1.2476 at t=0 against the true -1.1283.)

Closed-loop Nash (feedback on everyone's inventories)
    ``h_i(t, q) = a_i + b_i·q - q^T E_i q / 2`` with E_i (N×N). The first-order condition
    gives ``ν = U q`` with row i of U equal to ``(κ e_i/N - E_i[i, :])/(2k)``, and
    ``E_i' = 2 sym(κ/N e_i 1^T U - U^T E_i) - 2φ e_i e_i^T - 2k U_i^T U_i``,
    ``E_i(T) = 2A e_i e_i^T`` (linear terms vanish). By symmetry every E_i lies in the
    five-dimensional algebra spanned by ``I, 11^T, e_i 1^T, 1 e_i^T, e_i e_i^T``, so the
    system reduces to five scalar ODEs for any N; the feedback is
    ``ν_i = u(t) q_i + w(t) Σ_j q_j``.

Gaps to the mean field (:func:`nash_gaps`): the own-deviation gain, the mean rate of a
crowd started at the m0 mean, and a representative player's value. All three fall like
1/N for both loops (``tests/test_nash.py`` fits the slopes). The sup over t of the
feedback gap cannot tell the loops apart: at t = T both gains equal ``(κ/N - 2A)/(2k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from . import validation as check
from .closed_form import LQCrowding, PreferenceType, almgren_chriss_h, almgren_chriss_ratio
from .laws import GaussianMixture


def _single_type(model: LQCrowding) -> PreferenceType:
    if len(model.types) != 1 or model.c != 0.0 or model.rho != 0.0 or model.transient:
        raise ValueError("the N-player game is implemented for one preference type, c = 0, rho = 0 and no "
                         "transient impact terms")
    return model.types[0]


@dataclass(frozen=True)
class OpenLoopNash:
    """The open-loop Nash equilibrium of N players (exact; see the module docstring).

    ``control(t, q)`` is the equilibrium rate ``ν = μ_N(t) - P(t)/(2k) (q - E_N(t))`` of a
    player holding q while the crowd's mean follows ``E_N`` (started at the m0 mean);
    ``paths`` gives every player's trajectory for given starting inventories.

    Parameters
    ----------
    model : LQCrowding
        A one-type game with c = 0 and ρ = 0.
    n_players : int
        N >= 2, with A - κ/(2N) >= 0.
    """

    model: LQCrowding
    n_players: int

    def __post_init__(self):
        p = _single_type(self.model)
        n = check.integer("n_players", self.n_players, lo=2, hi=10**9)
        object.__setattr__(self, "n_players", n)
        if p.A - self.model.kappa / (2 * n) < 0:
            raise ValueError(f"A - kappa/(2N) = {p.A - self.model.kappa / (2 * n):.3g} < 0 for N={n}: "
                             "no open-loop equilibrium of this form")

    @cached_property
    def mean_game(self) -> LQCrowding:
        """The crowd's mean: the MFG mean equation with κ(N-1)/N and A - κ/(2N)."""
        m, p, n = self.model, self.model.types[0], self.n_players
        return LQCrowding.single(k=m.k, kappa=m.kappa * (n - 1) / n, phi=p.phi, A=p.A - m.kappa / (2 * n),
                                 T=m.T, m0=p.m0, sigma=m.sigma)

    @property
    def k(self) -> float:
        return self.model.k

    def _deviation_params(self) -> tuple[float, float, float]:
        """(γ, λ, Φ) of the Almgren–Chriss problem whose h is Π/2 (γ = k)."""
        m, p, n = self.model, self.model.types[0], self.n_players
        return m.k, p.phi + m.kappa**2 / (16 * m.k * n * n), p.A - m.kappa / (4 * n)

    def own_gain(self, t) -> np.ndarray:
        """Gain -P(t)/(2k) of a player's rate on its own deviation from the crowd's mean.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64
            Per time (negative: a player above the mean sells faster).
        """
        t = check.times(t, self.model.T)
        gamma, lam, phi_T = self._deviation_params()
        shift = self.model.kappa / (4 * self.model.k * self.n_players)
        return -almgren_chriss_h(self.model.T - t, gamma, lam, phi_T) / gamma + shift

    def mean_inventory(self, t) -> np.ndarray:
        """The crowd's mean inventory E_N(t), started at the m0 mean.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64
            Shares.
        """
        return self.mean_game.mean_inventory(t)

    def mean_rate(self, t) -> np.ndarray:
        """The crowd's mean rate μ_N(t).

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64
            Shares per time.
        """
        return self.mean_game.mean_rate(t)

    def control(self, t, q) -> np.ndarray:
        """Equilibrium rate ν(t, q) = μ_N(t) + own_gain(t) (q - E_N(t)).

        Parameters
        ----------
        t : array_like of float
            Times in [0, T].
        q : array_like of float
            The player's inventory (shares), broadcast against ``t``.

        Returns
        -------
        numpy.ndarray of float64
            Shares per time.
        """
        t = np.asarray(t, dtype=np.float64)
        return self.mean_rate(t) + self.own_gain(t) * (np.asarray(q) - self.mean_inventory(t))

    def paths(self, t, q0) -> tuple[np.ndarray, np.ndarray]:
        """Every player's equilibrium trajectory for given starting inventories.

        Parameters
        ----------
        t : array_like of float
            Times in [0, T], length L.
        q0 : array_like of float, shape (N,)
            Starting inventories (shares).

        Returns
        -------
        (inventory, rate) : tuple of numpy.ndarray of float64, each (N, L)
            Shares and shares per time.
        """
        t = check.times(t, self.model.T)
        q0 = np.asarray(q0, dtype=np.float64)
        if q0.shape != (self.n_players,):
            raise ValueError(f"q0 has shape {q0.shape}; expected ({self.n_players},)")
        unit = replace(self.mean_game, types=(replace(self.mean_game.types[0], m0=GaussianMixture.normal(1.0, 0.0)),))
        mean = q0.mean() * unit.mean_inventory(t)
        mean_rate = q0.mean() * unit.mean_rate(t)
        gamma, lam, phi_T = self._deviation_params()
        T = self.model.T
        decay = (almgren_chriss_ratio(T - t, T, gamma, lam, phi_T)
                 * np.exp(self.model.kappa / (4 * gamma * self.n_players) * t))
        deviation = (q0 - q0.mean())[:, None] * decay[None, :]
        return mean + deviation, mean_rate + self.own_gain(t) * deviation


def open_loop(model: LQCrowding, n_players: int) -> OpenLoopNash:
    """The open-loop Nash equilibrium of N players.

    Parameters
    ----------
    model : LQCrowding
        A one-type game with c = 0 and ρ = 0.
    n_players : int
        N >= 2.

    Returns
    -------
    OpenLoopNash

    Raises
    ------
    ValueError
        If A - κ/(2N) < 0 (no open-loop equilibrium of this form).
    """
    return OpenLoopNash(model, n_players)


# ---- the permutation-invariant matrix algebra: x = (I, 11^T, e1^T, 1e^T, ee^T) coefficients
def _mul(x: np.ndarray, y: np.ndarray, n: float) -> np.ndarray:
    """Product of two algebra elements for N = n (rules: 1^T1 = n, 1^Te = e^Te = 1)."""
    xa, xb, xc, xr, xd = x
    ya, yb, yc, yr, yd = y
    return np.array([
        xa * ya,
        xa * yb + xb * ya + n * xb * yb + xb * yc + xr * yb + xr * yc,
        xa * yc + xc * ya + n * xc * yb + xc * yc + xd * yb + xd * yc,
        xa * yr + xr * ya + n * xb * yr + xb * yd + xr * yr + xr * yd,
        xa * yd + xd * ya + n * xc * yr + xc * yd + xd * yr + xd * yd,
    ])


def _transpose(x: np.ndarray) -> np.ndarray:
    return x[[0, 1, 3, 2, 4]]


def _feedback(E: np.ndarray, n: float, k: float, kappa: float) -> tuple[float, float]:
    """(u, w) of ν_j = u q_j + w Σ q: row j of E_j is (a + r + d) e_j^T + (b + c) 1^T."""
    a, b, c, r, d = E
    return (kappa / n - (a + r + d)) / (2 * k), -(b + c) / (2 * k)


def _closed_loop_rhs(E: np.ndarray, n: float, k: float, kappa: float, phi: float) -> np.ndarray:
    u, w = _feedback(E, n, k, kappa)
    U = np.array([u, w, 0.0, 0.0, 0.0])
    L = np.array([0.0, 0.0, 1.0, 0.0, 0.0])  # e_i 1^T
    D = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    X = kappa / n * _mul(L, U, n) - _mul(_transpose(U), E, n)
    sym = X + _transpose(X)  # 2 sym(X)
    row = np.array([0.0, w * w, u * w, u * w, u * u])  # U_i^T U_i = (u e + w 1)(u e + w 1)^T
    return sym - 2 * phi * D - 2 * k * row


@dataclass(frozen=True)
class ClosedLoopNash:
    """Symmetric closed-loop Nash feedback ``ν_i = u(t) q_i + w(t) Σ_j q_j`` on a time grid.

    Parameters
    ----------
    n_players : int
        N.
    t : numpy.ndarray of float64, shape (L,)
        Time grid.
    u, w : numpy.ndarray of float64, shape (L,)
        Feedback gains on one's own and on the total inventory (per time).
    coefficients : numpy.ndarray of float64, shape (L, 5)
        The value's quadratic form E_i in the permutation-invariant algebra basis.
    """

    n_players: int
    t: np.ndarray
    u: np.ndarray
    w: np.ndarray
    coefficients: np.ndarray  # (len(t), 5): E_i in the algebra basis

    def control(self, t_index, q_own, q_sum) -> np.ndarray:
        """Rate of a player holding q_own when all N players together hold q_sum.

        Parameters
        ----------
        t_index : int, slice or array of int
            Index into ``t``.
        q_own, q_sum : array_like of float
            Own and total inventory (shares).

        Returns
        -------
        numpy.ndarray of float64
            Shares per time.
        """
        return self.u[t_index] * np.asarray(q_own) + self.w[t_index] * np.asarray(q_sum)


def closed_loop(model: LQCrowding, n_players: int, n_steps: int = 2000) -> ClosedLoopNash:
    """The closed-loop Nash equilibrium: the reduced Riccati system integrated backward by RK4.

    Parameters
    ----------
    model : LQCrowding
        A one-type game with c = 0 and ρ = 0.
    n_players : int
        N >= 2.
    n_steps : int
        RK4 steps on [0, T], >= 10.

    Returns
    -------
    ClosedLoopNash

    Raises
    ------
    FloatingPointError
        If the Riccati system blows up.
    """
    p = _single_type(model)
    n = check.integer("n_players", n_players, lo=2, hi=10**9)
    check.integer("n_steps", n_steps, lo=10, hi=10**7)
    k, kappa, phi = model.k, model.kappa, p.phi
    t = np.linspace(0.0, model.T, n_steps + 1)
    h = model.T / n_steps
    E = np.array([0.0, 0.0, 0.0, 0.0, 2 * p.A])
    out = np.empty((n_steps + 1, 5))
    out[-1] = E

    def f(e):
        return _closed_loop_rhs(e, float(n), k, kappa, phi)

    for i in range(n_steps, 0, -1):  # backward: dE = f(E) dt with dt = -h
        k1 = f(E)
        k2 = f(E - 0.5 * h * k1)
        k3 = f(E - 0.5 * h * k2)
        k4 = f(E - h * k3)
        E = E - h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if not np.all(np.isfinite(E)):
            raise FloatingPointError(f"closed-loop Riccati system blew up at t={t[i - 1]:.4g} for N={n}")
        out[i - 1] = E
    uw = np.array([_feedback(e, float(n), k, kappa) for e in out])
    return ClosedLoopNash(n, t, uw[:, 0], uw[:, 1], out)


@dataclass(frozen=True)
class NashGaps:
    """Distances between an N-player equilibrium and the mean field (one type, c = 0).

    Attributes
    ----------
    own_gain : float
        (1/T)∫|g_N(t) - g(t)| dt, g the gain of a player's rate on its own deviation from
        the mean (closed loop u(t); open loop -P/(2k); MFG -h2/(2k)); per time.
    mean_rate : float
        (1/T)∫|μ_N(t) - μ(t)| dt for a crowd started at the m0 mean (shares per time).
    value : float
        |J_N - J| for a player at the mean when everyone is, J = ∫(κ E μ - k μ² - φ E²) dt
        - A E(T)² (gain beyond x + q s; the idiosyncratic-noise terms are left out; price ×
        shares).
    """

    own_gain: float
    mean_rate: float
    value: float


def _representative_value(model: LQCrowding, t, E, mu) -> float:
    p = model.types[0]
    integrand = model.kappa * E * mu - model.k * mu**2 - p.phi * E**2
    return float(np.trapezoid(integrand, t) - p.A * E[-1] ** 2)


def nash_gaps(model: LQCrowding, n_players: int, kind: str = "closed", n_steps: int = 2000) -> NashGaps:
    """The :class:`NashGaps` of an N-player equilibrium against the mean field.

    Parameters
    ----------
    model : LQCrowding
        A one-type game with c = 0 and ρ = 0.
    n_players : int
        N >= 2.
    kind : {"closed", "open"}
        Which loop.
    n_steps : int
        Time steps of the comparison grid (and of the closed-loop RK4).

    Returns
    -------
    NashGaps
    """
    check.choice("kind", kind, ("closed", "open"))
    n = check.integer("n_players", n_players, lo=2, hi=10**9)
    t = np.linspace(0.0, model.T, n_steps + 1)
    E, mu = model.mean_inventory(t), model.mean_rate(t)
    gain = -model.h2(t) / (2 * model.k)
    if kind == "open":
        game = open_loop(model, n)
        gain_n, E_n, mu_n = game.own_gain(t), game.mean_inventory(t), game.mean_rate(t)
    else:
        cl = closed_loop(model, n, n_steps)
        mean_gain = cl.u + n * cl.w  # dQ̄/dt = (u + N w) Q̄
        log_growth = np.concatenate([[0.0], np.cumsum(0.5 * (mean_gain[1:] + mean_gain[:-1]) * np.diff(t))])
        gain_n, E_n = cl.u, E[0] * np.exp(log_growth)
        mu_n = mean_gain * E_n
    T = model.T
    return NashGaps(own_gain=float(np.trapezoid(np.abs(gain_n - gain), t) / T),
                    mean_rate=float(np.trapezoid(np.abs(mu_n - mu), t) / T),
                    value=abs(_representative_value(model, t, E_n, mu_n) - _representative_value(model, t, E, mu)))


NASH_GAP_COLUMNS = tuple(f"{name}_gap_{kind}" for name in ("own_gain", "mean_rate", "value")
                         for kind in ("closed", "open"))


def nash_gap_columns(model: LQCrowding, n_players: int, n_steps: int = 2000) -> dict[str, float]:
    """:class:`NashGaps` of both loops as summary columns.

    Parameters
    ----------
    model : LQCrowding
    n_players : int
    n_steps : int
        As in :func:`nash_gaps`.

    Returns
    -------
    dict of str to float
        Keys ``<gap>_gap_<loop>`` (``NASH_GAP_COLUMNS``), units as in :class:`NashGaps`.
    """
    gaps = {kind: nash_gaps(model, n_players, kind, n_steps) for kind in ("closed", "open")}
    return {col: getattr(gaps[col.rsplit("_", 1)[1]], col.rsplit("_gap_", 1)[0]) for col in NASH_GAP_COLUMNS}
