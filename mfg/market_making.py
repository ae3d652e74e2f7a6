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
from .jump import (Jump, JumpMFGModel, JumpSolution, JumpTerms, MFGConvergenceError, SolvedPopulation, best_response,
                   solve_jumps, time_grid)


class _MakersPopulation:
    """What every makers' game shares: inventories -Q..Q (quotes), CARA risk γ, the inventory
    risk γσ²q²/2 as the running penalty, the coupling through the mean posted quotes.
    The dataclasses below supply ``gamma``, ``sigma``, ``max_inventory`` and ``m0``."""

    @property
    def q(self) -> np.ndarray:
        """Inventories -Q..Q (quotes), as floats."""
        return self.states.astype(np.float64)

    @property
    def states(self) -> np.ndarray:
        return np.arange(-self.max_inventory, self.max_inventory + 1, dtype=np.int64)

    @property
    def risk_aversion(self) -> float:
        return self.gamma

    def initial_law(self) -> np.ndarray:
        """Implements `JumpMFGModel.initial_law`: ``m0``, or a point mass at q = 0."""
        return _initial_law(self.m0, self.max_inventory)

    def coupling_from(self, population: SolvedPopulation, t):
        """Implements `JumpMFGModel.coupling_from`: the population's mean posted bid and ask (2, N+1)."""
        posting = population.posting if population.posting is not None else [None] * len(population.quotes)
        return np.stack([_posted_mean(population.m, quote, p) for quote, p in zip(population.quotes, posting)])

    def _inventory_risk(self, t) -> np.ndarray:
        """The running penalty γσ²q²/2 at every time of ``t`` and inventory, (N+1, 2Q+1)."""
        return np.broadcast_to(0.5 * self.gamma * self.sigma**2 * self.q**2, (t.size, self.q.size))


@dataclass(frozen=True)
class MarketMakingMFG(_MakersPopulation, JumpMFGModel):
    """The market-making mean-field game (see the module docstring).

    Parameters
    ----------
    gamma : float
        CARA risk aversion γ > 0 (per tick·quote).
    sigma : float
        Volatility of the mid > 0 (ticks per square-root time).
    A : float
        Fill intensity at the mid > 0 (fills per time).
    k : float
        Decay of the fill intensity A e^{-kδ} > 0 (per tick).
    competition : float
        ε >= 0 (per tick): the intensity is A e^{-kδ - ε(δ - δ̄)}, so quoting inside the
        crowd's mean quote δ̄ wins fills.
    max_inventory : int
        Q >= 1, the inventory limit (quotes); states -Q..Q.
    T : float
        Horizon > 0 (time units).
    m0 : tuple of float or None
        Initial inventory law on -Q..Q (2Q + 1 weights summing to one), or None for
        everyone flat (q = 0).
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
        Q = check.integer("max_inventory", self.max_inventory, lo=1, hi=10**6)
        object.__setattr__(self, "max_inventory", Q)
        object.__setattr__(self, "m0", _inventory_law(self.m0, Q))

    @property
    def k_eff(self) -> float:
        return self.k + self.competition

    # --- the jump game (mfg.jump): coupling = the mean quotes (2, N+1), bid then ask
    @property
    def jumps(self) -> tuple[Jump, ...]:
        return (Jump(+1, self.k_eff), Jump(-1, self.k_eff))  # a bid filled buys one, an ask sells one

    def initial_coupling(self, t):
        """Implements `JumpMFGModel.initial_coupling`: both mean quotes at ln(1 + γ/k̃)/γ (ticks)."""
        return np.full((2, t.size), math.log1p(self.gamma / self.k_eff) / self.gamma)  # q = 0 far from T

    def terms(self, mean_quotes, t):
        """Implements `JumpMFGModel.terms` for the mean quotes (2, N+1): scales A e^{ε δ̄}, penalty γσ²q²/2."""
        scale = self.A * np.exp(self.competition * np.asarray(mean_quotes))
        return JumpTerms(np.repeat(scale[:, :, None], self.q.size, axis=2), self._inventory_risk(t))


# ---- makers on the tick lattice ---------------------------------------------------------------
@dataclass(frozen=True)
class ExponentialIntensity:
    """The smooth model's fill rate Λ(δ; δ̄) = A e^{-k δ - ε (δ - δ̄)}, read on a lattice.

    Parameters
    ----------
    A : float
        Fill rate at the mid when quoting the mean, > 0 (fills per time).
    k : float
        Decay > 0 (per tick).
    competition : float
        ε >= 0 (per tick).
    """

    A: float
    k: float
    competition: float = 0.0

    def __post_init__(self):
        check.number("A", self.A, lo=0.0, lo_open=True)
        check.number("k", self.k, lo=0.0, lo_open=True)
        check.number("competition", self.competition, lo=0.0)

    def __call__(self, quotes: np.ndarray, mean_quote: np.ndarray) -> np.ndarray:
        """Λ at every lattice quote and mean quote.

        Parameters
        ----------
        quotes : numpy.ndarray of float64, shape (L,)
            Distances from the mid (ticks).
        mean_quote : numpy.ndarray of float64, shape (N,)
            The population's mean quote δ̄ at each time (ticks).

        Returns
        -------
        numpy.ndarray of float64, shape (N, L)
            Fills per time.
        """
        quotes = np.asarray(quotes, dtype=np.float64)[None, :]
        mean = np.asarray(mean_quote, dtype=np.float64)[:, None]
        return self.A * np.exp(-self.k * quotes - self.competition * (quotes - mean))


@dataclass(frozen=True)
class TabulatedIntensity:
    """A measured fill table Λ(δ_l; δ̄), interpolated linearly in δ̄ (flat beyond the nodes).

    Parameters
    ----------
    quotes : tuple of float
        The lattice δ_l (ticks from the mid), increasing.
    means : tuple of float
        The mean-quote nodes δ̄_b (ticks), increasing.
    rates : tuple of tuple of float
        Λ at (δ_l, δ̄_b), shape (L, B), finite and >= 0 (fills per time): a level never
        quoted has no rate and must be left off the lattice, not filled in.
    """

    quotes: tuple[float, ...]
    means: tuple[float, ...]
    rates: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        quotes = tuple(float(check.number(f"quotes[{i}]", q)) for i, q in enumerate(self.quotes))
        means = tuple(float(check.number(f"means[{i}]", m)) for i, m in enumerate(self.means))
        check.require(len(quotes) >= 1 and all(b > a for a, b in zip(quotes, quotes[1:])), "quotes", quotes,
                      "expected at least one quote, increasing")
        check.require(len(means) >= 1 and all(b > a for a, b in zip(means, means[1:])), "means", means,
                      "expected at least one mean-quote node, increasing")
        rates = np.asarray(self.rates, dtype=np.float64)
        check.require(rates.shape == (len(quotes), len(means)), "rates", rates.shape,
                      f"expected shape (quotes, means) = ({len(quotes)}, {len(means)})")
        bad = np.argwhere(~np.isfinite(rates) | (rates < 0))
        if bad.size:
            i, b = bad[0]
            raise check.InvalidValue(f"rates[{i}][{b}]", float(rates[i, b]), "must be finite and >= 0",
                                     f"level {quotes[i]} ticks was not measured at mean {means[b]}: leave it off "
                                     "the lattice or measure it (more seeds)")
        object.__setattr__(self, "quotes", quotes)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "rates", tuple(tuple(float(x) for x in row) for row in rates))

    def __call__(self, quotes: np.ndarray, mean_quote: np.ndarray) -> np.ndarray:
        """Λ at the table's quotes for every mean quote.

        Parameters
        ----------
        quotes : numpy.ndarray of float64, shape (L,)
            Must be the table's quotes.
        mean_quote : numpy.ndarray of float64, shape (N,)
            The population's mean quote at each time (ticks).

        Returns
        -------
        numpy.ndarray of float64, shape (N, L)
            Fills per time.
        """
        check.require(np.array_equal(np.asarray(quotes, dtype=np.float64), self.quotes), "quotes", quotes,
                      f"must be the table's quotes {self.quotes}")
        table = np.asarray(self.rates)
        means = np.asarray(self.means)
        return np.stack([np.interp(mean_quote, means, row) for row in table], axis=1)


@dataclass(frozen=True)
class TickMarketMakingMFG(_MakersPopulation, JumpMFGModel):
    """Market makers whose quotes live on the tick lattice, with a fill rate given per level.

    The control is a lattice quote δ_l (or not posting), the sup of the Hamiltonian a
    maximum over the lattice; the fill rate Λ(δ_l; δ̄) depends on the population's mean
    posted quote δ̄ of the side (the coupling). With :class:`ExponentialIntensity` on a
    lattice of spacing h the game tends to :class:`MarketMakingMFG` as h -> 0.

    Parameters
    ----------
    gamma : float
        CARA risk aversion γ > 0 (per tick·quote).
    sigma : float
        Volatility of the mid > 0 (ticks per square-root time).
    quotes : tuple of float
        The lattice δ_l (ticks from the mid), increasing.
    intensity : ExponentialIntensity or TabulatedIntensity
        Λ(δ_l; δ̄) (fills per time); any callable (quotes, mean_quote) -> (N, L) does.
    max_inventory : int
        Q >= 1 (quotes).
    T : float
        Horizon > 0 (time units).
    m0 : tuple of float or None
        Initial inventory law on -Q..Q, or None for everyone flat.
    """

    gamma: float
    sigma: float
    quotes: tuple[float, ...]
    intensity: object
    max_inventory: int
    T: float
    m0: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("gamma", "sigma", "T"):
            check.number(name, getattr(self, name), lo=0.0, lo_open=True)
        object.__setattr__(self, "max_inventory", check.integer("max_inventory", self.max_inventory, lo=1, hi=10**6))
        object.__setattr__(self, "quotes", Jump(+1, shape="lattice", quotes=tuple(self.quotes)).quotes)
        check.require(callable(self.intensity), "intensity", self.intensity,
                      "expected an ExponentialIntensity, a TabulatedIntensity or a callable (quotes, mean) -> rates")
        object.__setattr__(self, "m0", _inventory_law(self.m0, self.max_inventory))

    @property
    def jumps(self) -> tuple[Jump, ...]:
        return (Jump(+1, shape="lattice", quotes=self.quotes), Jump(-1, shape="lattice", quotes=self.quotes))

    def initial_coupling(self, t):
        """Implements `JumpMFGModel.initial_coupling`: the myopic symmetric quote on both sides.

        The lattice quote δ maximising Λ(δ; δ) (1 - e^{-γ δ})/γ: what a flat maker asks when
        everyone asks the same.
        """
        quotes = np.asarray(self.quotes)
        own = np.array([self.intensity(quotes, np.array([d]))[0, i] for i, d in enumerate(quotes)])
        best = quotes[int(np.argmax(own * -np.expm1(-self.gamma * quotes) / self.gamma))]
        return np.full((2, t.size), best)

    def terms(self, mean_quotes, t):
        """Implements `JumpMFGModel.terms`: unit scales, the lattice rates at the mean quotes, penalty γσ²q²/2."""
        quotes = np.asarray(self.quotes)
        lattice = np.stack([self.intensity(quotes, side) for side in np.asarray(mean_quotes)])
        return JumpTerms(np.ones((2, t.size, self.q.size)), self._inventory_risk(t), lattice)


def _inventory_law(m0, Q: int) -> tuple[float, ...] | None:
    """Check an initial inventory law on -Q..Q (None: everyone flat)."""
    if m0 is None:
        return None
    m0 = np.asarray(m0, dtype=np.float64)
    check.require(m0.shape == (2 * Q + 1,) and bool(np.all(m0 >= 0)) and abs(m0.sum() - 1) <= 1e-9, "m0",
                  m0.tolist(), f"must be 2Q+1 = {2 * Q + 1} non-negative weights summing to 1")
    return tuple(float(x) for x in m0)


def _initial_law(m0, Q: int) -> np.ndarray:
    if m0 is not None:
        return np.asarray(m0)
    m = np.zeros(2 * Q + 1)
    m[Q] = 1.0
    return m


@dataclass(frozen=True)
class MarketMakingSolution:
    """The market-making equilibrium on the time grid t_0..t_N.

    Parameters
    ----------
    model : MarketMakingMFG or TickMarketMakingMFG
    t : numpy.ndarray of float64, shape (N+1,)
        Time grid.
    bid, ask : numpy.ndarray of float64, shape (N+1, 2Q+1)
        Optimal distances from the mid (ticks) by inventory; NaN where not posted.
    m : numpy.ndarray of float64, shape (N+1, 2Q+1)
        Inventory law.
    mean_bid, mean_ask : numpy.ndarray of float64, shape (N+1,)
        The population's mean posted quotes (ticks).
    residuals : tuple of float
        Fixed-point history (sup norm of the change of the mean quotes, ticks).
    jump_solution : JumpSolution
        The general solver's solution (value θ, intensities, sweeps, timing).
    """

    model: MarketMakingMFG | TickMarketMakingMFG
    t: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    m: np.ndarray
    mean_bid: np.ndarray
    mean_ask: np.ndarray
    residuals: tuple[float, ...]
    jump_solution: JumpSolution

    def mean_inventory(self) -> np.ndarray:
        """Population mean inventory at each time.

        Returns
        -------
        numpy.ndarray of float64, shape (N+1,)
            Quotes (lots).
        """
        return self.m @ self.model.q

    def spread(self) -> np.ndarray:
        """Mean quoted spread δ̄^b + δ̄^a at each time.

        Returns
        -------
        numpy.ndarray of float64, shape (N+1,)
            Ticks.
        """
        return self.mean_bid + self.mean_ask

    def expected_pnl(self) -> float:
        """A maker's expected P&L over [0, T]: the spread it captures, ∫ Σ_q m (Λ^b δ^b + Λ^a δ^a) dt.

        The mid is a martingale, so inventory adds nothing in expectation.

        Returns
        -------
        float
            Ticks × quotes.
        """
        return self.jump_solution.expected_jump_income()

    def to_polars(self):
        """Long table, one row per time and inventory.

        Returns
        -------
        polars.DataFrame
            Columns t (time), q (int64, quotes), m, bid and ask (ticks; NaN where not posted).
        """
        import polars as pl

        n_t, n_q = self.m.shape
        return pl.DataFrame({"t": np.repeat(self.t, n_q), "q": np.tile(self.model.q, n_t).astype(np.int64),
                             "m": self.m.ravel(), "bid": self.bid.ravel(), "ask": self.ask.ravel()})


def quotes(model: MarketMakingMFG, t: np.ndarray, mean_bid: np.ndarray, mean_ask: np.ndarray):
    """A maker's optimal quotes against given population mean quotes.

    Parameters
    ----------
    model : MarketMakingMFG
    t : numpy.ndarray of float64, shape (N+1,)
        Time grid.
    mean_bid, mean_ask : numpy.ndarray of float64, shape (N+1,)
        The population's mean quotes (ticks from the mid).

    Returns
    -------
    (bid, ask) : tuple of numpy.ndarray of float64, each (N+1, 2Q+1)
        Distances from the mid (ticks); NaN where not posted.
    """
    sol = best_response(model, t, np.stack([mean_bid, mean_ask]))
    return sol.quotes[0], sol.quotes[1]


def _posted_mean(m, quote, posting=None):
    """The mean of the posted quotes weighted by the law (and the probability of posting)."""
    posted = ~np.isnan(quote) if posting is None else posting * ~np.isnan(quote)
    weight = (m * posted).sum(axis=1)
    return (m * posted * np.nan_to_num(quote)).sum(axis=1) / np.maximum(weight, 1e-300)


def solve_market_making(model: MarketMakingMFG | TickMarketMakingMFG, n_t: int = 1000, tol: float = 1e-10,
                        max_iter: int = 200, damping: float = 0.7, method: str = "anderson") -> MarketMakingSolution:
    """The mean-field equilibrium: quotes, inventory law and mean quotes on ``n_t`` steps.

    Parameters
    ----------
    model : MarketMakingMFG or TickMarketMakingMFG
        Quotes anywhere, or on the tick lattice.
    n_t : int
        Time steps on [0, T].
    tol : float
        Stop when the sup norm of the change of the mean quotes is below this (ticks).
    max_iter : int
        Outer iterations before giving up.
    damping : float
        Picard damping θ in (0, 1].
    method : str
        The outer iteration (see :func:`mfg.jump.solve_jumps`).

    Returns
    -------
    MarketMakingSolution

    Raises
    ------
    MFGConvergenceError
        With the residual history, when the fixed point is not reached.
    """
    sol = solve_jumps(model, n_t, method=method, damping=damping, tol=tol, max_iter=max_iter)
    bid, ask = sol.quotes
    return MarketMakingSolution(model, sol.t, bid, ask, sol.m, _posted_mean(sol.m, bid), _posted_mean(sol.m, ask),
                                sol.residuals, sol)


@dataclass(frozen=True)
class MixedEquilibrium:
    """The makers' equilibrium as fictitious play reaches it (:func:`fictitious_makers`).

    On a lattice a maker's best quote jumps from one level to the next as the mean quote
    crosses a threshold; where the makers are alike (all flat at t = 0) the population may
    then have no equilibrium in which they all quote the same, and the fixed-point iteration
    cycles. The equilibrium is mixed: makers split between two levels, in the proportions
    that make them indifferent. Fictitious play's averages converge to it.

    A maker plays it by drawing, at each time and inventory, a quote from ``policy``: the
    behavioural strategy whose flow (law × probability of each quote) is the average of the
    best responses' flows, so it induces the averaged law and mean quotes.

    Parameters
    ----------
    t : numpy.ndarray of float64, shape (N+1,)
    mean_bid, mean_ask : numpy.ndarray of float64, shape (N+1,)
        The averaged population's mean posted quotes (ticks).
    m : numpy.ndarray of float64, shape (N+1, 2Q+1)
        Its inventory law.
    pnl : float
        Its expected P&L per maker (the spread captured; ticks × quotes).
    residuals : tuple of float
        Sup norm of the change of the averaged mean quotes at each iteration (falls like
        1/iteration).
    bid, ask : numpy.ndarray of float64, shape (N+1, 2Q+1)
        The expected quote of a maker at each time and inventory (ticks; NaN where none is
        posted).
    rates : numpy.ndarray of float64, shape (2, N+1, 2Q+1)
        Its expected fill rates (bid, ask; per time).
    levels : tuple of float
        The quotes a lattice game's makers choose from (empty for quotes anywhere).
    policy : numpy.ndarray of float64 or None, shape (2, N+1, 2Q+1, len(levels))
        Lattice games: the probability of each level, by side, time and inventory (a row sums
        to the probability of posting; where the averaged law has no mass, the best responses'
        average choice). None for quotes anywhere.
    """

    t: np.ndarray
    mean_bid: np.ndarray
    mean_ask: np.ndarray
    m: np.ndarray
    pnl: float
    residuals: tuple[float, ...]
    bid: np.ndarray
    ask: np.ndarray
    rates: np.ndarray
    levels: tuple[float, ...] = ()
    policy: np.ndarray | None = None

    def spread(self) -> np.ndarray:
        """Mean quoted spread δ̄^b + δ̄^a at each time (ticks)."""
        return self.mean_bid + self.mean_ask

    def expected_pnl(self) -> float:
        """A maker's expected P&L over [0, T] (ticks × quotes)."""
        return self.pnl

    def draw_quotes(self, rng: np.random.Generator, n: int, times=None) -> np.ndarray:
        """``n`` independent draws of every quote of the behavioural strategy (lattice games).

        Parameters
        ----------
        rng : numpy.random.Generator
        n : int
            Draws (makers, or groups of makers).
        times : array_like of int, optional
            Indices of the time nodes to draw at (default: all).

        Returns
        -------
        numpy.ndarray of float64, shape (n, 2, len(times), 2Q+1)
            A level of ``levels`` at each side, time and inventory; NaN: not posted.
        """
        if self.policy is None:
            raise ValueError("draw_quotes: quotes anywhere have no finite set to draw from (lattice games only)")
        policy = self.policy if times is None else self.policy[:, np.asarray(times, dtype=np.int64)]
        cumulative = np.cumsum(policy, axis=-1)
        # a quote posted for sure is always drawn (rounding would leave it a 1e-16 chance not to be)
        cumulative[..., -1] = np.where(cumulative[..., -1] > 1.0 - 1e-9, 1.0, cumulative[..., -1])
        u = rng.random((n, *cumulative.shape[:-1], 1))
        index = (u >= cumulative).sum(axis=-1)  # == len(levels): beyond every level, not posted
        return np.append(np.asarray(self.levels, dtype=np.float64), np.nan)[index]


def fictitious_makers(model: MarketMakingMFG | TickMarketMakingMFG, n_t: int = 1000,
                      iterations: int = 200) -> MixedEquilibrium:
    """The makers' (possibly mixed) equilibrium by fictitious play on ``n_t`` steps.

    Iteration i best-responds to the mean quotes of the average of the populations so far
    and adds its own population to the average with weight 1/(i + 1): the averaged laws,
    mean quotes and P&L (each best response's, against the coupling it answered), and the
    averaged flows of quotes, which give the behavioural strategy that plays the average.

    Parameters
    ----------
    model : MarketMakingMFG or TickMarketMakingMFG
    n_t : int
        Time steps on [0, T].
    iterations : int
        Best responses averaged.

    Returns
    -------
    MixedEquilibrium
    """
    check.integer("iterations", iterations, lo=1, hi=10**6)
    t = time_grid(model.T, n_t)
    coupling = np.asarray(model.initial_coupling(t), dtype=np.float64)
    levels = tuple(float(x) for x in model.quotes) if isinstance(model, TickMarketMakingMFG) else ()
    averaged, pnl, residuals = [], 0.0, []
    for i in range(iterations):
        br = best_response(model, t, coupling)
        produced = model.coupling_from(SolvedPopulation(br.m, br.quotes, br.rates), t)
        w = 1.0 / (i + 1)  # the first average is the first response
        # the law, and what each side's quote does where it sits: its flow of mass, of quote, of
        # rate and, on a lattice, of each level; at the law's empty states the choices themselves
        posted = ~np.isnan(br.quotes)
        flows = [br.m, np.where(posted, br.m, 0.0), np.where(posted, br.m * np.nan_to_num(br.quotes), 0.0),
                 br.m * br.rates]
        if levels:
            choice = br.quotes[..., None] == np.asarray(levels)
            flows += [br.m[..., None] * choice, choice.astype(np.float64)]
        averaged = flows if i == 0 else [a + w * (f - a) for a, f in zip(averaged, flows)]
        pnl += w * (br.expected_jump_income() - pnl)
        step = w * (produced - coupling)
        coupling = coupling + step
        residuals.append(float(np.max(np.abs(step))))
    law, posted_mass, quote_mass, rate_mass, *lattice = averaged
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = law > 1e-300
        rates = np.where(mass, rate_mass / law, 0.0)
        quote = np.where(posted_mass > 1e-300, quote_mass / posted_mass, np.nan)
        policy = None
        if levels:
            level_mass, choices = lattice
            policy = np.where(mass[..., None], level_mass / law[..., None], choices)
    return MixedEquilibrium(t, coupling[0], coupling[1], law, float(pnl), tuple(residuals), quote[0], quote[1],
                            rates, levels, policy)


def makers_equilibrium(model: MarketMakingMFG | TickMarketMakingMFG, n_t: int = 1000, tol: float = 1e-10,
                       iterations: int = 400) -> MarketMakingSolution | MixedEquilibrium:
    """The makers' equilibrium: pure when the fixed-point iteration reaches it, else mixed.

    Anderson to ``tol``; when that cycles (alike makers on a lattice would split between
    two levels), :func:`fictitious_makers` with ``iterations`` best responses.

    Parameters
    ----------
    model : MarketMakingMFG or TickMarketMakingMFG
    n_t : int
        Time steps on [0, T].
    tol : float
        The pure equilibrium's tolerance on the mean quotes (ticks).
    iterations : int
        Best responses of fictitious play.

    Returns
    -------
    MarketMakingSolution or MixedEquilibrium
        Either has ``t``, ``m``, ``bid``, ``ask``, ``mean_bid``, ``mean_ask``, ``spread()``
        and ``expected_pnl()``.
    """
    try:
        return solve_market_making(model, n_t=n_t, tol=tol)
    except MFGConvergenceError:
        return fictitious_makers(model, n_t, iterations)


@dataclass(frozen=True)
class RiskNeutralMakers(JumpMFGModel):
    """One risk-neutral maker (Cartea–Jaimungal), no coupling.

    It maximises expected P&L less a running inventory penalty φ q² and a terminal penalty
    ℓ q², with fill intensity A e^{-kδ} on both sides and inventory in -Q..Q. With ξ = 0 the
    HJB ∂_t θ - φ q² + Σ (A/(e k)) e^{-k(θ(q) - θ(q±1))} = 0 becomes linear in ω = e^{kθ}:
    dω/dτ = (-kφ q² + (A/e)(shift up + shift down)) ω, ω(T) = e^{-kℓq²}, so
    :meth:`closed_form_value` is exact; quotes are θ(q) - θ(q±1) + 1/k.

    Parameters
    ----------
    A : float
        Fill intensity at the mid > 0 (fills per time).
    k : float
        Intensity decay > 0 (per tick).
    phi : float
        Running inventory penalty >= 0 (ticks per quote² per time).
    ell : float
        Terminal inventory penalty >= 0 (ticks per quote²).
    max_inventory : int
        Q >= 1 (quotes).
    T : float
        Horizon > 0 (time units).
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
        check.integer("max_inventory", self.max_inventory, lo=1, hi=10**6)

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
        """Implements `JumpMFGModel.initial_law`: a point mass at q = 0."""
        return np.eye(2 * self.max_inventory + 1)[self.max_inventory]

    def terminal_value(self):
        """Implements `JumpMFGModel.terminal_value`: -ℓ q²."""
        return -self.ell * self.states.astype(np.float64) ** 2

    def initial_coupling(self, t):
        """Implements `JumpMFGModel.initial_coupling`: a dummy (the maker is alone)."""
        return np.zeros(1)

    def terms(self, coupling, t):
        """Implements `JumpMFGModel.terms`: scales A on both sides, penalty φ q²."""
        q2 = self.states.astype(np.float64) ** 2
        return JumpTerms(np.full((2, t.size, q2.size), self.A), np.broadcast_to(self.phi * q2, (t.size, q2.size)))

    def coupling_from(self, population, t):
        """Implements `JumpMFGModel.coupling_from`: the same dummy."""
        return np.zeros(1)

    def closed_form_value(self, t: np.ndarray) -> np.ndarray:
        """The exact value from the linear system for ω (symmetric: one eigen-decomposition).

        Parameters
        ----------
        t : numpy.ndarray of float64, shape (N+1,)
            Times in [0, T].

        Returns
        -------
        numpy.ndarray of float64, shape (N+1, S)
            θ(t, q) (ticks × quotes).
        """
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
    """GLFT's closed-form large-horizon quotes (the same row at every τ).

    Parameters
    ----------
    tau : array_like of float
        Times to the horizon (time units); only their number matters.
    gamma, k, sigma, Q
        As in :func:`avellaneda_stoikov_quotes`.
    A : float
        Fill intensity at the mid (fills per time).

    Returns
    -------
    (bid, ask) : tuple of numpy.ndarray of float64
        Distances from the mid (ticks), each of shape (len(tau), 2Q+1).
    """
    q = _inventories(Q)
    base = math.log1p(gamma / k) / gamma
    c = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    shape = (np.asarray(tau).shape[0], q.size)
    return (np.broadcast_to(base + (2 * q + 1) / 2 * c, shape).copy(),
            np.broadcast_to(base - (2 * q - 1) / 2 * c, shape).copy())


def glft_quotes(tau, gamma: float, A: float, k: float, sigma: float, Q: int) -> tuple[np.ndarray, np.ndarray]:
    """GLFT's exact quotes from v(τ) (:func:`glft_v`).

    δ^b(q) = ln(v(q)/v(q+1))/k + base, δ^a(q) = ln(v(q)/v(q-1))/k + base, base =
    ln(1 + γ/k)/γ. At the inventory limits the side that is never posted repeats its
    neighbour.

    Parameters
    ----------
    tau, gamma, A, k, sigma, Q
        As in :func:`glft_asymptotic_quotes`.

    Returns
    -------
    (bid, ask) : tuple of numpy.ndarray of float64
        Distances from the mid (ticks), each of shape (len(tau), 2Q+1).
    """
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
    """GLFT's v(τ) = exp(-M τ) 1 for inventories -Q..Q, up to a factor common to all q.

    M = α diag(q²) - η (super + sub diagonals), α = k γ σ² / 2, η = A (1 + γ/k)^-(1 + k/γ).
    M is symmetric, so one eigen-decomposition serves every τ.

    Parameters
    ----------
    tau : numpy.ndarray of float64
        Times to the horizon (time units).
    gamma, A, k, sigma, Q
        As in :func:`glft_asymptotic_quotes`.

    Returns
    -------
    numpy.ndarray of float64, shape (len(tau), 2Q+1)
        Dimensionless; only ratios across q are meaningful.
    """
    q = _inventories(Q)
    alpha = 0.5 * k * gamma * sigma**2
    eta = A * (1 + gamma / k) ** (-(1 + k / gamma))
    M = np.diag(alpha * q**2) - eta * (np.eye(q.size, k=1) + np.eye(q.size, k=-1))
    lam, P = np.linalg.eigh(M)
    lam_min = lam.min()  # factor out the slowest mode: ratios of v are unaffected
    w = P.T @ np.ones(q.size)
    return (np.exp(-(lam[None, :] - lam_min) * np.asarray(tau)[:, None]) * w) @ P.T
