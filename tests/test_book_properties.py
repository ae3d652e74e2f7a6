"""Differential tests: the compiled book against the pure-Python reference book.

The drawn messages cover every kind (stops, fill-or-kill and replaces included) with values
just outside the valid ranges; the books must agree on trades, rejects, expiries, the
resting and pending orders in queue order, and the last trade price.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_book import ReferenceBook

from simulator import MESSAGE_DTYPE, OrderBook, match_messages
from simulator.book import MESSAGE_FIELDS
from simulator.streams import mixed_stream

N_TICKS = 12


def book_levels(book: OrderBook, side: int) -> dict[int, list[tuple[int, int, int]]]:
    """price -> [(order_id, agent, qty)] in time priority, for the compiled book."""
    snap = book.depth(book.n_ticks)
    prices = snap.bid_prices if side == 1 else snap.ask_prices
    return {
        int(p): [(o.order_id, o.agent, o.qty) for o in book.level_orders(side, int(p))]
        for p in prices
    }


def ref_order(ref: ReferenceBook, order_id: int):
    """(state, side, price, stop price, qty, queue position) of a live reference order, or None."""
    if order_id in ref.orders:
        o = ref.orders[order_id]
        queue = (ref.bids if o.side == 1 else ref.asks)[o.price]
        return "resting", o.side, o.price, None, o.qty, list(queue).index(order_id)
    if order_id in ref.stops:
        o = ref.stops[order_id]
        queue = (ref.buy_stops if o.side == 1 else ref.sell_stops)[o.stop_price]
        return ("pending_stop", o.side, None if o.price == -1 else o.price, o.stop_price, o.qty,
                list(queue).index(order_id))
    return None


def book_order(book: OrderBook, order_id: int):
    o = book.order(order_id)
    return None if o is None else (o.state, o.side, o.price, o.stop_price, o.qty, o.queue_position)


def assert_same_book(book: OrderBook, ref: ReferenceBook, ids=range(-1, 27)):
    assert book.best_bid == ref.best_bid()
    assert book.best_ask == ref.best_ask()
    assert book_levels(book, 1) == ref.levels(1)
    assert book_levels(book, -1) == ref.levels(-1)
    assert book.n_orders == len(ref.orders)
    assert book.n_stops == len(ref.stops)
    assert book.last_price == ref.last_price
    for order_id in ids:
        assert book_order(book, order_id) == ref_order(ref, order_id)


def run_reference(messages, n_ticks):
    ref = ReferenceBook(n_ticks)
    for m in messages:
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
    return ref


def as_tuples(records):
    return [tuple(int(v) for v in r) for r in records]


# Small id space and grid so that cancels, duplicates, crossings and stop triggers are
# frequent; values just outside the valid ranges exercise every reject reason (price -1 is
# also a STOP's "no limit"; kind 9 is unknown).
message = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 8, 8, 9]),
    "side": st.sampled_from([1, 1, -1, -1, 0]),
    "price": st.integers(-1, N_TICKS),
    "qty": st.integers(-1, 6),
    "order_id": st.integers(-1, 25),
    "agent": st.integers(0, 2),
    "stop_price": st.integers(-1, N_TICKS),
})
# Bursts at one level: every order at the same price, sizes that leave partial fills.
burst = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 0, 1, 3, 4, 6]),
    "side": st.sampled_from([1, -1]),
    "price": st.just(5),
    "qty": st.integers(1, 4),
    "order_id": st.integers(0, 12),
    "agent": st.just(0),
    "stop_price": st.just(0),
})
# Stop cascades: stops on both sides around a narrow band of prices, valid limits, and the
# trades that set them off.
cascade = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 0, 1, 8, 8, 8]),
    "side": st.sampled_from([1, -1]),
    "price": st.sampled_from([-1, 4, 5, 6, 7]),
    "qty": st.integers(1, 4),
    "order_id": st.integers(0, 25),
    "agent": st.integers(0, 1),
    "stop_price": st.integers(4, 7),
})
# Makers re-quoting one level: same-size replaces (which keep their place) among
# re-priced and resized ones, and the market orders that reveal the queue order.
requote = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 6, 6, 6, 1]),
    "side": st.just(1),
    "price": st.sampled_from([5, 5, 5, 4]),
    "qty": st.sampled_from([2, 2, 2, 3]),
    "order_id": st.integers(0, 5),
    "agent": st.just(0),
    "stop_price": st.just(0),
}).map(lambda m: {**m, "side": -1} if m["kind"] == 1 else m)
messages = st.one_of(message, burst, cascade, requote)


def to_array(msgs):
    arr = np.zeros(len(msgs), dtype=MESSAGE_DTYPE)
    for i, m in enumerate(msgs):
        for f in MESSAGE_FIELDS:
            arr[i][f] = m[f]
    return arr


class Ledger:
    """Lots per order id: what entered the book (new orders, replace size changes) less what
    left it (fills as taker or maker, expiries, cancels and reduces) must equal what the book
    still holds for the id (resting or pending). Checked after every message, so a stop
    cascade that loses or makes lots is caught at the message that caused it."""

    def __init__(self):
        self.balance: dict[int, int] = {}

    def apply(self, book: OrderBook, m, result) -> None:
        kind, qty, order_id = int(m["kind"]), int(m["qty"]), int(m["order_id"])
        before = book_order(book, order_id)
        open_before = 0 if before is None else before[4]
        accepted = len(result.rejects) == 0
        if accepted and kind in (0, 1, 2, 5, 7, 8):
            self.balance[order_id] = qty  # a new order under this id
        elif accepted and kind == 3:
            self.balance[order_id] -= open_before
        elif accepted and kind == 4:
            self.balance[order_id] -= min(qty, open_before)
        elif accepted and kind == 6:
            self.balance[order_id] += qty - open_before
        for t in result.trades:
            self.balance[int(t["taker_order"])] -= int(t["qty"])
            self.balance[int(t["maker_order"])] -= int(t["qty"])
        for e in result.expired:
            self.balance[int(e["order_id"])] -= int(e["qty"])

    def check(self, book: OrderBook) -> None:
        for order_id, lots in self.balance.items():
            held = book_order(book, order_id)
            assert lots == (0 if held is None else held[4]), (order_id, lots, held)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=120))
def test_batch_matches_reference(msgs):
    arr = to_array(msgs)
    result, book = match_messages(arr, N_TICKS)
    ref = run_reference(arr, N_TICKS)
    assert as_tuples(result.trades) == ref.trades
    assert as_tuples(result.rejects) == ref.rejects
    assert as_tuples(result.expired) == ref.expired
    assert_same_book(book, ref)
    book.check_invariants()


def new_results(ref: ReferenceBook, counts: tuple[int, int, int]):
    return ref.trades[counts[0]:], ref.rejects[counts[1]:], ref.expired[counts[2]:]


def ref_counts(ref: ReferenceBook) -> tuple[int, int, int]:
    return len(ref.trades), len(ref.rejects), len(ref.expired)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=60))
def test_invariants_and_conservation_after_every_message(msgs):
    """One message at a time through the interactive path; after each, the invariants, the
    reference's state and the lot ledger of every order id (stop cascades included)."""
    book = OrderBook(N_TICKS, order_capacity=1, trade_capacity=1)  # forces every growth path
    ref = ReferenceBook(N_TICKS)
    ledger = Ledger()
    for m in to_array(msgs):
        counts = ref_counts(ref)
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
        trades, rejects, expired = new_results(ref, counts)
        # the ledger reads the order's state before the message
        before = {int(m["order_id"]): book_order(book, int(m["order_id"]))}
        result = book.process(m.reshape(1))
        assert as_tuples(result.trades) == trades
        assert as_tuples(result.rejects) == rejects
        assert as_tuples(result.expired) == expired
        book.check_invariants()
        ledger.apply(_Frozen(before), m, result)
        ledger.check(book)
        assert_same_book(book, ref)


class _Frozen:
    """``book_order`` answers from a snapshot taken before the message."""

    def __init__(self, orders):
        self.orders = orders

    def order(self, order_id):
        state = self.orders.get(order_id)
        if state is None:
            return None
        return _Info(state)


class _Info:
    def __init__(self, state):
        self.state, self.side, self.price, self.stop_price, self.qty, self.queue_position = state


def call_method(book: OrderBook, m):
    """The single-message method for message ``m``; unknown kinds go through the batch path."""
    kind, side, price, qty, oid, agent, stop_price = (int(m[f]) for f in MESSAGE_FIELDS)
    calls = {0: lambda: book.limit(oid, agent, side, price, qty), 1: lambda: book.market(oid, agent, side, qty),
             2: lambda: book.ioc(oid, agent, side, price, qty), 3: lambda: book.cancel(oid, agent),
             4: lambda: book.reduce(oid, agent, qty), 5: lambda: book.post_only(oid, agent, side, price, qty),
             6: lambda: book.replace(oid, agent, price, qty), 7: lambda: book.fok(oid, agent, side, price, qty),
             8: lambda: book.stop(oid, agent, side, stop_price, qty, None if price == -1 else price)}
    return calls[kind]() if kind in calls else book.process(m.reshape(1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=150), st.integers(1, 4))
def test_single_message_methods_match_reference_and_keep_their_results(msgs, capacity):
    """The fast single-message path: every result is checked after the whole stream, so a
    result whose rows a later message (or a buffer replacement) overwrote is caught."""
    book = OrderBook(N_TICKS, order_capacity=capacity, trade_capacity=capacity)
    ref = ReferenceBook(N_TICKS)
    results, expected = [], []
    for m in to_array(msgs):
        results.append(call_method(book, m))
        counts = ref_counts(ref)
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
        expected.append(new_results(ref, counts))
    for result, (trades, rejects, expired) in zip(results, expected):
        assert as_tuples(result.trades) == trades
        assert as_tuples(result.rejects) == rejects
        assert as_tuples(result.expired) == expired
    assert_same_book(book, ref)
    book.check_invariants()


@pytest.mark.parametrize("kinds", [{}, dict(p_limit=0.5, p_cancel=0.2, p_replace=0.1, p_fok=0.05, p_stop=0.08)])
def test_mixed_stream_against_reference(kinds):
    stream = mixed_stream(20_000, n_ticks=256, seed=3, **kinds)
    result, book = match_messages(stream, 256)
    ref = run_reference(stream, 256)
    assert as_tuples(result.trades) == ref.trades
    assert as_tuples(result.rejects) == ref.rejects
    assert as_tuples(result.expired) == ref.expired
    assert_same_book(book, ref, ids=())
    book.check_invariants()


@pytest.mark.slow
def test_long_seeded_differential_run():
    """10^6 messages of the benchmark mix (thinned book) through both books."""
    n_ticks = 4096
    stream = mixed_stream(1_000_000, n_ticks=n_ticks, p_limit=0.45, p_cancel=0.3, p_replace=0.05, p_fok=0.03,
                          p_stop=0.04, seed=11)
    book = OrderBook(n_ticks)
    ref = ReferenceBook(n_ticks)
    for chunk in np.array_split(stream, 20):
        result = book.process(chunk)
        n_before = len(ref.trades)
        for m in chunk:
            ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
        assert as_tuples(result.trades) == ref.trades[n_before:]
        del ref.trades[:]
        book.check_invariants()
        assert_same_book(book, ref, ids=())
