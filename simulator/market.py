"""The market loop: N heterogeneous agents trading through the compiled book.

One run is two compiled kernel calls, the market's start and its steps
(:func:`simulator._market_kernels.new_market`, :func:`~simulator._market_kernels.run_steps`):
no Python per step. A run may start from its warm-up, saved once (:func:`warm_up`). Each
step of length ``dt`` the populations write their orders (noise limit/market/cancel,
makers' cancels and new quotes, execution agents' market or IOC orders), the orders are
put in a random order drawn from the run's seed, the book matches them, and fills are
routed back to the agents. Impact is not assumed: the price the crowd trades at is
whatever the book gives.

Mean-field scaling (``scale_liquidity = True``)
    The noise rates and the makers' quote sizes are multiplied by N, the number of
    execution agents. The crowd's flow per step is N · ν dt · L lots while the depth it
    meets grows like N, so the crowd moves the price by O(1) as N grows, and one agent's
    own flow (ν dt L lots) moves it by O(1/N). ``tests/test_market.py`` checks that the
    price response to a fixed per-agent flow stays O(1) from N = 10 to 10^4.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from mfg import validation as check

from . import _generator
from . import _market_kernels as MK
from .agents import ExecutionCrowd, LatentLiquidity, MarketMakers, MetaOrderTraders, NoiseFlow, strategy_tables
from .book import MAX_TICKS, TRADE_DTYPE


DEPTH_LEVELS = 10  # depth profile recorded per side, in ticks behind the best quote


# kernel records (3 × 8 bytes), the agents table as numpy and Polars columns (2 × 7 × 8),
# and the comparison's sorted copies: measured peaks stay below this
_BYTES_PER_AGENT_RECORD = 160


def _agents_table(steps, dt, types, inventory, cash, rate) -> dict:
    """Long agents table from (records, agents) arrays in model units."""
    return {**_repeated_columns(steps, steps * dt, types), "inventory": inventory.ravel(), "cash": cash.ravel(),
            "rate": rate.ravel()}


@dataclass(frozen=True)
class MarketSpec:
    """Everything one run needs besides its seed (validated on construction).

    Parameters
    ----------
    T, dt : float
        Horizon and step (time units; dt must divide T).
    n_ticks : int
        Price levels of the book.
    initial_mid : int
        The starting mid (ticks).
    tick_size : float
        Price of one tick (currency per lot).
    noise : NoiseFlow
    makers : MarketMakers or None
    latent : LatentLiquidity, tuple of LatentLiquidity, or None
        A latent order book (resilient liquidity) beside the noise flow; a tuple for
        several populations of different memories.
    crowd : ExecutionCrowd or None
    meta_traders : MetaOrderTraders or None
        Traders splitting hidden meta-orders into child market orders (long-memory order flow).
    scale_liquidity : bool
        Scale the liquidity with N (see ``scale_with``).
    warmup_steps : int
        Steps of noise and makers only, before t = 0, so the book is populated when the
        crowd starts.
    record_every : int
        Steps between records.
    max_trades_kept : int
        Trades kept in the output.
    post_steps : int
        Steps of noise and makers after T (the crowd has stopped), to watch the price relax
        after the crowd's meta-orders.
    max_executions_kept : int
        Crowd orders kept.
    scale_with : str
        What the liquidity scales with under ``scale_liquidity``: ``"crowd"`` (N execution
        agents: noise, latent deposits and the makers' quote sizes × N) or ``"makers"`` (N =
        the makers' count, each quoting its own ``quote_size``: the flow they serve grows
        with them, for finite-N makers against their mean field).
    """

    T: float
    dt: float
    n_ticks: int = 4096
    initial_mid: int = 2048
    tick_size: float = 0.01
    noise: NoiseFlow = field(default_factory=NoiseFlow)
    makers: MarketMakers | None = field(default_factory=MarketMakers)
    latent: LatentLiquidity | tuple[LatentLiquidity, ...] | None = None
    crowd: ExecutionCrowd | None = None
    meta_traders: MetaOrderTraders | None = None
    scale_liquidity: bool = True
    warmup_steps: int = 200
    record_every: int = 10
    max_trades_kept: int = 100_000
    post_steps: int = 0
    max_executions_kept: int = 0
    scale_with: str = "crowd"

    def __post_init__(self):
        check.time_step(self.T, self.dt)
        check.choice("scale_with", self.scale_with, ("crowd", "makers"))
        if isinstance(self.latent, list):
            object.__setattr__(self, "latent", tuple(self.latent))
        if isinstance(self.latent, tuple):
            check.require(len(self.latent) > 0 and all(isinstance(x, LatentLiquidity) for x in self.latent),
                          "market.latent", self.latent, "one or more LatentLiquidity populations")
        check.number("tick_size", self.tick_size, lo=0.0, lo_open=True)
        check.boolean("scale_liquidity", self.scale_liquidity)
        for name, lo, hi in (("n_ticks", 16, MAX_TICKS), ("initial_mid", 1, MAX_TICKS), ("warmup_steps", 0, 10**9),
                             ("record_every", 1, 10**9), ("max_trades_kept", 0, 10**10), ("post_steps", 0, 10**9),
                             ("max_executions_kept", 0, 10**10)):
            check.integer(name, getattr(self, name), lo=lo, hi=hi)
        check.require((self.n_steps + self.post_steps) % self.record_every == 0, "record_every", self.record_every,
                      f"must divide the {self.n_steps + self.post_steps} steps (n_steps + post_steps)")
        if self.meta_traders is not None:
            self.meta_traders.params(1, self.dt)  # refuses a child rate beyond one order per step
        if self.crowd is not None and abs(self.crowd.model.T - self.T) > 1e-12 * self.T:
            raise ValueError(f"crowd.model.T={self.crowd.model.T} differs from T={self.T}")
        margin = self.price_margin()
        if self.initial_mid < margin or self.n_ticks - 1 - self.initial_mid < margin:
            walk, crowd = self._margin_parts()
            if crowd > walk:
                cause = (f"the crowd's position of about {self._crowd_position():.3g} lots (crowd.n_agents x "
                         f"crowd.lots_per_unit x |q0|) walks the price about {crowd:.3g} ticks through the "
                         "noise's depth")
                fix = "lower crowd.lots_per_unit or deepen the book (market.noise.limit_rate), or use"
            else:
                cause = f"the noise's random walk may move the price about {walk:.3g} ticks"
                fix = "use"
            raise ValueError(
                f"price grid too small for the run: {cause}, more than initial_mid={self.initial_mid} in "
                f"n_ticks={self.n_ticks} leaves; {fix} n_ticks >= {2 * margin + 1} with initial_mid near the centre")

    @property
    def latent_populations(self) -> tuple[LatentLiquidity, ...]:
        """The latent book's populations (none, one, or several of different memories)."""
        if self.latent is None:
            return ()
        return self.latent if isinstance(self.latent, tuple) else (self.latent,)

    @property
    def n_steps(self) -> int:
        return int(round(self.T / self.dt))

    @property
    def n_agents(self) -> int:
        return 0 if self.crowd is None else self.crowd.n_agents

    @property
    def liquidity_scale(self) -> int:
        if not self.scale_liquidity:
            return 1
        if self.scale_with == "makers":
            return max(1, self.makers.count if self.makers is not None else 0)
        return max(1, self.n_agents)

    def memory_estimate(self) -> int:
        """Rough peak memory of one run.

        Per agent its state and its records (kernel arrays, the agents table and the
        comparison), plus the book's resting orders, every account's records, the kept
        trades and executions, and the makers' quote tables and mean field.

        Returns
        -------
        int
            Bytes.
        """
        n_rec = (self.n_steps + self.post_steps) // self.record_every + 1
        makers = 0 if self.makers is None else self.makers.memory_estimate(self.T, self.n_steps)
        accounts = 3 + self.n_agents + (0 if self.makers is None else self.makers.count)
        records = 8 * n_rec * (3 * accounts + 2 * DEPTH_LEVELS + 13)  # accounts, depth, market
        return int(_BYTES_PER_AGENT_RECORD * self.n_agents * n_rec + 300 * self.n_agents + self.state_estimate()
                   + 80 * self.max_executions_kept + makers + records)

    def state_estimate(self) -> int:
        """Rough size of the market's state (a :class:`WarmStart` holds one).

        The book's levels and resting orders, the latent volumes, the meta-orders, the
        kept trades and the accounts.

        Returns
        -------
        int
            Bytes.
        """
        noise = self.noise
        horizon = (self.n_steps + self.warmup_steps + self.post_steps) * self.dt
        # resting orders level off at rate/cancel rate; the order pool doubles when full
        resting = noise.limit_rate * self.liquidity_scale * min(horizon, 1.0 / max(noise.cancel_rate, 1e-300))
        latent = 4 * 8 * self.n_ticks * len(self.latent_populations)  # volumes and read times, both sides
        meta = 0 if self.meta_traders is None else 24 * self.meta_traders.count * self.liquidity_scale
        levels = 8 * 16 * self.n_ticks  # the book's level arrays: 4 sides (bids, asks, stops) x 4 int64
        buffers = 2**20  # the order pool, its hash table and the trades of a step, at their starting sizes
        return int(2 * 64 * resting + 80 * self.max_trades_kept + latent + meta + levels + 24 * self.n_agents + buffers)

    def price_margin(self) -> int:
        """Ticks the price may travel: a generous bound.

        The crowd's whole position walked through the expected depth, plus a random-walk
        allowance for the noise.

        Returns
        -------
        int
            Ticks.
        """
        walk, crowd = self._margin_parts()
        return int(math.ceil(32 + walk + crowd))

    def _crowd_position(self) -> float:
        model = self.crowd.model
        per_agent = sum(w * abs(p.m0.mean) + 3 * max(p.m0.stds) for w, p in zip(model.weights, model.types))
        return self.crowd.n_agents * self.crowd.lots_per_unit * per_agent

    def _margin_parts(self) -> tuple[float, float]:
        """(noise random-walk allowance, crowd's walk through the depth), in ticks."""
        noise = self.noise
        s = self.liquidity_scale
        mean_size = 0.5 * (noise.max_size + 1)
        steps = self.n_steps + self.warmup_steps + self.post_steps
        walk = 10.0 * noise.mean_depth * math.sqrt(max(1.0, noise.market_rate * s * self.dt * steps) / max(s, 1))
        crowd = 0.0
        if self.crowd is not None and noise.cancel_rate > 0:
            depth_per_tick = max(noise.limit_rate * s * mean_size / (2 * noise.cancel_rate * noise.mean_depth), 1.0)
            crowd = 3.0 * self._crowd_position() / depth_per_tick
        return walk, crowd


def _repeated_columns(steps, t, types) -> dict:
    """The agents table's columns that repeat the records' steps and times and the agents' types.

    Every seed of a market has the same ones: the most recent are kept, read-only, and shared,
    up to ``_REPEATED_BYTES`` in all (a larger market's are built afresh each time).
    """
    key = tuple(np.ascontiguousarray(x).tobytes() for x in (steps, t, types))
    if key in _REPEATED:
        return dict(_REPEATED[key])
    n_rec, n = steps.size, types.size
    columns = {"step": np.repeat(steps, n), "t": np.repeat(t, n),
               "agent": np.tile(np.arange(n, dtype=np.int64), n_rec), "type": np.tile(types, n_rec)}
    size = sum(column.nbytes for column in columns.values())
    if size <= _REPEATED_BYTES:
        for column in columns.values():
            column.flags.writeable = False
        while _REPEATED and size + sum(c.nbytes for cs in _REPEATED.values() for c in cs.values()) > _REPEATED_BYTES:
            del _REPEATED[next(iter(_REPEATED))]  # the oldest
        _REPEATED[key] = columns
    return dict(columns)


_REPEATED: dict = {}  # (steps, t, types) bytes -> their columns
_REPEATED_BYTES = 64 * 2**20  # what a process keeps of them: a loop's market at N = 3000 and 500 records is 48 MB


def _account_columns(spec, n: int, inventory: np.ndarray, cash: np.ndarray) -> dict:
    """The agents table's inventory and cash as a market run reads them from every account's records."""
    if not isinstance(spec, MarketSpec) or spec.crowd is None:
        return {}
    first = 1 + (spec.makers.count if spec.makers is not None else 0)
    crowd = slice(first, first + n)
    return {"inventory": (inventory[:, crowd] / spec.crowd.lots_per_unit).ravel(),
            "cash": (cash[:, crowd] * spec.tick_size).ravel()}


def _derived_columns(fields: dict, t, types) -> dict:
    return {**_repeated_columns(fields["market"]["step"], t, types),
            **_account_columns(fields["spec"], types.size, fields["accounts_inventory"], fields["accounts_cash"])}


def _run_from_compact(fields, types, t):
    """A MarketRun from :meth:`MarketRun.__reduce__`'s compact agents table."""
    return MarketRun(**{**fields, "agents": {**_derived_columns(fields, t, types), **fields["agents"]}})


@dataclass(frozen=True)
class MarketRun:
    """Tables of one run (numpy columns; ``*_frame()`` give Polars DataFrames).

    Attributes
    ----------
    market : per record — step, t, best_bid, best_ask, mid (ticks), depth at the best
        quotes (lots), volume, crowd_flow (signed lots the crowd bought), trades, messages
        over the interval ending at the record.
    agents : per record and execution agent — inventory (model units), cash (currency),
        rate (realised trading rate over the interval, units per time), type. The columns
        that repeat (step, t, agent, type) may be read-only arrays shared by a market's seeds.
    accounts_inventory / accounts_cash : every account (noise, makers, crowd, latent book, meta-order
        traders) at every record, in lots and tick·lots: conservation is checked on these.
    trades : the first ``max_trades_kept`` trades (TRADE_DTYPE; ``step`` is the run step).
    depth : (records, 2, DEPTH_LEVELS) lots resting 0.. ticks behind the best bid / ask.
    executions : per crowd order (the first ``max_executions_kept``): step, agent,
        requested and filled lots (signed), shortfall against the step's starting mid
        (ticks·lots; positive is a cost).
    decisions : agent decisions over the run, warm-up included: one per active crowd
        agent per step of the horizon, one per maker and per meta-order trader per step.
    """

    spec: MarketSpec | ParticleSpec
    seed: int
    market: dict
    agents: dict
    accounts_inventory: np.ndarray
    accounts_cash: np.ndarray
    depth: np.ndarray
    trades: np.ndarray
    n_trades: int
    n_messages: int
    decisions: int
    seconds: float
    penalty: np.ndarray | None = None  # particles: ∫ Q_i² dt per agent
    executions: dict | None = None

    def __reduce__(self):
        # the agents table repeats each record's step and time for every agent, and each
        # agent's index and type for every record, and a market run's inventories and cash
        # are its crowd's accounts: a run sent to another process (from a pool's worker, say)
        # carries each once, and a third of the bytes
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        agents, steps = self.agents, (self.market or {}).get("step")
        if agents and steps is not None and steps.size and agents["inventory"].size % steps.size == 0:
            n = agents["inventory"].size // steps.size
            types, t = np.asarray(agents["type"][:n]), np.asarray(agents["t"][::max(n, 1)])
            derived = _derived_columns(fields, t, types)
            if n > 0 and all(agents[k] is v or np.array_equal(agents[k], v) for k, v in derived.items()):
                fields["agents"] = {k: v for k, v in agents.items() if k not in derived}
                return _run_from_compact, (fields, types, t)
        return MarketRun, tuple(fields.values())

    def executions_frame(self):
        """The crowd's orders as a table.

        Returns
        -------
        polars.DataFrame
            Columns as in ``executions``.
        """
        import polars as pl

        return pl.DataFrame(self.executions)

    def market_frame(self):
        """The market records as a table.

        Returns
        -------
        polars.DataFrame
            Columns as in ``market``.
        """
        import polars as pl

        return pl.DataFrame(self.market)

    def agents_frame(self):
        """The execution agents' records as a table.

        Returns
        -------
        polars.DataFrame
            Columns as in ``agents``.
        """
        import polars as pl

        return pl.DataFrame(self.agents)


def feedback_rates(grid: np.ndarray, x_min: float, dx: float, dt: float, times, inventory, types) -> np.ndarray:
    """A feedback table ν(t, x) read as the crowd reads it in the book: bilinear in (t, x),
    clamped to the table's edges.

    Parameters
    ----------
    grid : numpy.ndarray of float64, shape (types, n_t + 1, n_x)
        ν by type on the table's grid (units per time).
    x_min, dx, dt : float
        The table's first inventory, inventory step and time step (model units).
    times, inventory, types : array_like
        Where to read it (time, model units, type index); broadcast together.

    Returns
    -------
    numpy.ndarray of float64
        ν at each point (units per time), the broadcast shape.
    """
    times, inventory, types = np.broadcast_arrays(np.asarray(times, dtype=np.float64),
                                                  np.asarray(inventory, dtype=np.float64),
                                                  np.asarray(types, dtype=np.int64))
    out = np.empty(times.shape)
    MK.feedback_rates(types.ravel(), times.ravel(), inventory.ravel(), np.ascontiguousarray(grid, dtype=np.float64),
                      float(x_min), float(dx), float(dt), out.reshape(-1))
    return out


def _tables(spec: MarketSpec, t: np.ndarray):
    if spec.crowd is None:
        z = np.zeros((1, t.size))
        return z, z, z, np.zeros((0, 0, 0)), 0.0, 1.0, 1.0
    if _cacheable(spec.crowd):
        tab = _strategy_tables(spec.crowd, spec.n_steps, spec.dt)
    else:
        tab = strategy_tables(spec.crowd, t, spec.dt)
    return tab.a, tab.b, tab.c, tab.grid, tab.grid_x0, tab.grid_dx, tab.grid_dt


def _cacheable(crowd: ExecutionCrowd) -> bool:
    """Whether the crowd's equality is its strategy: no table its equality ignores (a
    feedback policy compares equal whatever its values) and nothing unhashable."""
    if any(getattr(crowd, f.name) is not None for f in dataclasses.fields(crowd) if not f.compare):
        return False
    try:
        hash(crowd)
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def _strategy_tables(crowd: ExecutionCrowd, n_steps: int, dt: float):
    # a loop's seeds share one strategy: a worker solves it (the FD MFG, say) once, not per run
    return strategy_tables(crowd, np.arange(n_steps) * dt, dt)


def _kernel_inputs(spec: MarketSpec, seed: int) -> dict:
    """The compiled market's inputs: what the market (and its warm-up) reads, and the crowd's strategy."""
    n_steps, s = spec.n_steps, spec.liquidity_scale
    t = np.arange(n_steps) * spec.dt
    rng = np.random.default_rng(seed)
    if spec.crowd is not None:
        types, q0 = spec.crowd.draw(rng)
        L = spec.crowd.lots_per_unit
        lots = np.round(q0 * L).astype(np.int64)
    else:
        types, lots, L = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 1
    makers = spec.makers or MarketMakers(count=0)
    bid_off, ask_off, groups = makers.group_quote_offsets(spec.T - t, seed)
    noise = spec.noise
    latent_params = np.array([p.params(s) for p in spec.latent_populations], dtype=np.float64).reshape(-1, 5)
    meta_params = np.zeros(10) if spec.meta_traders is None else spec.meta_traders.params(s, spec.dt)
    kernel_seed = int(seed) ^ 0x5EED
    # explicit scalar types: one compiled signature for every run
    start = (kernel_seed, int(spec.n_ticks), int(spec.initial_mid), latent_params, meta_params, int(makers.count), lots)
    market = (
        int(n_steps), int(spec.warmup_steps), int(spec.post_steps), float(spec.dt), int(spec.record_every),
        int(spec.n_ticks), np.array([noise.limit_rate * s, noise.market_rate * s, noise.cancel_rate]),
        float(noise.mean_depth), int(noise.max_size), latent_params, meta_params,
        int(makers.count), int(makers.quote_size * (s if spec.scale_with == "crowd" else 1)), int(makers.max_inventory),
        np.ascontiguousarray(bid_off, dtype=np.float64), np.ascontiguousarray(ask_off, dtype=np.float64),
        groups, makers.amend == "replace")
    crowd = spec.crowd
    a, b, c, grid, gx0, gdx, gdt = _tables(spec, t)
    strategy = (
        types.astype(np.int64), lots, int(L), *(np.ascontiguousarray(x, dtype=np.float64) for x in (a, b, c, grid)),
        float(gx0), float(gdx), float(gdt),
        bool(crowd is not None and crowd.order_type == "ioc"), int(crowd.ioc_ticks if crowd is not None else 0),
        bool(crowd is not None and crowd.stop_at_target))
    return {"start": start, "market": market, "strategy": strategy, "types": types, "lots": lots, "L": L}


def _warm_key(inputs: dict, max_trades_kept: int) -> str:
    """A digest of everything the warm-up reads: the market, the seed, the crowd's starting lots."""
    import hashlib

    digest = hashlib.sha256()
    for x in (*inputs["start"], *inputs["market"], inputs["types"], max_trades_kept):
        digest.update(np.ascontiguousarray(x).tobytes() if isinstance(x, np.ndarray) else repr(x).encode())
        digest.update(b"|")
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class WarmStart:
    """A market at the end of its warm-up, to start runs of the same market and seed from.

    The crowd trades from step 0, after the warm-up, so the warm-up does not depend on its
    strategy. A loop that changes only the strategy at fixed seeds (a calibration) warms
    each seed up once: ``run_market(spec, seed, warm_up(spec, seed))`` gives the same
    bytes as ``run_market(spec, seed)``.

    Attributes
    ----------
    key : str
        A digest of what the warm-up read (the market, the seed, the crowd's starting lots).
    seed : int
    state : tuple of numpy.ndarray
        The compiled market's state (``simulator._market_kernels.new_market``); read-only
        views after unpickling (a run copies the state it starts from).
    kept : numpy.ndarray
        The trades kept during the warm-up.
    generator : bytes
        The random generator's state.
    """

    key: str
    seed: int
    state: tuple
    kept: np.ndarray
    generator: bytes

    @functools.cached_property
    def _packed(self) -> tuple:
        # the book's arrays are mostly empty levels: 30 times smaller compressed; a loop
        # sends each warm start with every run, so it is compressed once (milliseconds)
        return tuple((zlib.compress(x.tobytes(), 1), x.dtype.str, x.shape) for x in self.state)

    def __reduce__(self):
        return _warm_start_from_packed, (self.key, self.seed, self._packed, self.kept, self.generator)


def _warm_start_from_packed(key, seed, packed, kept, generator) -> WarmStart:
    """A WarmStart from :meth:`WarmStart.__reduce__`."""
    # read-only views of the decompressed bytes: a run copies the state it starts from
    state = tuple(np.frombuffer(zlib.decompress(data), dtype=dtype).reshape(shape) for data, dtype, shape in packed)
    return WarmStart(key, seed, state, kept, generator)


class WarmStartUnavailable(RuntimeError):
    """numba's random generator cannot be saved here (see :func:`warm_up`)."""


def warm_up(spec: MarketSpec, seed: int) -> WarmStart:
    """Run a market's warm-up once, for :func:`run_market` to start from.

    Parameters
    ----------
    spec : MarketSpec
        Any crowd strategy: the warm-up does not read it.
    seed : int
        In [0, 2**32).

    Returns
    -------
    WarmStart

    Raises
    ------
    WarmStartUnavailable
        When this numba's generator state does not have the layout that is saved.
    """
    seed = check.seed("seed", seed)
    inputs = _kernel_inputs(spec, seed)
    state = MK.new_market(*inputs["start"])
    kept = np.zeros((spec.max_trades_kept, len(TRADE_DTYPE.names)), dtype=np.int64)
    counters = np.zeros(6, dtype=np.int64)
    n_acc = state[6].size
    # no records before step 0: the record arrays can be empty
    no_accounts = np.zeros((0, n_acc), dtype=np.int64)
    _, state = MK.run_steps(state, 0, spec.warmup_steps, *inputs["market"], *inputs["strategy"],
                            int(spec.max_trades_kept), np.zeros((0, MK.MARKET_FIELDS)),
                            np.zeros((0, 2, DEPTH_LEVELS), dtype=np.int64), no_accounts, no_accounts, no_accounts,
                            kept, np.zeros((0, MK.EXECUTION_FIELDS)), counters)
    try:
        generator = _generator.save()
    except RuntimeError as err:
        raise WarmStartUnavailable(str(err)) from None
    return WarmStart(_warm_key(inputs, spec.max_trades_kept), seed, state, kept[: counters[0]].copy(), generator)


def run_market(spec: MarketSpec, seed: int, warm: WarmStart | None = None) -> MarketRun:
    """Run the book market once; the same spec and seed give identical tables.

    Parameters
    ----------
    spec : MarketSpec
    seed : int
        In [0, 2**32).
    warm : WarmStart, optional
        This market and seed after their warm-up (:func:`warm_up`, possibly with another
        crowd strategy): the run starts there, with the same result.

    Returns
    -------
    MarketRun
    """
    import time

    seed = check.seed("seed", seed)
    t0 = time.perf_counter()
    n_steps = spec.n_steps
    inputs = _kernel_inputs(spec, seed)
    types, lots, L = inputs["types"], inputs["lots"], inputs["L"]
    n_makers = spec.makers.count if spec.makers is not None else 0
    n_rec = (n_steps + spec.post_steps) // spec.record_every + 1
    n_acc = 1 + n_makers + lots.size + 2  # noise, makers, the crowd, the latent book, the meta-order traders
    rec_market = np.zeros((n_rec, MK.MARKET_FIELDS))
    rec_market[:, MK.M_MAKER_BID:] = np.nan
    rec_depth = np.zeros((n_rec, 2, DEPTH_LEVELS), dtype=np.int64)
    rec_inv = np.zeros((n_rec, n_acc), dtype=np.int64)
    rec_cash = np.zeros((n_rec, n_acc), dtype=np.int64)
    rec_filled = np.zeros((n_rec, n_acc), dtype=np.int64)
    kept = np.zeros((spec.max_trades_kept, len(TRADE_DTYPE.names)), dtype=np.int64)
    counters = np.zeros(6, dtype=np.int64)
    executions = np.zeros((spec.max_executions_kept, MK.EXECUTION_FIELDS))
    if warm is None:
        state, first = MK.new_market(*inputs["start"]), 0
    else:
        if warm.seed != seed or warm.key != _warm_key(inputs, spec.max_trades_kept):
            raise ValueError(f"warm: a warm start of seed {warm.seed} for another market cannot start seed {seed} "
                             "of this one; warm_up(spec, seed) makes the right one")
        state, first = tuple(x.copy() for x in warm.state), spec.warmup_steps
        kept[: len(warm.kept)] = warm.kept
        _generator.restore(warm.generator)
    status, _ = MK.run_steps(state, first, spec.warmup_steps + n_steps + spec.post_steps + 1, *inputs["market"],
                             *inputs["strategy"], int(spec.max_trades_kept), rec_market, rec_depth, rec_inv,
                             rec_cash, rec_filled, kept, executions, counters)
    if status == MK.HIT_GRID_EDGE:
        raise RuntimeError(f"the price reached the edge of the grid at step {counters[3]} (n_ticks={spec.n_ticks}); "
                           "raise n_ticks or reduce the crowd's position")
    steps = rec_market[:, MK.M_STEP].astype(np.int64)
    market = {
        "step": steps, "t": steps * spec.dt,
        "best_bid": rec_market[:, MK.M_BID], "best_ask": rec_market[:, MK.M_ASK], "mid": rec_market[:, MK.M_MID],
        "bid_depth": rec_market[:, MK.M_BID_DEPTH].astype(np.int64),
        "ask_depth": rec_market[:, MK.M_ASK_DEPTH].astype(np.int64),
        "volume": rec_market[:, MK.M_VOLUME].astype(np.int64),
        "crowd_flow": rec_market[:, MK.M_CROWD_FLOW].astype(np.int64),
        "trades": rec_market[:, MK.M_TRADES].astype(np.int64),
        "messages": rec_market[:, MK.M_MESSAGES].astype(np.int64),
        "maker_bid": rec_market[:, MK.M_MAKER_BID], "maker_ask": rec_market[:, MK.M_MAKER_ASK],
        "signed_volume": rec_market[:, MK.M_SIGNED_VOLUME].astype(np.int64),
    }
    ex = executions[: counters[5]]
    execution_cols = {
        "step": ex[:, MK.X_STEP].astype(np.int64), "agent": ex[:, MK.X_AGENT].astype(np.int64),
        "requested": ex[:, MK.X_REQUESTED].astype(np.int64), "filled": ex[:, MK.X_FILLED].astype(np.int64),
        "shortfall": ex[:, MK.X_SHORTFALL],
    }
    crowd_cols = slice(1 + n_makers, 1 + n_makers + lots.size)
    agents = _agents_table(steps, spec.dt, types, rec_inv[:, crowd_cols] / L, rec_cash[:, crowd_cols] * spec.tick_size,
                           rec_filled[:, crowd_cols] / (L * spec.record_every * spec.dt))
    trades = kept[: counters[0]].copy().view(TRADE_DTYPE).reshape(-1)
    return MarketRun(spec, seed, market, agents, rec_inv, rec_cash, rec_depth, trades, int(counters[1]),
                     int(counters[2]), int(counters[4]), time.perf_counter() - t0, executions=execution_cols)


@dataclass(frozen=True)
class ParticleSpec:
    """The particle system without a book (experiment (a) of DESIGN §5).

    dQ_i = ν_i dt + σ dW_i, S = s0 + Y + σ0 W0 with dY = (κ μ - ρ Y) dt, cash
    dX_i = -ν_i (S + k ν_i + c μ) dt with μ = (1/N) Σ ν_j and σ, κ, ρ, k, c from the crowd's
    model.

    Parameters
    ----------
    T : float
        Horizon (time units).
    dt : float
        Step (time units), dividing T.
    crowd : ExecutionCrowd
    sigma0 : float
        Common price noise >= 0 (price per square-root time).
    s0 : float
        Initial price; the model is invariant to its level, which only scales the sampling
        noise of cash (inventory shocks σ dW arrive without cash, so each gain carries s0 σ W_T).
    record_every : int
        Steps between records, dividing the number of steps.
    """

    T: float
    dt: float
    crowd: ExecutionCrowd
    sigma0: float = 0.0
    s0: float = 0.0  # the model is invariant to the price level; a level multiplies the noise in the cash
    record_every: int = 10

    def __post_init__(self):
        check.time_step(self.T, self.dt)
        check.integer("record_every", self.record_every, lo=1, hi=10**9)
        check.require(self.n_steps % self.record_every == 0, "record_every", self.record_every,
                      f"must divide the {self.n_steps} steps")
        check.number("sigma0", self.sigma0, lo=0.0)
        check.require(not self.crowd.model.transient, "crowd.model.transient", self.crowd.model.transient,
                      "the particle system has one impact state (kappa, rho)", "use the FD solver for a propagator")

    @property
    def n_steps(self) -> int:
        return int(round(self.T / self.dt))

    def memory_estimate(self) -> int:
        """Rough peak memory of one run: the agents' state and records.

        Returns
        -------
        int
            Bytes.
        """
        n_rec = self.n_steps // self.record_every + 1
        return int(_BYTES_PER_AGENT_RECORD * self.crowd.n_agents * n_rec + 200 * self.crowd.n_agents)


def run_particles(spec: ParticleSpec, seed: int) -> MarketRun:
    """Simulate the particle system; the same tables as :func:`run_market`.

    Parameters
    ----------
    spec : ParticleSpec
    seed : int
        In [0, 2**32).

    Returns
    -------
    MarketRun
    """
    import time

    seed = check.seed("seed", seed)
    t0 = time.perf_counter()
    crowd, model = spec.crowd, spec.crowd.model
    rng = np.random.default_rng(seed)
    types, q0 = crowd.draw(rng)
    n_steps, n = spec.n_steps, crowd.n_agents
    t = np.arange(n_steps + 1) * spec.dt  # Heun evaluates the end of each step too
    tab = strategy_tables(crowd, t, spec.dt)
    n_rec = n_steps // spec.record_every + 1
    inv, cash, rate = (np.zeros((n_rec, n)) for _ in range(3))
    price = np.zeros(n_rec)
    penalty = np.zeros(n)
    MK.run_particles(int(n_steps), float(spec.dt), int(spec.record_every), int(seed) ^ 0x5EED, types.astype(np.int64),
                     q0, float(model.sigma), float(spec.sigma0), float(model.kappa), float(model.rho), float(model.k),
                     float(model.c),
                     float(spec.s0),
                     *(np.ascontiguousarray(x, dtype=np.float64) for x in (tab.a, tab.b, tab.c, tab.grid)),
                     float(tab.grid_x0), float(tab.grid_dx), float(tab.grid_dt), inv, cash, rate, price, penalty)
    steps = np.arange(n_rec, dtype=np.int64) * spec.record_every
    nan = np.full(n_rec, np.nan)
    zeros = np.zeros(n_rec, dtype=np.int64)
    market = {"step": steps, "t": steps * spec.dt, "best_bid": nan, "best_ask": nan, "mid": price,
              "bid_depth": zeros, "ask_depth": zeros, "volume": zeros, "crowd_flow": zeros, "trades": zeros,
              "messages": zeros, "maker_bid": nan, "maker_ask": nan, "signed_volume": zeros}
    agents = _agents_table(steps, spec.dt, types, inv, cash, rate)
    return MarketRun(spec, seed, market, agents, np.zeros((n_rec, 0), dtype=np.int64),
                     np.zeros((n_rec, 0), dtype=np.int64), np.zeros((n_rec, 2, 0), dtype=np.int64),
                     np.zeros(0, dtype=TRADE_DTYPE), 0, 0,
                     n * n_steps, time.perf_counter() - t0, penalty)
