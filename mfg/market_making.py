"""Market makers as a mean-field population: GLFT quoting with competition through the
population's mean quotes.

The model
---------
Each of many makers holds an inventory q in -Q..Q (quotes of one unit), marks it to a mid
with volatility σ (ticks/√time), has CARA risk aversion γ, and quotes bid and ask at
distances δ^b, δ^a (ticks) from the mid. A quote at δ is hit with intensity

    Λ(δ; δ̄) = A exp(-k δ - ε (δ - δ̄(t)))          (per unit time)

where δ̄(t) is the population's mean quote on that side: quoting tighter than the crowd of
makers draws flow from them (ε >= 0 is the competition; ε = 0 is Guéant–Lehalle–Fernandez-
Tapia's single maker). Given δ̄, a maker faces GLFT with the effective intensity
``Ã(t) = A e^{ε δ̄(t)}`` and decay ``k̃ = k + ε``, so (GLFT 2013, with time-varying η)

    θ(t, q) = log v(t, q) / k̃,   ∂_t v_q = α q² v_q - η^b(t) v_{q+1} - η^a(t) v_{q-1},
    v(T, ·) = 1,   α = k̃ γ σ² / 2,   η(t) = Ã(t) (1 + γ/k̃)^-(1 + k̃/γ),

    δ^b(t, q) = log(v_q / v_{q+1}) / k̃ + log(1 + γ/k̃) / γ,
    δ^a(t, q) = log(v_q / v_{q-1}) / k̃ + log(1 + γ/k̃) / γ,

with no bid at q = Q and no ask at q = -Q. The population's inventory law m(t, q) solves
the forward equation of the jump process (bid fills +1, ask fills -1) under these quotes,
and δ̄^b(t), δ̄^a(t) are the m-weighted means of the quotes posted. The equilibrium is the
fixed point δ̄ -> quotes -> m -> δ̄.

The model is a :class:`mfg.jump.JumpMFGModel` (two jumps, ±1, exponential intensities,
ξ = γ, ψ = γσ²q²/2) and is solved by the general jump solver: θ directly by RK4 (the sup in
closed form), Anderson or Newton–Krylov outside. The linear v-system above is GLFT's
change of variables; the tests use it (``glft_v``) as an independent
route at ε = 0, and a direct scipy solve of the HJB with competitors.

Limits (tested): ε = 0 is exactly GLFT (:func:`glft_v`); γ -> 0 with a
long horizon gives quotes 1/k̃ away from the bounds (the constant-spread limit); a symmetric
initial law keeps zero mean inventory and equal bid and ask means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import validation as check
from .jump import Jump, JumpMFGModel, JumpSolution, JumpTerms, SolvedPopulation, best_response, solve_jumps


@dataclass(frozen=True)
class MarketMakingMFG(JumpMFGModel):
    """The market-making mean-field game (see the module docstring).

    Parameters
    ----------
    gamma : CARA risk aversion (per tick). sigma : mid volatility (ticks/√time).
    A, k : fill intensity A e^{-kδ} (per time; per tick). competition : ε >= 0.
    max_inventory : Q (quotes). T : horizon. m0 : initial inventory law on -Q..Q (weights),
    or None for everyone flat (q = 0).
    """

    gamma: float
    sigma: float
    A: float
    k: float
    competition: float
    max_inventory: int
    T: float
    m0: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("gamma", "sigma", "A", "k", "T"):
            check.number(name, getattr(self, name), lo=0.0, lo_open=True)
        check.number("competition", self.competition, lo=0.0)
        Q = check.integer("max_inventory", self.max_inventory, lo=1)
        object.__setattr__(self, "max_inventory", Q)
        if self.m0 is not None:
            m0 = np.asarray(self.m0, dtype=np.float64)
            if m0.shape != (2 * Q + 1,) or np.any(m0 < 0) or abs(m0.sum() - 1) > 1e-9:
                raise ValueError(f"m0 must be 2Q+1 = {2 * Q + 1} non-negative weights summing to 1")
            object.__setattr__(self, "m0", tuple(float(x) for x in m0))

    @property
    def q(self) -> np.ndarray:
        return np.arange(-self.max_inventory, self.max_inventory + 1, dtype=np.float64)

    @property
    def k_eff(self) -> float:
        return self.k + self.competition

    def initial_law(self) -> np.ndarray:
        if self.m0 is not None:
            return np.asarray(self.m0)
        m = np.zeros(2 * self.max_inventory + 1)
        m[self.max_inventory] = 1.0
        return m

    # --- the jump game (mfg.jump): coupling = the mean quotes (2, N+1), bid then ask
    @property
    def states(self) -> np.ndarray:
        return np.arange(-self.max_inventory, self.max_inventory + 1, dtype=np.int64)

    @property
    def risk_aversion(self) -> float:
        return self.gamma

    @property
    def jumps(self) -> tuple[Jump, ...]:
        return (Jump(+1, self.k_eff), Jump(-1, self.k_eff))  # a bid filled buys one, an ask sells one

    def initial_coupling(self, t):
        return np.full((2, t.size), math.log1p(self.gamma / self.k_eff) / self.gamma)  # q = 0 far from T

    def terms(self, mean_quotes, t):
        scale = self.A * np.exp(self.competition * np.asarray(mean_quotes))
        return JumpTerms(np.repeat(scale[:, :, None], self.q.size, axis=2),
                         np.broadcast_to(0.5 * self.gamma * self.sigma**2 * self.q**2, (t.size, self.q.size)))

    def coupling_from(self, population: SolvedPopulation, t):
        return np.stack([_posted_mean(population.m, quote) for quote in population.quotes])


@dataclass(frozen=True)
class MarketMakingSolution:
    """Quotes, law and mean quotes on the time grid t_0..t_N (bid/ask NaN where not posted).

    Attributes
    ----------
    bid, ask : (N+1, 2Q+1) distances from the mid (ticks); m : (N+1, 2Q+1) inventory law;
    mean_bid, mean_ask : (N+1,) the population's mean quotes; residuals : fixed-point
    history (sup norm of the change of the mean quotes); jump_solution : the general
    solver's :class:`mfg.jump.JumpSolution` (value θ, intensities, sweeps, timing).
    """

    model: MarketMakingMFG
    t: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    m: np.ndarray
    mean_bid: np.ndarray
    mean_ask: np.ndarray
    residuals: tuple[float, ...]
    jump_solution: JumpSolution

    def mean_inventory(self) -> np.ndarray:
        return self.m @ self.model.q

    def spread(self) -> np.ndarray:
        """Mean quoted spread δ̄^b + δ̄^a (ticks) at each time."""
        return self.mean_bid + self.mean_ask

    def expected_pnl(self) -> float:
        """A maker's expected P&L over [0, T] (ticks per quote unit): the spread it captures,
        ∫ Σ_q m (Λ^b δ^b + Λ^a δ^a) dt; the mid is a martingale, so inventory adds nothing."""
        return self.jump_solution.expected_jump_income()

    def to_polars(self):
        """Long table: t, q, m, bid, ask (one row per time and inventory)."""
        import polars as pl

        n_t, n_q = self.m.shape
        return pl.DataFrame({"t": np.repeat(self.t, n_q), "q": np.tile(self.model.q, n_t).astype(np.int64),
                             "m": self.m.ravel(), "bid": self.bid.ravel(), "ask": self.ask.ravel()})


def quotes(model: MarketMakingMFG, t: np.ndarray, mean_bid: np.ndarray, mean_ask: np.ndarray):
    """A maker's optimal (bid, ask) on the grid ``t`` given the population's mean quotes
    (distances from the mid, ticks; NaN where not posted)."""
    sol = best_response(model, t, np.stack([mean_bid, mean_ask]))
    return sol.quotes[0], sol.quotes[1]


def _posted_mean(m, quote):
    posted = ~np.isnan(quote)
    weight = (m * posted).sum(axis=1)
    return (m * np.nan_to_num(quote)).sum(axis=1) / np.maximum(weight, 1e-300)


def solve_market_making(model: MarketMakingMFG, n_t: int = 1000, tol: float = 1e-10, max_iter: int = 200,
                        damping: float = 0.7, method: str = "anderson") -> MarketMakingSolution:
    """The mean-field equilibrium: quotes, inventory law and mean quotes on ``n_t`` steps.

    ``method`` is the outer iteration (see :func:`mfg.jump.solve_jumps`). Raises
    ``MFGConvergenceError`` with the residual history when the fixed point is not reached.
    """
    sol = solve_jumps(model, n_t, method=method, damping=damping, tol=tol, max_iter=max_iter)
    bid, ask = sol.quotes
    return MarketMakingSolution(model, sol.t, bid, ask, sol.m, _posted_mean(sol.m, bid), _posted_mean(sol.m, ask),
                                sol.residuals, sol)


@dataclass(frozen=True)
class RiskNeutralMakers(JumpMFGModel):
    """One risk-neutral maker (Cartea–Jaimungal): it maximises expected P&L less a running
    inventory penalty φ q² and a terminal penalty ℓ q², with fill intensity A e^{-kδ} on both
    sides and inventory in -Q..Q. No coupling.

    With ξ = 0 the HJB ∂_t θ - φ q² + Σ (A/(e k)) e^{-k(θ(q) - θ(q±1))} = 0 becomes linear in
    ω = e^{kθ}: dω/dτ = (-kφ q² + (A/e)(shift up + shift down)) ω, ω(T) = e^{-kℓq²}, so
    :meth:`closed_form_value` is exact; quotes are θ(q) - θ(q±1) + 1/k.
    """

    A: float
    k: float
    phi: float
    ell: float
    max_inventory: int
    T: float

    def __post_init__(self):
        for name in ("A", "k", "T"):
            check.number(name, getattr(self, name), lo=0.0, lo_open=True)
        for name in ("phi", "ell"):
            check.number(name, getattr(self, name), lo=0.0)
        check.integer("max_inventory", self.max_inventory, lo=1)

    @property
    def risk_aversion(self) -> float:
        return 0.0

    @property
    def states(self):
        return np.arange(-self.max_inventory, self.max_inventory + 1, dtype=np.int64)

    @property
    def jumps(self):
        return (Jump(+1, self.k), Jump(-1, self.k))

    def initial_law(self):
        return np.eye(2 * self.max_inventory + 1)[self.max_inventory]

    def terminal_value(self):
        return -self.ell * self.states.astype(np.float64) ** 2

    def initial_coupling(self, t):
        return np.zeros(1)

    def terms(self, coupling, t):
        q2 = self.states.astype(np.float64) ** 2
        return JumpTerms(np.full((2, t.size, q2.size), self.A), np.broadcast_to(self.phi * q2, (t.size, q2.size)))

    def coupling_from(self, population, t):
        return np.zeros(1)

    def closed_form_value(self, t: np.ndarray) -> np.ndarray:
        """θ(t, q) (N+1, S) from the linear system for ω (symmetric: one eigen-decomposition)."""
        q = self.states.astype(np.float64)
        M = np.diag(-self.k * self.phi * q**2) + self.A / math.e * (np.eye(q.size, k=1) + np.eye(q.size, k=-1))
        w, V = np.linalg.eigh(M)
        tau = self.T - np.asarray(t, dtype=np.float64)
        omega = (V * np.exp(np.outer(tau, w))[:, None, :]) @ (V.T @ np.exp(-self.k * self.ell * q**2))
        return np.log(omega) / self.k


# ---- single-maker closed forms: the quotes a maker of simulator.agents.MarketMakers posts ----
def _inventories(Q: int) -> np.ndarray:
    return np.arange(-Q, Q + 1, dtype=np.float64)


def avellaneda_stoikov_quotes(tau, gamma: float, k: float, sigma: float, Q: int) -> tuple[np.ndarray, np.ndarray]:
    """Avellaneda–Stoikov quotes: reservation price s - q γ σ² τ, total spread
    γ σ² τ + (2/γ) ln(1 + γ/k).

    Parameters
    ----------
    tau : array_like
        Times to the horizon (model time units).
    gamma : float
        Risk aversion (per tick·quote).
    k : float
        Decay of the fill intensity A e^{-k δ} (per tick).
    sigma : float
        Volatility of the mid (ticks / √time).
    Q : int
        Inventory limit in quotes; rows run over inventories -Q..Q.

    Returns
    -------
    (bid, ask) : tuple of ndarray
        Distances from the mid (ticks), each of shape (len(tau), 2Q+1).
    """
    q = _inventories(Q)
    tau = np.asarray(tau, dtype=np.float64)[:, None]
    base = math.log1p(gamma / k) / gamma
    reservation = -q * gamma * sigma**2 * tau
    half = 0.5 * (gamma * sigma**2 * tau + 2 * base)
    return half - reservation, half + reservation


def glft_asymptotic_quotes(tau, gamma: float, A: float, k: float, sigma: float,
                           Q: int) -> tuple[np.ndarray, np.ndarray]:
    """GLFT's closed-form large-horizon quotes (the same row at every τ); the arguments
    and the result as in :func:`avellaneda_stoikov_quotes`, with ``A`` the fill intensity
    at the mid (per unit time)."""
    q = _inventories(Q)
    base = math.log1p(gamma / k) / gamma
    c = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    shape = (np.asarray(tau).shape[0], q.size)
    return (np.broadcast_to(base + (2 * q + 1) / 2 * c, shape).copy(),
            np.broadcast_to(base - (2 * q - 1) / 2 * c, shape).copy())


def glft_quotes(tau, gamma: float, A: float, k: float, sigma: float, Q: int) -> tuple[np.ndarray, np.ndarray]:
    """GLFT's exact quotes from v(τ) (:func:`glft_v`): δ^b(q) = ln(v(q)/v(q+1))/k + base,
    δ^a(q) = ln(v(q)/v(q-1))/k + base, base = ln(1 + γ/k)/γ; the arguments and the result
    as in :func:`glft_asymptotic_quotes`. At the inventory limits the side that is never
    posted repeats its neighbour."""
    base = math.log1p(gamma / k) / gamma
    v = glft_v(np.asarray(tau, dtype=np.float64), gamma, A, k, sigma, Q)
    bid = np.full_like(v, np.nan)
    ask = np.full_like(v, np.nan)
    bid[:, :-1] = np.log(v[:, :-1] / v[:, 1:]) / k + base
    ask[:, 1:] = np.log(v[:, 1:] / v[:, :-1]) / k + base
    bid[:, -1] = bid[:, -2]
    ask[:, 0] = ask[:, 1]
    return bid, ask


def glft_v(tau: np.ndarray, gamma: float, A: float, k: float, sigma: float, Q: int) -> np.ndarray:
    """GLFT's v(τ) = exp(-M τ) 1 for inventories -Q..Q (shape (len(tau), 2Q+1)).

    M = α diag(q²) - η (super + sub diagonals), α = k γ σ² / 2, η = A (1 + γ/k)^-(1 + k/γ).
    M is symmetric, so one eigen-decomposition serves every τ.
    """
    q = _inventories(Q)
    alpha = 0.5 * k * gamma * sigma**2
    eta = A * (1 + gamma / k) ** (-(1 + k / gamma))
    M = np.diag(alpha * q**2) - eta * (np.eye(q.size, k=1) + np.eye(q.size, k=-1))
    lam, P = np.linalg.eigh(M)
    lam_min = lam.min()  # factor out the slowest mode: ratios of v are unaffected
    w = P.T @ np.ones(q.size)
    return (np.exp(-(lam[None, :] - lam_min) * np.asarray(tau)[:, None]) * w) @ P.T
