"""Pure-Python reference order book: the oracle for the compiled book.

Written for clarity, not speed: each side is a ``SortedDict`` from price to a FIFO
``deque`` of order ids, and a dict holds the live orders; pending stops live in two more
sorted dicts (buy stops, sell stops) of FIFOs by stop price. It follows the message
semantics, validation order and stop-triggering order documented in :mod:`simulator.book`
and :func:`simulator._book_kernels.process_message`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sortedcontainers import SortedDict

from simulator.book import NO_LIMIT
from simulator.book import ExpiryReason as ER
from simulator.book import MessageKind as MK
from simulator.book import RejectReason as RR

NEW_ORDERS = (MK.LIMIT, MK.MARKET, MK.IOC, MK.POST_ONLY, MK.FOK, MK.STOP)


@dataclass
class RefOrder:
    order_id: int
    agent: int
    side: int  # +1 bid / buy stop, -1 ask / sell stop
    price: int  # resting price; for a pending stop its limit (NO_LIMIT: market)
    qty: int
    post_only: bool = False
    stop_price: int | None = None  # a pending stop's trigger


class ReferenceBook:
    def __init__(self, n_ticks: int):
        self.n_ticks = n_ticks
        self.bids: SortedDict[int, deque[int]] = SortedDict()
        self.asks: SortedDict[int, deque[int]] = SortedDict()
        self.buy_stops: SortedDict[int, deque[int]] = SortedDict()
        self.sell_stops: SortedDict[int, deque[int]] = SortedDict()
        self.orders: dict[int, RefOrder] = {}  # resting orders
        self.stops: dict[int, RefOrder] = {}  # pending stops
        self.last_price: int | None = None
        self.seq = 0
        self.trades: list[tuple] = []  # (step, seq, price, qty, side, taker, taker_agent, maker, maker_agent)
        self.rejects: list[tuple] = []  # (seq, order_id, agent, kind, reason)
        self.expired: list[tuple] = []  # (seq, order_id, agent, kind, reason, qty)

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
    def process(self, kind, side, price, qty, order_id, agent, stop_price=0, step=0):
        reason = self._apply(kind, side, price, qty, order_id, agent, stop_price, step)
        if reason:
            self.rejects.append((self.seq, order_id, agent, kind, int(reason)))
        self.seq += 1
        return reason

    def _apply(self, kind, side, price, qty, order_id, agent, stop_price, step):
        if kind in NEW_ORDERS:
            reason = self._check_new(kind, side, price, qty, order_id, stop_price)
            if reason:
                return reason
            triggered: deque[RefOrder] = deque()
            if kind == MK.STOP:
                order = RefOrder(order_id, agent, side, price, qty, stop_price=stop_price)
                if self.last_price is not None and (self.last_price - stop_price) * side >= 0:
                    self._enter_stop(order, triggered, step)
                else:
                    self.stops[order_id] = order
                    book = self.buy_stops if side == 1 else self.sell_stops
                    book.setdefault(stop_price, deque()).append(order_id)
            else:
                limit = None if kind == MK.MARKET else price
                rests = kind in (MK.LIMIT, MK.POST_ONLY)
                self._enter(kind, side, limit, qty, order_id, agent, step, rests, kind == MK.POST_ONLY, triggered)
            self._cascade(triggered, step)
            return 0
        if kind in (MK.CANCEL, MK.REDUCE, MK.REPLACE):
            order = self.orders.get(order_id) or self.stops.get(order_id)
            if order is None:
                return RR.UNKNOWN_ORDER
            if order.agent != agent:
                return RR.NOT_OWNER
            pending = order.stop_price is not None
            if kind == MK.REPLACE and pending:
                return RR.PENDING_STOP
            if kind != MK.CANCEL and qty <= 0:
                return RR.BAD_QTY
            if kind == MK.REPLACE:
                if not 0 <= price < self.n_ticks:
                    return RR.PRICE_OFF_GRID
                if order.post_only and self._crosses(order.side, price):
                    return RR.WOULD_CROSS
                if price == order.price and qty <= order.qty:
                    order.qty = qty
                    return 0
                self._remove(order)
                triggered = deque()
                self._enter(MK.REPLACE, order.side, price, qty, order_id, agent, step, True, order.post_only,
                            triggered)
                self._cascade(triggered, step)
                return 0
            if kind == MK.CANCEL or qty >= order.qty:
                self._remove(order)
            else:
                order.qty -= qty
            return 0
        return RR.BAD_KIND

    def _check_new(self, kind, side, price, qty, order_id, stop_price):
        if order_id < 0:
            return RR.BAD_ID
        if side not in (1, -1):
            return RR.BAD_SIDE
        if qty <= 0:
            return RR.BAD_QTY
        if kind == MK.STOP and not 0 <= stop_price < self.n_ticks:
            return RR.STOP_OFF_GRID
        market_like = kind == MK.MARKET or (kind == MK.STOP and price == NO_LIMIT)
        if not market_like and not 0 <= price < self.n_ticks:
            return RR.PRICE_OFF_GRID
        if order_id in self.orders or order_id in self.stops:
            return RR.DUPLICATE_ID
        if kind == MK.POST_ONLY and self._crosses(side, price):
            return RR.WOULD_CROSS
        if kind == MK.STOP and price != NO_LIMIT and (price < stop_price if side == 1 else price > stop_price):
            return RR.STOP_LIMIT_WRONG_SIDE
        if kind == MK.FOK and self._available(side, price) < qty:
            return RR.NOT_FILLABLE
        return 0

    def _available(self, side, limit):
        """Lots on the opposite side at prices a taker of ``side`` with ``limit`` may take."""
        if side == 1:
            return sum(self.orders[o].qty for p, q in self.asks.items() if p <= limit for o in q)
        return sum(self.orders[o].qty for p, q in self.bids.items() if p >= limit for o in q)

    def _crosses(self, side, price):
        if side == 1:
            return bool(self.asks) and price >= self.best_ask()
        return bool(self.bids) and price <= self.best_bid()

    def _enter(self, kind, side, limit, qty, order_id, agent, step, rests, post_only, triggered):
        """Match, trigger the stops each trade reaches, then rest or expire the remainder."""
        first = len(self.trades)
        rest = self._match(side, limit, qty, order_id, agent, step)
        for trade in self.trades[first:]:
            self._trigger(trade[2], triggered)
        if rest == 0:
            return
        if rests:
            self.orders[order_id] = RefOrder(order_id, agent, side, limit, rest, post_only)
            book = self.bids if side == 1 else self.asks
            book.setdefault(limit, deque()).append(order_id)
        else:
            opposite = self.asks if side == 1 else self.bids
            reason = ER.LIMIT_REACHED if opposite else ER.BOOK_EXHAUSTED
            self.expired.append((self.seq, order_id, agent, int(kind), int(reason), rest))

    def _enter_stop(self, order, triggered, step):
        limit = None if order.price == NO_LIMIT else order.price
        self._enter(MK.STOP, order.side, limit, order.qty, order.order_id, order.agent, step, limit is not None,
                    False, triggered)

    def _trigger(self, price, triggered):
        self.last_price = price
        while self.buy_stops and self.buy_stops.peekitem(0)[0] <= price:
            _, queue = self.buy_stops.popitem(0)
            triggered.extend(self.stops.pop(o) for o in queue)
        while self.sell_stops and self.sell_stops.peekitem(-1)[0] >= price:
            _, queue = self.sell_stops.popitem(-1)
            triggered.extend(self.stops.pop(o) for o in queue)

    def _cascade(self, triggered, step):
        while triggered:
            self._enter_stop(triggered.popleft(), triggered, step)

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
        if order.stop_price is not None:
            book = self.buy_stops if order.side == 1 else self.sell_stops
            key, registry = order.stop_price, self.stops
        else:
            book = self.bids if order.side == 1 else self.asks
            key, registry = order.price, self.orders
        queue = book[key]
        queue.remove(order.order_id)
        if not queue:
            del book[key]
        del registry[order.order_id]
