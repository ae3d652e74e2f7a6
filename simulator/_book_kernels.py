"""Compiled limit-order-book kernels (private).

The book is a handful of plain int64 arrays so that every function here compiles with
``@njit(cache=True)`` and can be called from other kernels (the market loop) as well as
from the Python ``OrderBook`` wrapper in :mod:`simulator.book`.

State arrays
------------
levels : (4, n_ticks, 4)  side x tick x (HEAD, TAIL, VOLUME, COUNT); the sides are bids,
                          asks, sell stops and buy stops (pending stops by stop price).
blocks : (4, n_blocks)    non-empty levels in each block of BLOCK ticks, per side.
meta   : (META_SIZE,)     cursors, free-list head, counters, last trade price.
pool   : (cap, 8)         order pool, one row per order slot (QTY, TICK, SIDE, AGENT, OID,
                          NEXT, PREV, AUX); free slots chained through NEXT.
table  : (hcap, 2)        open-addressing hash map order id -> pool slot (linear probing).
trades : (tcap, 9)        trade buffer, one row per trade (a structured view is free).
rejects: (rcap, 5)        reject buffer, one row per rejected message.
expired: (ecap, 6)        one row per unfilled remainder of a market, IOC or stop-market order.

Stop orders wait in the pool like resting orders, on the two stop "sides", until the last
trade price reaches their stop price. A message's trades are then walked in order; each
trade triggers the stops it reaches (buy stops from the lowest stop price up, sell stops
from the highest down, first come first served within a price) into a FIFO queue, and once
the message itself is done the queue enters one order at a time, each appending the stops
its own trades trigger. All of it is the one message's result (same ``seq``).

The per-message functions are compiled without numba's reference counting (``@hot``):
with it, every call that passes the book's arrays pays atomic increments and decrements
(about 40 ns a message, more than the matching itself). They never allocate; growth is
done between messages by ``ensure_capacity``, which does.

Capacity is never exceeded inside a message: ``ensure_capacity`` is called before each
message and grows whatever could overflow while that message is processed. Every trade
ends the matching of its taker or removes its maker, so a message whose cascade can fire
every pending stop makes at most ``n_live + n_stops + 1`` trades and ``n_stops + 1``
expiries, one reject, and needs one free slot (a triggered stop that rests reuses its own).
"""

import numpy as np
from numba import carray, njit, types
from numba.core.extending import intrinsic

# ---- message kinds -----------------------------------------------------------------
LIMIT = 0
MARKET = 1
IOC = 2
CANCEL = 3
REDUCE = 4
POST_ONLY = 5
REPLACE = 6
FOK = 7
STOP = 8

NO_LIMIT = -1  # the price of a STOP message that is a stop-market order

# ---- reject reasons ----------------------------------------------------------------
REJ_UNKNOWN_ORDER = 1  # cancel/reduce/replace of an id that is not live
REJ_BAD_QTY = 2  # quantity <= 0
REJ_PRICE_OFF_GRID = 3  # limit price outside [0, n_ticks)
REJ_DUPLICATE_ID = 4  # new order with an id that is live
REJ_BAD_SIDE = 5  # side not +1 / -1
REJ_WOULD_CROSS = 6  # post-only order (or a replace of one) that would trade
REJ_NOT_OWNER = 7  # cancel/reduce/replace by an agent that does not own the order
REJ_BAD_KIND = 8  # unknown message kind
REJ_BAD_ID = 9  # negative order id
REJ_NOT_FILLABLE = 10  # fill-or-kill order the book cannot fill in full within its limit
REJ_STOP_OFF_GRID = 11  # stop price outside [0, n_ticks)
REJ_STOP_LIMIT_WRONG_SIDE = 12  # buy stop-limit priced below its stop, sell stop-limit above
REJ_PENDING_STOP = 13  # replace of a stop order that has not triggered

# ---- expiry reasons (unfilled remainders of market, IOC and triggered stop-market orders) ----
EXP_BOOK_EXHAUSTED = 1  # the opposite side of the book emptied
EXP_LIMIT_REACHED = 2  # no more volume at or inside the order's limit price

# ---- array layouts -----------------------------------------------------------------
HEAD = 0
TAIL = 1
VOLUME = 2
COUNT = 3
LEVEL_FIELDS = 4
BLOCK = 64  # ticks per occupancy block: a best-price rescan skips empty blocks whole

# "sides" of the level arrays: the two sides of the book, then the pending stops by
# their stop price. Bids and sell stops are scanned from the top (the highest first),
# asks and buy stops from the bottom: an even side is scanned downwards.
BID = 0
ASK = 1
SELL_STOP = 2
BUY_STOP = 3
SIDES = 4

# meta[side] is the cursor of that side: its best level (or its first stop to trigger)
BEST_BID = 0  # tick of the best bid, -1 when no bids
BEST_ASK = 1  # tick of the best ask, n_ticks when no asks
HIGH_SELL_STOP = 2  # highest sell-stop price, -1 when none
LOW_BUY_STOP = 3  # lowest buy-stop price, n_ticks when none
FREE_HEAD = 4
N_LIVE = 5  # pool slots in use: resting orders and pending stops
H_USED = 6  # hash slots that are live or tombstones
N_TRADES = 7
N_REJECTS = 8
SEQ = 9  # messages processed since the book was created
N_TICKS = 10
N_BIDS = 11  # live orders per side: N_BIDS + side (bids, asks, sell stops, buy stops)
N_ASKS = 12
N_SELL_STOPS = 13
N_BUY_STOPS = 14
N_EXPIRED = 15
LAST_PRICE = 16  # tick of the last trade, -1 before the first
TRIG_HEAD = 17  # triggered stops waiting to enter, a FIFO chained through P_NEXT
TRIG_TAIL = 18
META_SIZE = 19

P_QTY = 0
P_TICK = 1  # the price level; for a pending stop its stop price
P_SIDE = 2  # BID, ASK, SELL_STOP or BUY_STOP
P_AGENT = 3
P_OID = 4
P_NEXT = 5
P_PREV = 6
P_AUX = 7  # a resting order: 1 if post-only; a pending stop: its limit tick (NO_LIMIT: market)
POOL_FIELDS = 8  # one order is one 64-byte cache line

T_STEP = 0
T_SEQ = 1
T_PRICE = 2
T_QTY = 3
T_SIDE = 4  # aggressor side, +1 buy / -1 sell
T_TAKER_OID = 5
T_TAKER_AGENT = 6
T_MAKER_OID = 7
T_MAKER_AGENT = 8
TRADE_FIELDS = 9

R_SEQ = 0
R_OID = 1
R_AGENT = 2
R_KIND = 3
R_REASON = 4
REJECT_FIELDS = 5

# an expiry row is a reject row (R_SEQ .. R_REASON; its kind MARKET, IOC or STOP, its reason
# an EXP_ code), then:
E_QTY = 5  # lots not filled
EXPIRED_FIELDS = 6

EMPTY_KEY = -1
TOMBSTONE = -2
NIL = -1


# Per-message code: no allocation, so no reference counting (numba's ``_nrt=False``).
hot = njit(cache=True, _nrt=False)
# Inlined into the caller's IR: the message itself into the batch loop, and the entry of an
# order into the message. A call that passes the book's eight arrays costs more than a
# small message's work: inlining these two made the batch kernel 1.5x faster (each inlined
# copy is compiled again, so the rest stays behind calls: cold compile time).
inlined = njit(cache=True, _nrt=False, inline="always")


# ---- allocation and growth ---------------------------------------------------------
@njit(cache=True)
def _chain_free(pool, start, stop, tail_link):
    for i in range(start, stop - 1):
        pool[i, P_NEXT] = i + 1
    pool[stop - 1, P_NEXT] = tail_link


@njit(cache=True)
def new_book(n_ticks, order_capacity, trade_capacity):
    """Allocate an empty book: (levels, blocks, meta, pool, table, trades, rejects, expired)."""
    levels = np.zeros((SIDES, n_ticks, LEVEL_FIELDS), dtype=np.int64)
    levels[:, :, HEAD] = NIL
    levels[:, :, TAIL] = NIL
    blocks = np.zeros((SIDES, (n_ticks + BLOCK - 1) // BLOCK), dtype=np.int64)
    meta = np.zeros(META_SIZE, dtype=np.int64)
    for side in range(SIDES):
        meta[side] = -1 if (side & 1) == 0 else n_ticks
    meta[N_TICKS] = n_ticks
    meta[LAST_PRICE] = -1
    meta[TRIG_HEAD] = NIL
    meta[TRIG_TAIL] = NIL
    pool = np.zeros((order_capacity, POOL_FIELDS), dtype=np.int64)
    _chain_free(pool, 0, order_capacity, NIL)
    meta[FREE_HEAD] = 0
    hcap = 16
    while hcap < 4 * order_capacity:
        hcap *= 2
    table = np.full((hcap, 2), EMPTY_KEY, dtype=np.int64)
    trades = np.empty((trade_capacity, TRADE_FIELDS), dtype=np.int64)
    rejects = np.empty((64, REJECT_FIELDS), dtype=np.int64)
    expired = np.empty((64, EXPIRED_FIELDS), dtype=np.int64)
    return levels, blocks, meta, pool, table, trades, rejects, expired


@hot
def _hash_slot(key, mask):
    # Ids are usually handed out in sequence, so eight consecutive ids keep their order (their
    # low bits are XORed with one constant) and share two cache lines: a new order's
    # duplicate check and insert then find their line warm (the batch kernel ran 1.7x faster
    # on the benchmark stream). The blocks of eight are scattered by Fibonacci hashing of
    # the high bits, so ids that differ only there do not pile up. int64 overflow wraps;
    # the mask keeps the index non-negative.
    h = (key >> 3) * -7046029254386353131
    h ^= h >> 29
    return (key ^ h) & mask


@hot
def table_find(table, key):
    """Pool slot of live order ``key``, or -1."""
    mask = table.shape[0] - 1
    i = _hash_slot(key, mask)
    while True:
        k = table[i, 0]
        if k == key:
            return table[i, 1]
        if k == EMPTY_KEY:
            return NIL
        i = (i + 1) & mask


@hot
def _table_insert(table, meta, key, slot):
    mask = table.shape[0] - 1
    i = _hash_slot(key, mask)
    while True:
        k = table[i, 0]
        if k == EMPTY_KEY or k == TOMBSTONE:
            if k == EMPTY_KEY:
                meta[H_USED] += 1
            table[i, 0] = key
            table[i, 1] = slot
            return
        i = (i + 1) & mask


@hot
def _table_delete(table, key):
    mask = table.shape[0] - 1
    i = _hash_slot(key, mask)
    while True:
        k = table[i, 0]
        if k == key:
            table[i, 0] = TOMBSTONE
            return
        if k == EMPTY_KEY:
            return
        i = (i + 1) & mask


@njit(cache=True)
def _rehash(table, meta, pool, n_live):
    # Never shrink: tombstones from a busy thin book would otherwise force a rehash
    # every few inserts.
    hcap = table.shape[0]
    while hcap < 4 * (n_live + 1):
        hcap *= 2
    new = np.full((hcap, 2), EMPTY_KEY, dtype=np.int64)
    meta[H_USED] = 0
    for i in range(table.shape[0]):
        k = table[i, 0]
        if k >= 0:
            _table_insert(new, meta, k, table[i, 1])
    return new


@njit(cache=True)
def _grow_rows(buf, needed, used):
    """A copy of ``buf`` with at least ``needed`` (and at least twice as many) rows."""
    new = np.empty((max(2 * buf.shape[0], needed), buf.shape[1]), dtype=np.int64)
    new[:used] = buf[:used]
    return new


@hot
def needs_capacity(meta, pool, table, trades, rejects, expired):
    """True when one more message might not fit (cheap; no arrays are returned)."""
    stops = meta[N_SELL_STOPS] + meta[N_BUY_STOPS]
    return (
        meta[FREE_HEAD] == NIL
        or 2 * (meta[H_USED] + 1) > table.shape[0]
        or meta[N_TRADES] + meta[N_LIVE] + stops + 1 > trades.shape[0]
        or meta[N_REJECTS] + 1 > rejects.shape[0]
        or meta[N_EXPIRED] + stops + 1 > expired.shape[0]
    )


@njit(cache=True)
def ensure_capacity(meta, pool, table, trades, rejects, expired):
    """Grow the pool, hash table and output buffers so that one more message fits.

    Call it only when :func:`needs_capacity` says so: returning the five arrays costs
    reference-count updates that would dominate a per-message loop.
    """
    stops = meta[N_SELL_STOPS] + meta[N_BUY_STOPS]
    if meta[FREE_HEAD] == NIL:
        cap = pool.shape[0]
        pool = _grow_rows(pool, 2 * cap, cap)
        _chain_free(pool, cap, 2 * cap, NIL)
        meta[FREE_HEAD] = cap
    if 2 * (meta[H_USED] + 1) > table.shape[0]:
        table = _rehash(table, meta, pool, meta[N_LIVE])
    if meta[N_TRADES] + meta[N_LIVE] + stops + 1 > trades.shape[0]:
        trades = _grow_rows(trades, meta[N_TRADES] + meta[N_LIVE] + stops + 1, meta[N_TRADES])
    if meta[N_REJECTS] + 1 > rejects.shape[0]:
        rejects = _grow_rows(rejects, meta[N_REJECTS] + 1, meta[N_REJECTS])
    if meta[N_EXPIRED] + stops + 1 > expired.shape[0]:
        expired = _grow_rows(expired, meta[N_EXPIRED] + stops + 1, meta[N_EXPIRED])
    return pool, table, trades, rejects, expired


# ---- levels --------------------------------------------------------------------------
@hot
def _rescan_best(levels, blocks, meta, side):
    """Move the cursor of ``side`` to its first non-empty level (after a level emptied):
    downwards for bids and sell stops, upwards for asks and buy stops."""
    n_ticks = meta[N_TICKS]
    t = meta[side]
    if (side & 1) == 0:
        while t >= 0:
            if blocks[side, t // BLOCK] == 0:
                t = (t // BLOCK) * BLOCK - 1
            elif levels[side, t, COUNT] > 0:
                break
            else:
                t -= 1
        meta[side] = t
    else:
        while t < n_ticks:
            if blocks[side, t // BLOCK] == 0:
                t = (t // BLOCK + 1) * BLOCK
            elif levels[side, t, COUNT] > 0:
                break
            else:
                t += 1
        meta[side] = min(t, n_ticks)


@hot
def _level_emptied(levels, blocks, meta, side, tick):
    """Bookkeeping after the level (side, tick) lost its last order."""
    blocks[side, tick // BLOCK] -= 1
    if meta[side] == tick:
        if meta[N_BIDS + side] == 0:
            # an empty side must not scan the whole grid for a level that is not there
            meta[side] = -1 if (side & 1) == 0 else meta[N_TICKS]
        else:
            _rescan_best(levels, blocks, meta, side)


@hot
def _unlink(levels, blocks, meta, pool, table, slot):
    """Remove a live order (or pending stop) from its level, the hash map and the live set.

    The caller has already taken the order's remaining quantity off the level volume.
    """
    side = pool[slot, P_SIDE]
    tick = pool[slot, P_TICK]
    prv = pool[slot, P_PREV]
    nxt = pool[slot, P_NEXT]
    if prv == NIL:
        levels[side, tick, HEAD] = nxt
    else:
        pool[prv, P_NEXT] = nxt
    if nxt == NIL:
        levels[side, tick, TAIL] = prv
    else:
        pool[nxt, P_PREV] = prv
    levels[side, tick, COUNT] -= 1
    _table_delete(table, pool[slot, P_OID])
    pool[slot, P_QTY] = 0
    pool[slot, P_NEXT] = meta[FREE_HEAD]
    meta[FREE_HEAD] = slot
    meta[N_LIVE] -= 1
    meta[N_BIDS + side] -= 1
    if levels[side, tick, COUNT] == 0:
        _level_emptied(levels, blocks, meta, side, tick)


@hot
def _rest(levels, blocks, meta, pool, table, side, tick, qty, order_id, agent, aux):
    """Append an order at the back of the FIFO of (side, tick)."""
    slot = meta[FREE_HEAD]
    meta[FREE_HEAD] = pool[slot, P_NEXT]
    pool[slot, P_QTY] = qty
    pool[slot, P_TICK] = tick
    pool[slot, P_SIDE] = side
    pool[slot, P_AGENT] = agent
    pool[slot, P_OID] = order_id
    pool[slot, P_NEXT] = NIL
    pool[slot, P_AUX] = aux
    tail = levels[side, tick, TAIL]
    pool[slot, P_PREV] = tail
    if tail == NIL:
        levels[side, tick, HEAD] = slot
    else:
        pool[tail, P_NEXT] = slot
    levels[side, tick, TAIL] = slot
    levels[side, tick, VOLUME] += qty
    levels[side, tick, COUNT] += 1
    if levels[side, tick, COUNT] == 1:
        blocks[side, tick // BLOCK] += 1
    _table_insert(table, meta, order_id, slot)
    meta[N_LIVE] += 1
    meta[N_BIDS + side] += 1
    if (side & 1) == 0:
        if tick > meta[side]:
            meta[side] = tick
    elif tick < meta[side]:
        meta[side] = tick


# ---- matching ------------------------------------------------------------------------
@hot
def _match(levels, blocks, meta, pool, table, trades, taker_sign, limit_tick, qty, order_id, agent, step):
    """Walk the opposite side while it is at or better than ``limit_tick``; return the rest."""
    maker_side = ASK if taker_sign > 0 else BID
    while qty > 0:
        if maker_side == ASK:
            tick = meta[BEST_ASK]
            if tick >= meta[N_TICKS] or tick > limit_tick:
                break
        else:
            tick = meta[BEST_BID]
            if tick < 0 or tick < limit_tick:
                break
        slot = levels[maker_side, tick, HEAD]
        fill = min(qty, pool[slot, P_QTY])
        n = meta[N_TRADES]
        trades[n, T_STEP] = step
        trades[n, T_SEQ] = meta[SEQ]
        trades[n, T_PRICE] = tick
        trades[n, T_QTY] = fill
        trades[n, T_SIDE] = taker_sign
        trades[n, T_TAKER_OID] = order_id
        trades[n, T_TAKER_AGENT] = agent
        trades[n, T_MAKER_OID] = pool[slot, P_OID]
        trades[n, T_MAKER_AGENT] = pool[slot, P_AGENT]
        meta[N_TRADES] = n + 1
        qty -= fill
        pool[slot, P_QTY] -= fill
        levels[maker_side, tick, VOLUME] -= fill
        if pool[slot, P_QTY] == 0:
            _unlink(levels, blocks, meta, pool, table, slot)
    return qty


@hot
def _fillable(levels, blocks, meta, taker_sign, limit_tick, qty):
    """True when the opposite side holds ``qty`` lots at or better than ``limit_tick``."""
    if taker_sign > 0:
        t = meta[BEST_ASK]
        stop = min(limit_tick, meta[N_TICKS] - 1)
        while t <= stop:
            if blocks[ASK, t // BLOCK] == 0:
                t = (t // BLOCK + 1) * BLOCK
                continue
            qty -= levels[ASK, t, VOLUME]
            if qty <= 0:
                return True
            t += 1
    else:
        t = meta[BEST_BID]
        stop = max(limit_tick, 0)
        while t >= stop:
            if blocks[BID, t // BLOCK] == 0:
                t = (t // BLOCK) * BLOCK - 1
                continue
            qty -= levels[BID, t, VOLUME]
            if qty <= 0:
                return True
            t -= 1
    return False


@hot
def _crosses(meta, sign, price):
    """True when a limit order at ``price`` on side ``sign`` would trade on arrival."""
    return (sign > 0 and price >= meta[BEST_ASK]) or (sign < 0 and price <= meta[BEST_BID])


# ---- stops ---------------------------------------------------------------------------
@hot
def _trigger_level(levels, blocks, meta, pool, side, tick):
    """Move every stop of (side, tick), first come first served, to the triggered queue.

    They keep their pool slot and id until they enter (:func:`_enter_triggered`).
    """
    head = levels[side, tick, HEAD]
    count = levels[side, tick, COUNT]
    if meta[TRIG_TAIL] == NIL:
        meta[TRIG_HEAD] = head
    else:
        pool[meta[TRIG_TAIL], P_NEXT] = head
    meta[TRIG_TAIL] = levels[side, tick, TAIL]
    levels[side, tick, HEAD] = NIL
    levels[side, tick, TAIL] = NIL
    levels[side, tick, VOLUME] = 0
    levels[side, tick, COUNT] = 0
    meta[N_LIVE] -= count
    meta[N_BIDS + side] -= count
    _level_emptied(levels, blocks, meta, side, tick)


@hot
def _after_trades(levels, blocks, meta, pool, trades, first):
    """Set the last trade price from trades ``first ..`` and trigger the stops they reach.

    Each trade triggers, in order, the buy stops at or below its price (lowest first) and
    the sell stops at or above it (highest first); a price that moved up can only reach
    buy stops and one that moved down only sell stops.
    """
    last = meta[N_TRADES]
    if meta[N_SELL_STOPS] + meta[N_BUY_STOPS] == 0:
        meta[LAST_PRICE] = trades[last - 1, T_PRICE]
        return
    for r in range(first, last):
        price = trades[r, T_PRICE]
        meta[LAST_PRICE] = price
        while meta[LOW_BUY_STOP] <= price:  # n_ticks when there are none
            _trigger_level(levels, blocks, meta, pool, BUY_STOP, meta[LOW_BUY_STOP])
        while meta[HIGH_SELL_STOP] >= price:  # -1 when there are none
            _trigger_level(levels, blocks, meta, pool, SELL_STOP, meta[HIGH_SELL_STOP])


@hot
def _record(meta, counter, buf, order_id, agent, kind, reason):
    """Append (seq, order id, agent, kind, reason) to the reject or expiry buffer whose row
    count is ``meta[counter]``; return the row."""
    n = meta[counter]
    buf[n, R_SEQ] = meta[SEQ]
    buf[n, R_OID] = order_id
    buf[n, R_AGENT] = agent
    buf[n, R_KIND] = kind
    buf[n, R_REASON] = reason
    meta[counter] = n + 1
    return n


@hot
def _expire(meta, expired, order_id, agent, kind, qty, reason):
    expired[_record(meta, N_EXPIRED, expired, order_id, agent, kind, reason), E_QTY] = qty


@inlined
def _enter(levels, blocks, meta, pool, table, trades, expired, kind, sign, limit_tick, qty, order_id, agent, step,
           rests, aux):
    """Match an incoming order up to ``limit_tick``; rest the remainder there when ``rests``,
    else record it as expired."""
    first = meta[N_TRADES]
    rest = _match(levels, blocks, meta, pool, table, trades, sign, limit_tick, qty, order_id, agent, step)
    if meta[N_TRADES] != first:
        _after_trades(levels, blocks, meta, pool, trades, first)
    if rest > 0:
        if rests:
            _rest(levels, blocks, meta, pool, table, BID if sign > 0 else ASK, limit_tick, rest, order_id, agent, aux)
        else:
            exhausted = meta[BEST_ASK] >= meta[N_TICKS] if sign > 0 else meta[BEST_BID] < 0
            _expire(meta, expired, order_id, agent, kind, rest,
                    EXP_BOOK_EXHAUSTED if exhausted else EXP_LIMIT_REACHED)


@hot
def _enter_triggered(levels, blocks, meta, pool, table, trades, expired, sign, limit, qty, order_id, agent, step):
    """A triggered stop enters: a market order (``limit == NO_LIMIT``) or a limit order."""
    market = limit == NO_LIMIT
    bound = (meta[N_TICKS] if sign > 0 else -1) if market else limit
    _enter(levels, blocks, meta, pool, table, trades, expired, STOP, sign, bound, qty, order_id, agent, step,
           not market, 0)


@hot
def _drain_triggered(levels, blocks, meta, pool, table, trades, expired, step):
    """Let the triggered stops enter in the order they were triggered, including those that
    their own trades trigger (a cascade)."""
    while meta[TRIG_HEAD] != NIL:
        slot = meta[TRIG_HEAD]
        meta[TRIG_HEAD] = pool[slot, P_NEXT]
        if meta[TRIG_HEAD] == NIL:
            meta[TRIG_TAIL] = NIL
        order_id = pool[slot, P_OID]
        agent = pool[slot, P_AGENT]
        qty = pool[slot, P_QTY]
        limit = pool[slot, P_AUX]
        sign = 1 if pool[slot, P_SIDE] == BUY_STOP else -1
        # free the slot and the id first: a stop-limit that rests takes them again
        _table_delete(table, order_id)
        pool[slot, P_QTY] = 0
        pool[slot, P_NEXT] = meta[FREE_HEAD]
        meta[FREE_HEAD] = slot
        _enter_triggered(levels, blocks, meta, pool, table, trades, expired, sign, limit, qty, order_id, agent, step)


# ---- messages ------------------------------------------------------------------------
@hot
def _new_order_reason(levels, blocks, meta, table, kind, sign, price, qty, order_id, stop_price):
    """The reject reason of a new order (LIMIT, MARKET, IOC, POST_ONLY, FOK, STOP), or 0."""
    n_ticks = meta[N_TICKS]
    if order_id < 0:
        return REJ_BAD_ID
    if sign != 1 and sign != -1:
        return REJ_BAD_SIDE
    if qty <= 0:
        return REJ_BAD_QTY
    if kind == STOP and (stop_price < 0 or stop_price >= n_ticks):
        return REJ_STOP_OFF_GRID
    if kind != MARKET and not (kind == STOP and price == NO_LIMIT) and (price < 0 or price >= n_ticks):
        return REJ_PRICE_OFF_GRID
    if table_find(table, order_id) != NIL:
        return REJ_DUPLICATE_ID
    if kind == POST_ONLY and _crosses(meta, sign, price):
        return REJ_WOULD_CROSS
    if kind == STOP and price != NO_LIMIT and (price - stop_price) * sign < 0:
        return REJ_STOP_LIMIT_WRONG_SIDE
    if kind == FOK and not _fillable(levels, blocks, meta, sign, price, qty):
        return REJ_NOT_FILLABLE
    return 0


@hot
def _amend_reason(meta, pool, slot, kind, agent, price, qty):
    """The reject reason of a CANCEL, REDUCE or REPLACE of the order in ``slot``, or 0."""
    if slot == NIL:
        return REJ_UNKNOWN_ORDER
    if pool[slot, P_AGENT] != agent:
        return REJ_NOT_OWNER
    if kind == CANCEL:
        return 0
    if kind == REPLACE and pool[slot, P_SIDE] >= SELL_STOP:
        return REJ_PENDING_STOP
    if qty <= 0:
        return REJ_BAD_QTY
    if kind == REPLACE:
        if price < 0 or price >= meta[N_TICKS]:
            return REJ_PRICE_OFF_GRID
        if pool[slot, P_AUX] == 1 and _crosses(meta, 1 if pool[slot, P_SIDE] == BID else -1, price):
            return REJ_WOULD_CROSS
    return 0


@hot
def _replace(levels, blocks, meta, pool, table, trades, expired, slot, price, qty, step):
    """Amend a resting order to ``qty`` lots at ``price``: a size cut in place keeps its time
    priority; a new price or a larger size re-enters it, with its id, as a new limit order."""
    side = pool[slot, P_SIDE]
    tick = pool[slot, P_TICK]
    remaining = pool[slot, P_QTY]
    levels[side, tick, VOLUME] -= remaining
    if price == tick and qty <= remaining:
        levels[side, tick, VOLUME] += qty
        pool[slot, P_QTY] = qty
        return
    order_id = pool[slot, P_OID]
    agent = pool[slot, P_AGENT]
    post_only = pool[slot, P_AUX]
    _unlink(levels, blocks, meta, pool, table, slot)
    _enter(levels, blocks, meta, pool, table, trades, expired, REPLACE, 1 if side == BID else -1, price, qty,
           order_id, agent, step, True, post_only)


@inlined
def _apply_message(levels, blocks, meta, pool, table, trades, rejects, expired,
                   kind, sign, price, qty, order_id, agent, stop_price, step):
    """Apply one message to the book, with the stop orders it triggers; return 0 or the
    reject reason: :func:`process_message`, inlined into the batch loop."""
    if kind <= IOC or kind == POST_ONLY or kind == FOK or kind == STOP:
        reason = _new_order_reason(levels, blocks, meta, table, kind, sign, price, qty, order_id, stop_price)
        if reason == 0:
            if kind != STOP:
                if kind == MARKET:
                    price = meta[N_TICKS] if sign > 0 else -1
                _enter(levels, blocks, meta, pool, table, trades, expired, kind, sign, price, qty, order_id, agent,
                       step, kind == LIMIT or kind == POST_ONLY, 1 if kind == POST_ONLY else 0)
            elif meta[LAST_PRICE] >= 0 and (meta[LAST_PRICE] - stop_price) * sign >= 0:
                # the last trade has already reached the stop: it enters at once
                _enter_triggered(levels, blocks, meta, pool, table, trades, expired, sign, price, qty, order_id,
                                 agent, step)
            else:
                _rest(levels, blocks, meta, pool, table, BUY_STOP if sign > 0 else SELL_STOP, stop_price, qty,
                      order_id, agent, price)
    elif kind == CANCEL or kind == REDUCE or kind == REPLACE:
        slot = table_find(table, order_id) if order_id >= 0 else NIL
        reason = _amend_reason(meta, pool, slot, kind, agent, price, qty)
        if reason == 0:
            if kind == REPLACE:
                _replace(levels, blocks, meta, pool, table, trades, expired, slot, price, qty, step)
            else:
                side = pool[slot, P_SIDE]
                tick = pool[slot, P_TICK]
                remaining = pool[slot, P_QTY]
                cut = remaining if kind == CANCEL else min(qty, remaining)
                levels[side, tick, VOLUME] -= cut
                pool[slot, P_QTY] = remaining - cut
                if remaining == cut:
                    _unlink(levels, blocks, meta, pool, table, slot)
    else:
        reason = REJ_BAD_KIND
    if reason != 0:
        _record(meta, N_REJECTS, rejects, order_id, agent, kind, reason)
    elif meta[TRIG_HEAD] != NIL:
        _drain_triggered(levels, blocks, meta, pool, table, trades, expired, step)
    meta[SEQ] += 1
    return reason


@hot
def process_message(levels, blocks, meta, pool, table, trades, rejects, expired,
                    kind, sign, price, qty, order_id, agent, stop_price, step):
    """Apply one message to the book, with the stop orders it triggers; return 0 or the
    reject reason.

    Validation order (the reference book follows the same order):
    new orders (LIMIT, MARKET, IOC, POST_ONLY, FOK, STOP): bad id, bad side, bad quantity,
    stop price off grid (STOP), price off grid (not for MARKET, nor a stop-market STOP),
    duplicate live id, post-only that would cross, stop-limit on the wrong side of its stop,
    FOK that cannot fill; CANCEL, REDUCE, REPLACE: unknown id, not owner, then (REDUCE,
    REPLACE) replace of a pending stop, bad quantity, price off grid (REPLACE), replace of a
    post-only order that would cross.
    Requires ``ensure_capacity`` to have been called since the previous message.
    """
    return _apply_message(levels, blocks, meta, pool, table, trades, rejects, expired,
                          kind, sign, price, qty, order_id, agent, stop_price, step)


@hot
def process_run(levels, blocks, meta, pool, table, trades, rejects, expired,
                kind, sign, price, qty, order_id, agent, stop_price, start, step):
    """Process messages from ``start`` while capacity lasts; return the index of the next one."""
    n = kind.shape[0]
    i = start
    while i < n:
        if needs_capacity(meta, pool, table, trades, rejects, expired):
            return i
        _apply_message(
            levels, blocks, meta, pool, table, trades, rejects, expired,
            kind[i], sign[i], price[i], qty[i], order_id[i], agent[i], stop_price[i], step,
        )
        i += 1
    return n


@njit(cache=True)
def process_batch(levels, blocks, meta, pool, table, trades, rejects, expired,
                  kind, sign, price, qty, order_id, agent, stop_price, step):
    """Process message columns in order; return the (possibly regrown) pool, table and buffers."""
    i = 0
    n = kind.shape[0]
    while True:
        i = process_run(levels, blocks, meta, pool, table, trades, rejects, expired,
                        kind, sign, price, qty, order_id, agent, stop_price, i, step)
        if i == n:
            return pool, table, trades, rejects, expired
        pool, table, trades, rejects, expired = ensure_capacity(meta, pool, table, trades, rejects, expired)


@njit(cache=True)
def check_invariants(levels, blocks, meta, pool, table):
    """Return 0 when the book is consistent, else a code naming the first broken invariant.

    1 crossed book, 2 level volume != sum of its orders, 3 level or block count wrong,
    4 a cursor not at its side's first non-empty level, 5 broken FIFO links,
    6 live-order count or hash map disagrees with the levels, 7 non-positive resting qty,
    8 a pending stop the last trade price has reached (or triggered stops left waiting).
    """
    n_ticks = meta[N_TICKS]
    live = 0
    for side in range(SIDES):
        best = -1 if (side & 1) == 0 else n_ticks
        count = 0
        for t in range(n_ticks):
            vol = 0
            cnt = 0
            prev = NIL
            slot = levels[side, t, HEAD]
            while slot != NIL:
                if pool[slot, P_PREV] != prev or pool[slot, P_TICK] != t or pool[slot, P_SIDE] != side:
                    return 5
                if pool[slot, P_QTY] <= 0:
                    return 7
                if table_find(table, pool[slot, P_OID]) != slot:
                    return 6
                vol += pool[slot, P_QTY]
                cnt += 1
                prev = slot
                slot = pool[slot, P_NEXT]
                if cnt > pool.shape[0]:
                    return 5
            if levels[side, t, TAIL] != prev:
                return 5
            if vol != levels[side, t, VOLUME]:
                return 2
            if cnt != levels[side, t, COUNT]:
                return 3
            if cnt > 0:
                if (side & 1) == 0:
                    best = t
                elif best == n_ticks:
                    best = t
            count += cnt
        if best != meta[side]:
            return 4
        if count != meta[N_BIDS + side]:
            return 6
        live += count
    for side in range(SIDES):
        for b in range(blocks.shape[1]):
            nonempty = 0
            for t in range(b * BLOCK, min((b + 1) * BLOCK, n_ticks)):
                if levels[side, t, COUNT] > 0:
                    nonempty += 1
            if nonempty != blocks[side, b]:
                return 3
    if meta[BEST_BID] >= meta[BEST_ASK]:
        return 1
    if live != meta[N_LIVE]:
        return 6
    n_keys = 0
    for i in range(table.shape[0]):
        if table[i, 0] >= 0:
            n_keys += 1
    if n_keys != live:
        return 6
    last = meta[LAST_PRICE]
    if meta[TRIG_HEAD] != NIL or (last >= 0 and (meta[LOW_BUY_STOP] <= last or meta[HIGH_SELL_STOP] >= last)):
        return 8
    return 0


# ---- one message from Python: the single-message fast path --------------------------------
# Calling a compiled function costs mostly the typing and unboxing of its arguments: seven
# arrays cost about 3 µs, seven integers about 0.2 µs. So ``OrderBook`` keeps the addresses
# and shapes of its arrays in a small int64 "handles" array and passes only integers; the
# kernel rebuilds array views over the same memory (no copy, no reference counting). The
# Python object owns the arrays and refreshes the handles whenever one is reallocated.
H_LEVELS = 0
H_N_TICKS = 1
H_BLOCKS = 2
H_N_BLOCKS = 3
H_META = 4
H_POOL = 5
H_POOL_ROWS = 6
H_TABLE = 7
H_TABLE_ROWS = 8
H_TRADES = 9
H_TRADES_ROWS = 10
H_REJECTS = 11
H_REJECTS_ROWS = 12
H_EXPIRED = 13
H_EXPIRED_ROWS = 14
HANDLES_SIZE = 15

NEEDS_CAPACITY = -1


@intrinsic
def _int64_pointer(typingctx, address):
    """An int64 address as a ``CPointer(int64)``, for ``carray`` views of the book."""
    if not isinstance(address, types.Integer):
        return None
    sig = types.CPointer(types.int64)(address)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


# with NRT on (carray views cannot be built without it); the views carry no meminfo, so
# passing them on to the ``hot`` functions costs no reference counting
@njit("int64(int64, int64, int64, int64, int64, int64, int64, int64)", cache=True)
def process_one(handles_address, kind, sign, price, qty, order_id, agent, stop_price):
    """Apply one message to the book the handles describe, appending its trades, reject and
    expiries after those already in the buffers (the caller hands out views of them).

    Returns ``NEEDS_CAPACITY`` without touching the book when the message might not fit
    (the caller makes room and calls again), else the counts it appended packed as
    ``trades << 32 | expired << 1 | rejects`` (0 or 1 reject).
    """
    h = carray(_int64_pointer(handles_address), (HANDLES_SIZE,))
    levels = carray(_int64_pointer(h[H_LEVELS]), (SIDES, h[H_N_TICKS], LEVEL_FIELDS))
    blocks = carray(_int64_pointer(h[H_BLOCKS]), (SIDES, h[H_N_BLOCKS]))
    meta = carray(_int64_pointer(h[H_META]), (META_SIZE,))
    pool = carray(_int64_pointer(h[H_POOL]), (h[H_POOL_ROWS], POOL_FIELDS))
    table = carray(_int64_pointer(h[H_TABLE]), (h[H_TABLE_ROWS], 2))
    trades = carray(_int64_pointer(h[H_TRADES]), (h[H_TRADES_ROWS], TRADE_FIELDS))
    rejects = carray(_int64_pointer(h[H_REJECTS]), (h[H_REJECTS_ROWS], REJECT_FIELDS))
    expired = carray(_int64_pointer(h[H_EXPIRED]), (h[H_EXPIRED_ROWS], EXPIRED_FIELDS))
    if needs_capacity(meta, pool, table, trades, rejects, expired):
        return NEEDS_CAPACITY
    n_trades, n_rejects, n_expired = meta[N_TRADES], meta[N_REJECTS], meta[N_EXPIRED]
    process_message(levels, blocks, meta, pool, table, trades, rejects, expired,
                    kind, sign, price, qty, order_id, agent, stop_price, 0)
    return ((meta[N_TRADES] - n_trades) << 32) | ((meta[N_EXPIRED] - n_expired) << 1) | (meta[N_REJECTS] - n_rejects)
