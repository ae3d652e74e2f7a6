"""Synthetic order-message streams for tests and benchmarks.

:func:`mixed_stream` is the benchmark workload of the order book: limits placed around
the touch (one in six marketable), cancels of orders that are live when the cancel
arrives, and market orders; on request also replaces, fill-or-kill and stop orders.
Liveness is exact because the generator runs its own book while it draws.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mfg import validation as check

from . import _book_kernels as K
from .book import MESSAGE_DTYPE, MESSAGE_FIELDS


@njit(cache=True)
def _live_pick(table, resting, n_resting):
    """(index, n_resting) of a random id of ``resting`` that is live; ids found dead are
    dropped from the candidates. Index -1 when none is live."""
    while n_resting > 0:
        j = np.random.randint(n_resting)
        if K.table_find(table, resting[j]) != K.NIL:
            return j, n_resting
        n_resting -= 1
        resting[j] = resting[n_resting]
    return -1, n_resting


@njit(cache=True)
def _mixed_stream_kernel(n, n_ticks, p_limit, p_cancel, p_replace, p_fok, p_stop, max_depth, max_qty, seed, out):
    np.random.seed(seed)
    levels, blocks, meta, pool, table, trades, rejects, expired = K.new_book(n_ticks, 1024, 1024)
    resting = np.empty(n, dtype=np.int64)  # ids that rested at some point (some may be dead)
    n_resting = 0
    center = n_ticks // 2
    for i in range(n):
        if K.needs_capacity(meta, pool, table, trades, rejects, expired):
            pool, table, trades, rejects, expired = K.ensure_capacity(meta, pool, table, trades, rejects, expired)
        meta[K.N_TRADES] = 0  # trades are not kept by the generator
        meta[K.N_REJECTS] = 0
        meta[K.N_EXPIRED] = 0
        u = np.random.random()
        kind = K.MARKET
        sign = 1 if np.random.random() < 0.5 else -1
        price = 0
        qty = 1 + np.random.randint(max_qty)
        oid = i
        stop_price = 0
        # reference prices: the opposite touch for a buy, or the mid's neighbourhood
        bid_ref = meta[K.BEST_BID] if meta[K.BEST_BID] >= 0 else (
            meta[K.BEST_ASK] - 1 if meta[K.BEST_ASK] < n_ticks else center)
        ask_ref = meta[K.BEST_ASK] if meta[K.BEST_ASK] < n_ticks else (
            meta[K.BEST_BID] + 1 if meta[K.BEST_BID] >= 0 else center)
        if u < p_cancel:
            j, n_resting = _live_pick(table, resting, n_resting)
            if j >= 0:
                kind = K.CANCEL
                oid = resting[j]
                qty = 0
        elif u < p_cancel + p_limit:
            kind = K.LIMIT
            depth = np.random.randint(max_depth + 1)  # 0 = at the opposite touch: marketable
            price = ask_ref - depth if sign > 0 else bid_ref + depth
        elif u < p_cancel + p_limit + p_replace:
            j, n_resting = _live_pick(table, resting, n_resting)
            if j >= 0:
                oid = resting[j]
                slot = K.table_find(table, oid)
                if pool[slot, K.P_SIDE] >= K.SELL_STOP:
                    kind = K.CANCEL  # a pending stop: cancelled instead
                    qty = 0
                else:
                    kind = K.REPLACE
                    sign = 1 if pool[slot, K.P_SIDE] == K.BID else -1
                    depth = np.random.randint(max_depth + 1)
                    price = ask_ref - depth if sign > 0 else bid_ref + depth
        elif u < p_cancel + p_limit + p_replace + p_fok:
            kind = K.FOK
            price = ask_ref + np.random.randint(max_depth + 1) if sign > 0 else bid_ref - np.random.randint(
                max_depth + 1)
        elif u < p_cancel + p_limit + p_replace + p_fok + p_stop:
            kind = K.STOP
            last = meta[K.LAST_PRICE] if meta[K.LAST_PRICE] >= 0 else center
            stop_price = last + sign * (1 + np.random.randint(max_depth + 1))
            stop_price = min(max(stop_price, 0), n_ticks - 1)
            price = K.NO_LIMIT
            if np.random.random() < 0.5:  # a stop-limit order, up to max_depth ticks through its stop
                price = min(max(stop_price + sign * np.random.randint(max_depth + 1), 0), n_ticks - 1)
        if kind != K.MARKET and kind != K.CANCEL and kind != K.STOP:
            price = min(max(price, 0), n_ticks - 1)
        agent = oid % 1000
        if kind == K.CANCEL or kind == K.REPLACE:
            agent = pool[K.table_find(table, oid), K.P_AGENT]
        if kind == K.CANCEL:
            sign = 0
        out[0, i] = kind
        out[1, i] = sign
        out[2, i] = price
        out[3, i] = qty
        out[4, i] = oid
        out[5, i] = agent
        out[6, i] = stop_price
        K.process_message(levels, blocks, meta, pool, table, trades, rejects, expired,
                          kind, sign, price, qty, oid, agent, stop_price, 0)
        if (kind == K.LIMIT or kind == K.STOP) and K.table_find(table, oid) != K.NIL:
            resting[n_resting] = oid
            n_resting += 1


def mixed_stream(
    n_messages: int,
    n_ticks: int = 65_536,
    *,
    p_limit: float = 0.60,
    p_cancel: float = 0.25,
    p_replace: float = 0.0,
    p_fok: float = 0.0,
    p_stop: float = 0.0,
    max_depth: int = 5,
    max_qty: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """A reproducible mixed message stream (structured array of :data:`MESSAGE_DTYPE`).

    Parameters
    ----------
    n_messages : int
        Length of the stream.
    n_ticks : int
        Price grid of the book the stream is meant for.
    p_limit, p_cancel, p_replace, p_fok, p_stop : float
        Probabilities of a limit order, a cancel (of a live order or pending stop), a replace
        (of a live resting order, to a new price drawn as a limit's and a new size), a
        fill-or-kill order (priced up to ``max_depth`` ticks through the opposite touch) and
        a stop order (its stop 1 .. max_depth + 1 ticks beyond the last trade price; half of
        them stop-limit orders up to ``max_depth`` ticks through their stop); the rest are
        market orders. A cancel or replace drawn while no order rests becomes a market order,
        and a replace that draws a pending stop cancels it.
    max_depth : int
        Limit prices are ``depth`` ticks behind the opposite touch with depth uniform on
        ``0 .. max_depth``; depth 0 is marketable (probability ``1/(max_depth+1)``).
    max_qty : int
        Quantities are uniform on ``1 .. max_qty`` lots.
    seed : int
        Seed of the draws; the same arguments give the same bytes.

    Returns
    -------
    numpy.ndarray
        Structured array of :data:`MESSAGE_DTYPE`.
    """
    n_messages = check.integer("n_messages", n_messages, lo=0, hi=2**40, wrong_type=TypeError)
    n_ticks = check.integer("n_ticks", n_ticks, lo=16, hi=50_000_000, wrong_type=TypeError)
    max_depth = check.integer("max_depth", max_depth, lo=0, hi=n_ticks, wrong_type=TypeError)
    max_qty = check.integer("max_qty", max_qty, lo=1, hi=2**31, wrong_type=TypeError)
    seed = check.integer("seed", seed, lo=0, hi=2**32 - 1, wrong_type=TypeError)
    probabilities = {"p_limit": p_limit, "p_cancel": p_cancel, "p_replace": p_replace, "p_fok": p_fok,
                     "p_stop": p_stop}
    for name, p in probabilities.items():
        check.number(name, p, lo=0.0, hi=1.0)
    total = sum(probabilities.values())
    if total > 1.0:
        raise check.InvalidValue("p_limit + p_cancel + p_replace + p_fok + p_stop", total, "at most 1")
    cols = np.empty((len(MESSAGE_FIELDS), n_messages), dtype=np.int64)
    _mixed_stream_kernel(n_messages, n_ticks, *(float(p) for p in probabilities.values()), max_depth, max_qty,
                         seed, cols)
    out = np.empty(n_messages, dtype=MESSAGE_DTYPE)
    for row, name in enumerate(MESSAGE_FIELDS):
        out[name] = cols[row]
    return out
