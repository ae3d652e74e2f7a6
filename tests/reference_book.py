"""Pure-Python reference order book: the oracle for the compiled book.

Written for clarity, not speed: each side is a ``SortedDict`` from price to a FIFO
``deque`` of order ids, and a dict holds the live orders. It follows the message
semantics and validation order documented in :mod:`simulator.book` and
:func:`simulator._book_kernels.process_message`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sortedcontainers import SortedDict

from simulator.book import MessageKind as MK
from simulator.book import RejectReason as RR


@dataclass
class RefOrder:
    order_id: int
    agent: int
    side: int  # +1 bid, -1 ask
    price: int
    qty: int


class ReferenceBook:
    def __init__(self, n_ticks: int):
        self.n_ticks = n_ticks
        self.bids: SortedDict[int, deque[int]] = SortedDict()
        self.asks: SortedDict[int, deque[int]] = SortedDict()
        self.orders: dict[int, RefOrder] = {}
        self.seq = 0
        self.trades: list[tuple] = []  # (step, seq, price, qty, side, taker, taker_agent, maker, maker_agent)
        self.rejects: list[tuple] = []  # (seq, order_id, agent, kind, reason)

    # ---- queries ----
    def best_bid(self):
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self):
        return self.asks.peekitem(0)[0] if self.asks else None

    def levels(self, side: int) -> dict[int, list[tuple[int, int, int]]]:
        """price -> [(order_id, agent, qty), ...] in time priority."""
        book = self.bids if side == 1 else self.asks
        return {p: [(o, self.orders[o].agent, self.orders[o].qty) for o in q] for p, q in book.items()}

    # ---- messages ----
    def process(self, kind, side, price, qty, order_id, agent, step=0):
        reason = self._apply(kind, side, price, qty, order_id, agent, step)
        if reason:
            self.rejects.append((self.seq, order_id, agent, kind, int(reason)))
        self.seq += 1
        return reason

    def _apply(self, kind, side, price, qty, order_id, agent, step):
        if kind in (MK.LIMIT, MK.MARKET, MK.IOC, MK.POST_ONLY):
            if order_id < 0:
                return RR.BAD_ID
            if side not in (1, -1):
                return RR.BAD_SIDE
            if qty <= 0:
                return RR.BAD_QTY
            if kind != MK.MARKET and not 0 <= price < self.n_ticks:
                return RR.PRICE_OFF_GRID
            if order_id in self.orders:
                return RR.DUPLICATE_ID
            if kind == MK.POST_ONLY and self._crosses(side, price):
                return RR.WOULD_CROSS
            limit = None if kind == MK.MARKET else price
            rest = self._match(side, limit, qty, order_id, agent, step)
            if rest > 0 and kind in (MK.LIMIT, MK.POST_ONLY):
                self.orders[order_id] = RefOrder(order_id, agent, side, price, rest)
                book = self.bids if side == 1 else self.asks
                book.setdefault(price, deque()).append(order_id)
            return 0
        if kind in (MK.CANCEL, MK.REDUCE):
            order = self.orders.get(order_id)
            if order is None:
                return RR.UNKNOWN_ORDER
            if order.agent != agent:
                return RR.NOT_OWNER
            if kind == MK.REDUCE and qty <= 0:
                return RR.BAD_QTY
            if kind == MK.CANCEL or qty >= order.qty:
                self._remove(order)
            else:
                order.qty -= qty
            return 0
        return RR.BAD_KIND

    def _crosses(self, side, price):
        if side == 1:
            return self.asks and price >= self.best_ask()
        return self.bids and price <= self.best_bid()

    def _match(self, side, limit, qty, order_id, agent, step):
        book = self.asks if side == 1 else self.bids
        while qty > 0 and book:
            price = self.best_ask() if side == 1 else self.best_bid()
            if limit is not None and (price > limit if side == 1 else price < limit):
                break
            maker = self.orders[book[price][0]]
            fill = min(qty, maker.qty)
            self.trades.append((step, self.seq, price, fill, side, order_id, agent, maker.order_id, maker.agent))
            qty -= fill
            maker.qty -= fill
            if maker.qty == 0:
                self._remove(maker)
        return qty

    def _remove(self, order):
        book = self.bids if order.side == 1 else self.asks
        queue = book[order.price]
        queue.remove(order.order_id)
        if not queue:
            del book[order.price]
        del self.orders[order.order_id]
