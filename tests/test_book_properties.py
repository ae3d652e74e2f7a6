"""Differential tests: the compiled book against the pure-Python reference book."""

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


def assert_same_book(book: OrderBook, ref: ReferenceBook):
    assert book.best_bid == ref.best_bid()
    assert book.best_ask == ref.best_ask()
    assert book_levels(book, 1) == ref.levels(1)
    assert book_levels(book, -1) == ref.levels(-1)
    assert book.n_orders == len(ref.orders)


def run_reference(messages, n_ticks):
    ref = ReferenceBook(n_ticks)
    for m in messages:
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
    return ref


def as_tuples(records):
    return [tuple(int(v) for v in r) for r in records]


# Small id space and grid so that cancels, duplicates and crossings are frequent; values
# just outside the valid ranges exercise every reject reason.
message = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 0, 0, 1, 2, 3, 3, 4, 5, 7]),
    "side": st.sampled_from([1, 1, -1, -1, 0]),
    "price": st.integers(-1, N_TICKS),
    "qty": st.integers(-1, 6),
    "order_id": st.integers(-1, 25),
    "agent": st.integers(0, 2),
})
# Bursts at one level: every order at the same price, sizes that leave partial fills.
burst = st.fixed_dictionaries({
    "kind": st.sampled_from([0, 0, 1, 3, 4]),
    "side": st.sampled_from([1, -1]),
    "price": st.just(5),
    "qty": st.integers(1, 4),
    "order_id": st.integers(0, 12),
    "agent": st.just(0),
})


def to_array(msgs):
    arr = np.zeros(len(msgs), dtype=MESSAGE_DTYPE)
    for i, m in enumerate(msgs):
        for f in MESSAGE_FIELDS:
            arr[i][f] = m[f]
    return arr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(message, burst), max_size=120))
def test_batch_matches_reference(msgs):
    arr = to_array(msgs)
    result, book = match_messages(arr, N_TICKS)
    ref = run_reference(arr, N_TICKS)
    assert as_tuples(result.trades) == ref.trades
    assert as_tuples(result.rejects) == ref.rejects
    assert_same_book(book, ref)
    book.check_invariants()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(message, burst), max_size=60))
def test_invariants_after_every_message(msgs):
    """One message at a time through the interactive path; invariants after each."""
    book = OrderBook(N_TICKS, order_capacity=1, trade_capacity=1)  # forces every growth path
    ref = ReferenceBook(N_TICKS)
    for m in to_array(msgs):
        result = book.process(m.reshape(1))
        n_before = len(ref.trades)
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
        assert as_tuples(result.trades) == ref.trades[n_before:]
        book.check_invariants()
        # traded quantity is conserved: what the taker got is what the makers gave
        taken = int(result.trades["qty"].sum()) if len(result.trades) else 0
        assert taken == sum(t[3] for t in ref.trades[n_before:])
        assert_same_book(book, ref)


def call_method(book: OrderBook, m):
    """The single-message method for message ``m``; unknown kinds go through the batch path."""
    kind, side, price, qty, oid, agent = (int(m[f]) for f in MESSAGE_FIELDS)
    calls = {0: lambda: book.limit(oid, agent, side, price, qty), 1: lambda: book.market(oid, agent, side, qty),
             2: lambda: book.ioc(oid, agent, side, price, qty), 3: lambda: book.cancel(oid, agent),
             4: lambda: book.reduce(oid, agent, qty), 5: lambda: book.post_only(oid, agent, side, price, qty)}
    return calls[kind]() if kind in calls else book.process(m.reshape(1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(message, burst), max_size=150), st.integers(1, 4))
def test_single_message_methods_match_reference_and_keep_their_results(msgs, capacity):
    """The fast single-message path: every result is checked after the whole stream, so a
    result whose rows a later message (or a buffer replacement) overwrote is caught."""
    book = OrderBook(N_TICKS, order_capacity=capacity, trade_capacity=capacity)
    ref = ReferenceBook(N_TICKS)
    results, expected = [], []
    for m in to_array(msgs):
        results.append(call_method(book, m))
        n_trades, n_rejects = len(ref.trades), len(ref.rejects)
        ref.process(*(int(m[f]) for f in MESSAGE_FIELDS))
        expected.append((ref.trades[n_trades:], ref.rejects[n_rejects:]))
    for result, (trades, rejects) in zip(results, expected):
        assert as_tuples(result.trades) == trades
        assert as_tuples(result.rejects) == rejects
    assert_same_book(book, ref)
    book.check_invariants()


def test_mixed_stream_against_reference():
    stream = mixed_stream(20_000, n_ticks=256, seed=3)
    result, book = match_messages(stream, 256)
    ref = run_reference(stream, 256)
    assert as_tuples(result.trades) == ref.trades
    assert as_tuples(result.rejects) == ref.rejects
    assert_same_book(book, ref)
    book.check_invariants()


@pytest.mark.slow
def test_long_seeded_differential_run():
    """10^6 messages of the benchmark mix (thinned book) through both books."""
    n_ticks = 4096
    stream = mixed_stream(1_000_000, n_ticks=n_ticks, p_limit=0.5, p_cancel=0.35, seed=11)
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
        assert_same_book(book, ref)
