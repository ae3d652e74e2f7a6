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
fixed point δ̄ -> quotes -> m -> δ̄ (damped Picard with Anderson acceleration).

Limits (tested): ε = 0 is exactly GLFT (:func:`simulator.agents.glft_v`); γ -> 0 with a
long horizon gives quotes 1/k̃ away from the bounds (the constant-spread limit); a symmetric
initial law keeps zero mean inventory and equal bid and ask means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _mm_kernels as K


def _check(name, value, lo=0.0, open_lo=True):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and (value > lo if open_lo else value >= lo)):
        raise ValueError(f"{name}={value!r} is not allowed; must be finite and {'>' if open_lo else '>='} {lo}")
    return float(value)


@dataclass(frozen=True)
class MarketMakingMFG:
    """The market-making mean-field game (see the module docstring).

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
            _check(name, getattr(self, name))
        _check("competition", self.competition, open_lo=False)
        Q = self.max_inventory
        if isinstance(Q, bool) or not isinstance(Q, (int, np.integer)) or Q < 1:
            raise ValueError(f"max_inventory={Q!r} is not allowed; must be an integer >= 1")
        object.__setattr__(self, "max_inventory", int(Q))
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


@dataclass(frozen=True)
class MarketMakingSolution:
    """Quotes, law and mean quotes on the time grid t_0..t_N (bid/ask NaN where not posted).

    bid, ask : (N+1, 2Q+1) distances from the mid (ticks); m : (N+1, 2Q+1) inventory law;
    mean_bid, mean_ask : (N+1,) the population's mean quotes; residuals : fixed-point
    history (sup norm of the change of the mean quotes).
    """

    model: MarketMakingMFG
    t: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    m: np.ndarray
    mean_bid: np.ndarray
    mean_ask: np.ndarray
    residuals: tuple[float, ...]

    def mean_inventory(self) -> np.ndarray:
        return self.m @ self.model.q

    def spread(self) -> np.ndarray:
        """Mean quoted spread δ̄^b + δ̄^a (ticks) at each time."""
        return self.mean_bid + self.mean_ask

    def expected_pnl(self) -> float:
        """A maker's expected P&L over [0, T] (ticks per quote unit): the spread it captures,
        ∫ Σ_q m (Λ^b δ^b + Λ^a δ^a) dt; the mid is a martingale, so inventory adds nothing."""
        def captured(quote, mean):
            return np.nan_to_num(_intensity(self.model, quote, mean) * quote)

        flow = (self.m * (captured(self.bid, self.mean_bid) + captured(self.ask, self.mean_ask))).sum(axis=1)
        return float(np.sum(0.5 * (flow[1:] + flow[:-1]) * np.diff(self.t)))

    def to_polars(self):
        """Long table: t, q, m, bid, ask (one row per time and inventory)."""
        import polars as pl

        n_t, n_q = self.m.shape
        return pl.DataFrame({"t": np.repeat(self.t, n_q), "q": np.tile(self.model.q, n_t).astype(np.int64),
                             "m": self.m.ravel(), "bid": self.bid.ravel(), "ask": self.ask.ravel()})


def quotes(model: MarketMakingMFG, t: np.ndarray, mean_bid: np.ndarray, mean_ask: np.ndarray):
    """A maker's optimal (bid, ask) on the grid ``t`` given the population's mean quotes.

    Integrates the linear system for v backward with RK4 (compiled, renormalised at every
    step: the quotes depend on ratios of v only).
    """
    Q, g, s, ke = model.max_inventory, model.gamma, model.sigma, model.k_eff
    q = model.q
    alpha = 0.5 * ke * g * s * s
    factor = (1 + g / ke) ** (-(1 + ke / g))
    eta_b = model.A * np.exp(model.competition * mean_bid) * factor
    eta_a = model.A * np.exp(model.competition * mean_ask) * factor
    V = np.empty((t.size, 2 * Q + 1))
    t = np.ascontiguousarray(t, dtype=np.float64)
    failed = K.quote_sweep(t, alpha * q * q, np.ascontiguousarray(eta_b, dtype=np.float64),
                           np.ascontiguousarray(eta_a, dtype=np.float64), V)
    if failed >= 0:
        raise FloatingPointError(f"the quote system lost positivity at t={t[failed]:.4g}; take smaller steps (n_t)")
    base = math.log1p(g / ke) / g
    bid = np.full(V.shape, np.nan)
    ask = np.full(V.shape, np.nan)
    bid[:, :-1] = np.log(V[:, :-1] / V[:, 1:]) / ke + base
    ask[:, 1:] = np.log(V[:, 1:] / V[:, :-1]) / ke + base
    return bid, ask


def _intensity(model, quote, mean_quote):
    return np.where(np.isnan(quote), 0.0,
                    model.A * np.exp(-model.k * np.nan_to_num(quote) - model.competition
                                     * (np.nan_to_num(quote) - mean_quote[:, None])))


def inventory_law(model: MarketMakingMFG, t, bid, ask, mean_bid, mean_ask) -> np.ndarray:
    """Forward equation of the inventories under the quotes (RK4; the generator's columns
    sum to zero, so the mass is kept to round-off)."""
    lam_b = _intensity(model, bid, mean_bid)
    lam_a = _intensity(model, ask, mean_ask)
    n = t.size - 1
    m = np.empty((n + 1, 2 * model.max_inventory + 1))
    m[0] = model.initial_law()
    rate = float(np.max(lam_b + lam_a))
    if rate * np.max(np.diff(t)) > 0.5:
        raise ValueError(f"n_t too small for the fill rates: dt x max rate = {rate * np.max(np.diff(t)):.3g} > 0.5")
    K.law_sweep(np.ascontiguousarray(t, dtype=np.float64), np.ascontiguousarray(lam_b), np.ascontiguousarray(lam_a),
                m)
    return m


def _posted_mean(m, quote):
    posted = ~np.isnan(quote)
    weight = (m * posted).sum(axis=1)
    return (m * np.nan_to_num(quote)).sum(axis=1) / np.maximum(weight, 1e-300)


def solve_market_making(model: MarketMakingMFG, n_t: int = 1000, tol: float = 1e-10, max_iter: int = 200,
                        damping: float = 0.7) -> MarketMakingSolution:
    """The mean-field equilibrium: quotes, inventory law and mean quotes on ``n_t`` steps.

    Raises ``RuntimeError`` with the residual history when the fixed point is not reached.
    """
    if isinstance(n_t, bool) or not isinstance(n_t, (int, np.integer)) or n_t < 10:
        raise ValueError(f"n_t={n_t!r} must be an integer >= 10")
    _check("tol", tol)
    t = np.linspace(0.0, model.T, int(n_t) + 1)
    start = math.log1p(model.gamma / model.k_eff) / model.gamma  # the quotes at q = 0 far from T, roughly
    mean_bid = np.full(t.size, start)
    mean_ask = mean_bid.copy()
    residuals: list[float] = []
    history_x, history_g = [], []
    for _ in range(max_iter):
        bid, ask = quotes(model, t, mean_bid, mean_ask)
        m = inventory_law(model, t, bid, ask, mean_bid, mean_ask)
        new = np.concatenate([_posted_mean(m, bid), _posted_mean(m, ask)])
        x = np.concatenate([mean_bid, mean_ask])
        g = new - x
        residuals.append(float(np.max(np.abs(g))))
        if residuals[-1] <= tol or model.competition == 0.0:  # without competition there is no coupling
            mean_bid, mean_ask = new[: t.size], new[t.size:]
            break
        history_x.append(x)
        history_g.append(g)
        history_x, history_g = history_x[-6:], history_g[-6:]
        if len(history_x) > 1:  # Anderson mixing over the last few iterates
            dX = np.stack([history_x[i + 1] - history_x[i] for i in range(len(history_x) - 1)], axis=1)
            dG = np.stack([history_g[i + 1] - history_g[i] for i in range(len(history_g) - 1)], axis=1)
            gamma, *_ = np.linalg.lstsq(dG, g, rcond=None)
            x = x + damping * g - (dX + damping * dG) @ gamma
        else:
            x = x + damping * g
        mean_bid, mean_ask = x[: t.size], x[t.size:]
    else:
        raise RuntimeError("market-making fixed point did not converge; residuals "
                           + ", ".join(f"{r:.3g}" for r in residuals[-5:]))
    bid, ask = quotes(model, t, mean_bid, mean_ask)
    m = inventory_law(model, t, bid, ask, mean_bid, mean_ask)
    return MarketMakingSolution(model, t, bid, ask, m, _posted_mean(m, bid), _posted_mean(m, ask), tuple(residuals))
