"""Limit order book with price-time priority: the public API over the compiled kernels.

Prices are integer ticks on the grid ``0 .. n_ticks-1``; quantities are integer lots.
Sides are signed: ``+1`` buy, ``-1`` sell. Every message carries an order id (``>= 0``)
and an agent id.

Two entry points share the same kernels:

* :func:`match_messages` / :meth:`OrderBook.process` take a whole message array and are
  the fast path (one compiled loop, no Python per message);
* the single-message methods of :class:`OrderBook` (``limit``, ``market``, ...) are for
  interactive use.

Message kinds
-------------
``LIMIT``      match up to ``price``; the remainder rests at ``price``.
``MARKET``     match at any price; the remainder expires (``price`` is ignored).
``IOC``        match up to ``price``; the remainder expires.
``FOK``        fill-or-kill: fill all ``qty`` lots at prices up to ``price``, or nothing
               happens and the order is rejected (``NOT_FILLABLE``).
``POST_ONLY``  rest at ``price``; rejected (``WOULD_CROSS``) if it would trade.
``CANCEL``     remove the live order (or pending stop) ``order_id`` (``agent`` must own it).
``REDUCE``     take ``qty`` lots off the live order ``order_id``, keeping its time
               priority; reducing by its whole remainder or more removes it.
``REPLACE``    amend the resting order ``order_id`` to ``qty`` lots (its new open size) at
               ``price``, keeping its id. A smaller size at the same price keeps its time
               priority (as ``REDUCE``); a new price or a larger size puts it at the back of
               the queue at the new price, and a price that crosses trades as a new limit
               order would. A post-only order stays post-only: a replace of it that would
               cross is rejected and leaves it as it was. Pending stops cannot be replaced
               (``PENDING_STOP``: cancel and send a new one). ``side`` is ignored.
``STOP``       a stop order with trigger ``stop_price``: a stop-market order when ``price``
               is ``NO_LIMIT`` (-1), else a stop-limit order with limit ``price`` (a buy's
               limit at or above its stop, a sell's at or below). A buy stop triggers when
               the last trade price reaches or passes ``stop_price`` from below, a sell stop
               from above; one whose stop the last trade has already reached enters at once.
               Pending stops are not in the depth; ``order`` shows them with their state.

Stop triggering is deterministic. A message's trades are walked in order; each trade
triggers the pending buy stops at or below its price (lowest stop first) or the sell stops
at or above it (highest first), first come first served within one stop price. When the
message itself is done, the triggered orders enter one at a time in the order they were
triggered; the stops that their trades trigger join the back of the queue (a cascade). All
their trades and expiries belong to the triggering message and carry its ``seq``.

Every unfilled remainder of a market, IOC or triggered stop-market order is an expiry
record (:data:`EXPIRED_DTYPE`, with an :class:`ExpiryReason`). A message that cannot be
applied leaves the book unchanged and produces a reject record with a
:class:`RejectReason`; it never raises.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mfg import validation as check

from . import _book_kernels as K


class MessageKind(enum.IntEnum):
    """Kind codes of the ``kind`` message field.

    Attributes
    ----------
    LIMIT, MARKET, IOC, CANCEL, REDUCE, POST_ONLY, REPLACE, FOK, STOP : int
        The codes, as the methods of :class:`OrderBook` of the same names use them.
    """

    LIMIT = K.LIMIT
    MARKET = K.MARKET
    IOC = K.IOC
    CANCEL = K.CANCEL
    REDUCE = K.REDUCE
    POST_ONLY = K.POST_ONLY
    REPLACE = K.REPLACE
    FOK = K.FOK
    STOP = K.STOP


class RejectReason(enum.IntEnum):
    """Reason codes of the ``reason`` reject field.

    Attributes
    ----------
    UNKNOWN_ORDER : int
        Cancel, reduce or replace of an id that is not live.
    BAD_QTY : int
        Quantity <= 0 (a new order, a reduce, or the new size of a replace).
    PRICE_OFF_GRID : int
        Price outside 0 .. n_ticks - 1.
    DUPLICATE_ID : int
        A new order with the id of a live one.
    BAD_SIDE : int
        Side not +1 or -1.
    WOULD_CROSS : int
        A post-only order (or a replace of one) that would trade on arrival.
    NOT_OWNER : int
        Cancel, reduce or replace by an agent that does not own the order.
    BAD_KIND : int
        Unknown message kind.
    BAD_ID : int
        A negative order id.
    NOT_FILLABLE : int
        A fill-or-kill order the book cannot fill in full at prices up to its limit.
    STOP_OFF_GRID : int
        A stop price outside 0 .. n_ticks - 1.
    STOP_LIMIT_WRONG_SIDE : int
        A buy stop-limit priced below its stop price, or a sell stop-limit above it.
    PENDING_STOP : int
        A replace of a stop order that has not triggered (cancel it and send a new one).
    """

    UNKNOWN_ORDER = K.REJ_UNKNOWN_ORDER
    BAD_QTY = K.REJ_BAD_QTY
    PRICE_OFF_GRID = K.REJ_PRICE_OFF_GRID
    DUPLICATE_ID = K.REJ_DUPLICATE_ID
    BAD_SIDE = K.REJ_BAD_SIDE
    WOULD_CROSS = K.REJ_WOULD_CROSS
    NOT_OWNER = K.REJ_NOT_OWNER
    BAD_KIND = K.REJ_BAD_KIND
    BAD_ID = K.REJ_BAD_ID
    NOT_FILLABLE = K.REJ_NOT_FILLABLE
    STOP_OFF_GRID = K.REJ_STOP_OFF_GRID
    STOP_LIMIT_WRONG_SIDE = K.REJ_STOP_LIMIT_WRONG_SIDE
    PENDING_STOP = K.REJ_PENDING_STOP


class ExpiryReason(enum.IntEnum):
    """Reason codes of the ``reason`` field of expiry records.

    Attributes
    ----------
    BOOK_EXHAUSTED : int
        The opposite side of the book emptied before the order was filled.
    LIMIT_REACHED : int
        No volume was left at or inside the order's limit price.
    """

    BOOK_EXHAUSTED = K.EXP_BOOK_EXHAUSTED
    LIMIT_REACHED = K.EXP_LIMIT_REACHED


NO_LIMIT = K.NO_LIMIT
"""The ``price`` of a ``STOP`` message that is a stop-market order."""


MESSAGE_FIELDS = ("kind", "side", "price", "qty", "order_id", "agent", "stop_price")
MESSAGE_DTYPE = np.dtype([(f, np.int64) for f in MESSAGE_FIELDS])
"""Structured dtype of a message array (all fields int64; ``price`` and ``stop_price`` in
ticks). ``stop_price`` is read by ``STOP`` messages only and may be left out of an input
array or mapping (it is then 0)."""
OPTIONAL_FIELDS = ("stop_price",)

TRADE_FIELDS = (
    "step", "seq", "price", "qty", "side",
    "taker_order", "taker_agent", "maker_order", "maker_agent",
)
TRADE_DTYPE = np.dtype([(f, np.int64) for f in TRADE_FIELDS])
"""Structured dtype of trades: ``seq`` is the message's sequence number in the book,
``price`` the maker's tick, ``side`` the aggressor's side (+1 buy, -1 sell)."""

REJECT_FIELDS = ("seq", "order_id", "agent", "kind", "reason")
REJECT_DTYPE = np.dtype([(f, np.int64) for f in REJECT_FIELDS])
"""Structured dtype of rejects (``reason`` a :class:`RejectReason`)."""

EXPIRED_FIELDS = ("seq", "order_id", "agent", "kind", "reason", "qty")
EXPIRED_DTYPE = np.dtype([(f, np.int64) for f in EXPIRED_FIELDS])
"""Structured dtype of expiries: the unfilled remainder ``qty`` (lots) of a market, IOC or
triggered stop-market order (``kind``), with an :class:`ExpiryReason` (the first five
fields are those of a reject)."""

MAX_TICKS = 50_000_000

_INVARIANTS = {
    1: "book crossed (best bid >= best ask)",
    2: "a level's volume differs from the sum of its orders",
    3: "a level's order count is wrong",
    4: "a best-price cursor is not at the best non-empty level",
    5: "broken FIFO links in a level",
    6: "live-order count or id map disagrees with the levels",
    7: "a resting order has non-positive quantity",
    8: "a pending stop has been reached by the last trade price",
}


def make_messages(n: int = 0, **columns) -> np.ndarray:
    """Build a message array from columns (missing columns are zero).

    >>> m = make_messages(kind=[0, 1], side=[1, -1], price=[100, 0], qty=[5, 2],
    ...                   order_id=[1, 2], agent=[7, 8])

    Parameters
    ----------
    n : int
        Number of messages when no column is given.
    **columns : array_like of int
        Equal-length columns named from :data:`MESSAGE_FIELDS` (prices in ticks, quantities in lots).

    Returns
    -------
    numpy.ndarray
        Structured array of :data:`MESSAGE_DTYPE`.
    """
    unknown = set(columns) - set(MESSAGE_FIELDS)
    if unknown:
        raise ValueError(f"unknown message field(s) {sorted(unknown)}; allowed: {MESSAGE_FIELDS}")
    if columns:
        n = len(next(iter(columns.values())))
    out = np.zeros(n, dtype=MESSAGE_DTYPE)
    for name, values in columns.items():
        out[name] = _as_int_column(name, values, n)
    return out


def _as_int_column(name: str, values, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"message field {name!r} has shape {arr.shape}; expected ({n},)")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"message field {name!r} must hold integers (ticks/lots/ids); got non-integer floats")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"message field {name!r} must be integer, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _columns(messages) -> tuple[np.ndarray, ...]:
    """The int64 message columns in kernel order, from a structured array or a mapping.

    An array of :data:`MESSAGE_DTYPE` is not copied: its fields go to the kernel as strided
    views (a message's fields then share a cache line; the copy cost as much as a sixth of
    the matching). Anything else is checked and converted into an array of that dtype first.
    """
    if isinstance(messages, np.ndarray) and messages.dtype.names is not None:
        names = messages.dtype.names
        n = messages.shape[0]
    elif isinstance(messages, Mapping):
        names = tuple(messages)
        n = len(messages["kind"]) if "kind" in messages else 0
    else:
        raise TypeError("messages must be a structured array with MESSAGE_DTYPE fields or a mapping of columns")
    missing = [f for f in MESSAGE_FIELDS if f not in names and f not in OPTIONAL_FIELDS]
    if missing:
        raise ValueError(f"messages lack field(s) {missing}; expected {MESSAGE_FIELDS} "
                         f"({', '.join(OPTIONAL_FIELDS)} optional)")
    if not (isinstance(messages, np.ndarray) and messages.dtype == MESSAGE_DTYPE and messages.ndim == 1):
        converted = np.zeros(n, dtype=MESSAGE_DTYPE)
        for f in MESSAGE_FIELDS:
            if f in names:
                converted[f] = _as_int_column(f, messages[f], n)
        messages = converted
    return tuple(messages[f] for f in MESSAGE_FIELDS)


class BatchResult(NamedTuple):
    """Trades, rejects and expiries produced by one call (structured arrays, in book order).

    A named tuple rather than a dataclass: the single-message methods build one per message,
    and this is the cheapest immutable record Python has.

    Attributes
    ----------
    trades : numpy.ndarray
        Structured array of :data:`TRADE_DTYPE` (prices in ticks, quantities in lots).
    rejects : numpy.ndarray
        Structured array of :data:`REJECT_DTYPE` (``reason`` a :class:`RejectReason`).
    expired : numpy.ndarray
        Structured array of :data:`EXPIRED_DTYPE`: the unfilled remainders of market, IOC
        and triggered stop-market orders (``reason`` an :class:`ExpiryReason`).
    """

    trades: np.ndarray
    rejects: np.ndarray
    expired: np.ndarray

    @property
    def traded_qty(self) -> int:
        """Total lots traded."""
        return int(self.trades["qty"].sum())


_NOTHING = BatchResult(np.empty(0, dtype=TRADE_DTYPE), np.empty(0, dtype=REJECT_DTYPE),
                       np.empty(0, dtype=EXPIRED_DTYPE))
for _empty in _NOTHING:
    _empty.flags.writeable = False


@dataclass(frozen=True)
class OrderInfo:
    """A live order: resting in the book, or a stop order waiting for its trigger.

    Attributes
    ----------
    order_id : int
    agent : int
        The owner.
    side : int
        +1 (bid, buy stop) or -1 (ask, sell stop).
    price : int or None
        Ticks: the resting price, or a stop-limit's limit; None for a stop-market order.
    qty : int
        Lots remaining.
    queue_position : int
        0 for the first order in its level's FIFO (for a stop, among the stops at its stop
        price).
    state : str
        ``"resting"`` or ``"pending_stop"``.
    stop_price : int or None
        A pending stop's trigger price in ticks; None for a resting order.
    post_only : bool
        A resting post-only order (a replace that would cross is rejected).
    """

    order_id: int
    agent: int
    side: int
    price: int | None
    qty: int
    queue_position: int  # 0 = first in its level's FIFO
    state: str = "resting"
    stop_price: int | None = None
    post_only: bool = False


@dataclass(frozen=True)
class DepthSnapshot:
    """Top ``k`` non-empty levels per side, best first.

    Attributes
    ----------
    bid_prices, ask_prices : numpy.ndarray of int64
        Ticks.
    bid_volumes, ask_volumes : numpy.ndarray of int64
        Lots resting at those prices.
    """

    bid_prices: np.ndarray
    bid_volumes: np.ndarray
    ask_prices: np.ndarray
    ask_volumes: np.ndarray


def _entry_point(dispatcher):
    """The compiled function behind a dispatcher with one explicit signature: calling it
    skips the dispatcher's typing of each argument (about 70 ns of a 200 ns call here).
    The callers check the argument types themselves; the dispatcher is the fallback."""
    try:
        return dispatcher.overloads[dispatcher.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):  # another numba: keep the safe path
        return dispatcher


_PROCESS_ONE = _entry_point(K.process_one)

# A single-message method: exact int checks (a float would be truncated by the compiled
# call), one compiled call, the shared empty result for the messages that do nothing. It is
# generated per message kind, as namedtuple generates its methods, because a second Python
# call per message costs as much as the matching.
_METHOD = """
def {name}(self, {params}):{prologue}
    if {checks}:
        return self._one({kind}, {side}, {price}, {qty}, order_id, agent, {stop_price})
    try:
        out = _process(self._handles_address, {kind}, {side}, {price}, {qty}, order_id, agent, {stop_price})
    except OverflowError:  # an int beyond int64: the general path names it
        return self._one({kind}, {side}, {price}, {qty}, order_id, agent, {stop_price})
    if out == 0:
        return _nothing
    if out < 0:
        return self._collect(out, {kind}, {side}, {price}, {qty}, order_id, agent, {stop_price})
{results}"""

# what a message produced: views of the rows it appended
# (``out`` = trades << 32 | expired << 1 | rejects)
_RESULTS = """
    self._handed_out = True
    trades, rejects, expired = _nothing
    if out >> 32:
        start = self._trades_end
        self._trades_end = end = start + (out >> 32)
        trades = self._trade_records[start:end]
    if out & 1:
        start = self._rejects_end
        self._rejects_end = start + 1
        rejects = self._reject_records[start:start + 1]
    if out & 0xFFFFFFFE:
        start = self._expired_end
        self._expired_end = end = start + ((out & 0xFFFFFFFF) >> 1)
        expired = self._expired_records[start:end]
    return _new(_Result, (trades, rejects, expired))
"""


def _compile(source: str, name: str):
    namespace = {"_process": _PROCESS_ONE, "_nothing": _NOTHING, "_new": tuple.__new__, "_Result": BatchResult}
    exec(source, namespace)  # noqa: S102 - a fixed template, as collections.namedtuple does
    return namespace[name]


_results = _compile("def _results(self, out):" + _RESULTS, "_results")


_PARAMETER_DOCS = {
    "order_id": "order_id : int\n    The order's id (>= 0; unique among live orders for a new order).",
    "agent": "agent : int\n    The sending agent's id; a cancel or reduce must come from the owner.",
    "side": "side : int\n    +1 buy (bid), -1 sell (ask).",
    "price": "price : int\n    Limit price in ticks, 0 .. n_ticks - 1.",
    "qty": "qty : int\n    Lots, > 0.",
    "stop_price": "stop_price : int\n    Trigger price in ticks, 0 .. n_ticks - 1.",
}

_STOP_PRICE_DOC = ("price : int or None\n    The limit in ticks of a stop-limit order (a buy's at or above "
                   "``stop_price``, a sell's at or below); None for a stop-market order.")


def _message_method(name: str, kind: int, params: tuple[str, ...], doc: str):
    fields = {field: (field if field in params else "0") for field in ("side", "price", "qty", "stop_price")}
    stop = kind == K.STOP  # the limit price is optional: None is a stop-market order
    source = _METHOD.format(name=name, params=", ".join(params) + ("=None" if stop else ""), kind=int(kind),
                            results=_RESULTS, checks=" or ".join(f"type({p}) is not int" for p in params),
                            prologue=f"\n    if price is None:\n        price = {K.NO_LIMIT}" if stop else "",
                            **fields)
    method = _compile(source, name)
    docs = [_STOP_PRICE_DOC if stop and p == "price" else _PARAMETER_DOCS[p] for p in params]
    method.__doc__ = (f"{doc}\n\nParameters\n----------\n" + "\n".join(docs)
                      + "\n\nReturns\n-------\nBatchResult\n    The message's trades, reject and expiries (a "
                      "reject is not an exception), including those of the stops it triggers.")
    method.__qualname__ = f"OrderBook.{name}"
    method.__annotations__ = {**{p: int for p in params}, "return": BatchResult}
    if stop:
        method.__annotations__["price"] = int | None
    return method


class OrderBook:
    """A price-time-priority limit order book on ``n_ticks`` integer price levels.

    Parameters
    ----------
    n_ticks : number of price levels; valid prices are ``0 .. n_ticks-1``.
    order_capacity : initial size of the order pool (it grows when full).
    trade_capacity : initial size of the trade buffer (it grows when needed).
    """

    # slots: the single-message methods read a few attributes per message
    __slots__ = ("n_ticks", "_levels", "_blocks", "_meta", "_pool", "_table", "_trades", "_rejects", "_expired",
                 "_handles", "_handles_address", "_trade_records", "_reject_records", "_expired_records",
                 "_trades_end", "_rejects_end", "_expired_end", "_handed_out")

    def __init__(self, n_ticks: int, order_capacity: int = 1024, trade_capacity: int = 1024):
        n_ticks = check.integer("n_ticks", n_ticks, lo=2, hi=MAX_TICKS, wrong_type=TypeError)
        order_capacity = check.integer("order_capacity", order_capacity, lo=1, hi=2**40, wrong_type=TypeError)
        trade_capacity = check.integer("trade_capacity", trade_capacity, lo=1, hi=2**40, wrong_type=TypeError)
        self.n_ticks = n_ticks
        (self._levels, self._blocks, self._meta, self._pool, self._table,
         self._trades, self._rejects, self._expired) = K.new_book(n_ticks, order_capacity, trade_capacity)
        # addresses and shapes of the arrays, for the single-message kernel (see
        # simulator._book_kernels.process_one); refreshed whenever an array is reallocated
        self._handles = np.zeros(K.HANDLES_SIZE, dtype=np.int64)
        self._handles_address = int(self._handles.ctypes.data)
        self._refresh_handles()
        # single messages append to the output buffers and return views of their rows,
        # which are never overwritten: a full buffer is replaced, not reused
        self._trades_end = self._rejects_end = self._expired_end = 0
        self._handed_out = False

    def _fresh_output_buffers(self) -> None:
        """New trade and reject buffers (the old ones live on in the views handed out)."""
        meta = self._meta
        self._trades = np.empty((max(self._trades.shape[0], 2 * (int(meta[K.N_LIVE]) + 1)), K.TRADE_FIELDS),
                                dtype=np.int64)
        self._rejects = np.empty((self._rejects.shape[0], K.REJECT_FIELDS), dtype=np.int64)
        self._expired = np.empty((self._expired.shape[0], K.EXPIRED_FIELDS), dtype=np.int64)
        meta[K.N_TRADES] = meta[K.N_REJECTS] = meta[K.N_EXPIRED] = 0
        self._trades_end = self._rejects_end = self._expired_end = 0
        self._handed_out = False
        self._refresh_handles()

    def _refresh_handles(self) -> None:
        h = self._handles
        for slot, rows, array in ((K.H_LEVELS, K.H_N_TICKS, self._levels), (K.H_BLOCKS, K.H_N_BLOCKS, self._blocks),
                                  (K.H_META, None, self._meta), (K.H_POOL, K.H_POOL_ROWS, self._pool),
                                  (K.H_TABLE, K.H_TABLE_ROWS, self._table),
                                  (K.H_TRADES, K.H_TRADES_ROWS, self._trades),
                                  (K.H_REJECTS, K.H_REJECTS_ROWS, self._rejects),
                                  (K.H_EXPIRED, K.H_EXPIRED_ROWS, self._expired)):
            assert array.flags.c_contiguous and array.dtype == np.int64
            h[slot] = array.ctypes.data
            if rows is not None:
                h[rows] = array.shape[1] if array is self._levels or array is self._blocks else array.shape[0]
        self._trade_records = self._trades.view(TRADE_DTYPE).reshape(-1)
        self._reject_records = self._rejects.view(REJECT_DTYPE).reshape(-1)
        self._expired_records = self._expired.view(EXPIRED_DTYPE).reshape(-1)

    # ---- batch path -------------------------------------------------------------------
    def process(self, messages, step: int = 0) -> BatchResult:
        """Apply a message array in order.

        Parameters
        ----------
        messages : numpy.ndarray or mapping
            A structured array with :data:`MESSAGE_DTYPE` fields or a mapping of equal-length
            integer columns (prices in ticks, quantities in lots).
        step : int
            Written into every trade record.

        Returns
        -------
        BatchResult
            The trades, rejects and expiries, in book order: views of buffers that later
            messages do not write to.
        """
        cols = _columns(messages)
        return self._run(cols, int(step))

    def _run(self, cols, step: int) -> BatchResult:
        meta = self._meta
        if self._handed_out:  # the results handed out are views of the buffers: keep them
            self._fresh_output_buffers()
        meta[K.N_TRADES] = meta[K.N_REJECTS] = meta[K.N_EXPIRED] = 0
        self._pool, self._table, self._trades, self._rejects, self._expired = K.process_batch(
            self._levels, self._blocks, meta, self._pool, self._table, self._trades, self._rejects, self._expired,
            *cols, step,
        )
        self._refresh_handles()
        counts = int(meta[K.N_TRADES]), int(meta[K.N_REJECTS]), int(meta[K.N_EXPIRED])
        self._trades_end, self._rejects_end, self._expired_end = counts
        if not any(counts):
            return _NOTHING
        # views of the buffers, not copies (a copy of a large batch's trades cost as much as
        # matching them): the next batch writes into fresh buffers, as after single messages
        self._handed_out = True
        return BatchResult(self._trade_records[:counts[0]], self._reject_records[:counts[1]],
                           self._expired_records[:counts[2]])

    # ---- single messages --------------------------------------------------------------
    def _one(self, kind, side, price, qty, order_id, agent, stop_price) -> BatchResult:
        """The general path of the single-message methods: conversions, errors, growth."""
        side, price, qty, order_id, agent, stop_price = _message_ints(side, price, qty, order_id, agent, stop_price)
        return self._collect(_PROCESS_ONE(self._handles_address, kind, side, price, qty, order_id, agent, stop_price),
                             kind, side, price, qty, order_id, agent, stop_price)

    def _collect(self, out, kind, side, price, qty, order_id, agent, stop_price) -> BatchResult:
        """The result of a message the kernel took, growing the book first if it asked to."""
        while out == K.NEEDS_CAPACITY:
            self._fresh_output_buffers()  # the usual cause: the trade buffer is full
            self._pool, self._table, self._trades, self._rejects, self._expired = K.ensure_capacity(
                self._meta, self._pool, self._table, self._trades, self._rejects, self._expired)
            self._refresh_handles()
            out = _PROCESS_ONE(self._handles_address, kind, side, price, qty, order_id, agent, stop_price)
        return _NOTHING if out == 0 else _results(self, out)

    limit = _message_method("limit", K.LIMIT, ("order_id", "agent", "side", "price", "qty"),
                            "Limit order: trade up to ``price`` ticks, rest the remainder.")
    post_only = _message_method("post_only", K.POST_ONLY, ("order_id", "agent", "side", "price", "qty"),
                                "Passive limit order, rejected if it would trade on arrival.")
    ioc = _message_method("ioc", K.IOC, ("order_id", "agent", "side", "price", "qty"),
                          "Immediate-or-cancel limit order: trade up to ``price`` ticks; the rest expires.")
    fok = _message_method("fok", K.FOK, ("order_id", "agent", "side", "price", "qty"),
                          "Fill-or-kill order: all ``qty`` lots at prices up to ``price`` ticks, or nothing "
                          "(a ``NOT_FILLABLE`` reject).")
    market = _message_method("market", K.MARKET, ("order_id", "agent", "side", "qty"),
                             "Market order: trade ``qty`` lots at any price; what the book lacks expires.")
    stop = _message_method("stop", K.STOP, ("order_id", "agent", "side", "stop_price", "qty", "price"),
                           "Stop order: enters as a market order (``price`` None) or a limit order at ``price`` "
                           "once the last trade price reaches ``stop_price`` (from below for a buy, from above "
                           "for a sell); at once if it already has.")
    replace = _message_method("replace", K.REPLACE, ("order_id", "agent", "price", "qty"),
                              "Amend resting order ``order_id`` to ``qty`` lots at ``price`` ticks, keeping its "
                              "id. A smaller size at the same price keeps its time priority; a new price or a "
                              "larger size goes to the back of the queue, and trades if it crosses.")
    cancel = _message_method("cancel", K.CANCEL, ("order_id", "agent"),
                             "Cancel live order ``order_id`` owned by ``agent``.")
    reduce = _message_method("reduce", K.REDUCE, ("order_id", "agent", "qty"),
                             "Take ``qty`` lots off live order ``order_id``, keeping its time priority.")

    # ---- queries ----------------------------------------------------------------------
    @property
    def best_bid(self) -> int | None:
        """Best bid in ticks, or None when there are no bids."""
        t = int(self._meta[K.BEST_BID])
        return None if t < 0 else t

    @property
    def best_ask(self) -> int | None:
        """Best ask in ticks, or None when there are no asks."""
        t = int(self._meta[K.BEST_ASK])
        return None if t >= self.n_ticks else t

    @property
    def mid(self) -> float | None:
        """Mid price in ticks, or None when either side is empty."""
        b, a = self.best_bid, self.best_ask
        return None if b is None or a is None else 0.5 * (a + b)

    @property
    def spread(self) -> int | None:
        """Best ask minus best bid in ticks, or None when either side is empty."""
        b, a = self.best_bid, self.best_ask
        return None if b is None or a is None else a - b

    @property
    def n_orders(self) -> int:
        """Number of live resting orders (pending stops not included)."""
        return int(self._meta[K.N_BIDS] + self._meta[K.N_ASKS])

    @property
    def messages_processed(self) -> int:
        """Messages seen since creation (rejects included); the next message's ``seq``."""
        return int(self._meta[K.SEQ])

    def volume_at(self, side: int, price: int) -> int:
        """Resting lots at one price level.

        Parameters
        ----------
        side : int
            +1 bids, -1 asks.
        price : int
            Ticks, 0 .. n_ticks - 1.

        Returns
        -------
        int
            Lots.
        """
        check.integer("price", price, lo=0, hi=self.n_ticks - 1, wrong_type=TypeError)
        return int(self._levels[_side_index(side), price, K.VOLUME])

    @property
    def last_price(self) -> int | None:
        """Tick of the last trade (what stop orders trigger on), or None before the first."""
        t = int(self._meta[K.LAST_PRICE])
        return None if t < 0 else t

    @property
    def n_stops(self) -> int:
        """Number of pending (not yet triggered) stop orders."""
        return int(self._meta[K.N_SELL_STOPS] + self._meta[K.N_BUY_STOPS])

    def depth(self, k: int = 5) -> DepthSnapshot:
        """The top ``k`` non-empty levels of each side, best first.

        Parameters
        ----------
        k : int
            Levels per side, 1 .. n_ticks.

        Returns
        -------
        DepthSnapshot
        """
        k = check.integer("k", k, lo=1, hi=self.n_ticks, wrong_type=TypeError)
        bid_ticks = np.flatnonzero(self._levels[K.BID, :, K.COUNT])[::-1][:k]
        ask_ticks = np.flatnonzero(self._levels[K.ASK, :, K.COUNT])[:k]
        return DepthSnapshot(
            bid_ticks.astype(np.int64), self._levels[K.BID, bid_ticks, K.VOLUME].copy(),
            ask_ticks.astype(np.int64), self._levels[K.ASK, ask_ticks, K.VOLUME].copy(),
        )

    def level_orders(self, side: int, price: int) -> list[OrderInfo]:
        """Live orders at one level, in time priority.

        Parameters
        ----------
        side : int
            +1 bids, -1 asks.
        price : int
            Ticks, 0 .. n_ticks - 1.

        Returns
        -------
        list of OrderInfo
        """
        s = _side_index(side)
        check.integer("price", price, lo=0, hi=self.n_ticks - 1, wrong_type=TypeError)
        out = []
        slot = int(self._levels[s, price, K.HEAD])
        while slot != K.NIL:
            out.append(self._info(slot, len(out)))
            slot = int(self._pool[slot, K.P_NEXT])
        return out

    def order(self, order_id: int) -> OrderInfo | None:
        """The live order (resting, or a pending stop) with this id.

        Parameters
        ----------
        order_id : int

        Returns
        -------
        OrderInfo or None
            None when no live order has the id.
        """
        if order_id < 0:
            return None
        slot = int(K.table_find(self._table, np.int64(order_id)))
        if slot == K.NIL:
            return None
        position = 0
        prev = int(self._pool[slot, K.P_PREV])
        while prev != K.NIL:
            position += 1
            prev = int(self._pool[prev, K.P_PREV])
        return self._info(slot, position)

    def _info(self, slot: int, position: int) -> OrderInfo:
        p = self._pool[slot]
        side = int(p[K.P_SIDE])
        common = dict(order_id=int(p[K.P_OID]), agent=int(p[K.P_AGENT]),
                      side=1 if side in (K.BID, K.BUY_STOP) else -1, qty=int(p[K.P_QTY]), queue_position=position)
        if side in (K.BID, K.ASK):
            return OrderInfo(price=int(p[K.P_TICK]), post_only=bool(p[K.P_AUX]), **common)
        limit = int(p[K.P_AUX])
        return OrderInfo(price=None if limit == K.NO_LIMIT else limit, state="pending_stop",
                         stop_price=int(p[K.P_TICK]), **common)

    def check_invariants(self) -> None:
        """Check every book invariant (O(n_ticks + orders)).

        Returns
        -------
        None

        Raises
        ------
        AssertionError
            Naming the first broken invariant.
        """
        code = int(K.check_invariants(self._levels, self._blocks, self._meta, self._pool, self._table))
        if code:
            raise AssertionError(f"order book invariant broken: {_INVARIANTS[code]}")

    def __repr__(self) -> str:
        return (f"OrderBook(n_ticks={self.n_ticks}, best_bid={self.best_bid}, "
                f"best_ask={self.best_ask}, orders={self.n_orders})")


def match_messages(messages, n_ticks: int, step: int = 0) -> tuple[BatchResult, OrderBook]:
    """Run messages through a fresh book.

    Parameters
    ----------
    messages : numpy.ndarray or mapping
        As in :meth:`OrderBook.process`.
    n_ticks : int
        Price levels of the book.
    step : int
        Written into every trade record.

    Returns
    -------
    (result, book) : tuple of (BatchResult, OrderBook)
    """
    cols = _columns(messages)
    n = len(cols[0])
    # one trade row per message is virtual memory until written, and saves regrowing (a copy)
    book = OrderBook(n_ticks, order_capacity=max(1024, n // 8), trade_capacity=max(1024, n))
    return book._run(cols, int(step)), book


def _message_ints(side, price, qty, order_id, agent, stop_price) -> tuple[int, ...]:
    """The message fields as Python ints; floats, strings and bools are refused (TypeError), not truncated."""
    return tuple(check.integer(name, value, lo=-(2**63), hi=2**63 - 1, wrong_type=TypeError)
                 for name, value in (("side", side), ("price", price), ("qty", qty), ("order_id", order_id),
                                     ("agent", agent), ("stop_price", stop_price)))


def _side_index(side: int) -> int:
    if side == 1:
        return K.BID
    if side == -1:
        return K.ASK
    raise check.InvalidValue("side", side, "must be +1 (bid) or -1 (ask)")


def compiled_call_floor(n: int = 200_000) -> float:
    """Seconds per call of the compiled single-message entry point, called from Python.

    The message does no matching (a cancel of an unknown id): the floor under any
    single-message API over this kernel (``benchmarks/book_throughput.py``).

    Parameters
    ----------
    n : int
        Calls to time.

    Returns
    -------
    float
        Seconds per call.
    """
    book = OrderBook(1024)
    calls = [(K.process_one, (book._handles_address, K.CANCEL, 0, 0, 0, 10**12, 0, 0))] * n
    t0 = time.perf_counter()
    for method, args in calls:
        method(*args)
    return (time.perf_counter() - t0) / n
