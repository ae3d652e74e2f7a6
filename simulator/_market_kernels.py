"""Compiled market loop and particle system (private). See :mod:`simulator.market`.

Accounts: 0 = the noise flow (one aggregate account), 1..M = market makers,
M+1..M+N = execution agents, M+N+1 = the latent liquidity (one aggregate account),
M+N+2 = the meta-order traders (one aggregate account).
Inventories in lots and cash in tick·lots are int64, so conservation across a trade is
exact.

The latent order book (Tóth et al. 2011; Donier, Bonart, Mastromatteo, Bouchaud 2015)
-----------------------------------------------------------------------------------
Trading intentions of one lot are deposited uniformly at 1..``band`` ticks from the mid
(buys below, sells above) at ``deposit_rate`` per tick and unit time on each side, and
each one is cancelled at ``cancel_rate``. They live at fixed prices in ``latent`` (lots per
side and tick) until the price comes within ``reveal`` ticks: then the tick's volume is
posted in the book as a limit order of the latent account, at the back of the queue like
any arrival. Revealed lots are still cancelled one by one at the same rate (REDUCE
messages, which keep the order's priority); each order carries the time of its next
cancellation, drawn from the exponential law of the first of its lots to go, so a step
touches only the orders that lose a lot in it. Intentions the price has
jumped past are revealed at once and trade. Far from the price the latent density is flat
(deposit_rate / cancel_rate); near it the price's own moves eat it, which leaves the
V-shaped, locally linear profile that makes impact grow like the square root of the
volume and decay once a meta-order stops. Cancellations of latent volume are applied
lazily: a tick's volume is thinned (binomially, for the steps since it was last touched)
only when it is read, which is exact for independent exponential lifetimes.

Several latent populations may share the book, each with its own deposit rate, memory
1/ν, band and reveal distance (Benzaquen and Bouchaud 2018: liquidity of several time
scales). A fast one keeps the book thick and resilient near the price; a slow one has a
wide depletion zone, and with it a wide window of square-root impact. A population may
start in its stationary profile (λ/ν)(1 − e^{−x/ℓ}) at x ticks from the mid, ℓ its depletion
length, instead of empty: a slow book's memory is longer than any warm-up one can afford.
"""

import numpy as np
from numba import njit

from . import _book_kernels as K

# market record columns
(M_STEP, M_BID, M_ASK, M_MID, M_BID_DEPTH, M_ASK_DEPTH, M_VOLUME, M_CROWD_FLOW, M_TRADES, M_MESSAGES,
 M_MAKER_BID, M_MAKER_ASK, M_SIGNED_VOLUME) = range(13)
MARKET_FIELDS = 13
# execution record columns: one row per crowd order
X_STEP, X_AGENT, X_REQUESTED, X_FILLED, X_SHORTFALL = range(5)
EXECUTION_FIELDS = 5
MESSAGE_ROWS = 7  # kind, side, price, qty, order id, agent, stop price
# status codes
OK = 0
HIT_GRID_EDGE = 1


@njit(cache=True)
def _strategy_rate(j, n, t, q, q_sum, a, b, c, grid, gx0, gdx, gdt):
    """ν for an agent of type j holding q at step n (model units per time)."""
    if grid.shape[0] == 0:
        return a[j, n] + b[j, n] * q + c[j, n] * q_sum
    n_t = grid.shape[1] - 1
    n_x = grid.shape[2]
    s = min(max(t / gdt, 0.0), float(n_t))
    i0 = min(int(s), n_t - 1) if n_t > 0 else 0
    ws = s - i0
    z = min(max((q - gx0) / gdx, 0.0), float(n_x - 1))
    k0 = min(int(z), n_x - 2)
    wz = z - k0
    lo = (1 - wz) * grid[j, i0, k0] + wz * grid[j, i0, k0 + 1]
    if n_t == 0:
        return lo
    hi = (1 - wz) * grid[j, i0 + 1, k0] + wz * grid[j, i0 + 1, k0 + 1]
    return (1 - ws) * lo + ws * hi


@njit(cache=True)
def feedback_rates(types, times, inventory, grid, gx0, gdx, gdt, out):
    """ν of each point (type, time, inventory) read from a feedback grid as the crowd reads it."""
    none = np.zeros((1, 1))
    for i in range(out.size):
        out[i] = _strategy_rate(types[i], 0, times[i], inventory[i], 0.0, none, none, none, grid, gx0, gdx, gdt)


@njit(cache=True)
def _push(buf, n, kind, sign, price, qty, oid, agent):
    """Append a message (no stop price: the populations send no stop orders)."""
    if n >= buf.shape[1]:
        new = np.zeros((MESSAGE_ROWS, 2 * buf.shape[1] + 16), dtype=np.int64)
        new[:, :n] = buf[:, :n]
        buf = new
    buf[0, n] = kind
    buf[1, n] = sign
    buf[2, n] = price
    buf[3, n] = qty
    buf[4, n] = oid
    buf[5, n] = agent
    return buf


@njit(cache=True)
def _amend_quote(msgs, n_msg, next_oid, table, live_id, wanted, sign, price, qty, agent):
    """One side of a maker's quote, amended: a REPLACE of the live quote ``live_id`` (at the
    same price and size it keeps its place in the queue), a cancel when the side is no
    longer ``wanted``, a new post-only order when no quote is live. A REPLACE that would
    cross is rejected and leaves the old quote, as an exchange would.
    Returns (msgs, n_msg, next_oid, the side's quote id or -1)."""
    live = live_id >= 0 and K.table_find(table, live_id) != K.NIL
    if live and wanted:
        return _push(msgs, n_msg, K.REPLACE, sign, price, qty, live_id, agent), n_msg + 1, next_oid, live_id
    if live:
        return _push(msgs, n_msg, K.CANCEL, 0, 0, 0, live_id, agent), n_msg + 1, next_oid, -1
    if not wanted:
        return msgs, n_msg, next_oid, -1
    msgs = _push(msgs, n_msg, K.POST_ONLY, sign, price, qty, next_oid, agent)
    return msgs, n_msg + 1, next_oid + 1, next_oid


@njit(cache=True)
def _new_meta_order(meta_params, k, left, sign, participation):
    """Trader k's next meta-order: a Pareto size P(> s) = (min/s)^α (lots, rounded up, capped
    at the max), a random side and a participation uniform on [low, high]."""
    alpha, min_size, max_size = meta_params[1], meta_params[2], meta_params[3]
    u = 1.0 - np.random.random()  # in (0, 1]
    left[k] = int(min(np.ceil(min_size * u ** (-1.0 / alpha)), max_size))
    sign[k] = 1 if np.random.random() < 0.5 else -1
    participation[k] = meta_params[4] + (meta_params[5] - meta_params[4]) * np.random.random()


@njit(cache=True)
def _latent_start(latent, touched, params, initial_mid, n_ticks):
    """Each population's volume at the start: empty, or Poisson draws around its stationary
    profile (λ/ν)(1 − e^{-x/ℓ}) at x = 1..band ticks from ``initial_mid`` when ℓ =
    params[p, 4] > 0. Returns the frontiers (highest bid tick, lowest ask tick) per population."""
    n_pop = params.shape[0]
    frontier = np.empty((n_pop, 2), dtype=np.int64)
    for p in range(n_pop):
        frontier[p, 0], frontier[p, 1] = -1, n_ticks
        length = params[p, 4]
        if length <= 0.0:
            continue
        density = params[p, 0] / params[p, 1]
        for x in range(1, int(params[p, 2]) + 1):
            mean = density * (1.0 - np.exp(-x / length))
            for side in range(2):
                tick = initial_mid - x if side == K.BID else initial_mid + x
                if 0 <= tick < n_ticks:
                    latent[p, side, tick] = np.random.poisson(mean)
                    touched[p, side, tick] = 0
                    if latent[p, side, tick] > 0:
                        if side == K.BID:
                            frontier[p, 0] = max(frontier[p, 0], tick)
                        else:
                            frontier[p, 1] = min(frontier[p, 1], tick)
    return frontier


@njit(cache=True)
def _latent_touch(latent, touched, side, tick, step, keep):
    """Volume still latent at (side, tick) after the cancellations since it was last read."""
    vol = latent[side, tick]
    elapsed = step - touched[side, tick]
    if vol > 0 and elapsed > 0:
        vol = np.random.binomial(vol, keep**elapsed)
        latent[side, tick] = vol
    touched[side, tick] = step
    return vol


@njit(cache=True)
def _nearest_latent(latent, touched, side, start, direction, reach, step, keep):
    """The first tick from ``start`` in ``direction`` (at most ``reach`` ticks) holding
    latent volume, or ``start`` when there is none."""
    tick = start
    for _ in range(reach):
        if tick < 0 or tick >= latent.shape[1]:
            break
        if latent[side, tick] > 0 and _latent_touch(latent, touched, side, tick, step, keep) > 0:
            return tick
        tick += direction
    return start


@njit(cache=True)
def _grow(buf, n):
    """``buf`` itself, or a copy of its first n entries with twice the room when it is full."""
    if n < buf.shape[0]:
        return buf
    grown = np.empty(2 * buf.shape[0], dtype=buf.dtype)
    grown[:n] = buf[:n]
    return grown


# the integer and real scalars of a market state (see :func:`new_market`)
(S_REVEALED, S_NOISE_IDS, S_NEXT_OID, S_KEPT, S_TRADES_TOTAL, S_MSGS_TOTAL, S_DECISIONS, S_EDGE_STEP, S_REC,
 S_VOLUME, S_CROWD_FLOW, S_SIGNED_VOLUME, S_TRADES_INTERVAL, S_MSGS_INTERVAL, S_EXECUTIONS) = range(15)
STATE_INTS = 15
F_MID, F_ACTIVITY = 0, 1
STATE_FLOATS = 2


@njit(cache=True)
def new_market(seed, n_ticks, initial_mid, latent_params, meta_params, n_makers, initial_lots):
    """Seed the generator and draw a market's start: the latent populations' volumes and the
    first meta-orders. Returns the state :func:`run_steps` advances.

    The state is a tuple (latent, touched, frontier, revealed, next_cut, cut_rate, inv,
    cash, filled, maker_bid, maker_ask, noise_ids, meta_left, meta_sign,
    meta_participation, the book's eight arrays, msgs, ints, floats); ``ints`` and
    ``floats`` hold the scalars (``S_*``, ``F_*``). Everything a step reads that a later
    step may need is in it, so a market advanced in two calls is the one advanced in one.
    """
    np.random.seed(seed)
    n_agents = initial_lots.shape[0]
    first_crowd = 1 + n_makers
    n_acc = first_crowd + n_agents + 2
    n_pop = latent_params.shape[0]
    latent = np.zeros((n_pop, 2, n_ticks), dtype=np.int64)
    touched = np.zeros((n_pop, 2, n_ticks), dtype=np.int64)
    # highest latent bid tick, lowest latent ask tick, per population
    frontier = _latent_start(latent, touched, latent_params, initial_mid, n_ticks)
    revealed = np.empty(1024, dtype=np.int64)  # live revealed order ids
    next_cut = np.empty(1024)  # the step (fractional) of each one's next cancelled lot
    cut_rate = np.empty(1024)  # each one's cancel rate per lot and step (its population's)
    inv = np.zeros(n_acc, dtype=np.int64)
    cash = np.zeros(n_acc, dtype=np.int64)
    filled = np.zeros(n_acc, dtype=np.int64)
    inv[first_crowd:first_crowd + n_agents] = initial_lots
    maker_bid = np.full(n_makers, -1, dtype=np.int64)
    maker_ask = np.full(n_makers, -1, dtype=np.int64)
    noise_ids = np.empty(1024, dtype=np.int64)
    n_meta = int(meta_params[0])
    meta_left = np.zeros(n_meta, dtype=np.int64)  # lots each meta-order still has to send
    meta_sign = np.zeros(n_meta, dtype=np.int64)
    meta_participation = np.zeros(n_meta)
    for k in range(n_meta):
        _new_meta_order(meta_params, k, meta_left, meta_sign, meta_participation)
    # the market's activity: exp(x - s²/2) with x a stationary Ornstein–Uhlenbeck process of
    # standard deviation s and correlation time tau, so that its mean is one
    activity_sd = meta_params[8]
    activity_x = activity_sd * np.random.standard_normal() if activity_sd > 0.0 and n_meta > 0 else 0.0
    levels, blocks, meta, pool, table, trades, rejects, expired = K.new_book(n_ticks, 1024, 1024)
    msgs = np.zeros((MESSAGE_ROWS, n_agents + 4 * n_makers + 64), dtype=np.int64)
    ints = np.zeros(STATE_INTS, dtype=np.int64)
    ints[S_EDGE_STEP] = -1
    floats = np.array([float(initial_mid), activity_x])
    return (latent, touched, frontier, revealed, next_cut, cut_rate, inv, cash, filled, maker_bid, maker_ask,
            noise_ids, meta_left, meta_sign, meta_participation, levels, blocks, meta, pool, table, trades,
            rejects, expired, msgs, ints, floats)


@njit(cache=True)
def run_steps(state, first, last, n_steps, warmup, post_steps, dt, record_every, n_ticks,
              noise_rates, noise_mean_depth, noise_max_size, latent_params, meta_params,
              n_makers, quote_size, max_q, bid_offset, ask_offset, maker_group, maker_replace,
              agent_type, initial_lots, lots_per_unit, a, b, c, grid, gx0, gdx, gdt,
              ioc, ioc_ticks, stop_at_target, max_trades_kept,
              rec_market, rec_depth, rec_inventory, rec_cash, rec_filled, kept_trades, executions, counters):
    """Advance a market (:func:`new_market`) over its steps ``first .. last - 1`` of warmup +
    n_steps + post_steps + 1; fill the record arrays. Returns (status code, the state).

    ``state`` is updated in place where its arrays have room; the returned one holds any
    array that had to grow. The crowd's own state (carried fractions of a lot, who is still
    trading) starts afresh: the crowd does not trade before step ``warmup``, so a call may
    start there from a saved state (see :func:`simulator.market.warm_up`).

    rec_depth (n_rec, 2, K): lots resting 0..K-1 ticks behind the best bid (row 0) and
    the best ask (row 1) at each record.

    The crowd trades on steps 0 .. n_steps-1; ``post_steps`` more steps of noise and
    makers follow (to watch impact decay). executions (out, cap x 5): per crowd order its
    step, agent, requested and filled lots (signed) and shortfall against the step's
    starting mid (ticks·lots, > 0 is a cost).
    counters (out): [trades kept, trades total, messages total, first step at the grid
    edge (-1 if none), agent decisions (crowd, makers, meta-order traders), executions kept].
    latent_params: (P, 5), per latent population [deposit_rate (lots per tick per time,
    scaled), cancel_rate, band, reveal, start depletion length (ticks; 0: start empty)];
    P = 0 turns the latent book off.
    bid_offset, ask_offset: (G, n_steps, 2Q+1) each group's quotes by step and inventory,
    ticks from the mid (NaN: the side is not posted); maker_group (n_makers,): each
    maker's group.
    meta_params: [count (scaled), tail exponent α, min size, max size (lots), participation
    low, high, child size (lots), child orders per time at full participation, activity
    volatility, activity time]; a count of 0 turns the meta-order traders off (and draws
    nothing, so other runs keep their bytes), an activity volatility of 0 the activity.
    """
    (latent, touched, frontier, revealed, next_cut, cut_rate, inv, cash, filled, maker_bid, maker_ask,
     noise_ids, meta_left, meta_sign, meta_participation, levels, blocks, meta, pool, table, trades,
     rejects, expired, msgs, ints, floats) = state
    n_agents = agent_type.shape[0]
    first_crowd = 1 + n_makers
    latent_acc = first_crowd + n_agents
    meta_acc = latent_acc + 1
    n_pop = latent_params.shape[0]
    keep = np.exp(-latent_params[:, 1] * dt)  # survival of one lot over one step
    carry = np.zeros(n_agents)
    active = np.ones(n_agents, dtype=np.bool_)
    start_sign = np.sign(initial_lots)
    n_meta = meta_left.shape[0]
    child_size = int(meta_params[6])
    child_step = meta_params[7] * dt  # P(child order in a step) at full participation
    activity_sd, activity_time = meta_params[8], meta_params[9]
    activity_keep = np.exp(-dt / activity_time) if activity_sd > 0.0 else 1.0
    activity_kick = activity_sd * np.sqrt(1.0 - activity_keep**2)
    limit_rate, market_rate, cancel_rate = noise_rates[0], noise_rates[1], noise_rates[2]
    p_depth = 1.0 / noise_mean_depth
    n_revealed, n_noise_ids, next_oid, n_kept = ints[S_REVEALED], ints[S_NOISE_IDS], ints[S_NEXT_OID], ints[S_KEPT]
    n_trades_total, n_msgs_total, decisions = ints[S_TRADES_TOTAL], ints[S_MSGS_TOTAL], ints[S_DECISIONS]
    edge_step, rec, n_exec = ints[S_EDGE_STEP], ints[S_REC], ints[S_EXECUTIONS]
    volume, crowd_flow, signed_volume = ints[S_VOLUME], ints[S_CROWD_FLOW], ints[S_SIGNED_VOLUME]
    trades_in_interval, msgs_in_interval = ints[S_TRADES_INTERVAL], ints[S_MSGS_INTERVAL]
    mid, activity_x = floats[F_MID], floats[F_ACTIVITY]
    total = warmup + n_steps + post_steps
    ordered = np.empty(n_agents, dtype=np.int64)
    step_requested = np.zeros(n_agents, dtype=np.int64)
    step_filled = np.zeros(n_agents, dtype=np.int64)
    step_cost = np.zeros(n_agents)
    for n in range(first, last):
        step = n - warmup
        bb = meta[K.BEST_BID]
        ba = meta[K.BEST_ASK]
        if bb >= 0 and ba < n_ticks:
            mid = 0.5 * (bb + ba)
        if step >= 0 and step % record_every == 0:
            rec_market[rec, M_STEP] = step
            rec_market[rec, M_BID] = bb if bb >= 0 else np.nan
            rec_market[rec, M_ASK] = ba if ba < n_ticks else np.nan
            rec_market[rec, M_MID] = mid
            rec_market[rec, M_BID_DEPTH] = levels[K.BID, bb, K.VOLUME] if bb >= 0 else 0
            rec_market[rec, M_ASK_DEPTH] = levels[K.ASK, ba, K.VOLUME] if ba < n_ticks else 0
            rec_market[rec, M_VOLUME] = volume
            rec_market[rec, M_CROWD_FLOW] = crowd_flow
            rec_market[rec, M_TRADES] = trades_in_interval
            rec_market[rec, M_MESSAGES] = msgs_in_interval
            rec_market[rec, M_SIGNED_VOLUME] = signed_volume
            for d in range(rec_depth.shape[2]):
                if bb - d >= 0:
                    rec_depth[rec, 0, d] = levels[K.BID, bb - d, K.VOLUME]
                if ba < n_ticks and ba + d < n_ticks:
                    rec_depth[rec, 1, d] = levels[K.ASK, ba + d, K.VOLUME]
            rec_inventory[rec] = inv
            rec_cash[rec] = cash
            rec_filled[rec] = filled
            filled[:] = 0
            volume = 0
            crowd_flow = 0
            trades_in_interval = 0
            msgs_in_interval = 0
            signed_volume = 0
            rec += 1
        if n == total:
            break
        if edge_step < 0 and (0 <= bb <= 1 or n_ticks - 2 <= ba < n_ticks or mid < 2 or mid > n_ticks - 3):
            edge_step = step
        t = max(step, 0) * dt
        n_msg = 0
        j = 0
        while j < n_revealed:  # drop the latent account's orders that traded or were cancelled
            if K.table_find(table, revealed[j]) == K.NIL:
                n_revealed -= 1
                revealed[j] = revealed[n_revealed]
                next_cut[j] = next_cut[n_revealed]
                cut_rate[j] = cut_rate[n_revealed]
            else:
                j += 1
        n_live_revealed = n_revealed
        # ---- noise flow ----
        for _ in range(np.random.poisson(limit_rate * dt)):
            sign = 1 if np.random.random() < 0.5 else -1
            depth = np.random.geometric(p_depth)
            if sign > 0:
                ref = ba if ba < n_ticks else int(np.floor(mid)) + 1
                price = ref - depth
            else:
                ref = bb if bb >= 0 else int(np.ceil(mid)) - 1
                price = ref + depth
            price = min(max(price, 0), n_ticks - 1)
            msgs = _push(msgs, n_msg, K.LIMIT, sign, price, 1 + np.random.randint(noise_max_size), next_oid, 0)
            n_msg += 1
            next_oid += 1
        for _ in range(np.random.poisson(market_rate * dt)):
            sign = 1 if np.random.random() < 0.5 else -1
            msgs = _push(msgs, n_msg, K.MARKET, sign, 0, 1 + np.random.randint(noise_max_size), next_oid, 0)
            n_msg += 1
            next_oid += 1
        maker_live = 0
        for m in range(n_makers):
            if maker_bid[m] >= 0 and K.table_find(table, maker_bid[m]) != K.NIL:
                maker_live += 1
            if maker_ask[m] >= 0 and K.table_find(table, maker_ask[m]) != K.NIL:
                maker_live += 1
        noise_live = meta[K.N_BIDS] + meta[K.N_ASKS] - maker_live - n_live_revealed
        for _ in range(np.random.poisson(cancel_rate * noise_live * dt) if noise_live > 0 else 0):
            while n_noise_ids > 0:  # random live noise order; dead ids are dropped on sight
                j = np.random.randint(n_noise_ids)
                if K.table_find(table, noise_ids[j]) != K.NIL:
                    msgs = _push(msgs, n_msg, K.CANCEL, 0, 0, 0, noise_ids[j], 0)
                    n_msg += 1
                    n_noise_ids -= 1
                    noise_ids[j] = noise_ids[n_noise_ids]
                    break
                n_noise_ids -= 1
                noise_ids[j] = noise_ids[n_noise_ids]
        # ---- latent liquidity: deposit, reveal near the price, cancel revealed lots ----
        for p in range(n_pop):
            deposit_rate, band, reveal = latent_params[p, 0], int(latent_params[p, 2]), int(latent_params[p, 3])
            book_p, touched_p, keep_p = latent[p], touched[p], keep[p]
            bid_top = int(np.ceil(mid)) - 1  # highest tick strictly below the mid
            ask_low = int(np.floor(mid)) + 1  # lowest tick strictly above the mid
            for side in range(2):
                for _ in range(np.random.poisson(deposit_rate * band * dt)):
                    d = np.random.randint(band)
                    tick = bid_top - d if side == K.BID else ask_low + d
                    if 0 <= tick < n_ticks:
                        _latent_touch(book_p, touched_p, side, tick, n, keep_p)
                        book_p[side, tick] += 1
                        if side == K.BID:
                            frontier[p, 0] = max(frontier[p, 0], tick)
                        else:
                            frontier[p, 1] = min(frontier[p, 1], tick)
            # bids from bid_top - reveal + 1 up to the frontier (above bid_top: jumped past).
            # A side that trading has emptied has no mid to follow: its zone then starts at
            # its nearest latent volume, as the next trade would reach it.
            if bb < 0:
                bid_top = _nearest_latent(book_p, touched_p, K.BID, bid_top, -1, band, n, keep_p)
            if ba >= n_ticks:
                ask_low = _nearest_latent(book_p, touched_p, K.ASK, ask_low, 1, band, n, keep_p)
            lo_tick = max(bid_top - reveal + 1, 0)
            hi_tick = min(ask_low + reveal - 1, n_ticks - 1)
            for side in range(2):
                if side == K.BID:
                    first_tick, last_tick, sign = lo_tick, min(max(frontier[p, 0], bid_top), n_ticks - 1), 1
                else:
                    first_tick, last_tick, sign = max(min(frontier[p, 1], ask_low), 0), hi_tick, -1
                for tick in range(first_tick, last_tick + 1):
                    vol = _latent_touch(book_p, touched_p, side, tick, n, keep_p)
                    if vol > 0:
                        msgs = _push(msgs, n_msg, K.LIMIT, sign, tick, vol, next_oid, latent_acc)
                        revealed = _grow(revealed, n_revealed)
                        next_cut = _grow(next_cut, n_revealed)
                        cut_rate = _grow(cut_rate, n_revealed)
                        revealed[n_revealed] = next_oid
                        cut_rate[n_revealed] = latent_params[p, 1] * dt
                        next_cut[n_revealed] = n + np.random.exponential(1.0 / (cut_rate[n_revealed] * vol))
                        n_revealed += 1
                        n_msg += 1
                        next_oid += 1
                        book_p[side, tick] = 0
            # the zone is revealed: no latent volume is left above lo_tick (below hi_tick); keep
            # the frontier at the touch, so a later jump of the price past it is scanned
            frontier[p, 0] = max(min(frontier[p, 0], lo_tick - 1), bid_top)
            frontier[p, 1] = min(max(frontier[p, 1], hi_tick + 1), ask_low)
        for j in range(n_live_revealed):  # revealed lots are cancelled at their population's rate
            if next_cut[j] >= n + 1:
                continue
            left = pool[K.table_find(table, revealed[j]), K.P_QTY]
            gone = 0
            while left > 0 and next_cut[j] < n + 1:  # competing exponential clocks
                gone += 1
                left -= 1
                next_cut[j] += np.random.exponential(1.0 / (cut_rate[j] * left)) if left > 0 else 0.0
            msgs = _push(msgs, n_msg, K.REDUCE, 0, 0, gone, revealed[j], latent_acc)
            n_msg += 1
        # ---- meta-order traders (Lillo–Mike–Farmer): child market orders of hidden meta-orders ----
        activity = 1.0
        if activity_sd > 0.0 and n_meta > 0:
            activity_x = activity_keep * activity_x + activity_kick * np.random.standard_normal()
            activity = np.exp(activity_x - 0.5 * activity_sd * activity_sd)
        decisions += n_meta
        for k in range(n_meta):
            if np.random.random() < meta_participation[k] * child_step * activity:
                lots = min(child_size, meta_left[k])
                msgs = _push(msgs, n_msg, K.MARKET, meta_sign[k], 0, lots, next_oid, meta_acc)
                n_msg += 1
                next_oid += 1
                meta_left[k] -= lots
                if meta_left[k] == 0:
                    _new_meta_order(meta_params, k, meta_left, meta_sign, meta_participation)
        # ---- market makers: amend (or cancel and re-post) their quotes ----
        row = max(step, 0) if step < n_steps else 0  # after the horizon: long-horizon quotes
        decisions += n_makers
        for m in range(n_makers):
            acc = 1 + m
            qi = int(np.round(inv[acc] / quote_size))
            qi = min(max(qi, -max_q), max_q)
            # a NaN offset is a side the quotes leave empty (a tick maker that would lose on it)
            bid_at = bid_offset[maker_group[m], row, qi + max_q]
            ask_at = ask_offset[maker_group[m], row, qi + max_q]
            bid = int(np.floor(mid - bid_at)) if np.isfinite(bid_at) else -1
            ask = int(np.ceil(mid + ask_at)) if np.isfinite(ask_at) else n_ticks
            want_bid = inv[acc] < max_q * quote_size and 0 <= bid < n_ticks
            want_ask = inv[acc] > -max_q * quote_size and 0 <= ask < n_ticks
            if maker_replace:
                msgs, n_msg, next_oid, maker_bid[m] = _amend_quote(msgs, n_msg, next_oid, table, maker_bid[m],
                                                                   want_bid, 1, bid, quote_size, acc)
                msgs, n_msg, next_oid, maker_ask[m] = _amend_quote(msgs, n_msg, next_oid, table, maker_ask[m],
                                                                   want_ask, -1, ask, quote_size, acc)
            else:
                for old in (maker_bid[m], maker_ask[m]):
                    if old >= 0 and K.table_find(table, old) != K.NIL:
                        msgs = _push(msgs, n_msg, K.CANCEL, 0, 0, 0, old, acc)
                        n_msg += 1
                maker_bid[m] = -1
                maker_ask[m] = -1
                if want_bid:
                    msgs = _push(msgs, n_msg, K.POST_ONLY, 1, bid, quote_size, next_oid, acc)
                    maker_bid[m] = next_oid
                    n_msg += 1
                    next_oid += 1
                if want_ask:
                    msgs = _push(msgs, n_msg, K.POST_ONLY, -1, ask, quote_size, next_oid, acc)
                    maker_ask[m] = next_oid
                    n_msg += 1
                    next_oid += 1
            if m == 0 and step >= 0 and step % record_every == 0:
                # the quotes the first maker posts from the mid of this record
                rec_market[rec - 1, M_MAKER_BID] = bid if maker_bid[m] >= 0 else np.nan
                rec_market[rec - 1, M_MAKER_ASK] = ask if maker_ask[m] >= 0 else np.nan
        # ---- execution crowd ----
        n_ordered = 0
        if 0 <= step < n_steps and n_agents > 0:
            q_sum = 0.0
            for i in range(n_agents):
                q_sum += inv[first_crowd + i]
            q_sum /= lots_per_unit
            for i in range(n_agents):
                if not active[i]:
                    continue
                decisions += 1
                acc = first_crowd + i
                q = inv[acc] / lots_per_unit
                nu = _strategy_rate(agent_type[i], step, t, q, q_sum, a, b, c, grid, gx0, gdx, gdt)
                x = nu * dt * lots_per_unit + carry[i]
                lots = int(x)  # toward zero; the fraction is carried to the next step
                carry[i] = x - lots
                if stop_at_target:
                    if inv[acc] > 0 and lots < -inv[acc]:
                        lots = -inv[acc]
                    elif inv[acc] < 0 and lots > -inv[acc]:
                        lots = -inv[acc]
                if lots == 0:
                    continue
                sign = 1 if lots > 0 else -1
                if ioc:
                    ref = ba if sign > 0 else bb
                    if ref < 0 or ref >= n_ticks:
                        continue  # nothing to take on that side
                    price = min(max(ref + sign * ioc_ticks, 0), n_ticks - 1)
                    msgs = _push(msgs, n_msg, K.IOC, sign, price, abs(lots), next_oid, acc)
                else:
                    msgs = _push(msgs, n_msg, K.MARKET, sign, 0, abs(lots), next_oid, acc)
                n_msg += 1
                next_oid += 1
                ordered[n_ordered] = i
                n_ordered += 1
                step_requested[i] = lots
        # ---- random order inside the step, then the book ----
        for i in range(n_msg - 1, 0, -1):
            j = np.random.randint(i + 1)
            for f in range(MESSAGE_ROWS - 1):  # the stop price row is all zeros
                tmp = msgs[f, i]
                msgs[f, i] = msgs[f, j]
                msgs[f, j] = tmp
        meta[K.N_TRADES] = 0
        meta[K.N_REJECTS] = 0
        meta[K.N_EXPIRED] = 0
        pool, table, trades, rejects, expired = K.process_batch(
            levels, blocks, meta, pool, table, trades, rejects, expired,
            msgs[0, :n_msg], msgs[1, :n_msg], msgs[2, :n_msg], msgs[3, :n_msg], msgs[4, :n_msg], msgs[5, :n_msg],
            msgs[6, :n_msg], step)
        n_msgs_total += n_msg
        msgs_in_interval += n_msg
        # ---- route fills back to the accounts ----
        for r in range(meta[K.N_TRADES]):
            qty = trades[r, K.T_QTY]
            side = trades[r, K.T_SIDE]
            px = trades[r, K.T_PRICE]
            taker = trades[r, K.T_TAKER_AGENT]
            maker = trades[r, K.T_MAKER_AGENT]
            inv[taker] += side * qty
            cash[taker] -= side * qty * px
            inv[maker] -= side * qty
            cash[maker] += side * qty * px
            filled[taker] += side * qty
            filled[maker] -= side * qty
            volume += qty
            signed_volume += side * qty
            if first_crowd <= taker < latent_acc:
                crowd_flow += side * qty
                step_filled[taker - first_crowd] += side * qty
                step_cost[taker - first_crowd] += side * qty * (px - mid)
            if first_crowd <= maker < latent_acc:
                crowd_flow -= side * qty
            if n_kept < max_trades_kept:
                kept_trades[n_kept] = trades[r]
                n_kept += 1
        for o in range(n_ordered):
            i = ordered[o]
            if n_exec < executions.shape[0]:
                executions[n_exec, X_STEP] = step
                executions[n_exec, X_AGENT] = i
                executions[n_exec, X_REQUESTED] = step_requested[i]
                executions[n_exec, X_FILLED] = step_filled[i]
                executions[n_exec, X_SHORTFALL] = step_cost[i]
                n_exec += 1
            step_requested[i] = 0
            step_filled[i] = 0
            step_cost[i] = 0.0
        n_trades_total += meta[K.N_TRADES]
        trades_in_interval += meta[K.N_TRADES]
        # ---- bookkeeping for the next step ----
        for i in range(n_msg):
            if msgs[0, i] == K.LIMIT and msgs[5, i] == 0 and K.table_find(table, msgs[4, i]) != K.NIL:
                noise_ids = _grow(noise_ids, n_noise_ids)
                noise_ids[n_noise_ids] = msgs[4, i]
                n_noise_ids += 1
        if stop_at_target and step >= 0:
            for i in range(n_agents):
                if active[i] and inv[first_crowd + i] * start_sign[i] <= 0:
                    active[i] = False
    ints[S_REVEALED], ints[S_NOISE_IDS], ints[S_NEXT_OID], ints[S_KEPT] = n_revealed, n_noise_ids, next_oid, n_kept
    ints[S_TRADES_TOTAL], ints[S_MSGS_TOTAL], ints[S_DECISIONS] = n_trades_total, n_msgs_total, decisions
    ints[S_EDGE_STEP], ints[S_REC], ints[S_EXECUTIONS] = edge_step, rec, n_exec
    ints[S_VOLUME], ints[S_CROWD_FLOW], ints[S_SIGNED_VOLUME] = volume, crowd_flow, signed_volume
    ints[S_TRADES_INTERVAL], ints[S_MSGS_INTERVAL] = trades_in_interval, msgs_in_interval
    floats[F_MID], floats[F_ACTIVITY] = mid, activity_x
    counters[0] = n_kept
    counters[1] = n_trades_total
    counters[2] = n_msgs_total
    counters[3] = edge_step
    counters[4] = decisions
    counters[5] = n_exec
    status = HIT_GRID_EDGE if edge_step >= 0 else OK
    return status, (latent, touched, frontier, revealed, next_cut, cut_rate, inv, cash, filled, maker_bid, maker_ask,
                    noise_ids, meta_left, meta_sign, meta_participation, levels, blocks, meta, pool, table, trades,
                    rejects, expired, msgs, ints, floats)


@njit(cache=True)
def run_particles(n_steps, dt, record_every, seed, agent_type, q0, sigma, sigma0, kappa, rho, k, crowd_c, s0,
                  a, b, c, grid, gx0, gdx, gdt, rec_inventory, rec_cash, rec_rate, rec_price, penalty):
    """dQ_i = ν_i dt + σ dW_i, S = s0 + Y + σ0 W0 with dY = (κ μ - ρ Y) dt,
    dX_i = -ν_i (S + k ν_i + c μ) dt, μ = (1/N) Σ ν_j.

    Y is advanced exactly over a step for the step's mean rate (``Y e^{-ρ dt} + κ μ
    (1 - e^{-ρ dt})/ρ``; ``Y + κ μ dt`` at ρ = 0, the permanent-impact model).

    Stochastic Heun (predictor–corrector): weak order 2 for this additive noise, so the
    time-step bias stays well below the N^-1/2 sampling error the experiments measure.
    Strategy tables need n_steps + 1 columns (the end of each step is evaluated too).
    penalty (out, N): ∫ Q_i² dt along each path (trapezoid rule).
    """
    np.random.seed(seed)
    n = q0.shape[0]
    q = q0.copy()
    x = np.zeros(n)
    moved = np.zeros(n)
    nu0 = np.empty(n)
    q_pred = np.empty(n)
    dw = np.empty(n)
    s = s0
    impact = 0.0
    decay = np.exp(-rho * dt)
    gain = kappa * dt if rho == 0.0 else -kappa * np.expm1(-rho * dt) / rho
    rec = 0
    sq = np.sqrt(dt)
    for step in range(n_steps + 1):
        if step % record_every == 0:
            rec_inventory[rec] = q
            rec_cash[rec] = x
            span = record_every * dt if step > 0 else 1.0
            for i in range(n):
                rec_rate[rec, i] = moved[i] / span
            rec_price[rec] = s
            moved[:] = 0.0
            rec += 1
        if step == n_steps:
            break
        t = step * dt
        q_sum = q.sum()
        pred_sum = 0.0
        for i in range(n):
            nu0[i] = _strategy_rate(agent_type[i], step, t, q[i], q_sum, a, b, c, grid, gx0, gdx, gdt)
            dw[i] = sigma * sq * np.random.standard_normal()
            q_pred[i] = q[i] + nu0[i] * dt + dw[i]
            pred_sum += q_pred[i]
        dw0 = sigma0 * sq * np.random.standard_normal()
        for i in range(n):
            nu1 = _strategy_rate(agent_type[i], step + 1, t + dt, q_pred[i], pred_sum, a, b, c, grid, gx0, gdx, gdt)
            nu0[i] = 0.5 * (nu0[i] + nu1)  # from here on: the step's average rate
        mean_nu = nu0.mean()
        impact_new = impact * decay + gain * mean_nu
        s_new = s + (impact_new - impact) + dw0
        impact = impact_new
        for i in range(n):
            q_new = q[i] + nu0[i] * dt + dw[i]
            penalty[i] += 0.5 * (q[i] * q[i] + q_new * q_new) * dt
            x[i] -= nu0[i] * (0.5 * (s + s_new) + k * nu0[i] + crowd_c * mean_nu) * dt
            moved[i] += nu0[i] * dt  # the trading part only: the rate the strategy ran at
            q[i] = q_new
        s = s_new
