"""The N-player game of the LQ crowding model, with own impact.

N symmetric players, price drift ``kappa (1/N) Σ_j ν_j``: each player's own trading moves
the price it marks its inventory at (by kappa/N), which the mean field ignores.

Open-loop Nash (players take the others' rates as given processes)
    Player i's HJB has the drift ``kappa ν_i / N + kappa (N-1)/N μ_-i``. Completing the
    square gives exactly the MFG formulas of :class:`mfg.closed_form.LQCrowding` with
    ``kappa -> kappa (N-1)/N`` and ``A -> A - kappa/(2N)``:
    ``ν_i = μ_N(t) - ẽ(t)/(2k) (q_i - E_N(t))``.

Closed-loop Nash (feedback on everyone's inventories)
    ``h_i(t, q) = a_i + b_i·q - q^T E_i q / 2`` with E_i (N×N). The first-order condition
    gives ``ν = U q`` with row i of U equal to ``(κ e_i/N - E_i[i, :])/(2k)``, and
    ``E_i' = 2 sym(κ/N e_i 1^T U - U^T E_i) - 2φ e_i e_i^T - 2k U_i^T U_i``,
    ``E_i(T) = 2A e_i e_i^T`` (linear terms vanish). By symmetry every E_i lies in the
    five-dimensional algebra spanned by ``I, 11^T, e_i 1^T, 1 e_i^T, e_i e_i^T``, so the
    system reduces to five scalar ODEs for any N; the feedback is
    ``ν_i = u(t) q_i + w(t) Σ_j q_j``.

Both gaps to the MFG feedback fall like 1/N (``tests/test_nash.py`` fits the slope).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .closed_form import LQCrowding, PreferenceType


def _single_type(model: LQCrowding) -> PreferenceType:
    if len(model.types) != 1 or model.c != 0.0:
        raise ValueError("the N-player game is implemented for one preference type and c = 0")
    return model.types[0]


def _check_n(n_players) -> int:
    if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)) or n_players < 2:
        raise ValueError(f"n_players={n_players!r} must be an integer >= 2")
    return int(n_players)


def open_loop(model: LQCrowding, n_players: int) -> LQCrowding:
    """The open-loop Nash equilibrium of N players, as an LQCrowding with shifted parameters.

    Its ``control(t, q)``, ``mean_inventory``, ``mean_rate`` and ``law`` are the N-player
    equilibrium's. Raises if ``A - kappa/(2N) < 0`` (own impact makes the terminal
    penalty negative: the Riccati equation can blow up).
    """
    p = _single_type(model)
    n = _check_n(n_players)
    a_n = p.A - model.kappa / (2 * n)
    if a_n < 0:
        raise ValueError(f"A - kappa/(2N) = {a_n:.3g} < 0 for N={n}: no open-loop equilibrium of this form")
    return LQCrowding.single(k=model.k, kappa=model.kappa * (n - 1) / n, phi=p.phi, A=a_n, T=model.T,
                             m0=p.m0, sigma=model.sigma)


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
    """Symmetric closed-loop Nash feedback ``ν_i = u(t) q_i + w(t) Σ_j q_j`` on a time grid."""

    n_players: int
    t: np.ndarray
    u: np.ndarray
    w: np.ndarray
    coefficients: np.ndarray  # (len(t), 5): E_i in the algebra basis

    def control(self, t_index, q_own, q_sum) -> np.ndarray:
        """Rate of a player holding q_own when all N players together hold q_sum.

        ``t_index`` indexes ``t`` (an int, or a slice/array for several times)."""
        return self.u[t_index] * np.asarray(q_own) + self.w[t_index] * np.asarray(q_sum)


def closed_loop(model: LQCrowding, n_players: int, n_steps: int = 2000) -> ClosedLoopNash:
    """Integrate the reduced closed-loop Riccati system backward with RK4 on ``n_steps`` steps."""
    p = _single_type(model)
    n = _check_n(n_players)
    if n_steps < 10:
        raise ValueError(f"n_steps={n_steps} must be >= 10")
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


def control_gap(model: LQCrowding, n_players: int, kind: str = "closed", n_steps: int = 2000) -> float:
    """sup over t and |q - E(t)| <= 1 of |ν^N(t, q; others at E(t)) - ν^MFG(t, q)|.

    The others hold the MFG mean inventory; the player's own inventory ranges over a unit
    band around it. Both feedbacks are affine in q, so the sup is attained at the ends.
    """
    if kind not in ("closed", "open"):
        raise ValueError(f"kind={kind!r} must be 'closed' or 'open'")
    n = _check_n(n_players)
    t = np.linspace(0.0, model.T, n_steps + 1)
    E = model.mean_inventory(t)
    game = open_loop(model, n) if kind == "open" else closed_loop(model, n, n_steps)
    gaps = []
    for dq in (-1.0, 1.0):
        q = E + dq
        if kind == "open":
            nash = game.control(t, q)
        else:
            nash = game.control(slice(None), q, q + (n - 1) * E)
        gaps.append(np.max(np.abs(nash - model.control(t, q))))
    return float(max(gaps))
