"""Synthetic order-message streams for tests and benchmarks.

:func:`mixed_stream` is the benchmark workload of the order book: limits placed around
the touch (one in six marketable), cancels of orders that are live when the cancel
arrives, and market orders. Liveness is exact because the generator runs its own book
while it draws.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mfg import validation as check

from . import _book_kernels as K
from .book import MESSAGE_DTYPE, MESSAGE_FIELDS


@njit(cache=True)
def _mixed_stream_kernel(n, n_ticks, p_limit, p_cancel, max_depth, max_qty, seed, out):
    np.random.seed(seed)
    levels, blocks, meta, pool, table, trades, rejects = K.new_book(n_ticks, 1024, 1024)
    resting = np.empty(n, dtype=np.int64)  # ids that rested at some point (some may be dead)
    n_resting = 0
    center = n_ticks // 2
    for i in range(n):
        if K.needs_capacity(meta, pool, table, trades, rejects):
            pool, table, trades, rejects = K.ensure_capacity(meta, pool, table, trades, rejects)
        meta[K.N_TRADES] = 0  # trades are not kept by the generator
        meta[K.N_REJECTS] = 0
        u = np.random.random()
        kind = K.MARKET
        sign = 1 if np.random.random() < 0.5 else -1
        price = 0
        qty = 1 + np.random.randint(max_qty)
        oid = i
        if u < p_cancel:
            # pick a random live order; ids found dead are dropped from the candidate list
            while n_resting > 0:
                j = np.random.randint(n_resting)
                if K.table_find(table, resting[j]) != K.NIL:
                    break
                n_resting -= 1
                resting[j] = resting[n_resting]
            if n_resting > 0:
                kind = K.CANCEL
                oid = resting[j]
                price = 0
                qty = 0
        elif u < p_cancel + p_limit:
            kind = K.LIMIT
            depth = np.random.randint(max_depth + 1)  # 0 = at the opposite touch: marketable
            if sign > 0:
                ref = meta[K.BEST_ASK] if meta[K.BEST_ASK] < n_ticks else (
                    meta[K.BEST_BID] + 1 if meta[K.BEST_BID] >= 0 else center)
                price = ref - depth
            else:
                ref = meta[K.BEST_BID] if meta[K.BEST_BID] >= 0 else (
                    meta[K.BEST_ASK] - 1 if meta[K.BEST_ASK] < n_ticks else center)
                price = ref + depth
            price = min(max(price, 0), n_ticks - 1)
        agent = oid % 1000
        if kind == K.CANCEL:
            slot = K.table_find(table, oid)
            agent = pool[slot, K.P_AGENT]
            sign = 0
        out[0, i] = kind
        out[1, i] = sign
        out[2, i] = price
        out[3, i] = qty
        out[4, i] = oid
        out[5, i] = agent
        K.process_message(levels, blocks, meta, pool, table, trades, rejects, kind, sign, price, qty, oid, agent, 0)
        if kind == K.LIMIT and K.table_find(table, oid) != K.NIL:
            resting[n_resting] = oid
            n_resting += 1


def mixed_stream(
    n_messages: int,
    n_ticks: int = 65_536,
    *,
    p_limit: float = 0.60,
    p_cancel: float = 0.25,
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
    p_limit, p_cancel : float
        Probabilities of a limit order and of a cancel; the rest (``1 - p_limit - p_cancel``)
        are market orders. A cancel drawn while no order rests becomes a market order.
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
    for name, p in (("p_limit", p_limit), ("p_cancel", p_cancel)):
        check.number(name, p, lo=0.0, hi=1.0)
    if p_limit + p_cancel > 1.0:
        raise ValueError(f"p_limit + p_cancel = {p_limit + p_cancel} exceeds 1")
    cols = np.empty((len(MESSAGE_FIELDS), n_messages), dtype=np.int64)
    _mixed_stream_kernel(n_messages, n_ticks, float(p_limit), float(p_cancel), max_depth, max_qty, seed, cols)
    out = np.empty(n_messages, dtype=MESSAGE_DTYPE)
    for row, name in enumerate(MESSAGE_FIELDS):
        out[name] = cols[row]
    return out
