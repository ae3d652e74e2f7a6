"""Agent populations: their specs, and the tables the compiled market loop reads.

Every population is struct-of-arrays inside the kernel. What differs between strategies
is compiled here, once per run, into plain tables:

* execution strategies become ``ν = a_j[n] + b_j[n] q + c_j[n] Σ_i q_i`` per type j and
  step n (TWAP, Almgren–Chriss, MFG closed form, open- and closed-loop Nash), or a
  (type, time, inventory) grid of ν for the finite-difference MFG solution;
* market-maker quotes become bid/ask distances from the mid per (step, inventory).

Units: time in the model's units; prices in ticks inside the loop; inventories in model
units ``q`` for strategies and in lots in the book (``lots_per_unit`` lots per unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from mfg import validation as check
from mfg.io import memory_limit
from mfg.closed_form import AlmgrenChriss, LQCrowding
from mfg.jump import Jump, memory_estimate
from mfg.market_making import (ExponentialIntensity, MarketMakingMFG, MixedEquilibrium, TabulatedIntensity,
                               TickMarketMakingMFG, avellaneda_stoikov_quotes, glft_asymptotic_quotes, glft_quotes,
                               makers_equilibrium, solve_market_making)

STRATEGIES = ("twap", "almgren_chriss", "mfg", "mfg_fd", "nash_open", "nash_closed", "feedback")
MAKER_MODELS = ("avellaneda_stoikov", "glft", "glft_asymptotic", "mfg", "mfg_tick", "table")
# makers playing a mixed lattice equilibrium draw their quotes in at most this many groups:
# each group's draws are independent at every step and inventory, so a maker's play is the
# behavioural strategy's whatever its group; the cap bounds the tables' memory at large N
MIXED_QUOTE_GROUPS = 256
MIXED_ITERATIONS = 400  # fictitious play's best responses for a mixed equilibrium (residual ~ 1/400 tick)
# a unit of model inventory is a handful to a few thousand lots; beyond this the crowd's
# position in lots outgrows any book the noise can fill
MAX_LOTS_PER_UNIT = 1_000_000


@dataclass(frozen=True)
class NoiseFlow:
    """Zero-intelligence flow (Santa Fe style).

    Rates are per unit time; with ``scale_liquidity`` they are per execution agent
    (multiplied by N).

    Parameters
    ----------
    limit_rate : float
        Limit orders per unit time, each side equally likely.
    market_rate : float
        Market orders per unit time.
    cancel_rate : float
        Cancellation rate of each resting noise order (per unit time).
    mean_depth : float
        Limit prices lie D ticks behind the opposite best quote, D >= 1 geometric with this
        mean (ticks).
    max_size : int
        Order sizes are uniform on 1 .. max_size lots.
    """

    limit_rate: float = 40.0
    market_rate: float = 20.0
    cancel_rate: float = 2.0
    mean_depth: float = 4.0
    max_size: int = 5

    def __post_init__(self):
        for name in ("limit_rate", "market_rate", "cancel_rate"):
            check.number(f"market.noise.{name}", getattr(self, name), lo=0.0)
        check.number("market.noise.mean_depth", self.mean_depth, lo=1.0)
        check.integer("market.noise.max_size", self.max_size, lo=1, hi=10**6)


@dataclass(frozen=True)
class MetaOrderTraders:
    """Traders who split hidden meta-orders into child market orders (Lillo, Mike, Farmer 2005).

    ``count`` meta-orders run at any time; when one is done its trader starts the next. A
    meta-order's size is Pareto, P(size > s) = (min_size / s)^α lots (rounded up, capped at
    ``max_size``), its side is a coin flip, and its participation π is uniform on
    ``participation``: in each step it sends a child market order of ``child_size`` lots
    with probability π · ``child_rate`` · dt. The tape's trade signs then have long memory,
    C(l) ∝ l^-(α-1), while each child order is as small as any other.

    Parameters
    ----------
    count : int
        Concurrent meta-orders (× N with ``scale_liquidity``), >= 1.
    tail_exponent : float
        α > 1 of the size law (α <= 1 has an infinite mean size).
    min_size : int
        Smallest meta-order, lots (the Pareto scale), >= 1.
    max_size : int
        Cap on a meta-order, lots, >= min_size (a run can only execute so much).
    participation : tuple of (float, float)
        (low, high) with 0 < low <= high <= 1: the range of π.
    child_size : int
        Lots per child order, >= 1.
    child_rate : float
        Child orders per unit time at full participation (π = 1); child_rate · dt <= 1.
    activity_volatility : float
        s >= 0: the child orders' rate is multiplied by the market's activity,
        exp(x - s²/2) with x a stationary Ornstein–Uhlenbeck process of standard deviation
        s (so the activity has mean one). Busy and quiet spells make volatility cluster
        (Clark 1973). 0 (the default) keeps the rate constant.
    activity_time : float
        The correlation time of x (time units), > 0.
    """

    count: int = 10
    tail_exponent: float = 1.5
    min_size: int = 5
    max_size: int = 100_000
    participation: tuple[float, float] = (0.1, 0.5)
    child_size: int = 1
    child_rate: float = 100.0
    activity_volatility: float = 0.0
    activity_time: float = 1.0

    def __post_init__(self):
        check.integer("market.meta_traders.count", self.count, lo=1, hi=10**7)
        alpha = check.number("market.meta_traders.tail_exponent", self.tail_exponent, hi=10.0)
        if alpha <= 1.0:
            raise check.InvalidValue("market.meta_traders.tail_exponent", self.tail_exponent, "must be > 1",
                                     "the mean meta-order size is infinite for a tail exponent <= 1")
        check.integer("market.meta_traders.min_size", self.min_size, lo=1, hi=10**9)
        check.integer("market.meta_traders.max_size", self.max_size, lo=self.min_size, hi=10**12)
        part = tuple(self.participation)
        check.require(len(part) == 2, "market.meta_traders.participation", part, "a pair (low, high)")
        check.number("market.meta_traders.participation[0]", part[0], lo=0.0, lo_open=True, hi=1.0)
        check.number("market.meta_traders.participation[1]", part[1], lo=part[0], hi=1.0)
        object.__setattr__(self, "participation", (float(part[0]), float(part[1])))
        check.integer("market.meta_traders.child_size", self.child_size, lo=1, hi=10**6)
        check.number("market.meta_traders.child_rate", self.child_rate, lo=0.0, lo_open=True)
        check.number("market.meta_traders.activity_volatility", self.activity_volatility, lo=0.0, hi=5.0)
        check.number("market.meta_traders.activity_time", self.activity_time, lo=0.0, lo_open=True)

    def params(self, scale: int, dt: float) -> np.ndarray:
        """The kernel's parameter row for a liquidity scale and a time step.

        Parameters
        ----------
        scale : int
            The liquidity scale (N, or 1).
        dt : float
            The run's step (time units).

        Returns
        -------
        numpy.ndarray of float64, shape (10,)
        """
        check.require(self.child_rate * dt <= 1.0, "market.meta_traders.child_rate", self.child_rate,
                      f"at most 1/dt = {1.0 / dt:g}: one child order per step at full participation")
        return np.array([self.count * scale, self.tail_exponent, self.min_size, self.max_size, *self.participation,
                         self.child_size, self.child_rate, self.activity_volatility, self.activity_time],
                        dtype=np.float64)


@dataclass(frozen=True)
class LatentLiquidity:
    """A latent order book: slow liquidity providers whose intentions sit at fixed prices.

    (Tóth et al. 2011; Donier, Bonart, Mastromatteo, Bouchaud 2015.) The intentions show in
    the book only near the price (see :mod:`simulator._market_kernels`).

    Parameters
    ----------
    deposit_rate : float
        λ, one-lot intentions per tick and unit time on each side, deposited uniformly at
        1..``band`` ticks from the mid (× N with ``scale_liquidity``).
    cancel_rate : float
        ν, per lot and unit time; far from the price the latent density is λ/ν lots per
        tick, and 1/ν is the book's memory (time units).
    band : int
        Ticks from the mid over which intentions are deposited.
    reveal_ticks : int
        Intentions within this distance of the mid (ticks) are posted in the book.
    start_depletion : float
        0: the book starts empty and the warm-up fills it. ℓ > 0: it starts in the
        stationary profile (λ/ν)(1 − e^{-x/ℓ}) at x ticks from the mid (Poisson draws), the
        profile a price diffusing with D = ν ℓ² ticks² per unit time leaves. For a slow book,
        whose memory 1/ν no affordable warm-up covers.

    Several populations of different memories may share a market (``MarketSpec.latent``
    takes a tuple): liquidity on several time scales (Benzaquen and Bouchaud 2018).
    """

    deposit_rate: float = 1.0
    cancel_rate: float = 0.05
    band: int = 200
    reveal_ticks: int = 3
    start_depletion: float = 0.0

    def __post_init__(self):
        for name in ("deposit_rate", "cancel_rate"):
            check.number(f"market.latent.{name}", getattr(self, name), lo=0.0, lo_open=True)
        for name in ("band", "reveal_ticks"):  # ticks
            check.integer(f"market.latent.{name}", getattr(self, name), lo=1, hi=10**7)
        check.require(self.reveal_ticks <= self.band, "market.latent.reveal_ticks", self.reveal_ticks,
                      f"must not exceed market.latent.band = {self.band}")
        check.number("market.latent.start_depletion", self.start_depletion, lo=0.0, hi=1e7)

    def params(self, scale: float) -> np.ndarray:
        """The kernel's row: [λ × scale, ν, band, reveal, start depletion length]."""
        return np.array([self.deposit_rate * scale, self.cancel_rate, self.band, self.reveal_ticks,
                         self.start_depletion], dtype=np.float64)


@dataclass(frozen=True)
class MarketMakers:
    """Market makers quoting around a reservation price, skewed by inventory.

    Fill intensity at distance δ ticks: ``fill_intensity * exp(-fill_decay δ)``.

    Parameters
    ----------
    count : int
        Number of makers.
    model : str
        ``"avellaneda_stoikov"`` (reservation price s - q γ σ² (T-t), total spread
        γσ²(T-t) + (2/γ) ln(1 + γ/k)), ``"glft"`` (Guéant–Lehalle–Fernandez-Tapia, exact
        quotes from v(t) = exp(-M (T-t)) 1, M tridiagonal of size 2Q+1), or
        ``"glft_asymptotic"`` (GLFT's closed-form large-horizon quotes), or ``"mfg"`` (the
        equilibrium quotes of :mod:`mfg.market_making`, makers competing through their mean
        quote with sensitivity ``competition``; 0 is GLFT).
    risk_aversion : float
        γ > 0 (per tick·quote).
    fill_intensity : float
        A > 0, fills per unit time at the mid.
    fill_decay : float
        k > 0 (per tick).
    volatility : float
        σ of the mid > 0 (ticks per square-root time).
    quote_size : int
        Lots per quote (× N with ``scale_liquidity``); inventory is counted in quotes.
    max_inventory : int
        Q, quotes on either side.
    competition : float
        ε >= 0 (per tick), for the ``"mfg"`` and ``"mfg_tick"`` models.
    lattice : tuple of float
        For ``"mfg_tick"``: the quotes a maker may post, ticks from the mid (the equilibrium
        of :class:`mfg.market_making.TickMarketMakingMFG`; where it is mixed, each maker draws
        each quote from its behavioural strategy, in up to ``MIXED_QUOTE_GROUPS`` groups of
        draws from the run's seed); a bid at δ goes to the tick floor(mid - δ), an ask to
        ceil(mid + δ).
    premia : tuple of float
        For ``"mfg_tick"``: what a fill at each lattice quote earns, ticks (the tick a quote
        of δ goes to is half a tick further when the mid sits between ticks); the MFG's
        quotes are these, the book's postings the lattice. Empty: the lattice itself.
    table_means, table_rates : tuple
        For ``"mfg_tick"``: a measured fill table Λ(π_l; δ̄) by premium π_l and the makers'
        mean posted distance δ̄: the mean nodes (ticks) and the rates (L × B, fills per time);
        empty for the exponential ``fill_intensity · exp(-fill_decay δ - competition (δ - δ̄))``
        read on the premia.
    amend : str
        How a maker moves its quotes each step: ``"replace"`` (a REPLACE message per side:
        a quote whose price and size are unchanged keeps its place in the queue, as on an
        exchange) or ``"cancel"`` (cancel, then a new post-only order at the back of the
        queue, as before the book had REPLACE).
    bid_table, ask_table : numpy.ndarray of float64 or None
        For ``"table"``: quotes given, shape (G, n_steps, 2Q + 1): group g's bid (ask)
        distance from the mid at each decision step and inventory -Q..Q (ticks; NaN: that
        side is not posted); a bid at δ goes to floor(mid - δ), an ask to ceil(mid + δ).
        Learners make them (``mfgsim learn``). Not compared in ``==``.
    groups : tuple of int
        For ``"table"``: each maker's group (row of the tables); empty: every maker in group 0.
    """

    count: int = 2
    model: str = "glft"
    risk_aversion: float = 0.05
    fill_intensity: float = 100.0
    fill_decay: float = 0.8
    volatility: float = 2.0
    quote_size: int = 5
    max_inventory: int = 10
    competition: float = 0.0
    lattice: tuple[float, ...] = ()
    premia: tuple[float, ...] = ()
    table_means: tuple[float, ...] = ()
    table_rates: tuple[tuple[float, ...], ...] = ()
    amend: str = "replace"
    bid_table: np.ndarray | None = field(default=None, compare=False, repr=False)
    ask_table: np.ndarray | None = field(default=None, compare=False, repr=False)
    groups: tuple[int, ...] = ()

    def __post_init__(self):
        check.integer("market.makers.count", self.count, lo=0, hi=10**6)
        check.choice("market.makers.model", self.model, MAKER_MODELS)
        check.choice("market.makers.amend", self.amend, ("replace", "cancel"))
        for name in ("risk_aversion", "fill_intensity", "fill_decay", "volatility"):
            check.number(f"market.makers.{name}", getattr(self, name), lo=0.0, lo_open=True)
        check.integer("market.makers.quote_size", self.quote_size, lo=1, hi=10**6)
        check.integer("market.makers.max_inventory", self.max_inventory, lo=1, hi=10**6)
        check.number("market.makers.competition", self.competition, lo=0.0)
        for name in ("lattice", "premia", "table_means"):
            object.__setattr__(self, name, tuple(float(x) for x in getattr(self, name)))
        object.__setattr__(self, "table_rates", tuple(tuple(float(x) for x in row) for row in self.table_rates))
        object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        if self.model == "table":
            self._check_tables()
        else:
            check.require(self.bid_table is None and self.ask_table is None and not self.groups,
                          "market.makers.bid_table", "given", "only model 'table' takes quote tables and groups")
        if self.model == "mfg_tick":
            check.require(len(self.lattice) >= 1, "market.makers.lattice", list(self.lattice),
                          "model 'mfg_tick' needs the quotes it may post (ticks from the mid)")
            check.require(not self.premia or len(self.premia) == len(self.lattice), "market.makers.premia",
                          list(self.premia), f"expected one premium per lattice quote ({len(self.lattice)})")
            self.intensity()  # checks the quotes and the table
        else:
            check.require(not (self.lattice or self.premia or self.table_means or self.table_rates),
                          "market.makers.lattice", list(self.lattice),
                          "only model 'mfg_tick' takes a lattice, premia and a fill table")

    def _check_tables(self) -> None:
        check.require(self.bid_table is not None and self.ask_table is not None, "market.makers.bid_table", None,
                      "model 'table' needs bid_table and ask_table, arrays (groups, n_steps, 2Q+1), in Python "
                      "(mfgsim learn makes them)")
        tables = [np.asarray(x, dtype=np.float64) for x in (self.bid_table, self.ask_table)]
        states = 2 * self.max_inventory + 1
        for name, x in zip(("bid_table", "ask_table"), tables):
            check.require(x.ndim == 3 and x.shape[2] == states and x.shape == tables[0].shape,
                          f"market.makers.{name}", f"array of shape {x.shape}",
                          f"(groups, n_steps, 2Q+1 = {states}), both tables alike")
            check.require(bool(np.all(np.isnan(x) | (x >= 0))), f"market.makers.{name}", "negative quotes",
                          "distances from the mid >= 0 (NaN: not posted)")
        object.__setattr__(self, "bid_table", tables[0])
        object.__setattr__(self, "ask_table", tables[1])
        n_groups = tables[0].shape[0]
        check.require(not self.groups or (len(self.groups) == self.count and all(0 <= g < n_groups
                                                                                  for g in self.groups)),
                      "market.makers.groups", list(self.groups),
                      f"one group in 0..{n_groups - 1} per maker ({self.count}), or empty")

    def group_quote_offsets(self, tau: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
        """Each group's bid and ask distances from the mid, and each maker's group.

        Parameters
        ----------
        tau : numpy.ndarray of float64
            Times to the horizon, one per decision step.
        seed : int, optional
            The run's seed: ``"mfg_tick"`` makers whose equilibrium is mixed draw their quotes
            from it (:class:`mfg.market_making.MixedEquilibrium`), in up to
            ``MIXED_QUOTE_GROUPS`` groups of independent draws.

        Returns
        -------
        (bid, ask, groups) : tuple of numpy.ndarray
            (G, len(tau), 2Q+1) ticks from the mid, and (count,) int64. For every model but
            ``"table"`` and a mixed ``"mfg_tick"``: one group, :meth:`quote_offsets`.

        Raises
        ------
        InvalidValue
            When a ``"table"`` has another number of steps than ``tau``.
        ValueError
            When a mixed equilibrium's quotes are asked for without a seed.
        """
        groups = np.zeros(self.count, dtype=np.int64)
        if self.model == "mfg_tick" and self.count > 0:
            tau = np.asarray(tau, dtype=np.float64)
            sol, sub = self.mean_field(float(tau[0]), tau.shape[0])
            if isinstance(sol, MixedEquilibrium):
                if seed is None:
                    raise ValueError("the makers' lattice equilibrium is mixed: their quotes are drawn from the "
                                     "run's seed (group_quote_offsets(tau, seed))")
                n_groups = min(self.count, MIXED_QUOTE_GROUPS)
                rng = np.random.default_rng([int(seed), 0x4D49584544])  # a stream of its own
                drawn = sol.draw_quotes(rng, n_groups, times=np.arange(tau.shape[0]) * sub)
                bid, ask = quotes_on_steps(drawn[:, 0], drawn[:, 1], tau.shape[0], 1, self.premia, self.lattice)
                groups[:] = np.arange(self.count) % n_groups
                return bid, ask, groups
        if self.model != "table":
            bid, ask = self.quote_offsets(tau)
            return bid[None], ask[None], groups
        check.require(self.bid_table.shape[1] == len(tau), "market.makers.bid_table",
                      f"{self.bid_table.shape[1]} steps", f"one row per decision step of the run ({len(tau)})")
        if self.groups:
            groups[:] = self.groups
        return self.bid_table, self.ask_table, groups

    def intensity(self):
        """The fill rate the ``"mfg_tick"`` makers expect at each lattice quote.

        Returns
        -------
        mfg.market_making.TabulatedIntensity or mfg.market_making.ExponentialIntensity
            The measured table when given, else the exponential read on the lattice.
        """
        Jump(+1, shape="lattice", quotes=self.quotes)  # the MFG's quotes must increase
        if self.table_means:
            return TabulatedIntensity(self.quotes, self.table_means, self.table_rates)
        return ExponentialIntensity(self.fill_intensity, self.fill_decay, self.competition)

    @property
    def quotes(self) -> tuple[float, ...]:
        """The ``"mfg_tick"`` MFG's quotes: the premia, or the lattice (ticks)."""
        return self.premia or self.lattice

    def lattice_game(self, T: float) -> TickMarketMakingMFG:
        """The lattice market-making MFG these makers play on [0, T]: their risk aversion,
        volatility, inventory limit, :attr:`quotes` and :meth:`intensity`.

        Parameters
        ----------
        T : float
            Horizon (time units).

        Returns
        -------
        mfg.market_making.TickMarketMakingMFG
        """
        return TickMarketMakingMFG(gamma=self.risk_aversion, sigma=self.volatility, quotes=self.quotes,
                                   intensity=self.intensity(), max_inventory=self.max_inventory, T=T)

    def mean_field(self, T: float, n_steps: int):
        """The market-making MFG of these makers (all flat at t = 0) on [0, T].

        Solved on ``n_steps * sub`` steps, ``sub`` refining each step as the fill rates require.
        Cached: the book's quote tables and a study of the run read the same one.

        Parameters
        ----------
        T : float
            Horizon (time units).
        n_steps : int
            The run's time steps.

        Returns
        -------
        (solution, sub) : tuple of (MarketMakingSolution or MixedEquilibrium, int)
            ``"mfg_tick"`` makers whose fixed-point iteration cycles get the mixed equilibrium
            of fictitious play (:func:`mfg.market_making.makers_equilibrium`).
        """
        # the game does not depend on how many makers play it: one solve serves every N
        return _maker_mean_field(replace(self, count=1) if self.model != "table" else self, float(T), int(n_steps))

    def memory_estimate(self, T: float, n_steps: int) -> int:
        """Rough peak memory of these makers' quote tables for a run of ``n_steps`` steps,
        and of their mean field (``"mfg"``, ``"mfg_tick"``) on the steps it needs (for
        ``"mfg_tick"``, as if it were mixed: fictitious play and the groups' drawn quotes).

        Parameters
        ----------
        T : float
            Horizon (time units).
        n_steps : int
            The run's steps.

        Returns
        -------
        int
            Bytes.
        """
        states = 2 * self.max_inventory + 1
        tables = 8 * 4 * n_steps * states  # bid and ask offsets, and their copies
        if self.model not in ("mfg", "mfg_tick"):
            return tables
        # the time grid the mean field starts from: when the fill rates force a finer one, the
        # solve checks each refinement against the memory before it allocates
        sub = _first_refinement(self, T, n_steps)
        n_t = max(n_steps * sub, 10 * sub)
        if self.model == "mfg_tick":  # a mixed equilibrium: fictitious play's averaged flows, the groups' draws
            levels = len(self.lattice)
            tables += 8 * 2 * (n_t + 1) * states * (6 + 2 * levels)
            tables += min(self.count, MIXED_QUOTE_GROUPS) * 2 * n_steps * states * (48 + levels)
        return int(1.25 * (tables + memory_estimate(_mean_field_model(self, T), n_t)))

    def quote_offsets(self, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask distances from the mid by inventory -Q..Q.

        Rows are where a maker with that inventory quotes; at the inventory limits one side is
        not quoted (the loop checks that). The formulas are in :mod:`mfg.market_making`.

        Parameters
        ----------
        tau : numpy.ndarray of float64
            Times to the horizon (time units), one per decision time.

        Returns
        -------
        (bid, ask) : tuple of numpy.ndarray of float64, each (len(tau), 2Q+1)
            Ticks from the mid.
        """
        g, A, k, s = self.risk_aversion, self.fill_intensity, self.fill_decay, self.volatility
        Q = self.max_inventory
        if self.model == "table":
            raise ValueError("makers of model 'table' quote by group: use group_quote_offsets")
        if self.model == "avellaneda_stoikov":
            return avellaneda_stoikov_quotes(tau, g, k, s, Q)
        if self.model == "glft_asymptotic":
            return glft_asymptotic_quotes(tau, g, A, k, s, Q)
        if self.model in ("mfg", "mfg_tick"):
            tau = np.asarray(tau, dtype=np.float64)
            steps = tau.shape[0]
            sol, sub = self.mean_field(float(tau[0]), steps)
            if isinstance(sol, MixedEquilibrium):
                raise ValueError("the makers' lattice equilibrium is mixed: each quote is drawn, by group "
                                 "(group_quote_offsets(tau, seed))")
            premia = self.premia if self.model == "mfg_tick" else ()
            return quotes_on_steps(sol.bid, sol.ask, steps, sub, premia, self.lattice)
        return glft_quotes(tau, g, A, k, s, Q)


def quotes_on_steps(bid: np.ndarray, ask: np.ndarray, steps: int, sub: int, premia: tuple = (),
                    lattice: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """A makers' game's quotes read at a run's decision steps, as the book's makers post them.

    Parameters
    ----------
    bid, ask : numpy.ndarray of float64, shape (..., steps * sub + 1, 2Q+1)
        Quotes by time and inventory on a grid of ``sub`` sub-steps per run step (NaN: not
        posted), for one maker or several (leading axes).
    steps : int
        The run's decision steps.
    sub : int
        Sub-steps per run step.
    premia, lattice : tuple of float
        When the game's quotes are premia: the lattice quote each one posts.

    Returns
    -------
    (bid, ask) : tuple of numpy.ndarray of float64, each (..., steps, 2Q+1)
        Ticks from the mid. At an inventory limit the side that would cross it copies its
        neighbour (the book does not post it there anyway).
    """
    bid, ask = bid[..., : steps * sub: sub, :].copy(), ask[..., : steps * sub: sub, :].copy()
    bid[..., -1] = bid[..., -2]
    ask[..., 0] = ask[..., 1]
    if premia:  # the game's quotes are premia: post their lattice quotes
        return _posting_offsets(premia, lattice, bid), _posting_offsets(premia, lattice, ask)
    return bid, ask


def _posting_offsets(premia: tuple, lattice: tuple, quotes: np.ndarray) -> np.ndarray:
    """The lattice quote of each MFG quote (a premium); NaN stays NaN (not posted)."""
    index = np.searchsorted(np.asarray(premia), np.nan_to_num(quotes, nan=premia[0]))
    index = np.clip(index, 0, len(premia) - 1)
    return np.where(np.isnan(quotes), np.nan, np.asarray(lattice)[index])


def _mean_field_model(makers: MarketMakers, T: float):
    """The market-making MFG these makers quote (``"mfg"`` or ``"mfg_tick"``)."""
    if makers.model == "mfg_tick":
        return makers.lattice_game(T)
    return MarketMakingMFG(gamma=makers.risk_aversion, sigma=makers.volatility, A=makers.fill_intensity,
                           k=makers.fill_decay, competition=makers.competition, max_inventory=makers.max_inventory,
                           T=T)


def _first_refinement(makers: MarketMakers, T: float, n_steps: int) -> int:
    """Sub-steps per run step the makers' mean field starts from.

    The sweeps are stable for dt × (a maker's total fill rate) <= 0.5 and accurate to ~1e-6
    for <= 0.1; at the mean quote a side's rate is A e^{-k δ̄} <= A, so the solve starts
    there and refines until the solved rates allow it (a maker quoting well inside the crowd
    is filled faster).
    """
    return max(1, math.ceil(2 * makers.fill_intensity * T / max(n_steps, 1)))


@lru_cache(maxsize=32)
def _maker_mean_field(makers: MarketMakers, T: float, n_steps: int):
    model = _mean_field_model(makers, T)
    sub = _first_refinement(makers, T, n_steps)
    limit = memory_limit()
    while True:
        n_t = max(n_steps * sub, 10 * sub)
        if limit is not None and memory_estimate(model, n_t) > limit:
            raise ValueError(f"market.makers.max_inventory={makers.max_inventory}: the makers' mean field needs "
                             f"{n_t} time steps (their fill rates at the inventory limits are that fast) and about "
                             f"{memory_estimate(model, n_t) / 2**30:.3g} GiB, more than this machine allows; lower "
                             "max_inventory or risk_aversion")
        try:
            if makers.model == "mfg_tick":  # alike makers on a lattice may split between two levels
                sol = makers_equilibrium(model, n_t=n_t, iterations=MIXED_ITERATIONS)
            else:
                sol = solve_market_making(model, n_t=n_t)
            rates = sol.rates if isinstance(sol, MixedEquilibrium) else sol.jump_solution.rates
            rate_dt = float(rates.sum(axis=0).max()) * (sol.t[1] - sol.t[0])
        except ValueError as exc:
            if "too small" not in str(exc) or sub > 2**16:
                raise
            rate_dt = 1.0
        if rate_dt <= 0.1:
            return sol, sub
        sub *= math.ceil(rate_dt / 0.1)


@dataclass(frozen=True)
class ExecutionCrowd:
    """N execution traders with initial inventories from the model's m0 and its types.

    Parameters
    ----------
    n_agents : int
        N >= 1.
    model : mfg.closed_form.LQCrowding
        The model whose parameters the strategies use (k, κ, φ_j, A_j, T, m0_j, type weights).
    strategy : str
        One of :data:`STRATEGIES`. Almgren–Chriss uses γ = k, λ = φ_j, Φ = A_j.
    lots_per_unit : int
        Book lots per unit of model inventory.
    order_type : str
        ``"market"``, or ``"ioc"`` with a limit ``ioc_ticks`` beyond the touch.
    ioc_ticks : int
        Ticks beyond the touch of an IOC order's limit.
    stop_at_target : bool
        An agent whose inventory reaches 0 stops (orders never cross 0).
    fd_grid : mfg.fd.Grid or None
        The grid for ``"mfg_fd"`` (the FD solution is interpolated in t and x).
    cost_exponent : float
        α in (1, 2] of the trading cost a|ν| + k|ν|^α that ``"mfg_fd"`` solves with.
    spread_cost : float
        a >= 0 of that cost (price per model unit), e.g. the measured half-spread.
    impact_exponent : float
        δ > 0 of the nonlinear propagator ``"mfg_fd"`` solves with (1: linear).
    permanent_impact_exponent : float or None
        δ∞ > 0 of that propagator's permanent part, when it has its own (None: δ).
    feedback : numpy.ndarray of float64 or None
        For ``"feedback"``: a policy given as a table, ν(t, x) on ``fd_grid``'s nodes, shape
        (J, n_t + 1, n_x), one row per type (model units per time), read as ``"mfg_fd"``
        reads the FD solution; a learner's best response, say. Not compared in ``==``.
    """

    n_agents: int
    model: LQCrowding
    strategy: str = "mfg"
    lots_per_unit: int = 20
    order_type: str = "market"
    ioc_ticks: int = 5
    stop_at_target: bool = True
    fd_grid: object | None = None
    cost_exponent: float = 2.0
    spread_cost: float = 0.0
    impact_exponent: float = 1.0
    permanent_impact_exponent: float | None = None
    feedback: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        check.integer("crowd.n_agents", self.n_agents, lo=1, hi=10**9)
        check.choice("crowd.strategy", self.strategy, STRATEGIES)
        check.integer("crowd.lots_per_unit", self.lots_per_unit, lo=1, hi=MAX_LOTS_PER_UNIT)  # lots per model unit
        check.choice("crowd.order_type", self.order_type, ("market", "ioc"))
        check.integer("crowd.ioc_ticks", self.ioc_ticks, lo=0, hi=10**8)
        check.boolean("crowd.stop_at_target", self.stop_at_target)
        if self.strategy == "mfg_fd":
            check.require(self.fd_grid is not None, "crowd.fd_grid", None,
                          "strategy 'mfg_fd' needs the solver's grid: a [crowd.fd_grid] table with x_min, x_max, "
                          "n_x and n_t in a campaign, or fd_grid=mfg.fd.Grid(...) in Python")
        if self.strategy == "feedback":
            check.require(self.fd_grid is not None and self.feedback is not None, "crowd.feedback", None,
                          "strategy 'feedback' needs a policy table and its grid: feedback=array of shape "
                          "(types, n_t + 1, n_x) and fd_grid=mfg.fd.Grid(...), in Python (mfgsim learn makes them)")
            table = np.asarray(self.feedback, dtype=np.float64)
            shape = (len(self.model.types), self.fd_grid.n_t + 1, self.fd_grid.n_x)
            check.require(table.shape == shape and bool(np.all(np.isfinite(table))), "crowd.feedback",
                          f"array of shape {table.shape}", f"finite, of shape {shape} (types, n_t + 1, n_x)")
            object.__setattr__(self, "feedback", table)
        else:
            check.require(self.feedback is None, "crowd.feedback", "an array", "only strategy 'feedback' takes one")
        check.number("crowd.cost_exponent", self.cost_exponent, lo=1.0, hi=2.0, lo_open=True)
        check.number("crowd.spread_cost", self.spread_cost, lo=0.0)
        check.number("crowd.impact_exponent", self.impact_exponent, lo=0.0, lo_open=True)
        if self.permanent_impact_exponent is not None:
            check.number("crowd.permanent_impact_exponent", self.permanent_impact_exponent, lo=0.0, lo_open=True)
        if (self.cost_exponent, self.spread_cost, self.impact_exponent, self.permanent_impact_exponent) != (
                2.0, 0.0, 1.0, None):
            # a given table was solved elsewhere; its agents' own speed friction k|ν|^α stays theirs
            check.require(self.strategy in ("mfg_fd", "feedback"), "crowd.strategy", self.strategy,
                          "cost_exponent != 2, spread_cost > 0, impact_exponent != 1 or a permanent_impact_exponent "
                          "are solved by 'mfg_fd' only")
        if self.strategy.startswith("nash"):
            check.require(len(self.model.types) == 1 and self.model.c == 0 and self.model.rho == 0
                          and not self.model.transient, "crowd.strategy", self.strategy,
                          "the N-player game needs one preference type, c = 0, rho = 0 and no transient terms")

    def fd_model(self):
        """The FD solver's model of this crowd: its LQ model with its trading cost and propagator.

        Returns
        -------
        mfg.fd.LQCrowdingModel
        """
        from mfg.fd import LQCrowdingModel

        return LQCrowdingModel(self.model, cost_exponent=self.cost_exponent, spread_cost=self.spread_cost,
                               impact_exponent=self.impact_exponent, permanent_exponent=self.permanent_impact_exponent)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw the agents' types (by the type weights) and initial inventories.

        Parameters
        ----------
        rng : numpy.random.Generator
            The run's source of randomness.

        Returns
        -------
        (types, q0) : tuple of numpy.ndarray, each (n_agents,)
            Type indices (int64) and initial inventories (float64, model units).
        """
        J = len(self.model.types)
        types = rng.choice(J, size=self.n_agents, p=self.model.weights).astype(np.int64)
        q0 = np.empty(self.n_agents)
        for j, p in enumerate(self.model.types):
            idx = np.flatnonzero(types == j)
            q0[idx] = p.m0.sample(idx.size, rng)
        return types, q0


@dataclass(frozen=True)
class StrategyTables:
    """The crowd's compiled strategy: ν = a[j, n] + b[j, n] q + c[j, n] Σq, or a grid.

    Parameters
    ----------
    a : numpy.ndarray of float64, shape (J, n)
        Intercept by type and decision time (model units per time).
    b : numpy.ndarray of float64, shape (J, n)
        Gain on one's own inventory (per time).
    c : numpy.ndarray of float64, shape (J, n)
        Gain on the crowd's total inventory (per time).
    grid : numpy.ndarray of float64, shape (J, n_t_grid + 1, n_x_grid)
        A feedback ν(t, x) on a grid (model units per time), or (0, 0, 0) for affine strategies.
    grid_x0, grid_dx, grid_dt : float
        The grid's first node, node spacing (model units) and time step (time units).
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    grid: np.ndarray  # (J, n_t_grid + 1, n_x_grid), or (0, 0, 0) for affine strategies
    grid_x0: float = 0.0
    grid_dx: float = 1.0
    grid_dt: float = 1.0


def strategy_tables(crowd: ExecutionCrowd, t: np.ndarray, dt: float) -> StrategyTables:
    """Compile the crowd's strategy at the decision times.

    Parameters
    ----------
    crowd : ExecutionCrowd
    t : numpy.ndarray of float64
        Decision times (the start of each step; time units).
    dt : float
        The run's step (time units).

    Returns
    -------
    StrategyTables

    Raises
    ------
    ValueError
        If the strategy gives non-finite rates or a feedback gain a step of ``dt`` cannot follow.
    """
    from mfg import nash

    model, J = crowd.model, len(crowd.model.types)
    a, b, c = (np.zeros((J, t.size)) for _ in range(3))
    empty = np.zeros((0, 0, 0))
    T = model.T
    if crowd.strategy == "twap":
        b[:] = -1.0 / np.maximum(T - t, dt)
    elif crowd.strategy == "almgren_chriss":
        for j, p in enumerate(model.types):
            b[j] = -AlmgrenChriss(gamma=model.k, lam=p.phi, terminal_penalty=p.A, horizon=T).h(t) / model.k
    elif crowd.strategy == "mfg":
        for j in range(J):
            rate = model.h2(t, j) / (2 * model.k)
            a[j] = model.type_rate(t, j) + rate * model.mean_inventory(t, j)
            b[j] = -rate
    elif crowd.strategy == "nash_open":
        game = nash.open_loop(model, crowd.n_agents)
        b[0] = game.own_gain(t)
        a[0] = game.mean_rate(t) - b[0] * game.mean_inventory(t)
    elif crowd.strategy == "nash_closed":
        n_sub = max(1, int(math.ceil(2000 / t.size)))
        cl = nash.closed_loop(model, crowd.n_agents, n_steps=n_sub * int(round(T / dt)))
        b[0] = np.interp(t, cl.t, cl.u)
        c[0] = np.interp(t, cl.t, cl.w)
    elif crowd.strategy == "feedback":
        g = crowd.fd_grid
        return _checked(StrategyTables(a, b, c, np.ascontiguousarray(crowd.feedback), g.x_min, g.dx, g.dt), crowd, dt)
    else:  # mfg_fd
        from mfg.fd import solve

        sol = solve(crowd.fd_model(), crowd.fd_grid)
        g = sol.grid
        return _checked(StrategyTables(a, b, c, np.ascontiguousarray(sol.control), g.x_min, g.dx, g.dt), crowd, dt)
    return _checked(StrategyTables(a, b, c, empty), crowd, dt)


def _checked(tables: StrategyTables, crowd: ExecutionCrowd, dt: float) -> StrategyTables:
    """Refuse tables a step of ``dt`` cannot follow: non-finite rates, or a feedback gain
    |∂ν/∂q| above 1/dt (a step would then carry an agent past its target and the explicit
    scheme oscillates or blows up, which shows only later as W1 ≈ 1 and NaN costs)."""
    arrays = (tables.a, tables.b, tables.c, tables.grid)
    if not all(np.all(np.isfinite(x)) for x in arrays):
        raise ValueError(f"crowd.strategy={crowd.strategy!r} gives non-finite trading rates for this model "
                         "(an overflow: check the model's A, phi, kappa and k)")
    # own gain, and the gain of the crowd's mean (ν = a + b q + c Σq moves the mean by b + N c)
    gains = np.maximum(np.abs(tables.b), np.abs(tables.b + crowd.n_agents * tables.c))
    if tables.grid.size:
        gains = np.abs(np.diff(tables.grid, axis=2)) / tables.grid_dx
    gain = float(gains.max(initial=0.0))
    if gain * dt > 1.0 + 1e-9:
        raise ValueError(f"dt={dt:g} is too large for crowd.strategy={crowd.strategy!r}: its feedback gain reaches "
                         f"{gain:.4g} per unit time, so one step moves an agent {gain * dt:.3g} times its distance "
                         f"to the target; use dt <= {1.0 / gain:.3g} (the gain is largest near T, about A/k)")
    return tables
