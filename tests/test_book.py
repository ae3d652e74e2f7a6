"""Unit tests of the order book's documented behaviour."""

import numpy as np
import pytest

from simulator import OrderBook, RejectReason, make_messages, match_messages
from simulator.book import MessageKind


def test_price_time_priority_and_trade_record():
    book = OrderBook(100)
    book.limit(1, agent=10, side=-1, price=51, qty=2)
    book.limit(2, agent=11, side=-1, price=50, qty=3)
    book.limit(3, agent=12, side=-1, price=50, qty=4)
    trades = book.limit(4, agent=13, side=1, price=51, qty=8).trades
    # best price first, then arrival order at the same price
    assert [(t["price"], t["qty"], t["maker_order"]) for t in trades] == [(50, 3, 2), (50, 4, 3), (51, 1, 1)]
    assert set(trades["side"]) == {1}
    assert set(trades["taker_order"]) == {4} and set(trades["taker_agent"]) == {13}
    assert list(trades["maker_agent"]) == [11, 12, 10]
    assert book.best_ask == 51 and book.order(1).qty == 1
    assert book.best_bid is None  # the buy was fully filled, nothing rests


def test_limit_remainder_rests_ioc_and_market_do_not():
    book = OrderBook(100)
    book.limit(1, 0, -1, 50, 2)
    book.limit(2, 1, 1, 50, 5)
    assert book.best_bid == 50 and book.order(2).qty == 3
    book.ioc(3, 1, -1, 49, 10)  # sells 3 at 50, drops 7
    assert book.best_bid is None and book.order(3) is None
    r = book.market(4, 1, 1, 5)  # empty ask side: nothing trades, nothing rests
    assert len(r.trades) == 0 and len(r.rejects) == 0 and book.n_orders == 0


def test_reduce_keeps_priority_and_cancel_removes():
    book = OrderBook(100)
    book.limit(1, 0, 1, 40, 5)
    book.limit(2, 1, 1, 40, 5)
    book.reduce(1, 0, 3)
    assert book.order(1).qty == 2 and book.order(1).queue_position == 0
    assert book.volume_at(1, 40) == 7
    trades = book.market(3, 2, -1, 3).trades
    assert list(trades["maker_order"]) == [1, 2]
    book.reduce(2, 1, 99)  # more than what is left removes the order
    assert book.order(2) is None and book.best_bid is None


@pytest.mark.parametrize(
    "call, reason",
    [
        (lambda b: b.cancel(99, 0), RejectReason.UNKNOWN_ORDER),
        (lambda b: b.reduce(1, 0, 0), RejectReason.BAD_QTY),
        (lambda b: b.limit(5, 0, 1, 10, 0), RejectReason.BAD_QTY),
        (lambda b: b.limit(5, 0, 1, 100, 1), RejectReason.PRICE_OFF_GRID),
        (lambda b: b.limit(5, 0, 1, -1, 1), RejectReason.PRICE_OFF_GRID),
        (lambda b: b.limit(1, 0, 1, 10, 1), RejectReason.DUPLICATE_ID),
        (lambda b: b.limit(5, 0, 0, 10, 1), RejectReason.BAD_SIDE),
        (lambda b: b.post_only(5, 0, -1, 10, 1), RejectReason.WOULD_CROSS),
        (lambda b: b.cancel(1, 7), RejectReason.NOT_OWNER),
        (lambda b: b.limit(-3, 0, 1, 10, 1), RejectReason.BAD_ID),
        (lambda b: b.process(make_messages(kind=[42], order_id=[8])), RejectReason.BAD_KIND),
    ],
)
def test_rejects_are_values_and_leave_the_book_unchanged(call, reason):
    book = OrderBook(100)
    book.limit(1, 0, 1, 10, 3)
    before = (book.best_bid, book.best_ask, book.n_orders, book.order(1))
    result = call(book)
    assert list(result.rejects["reason"]) == [reason]
    assert len(result.trades) == 0
    assert (book.best_bid, book.best_ask, book.n_orders, book.order(1)) == before
    book.check_invariants()


def test_cancel_of_filled_order_is_rejected():
    book = OrderBook(100)
    book.limit(1, 0, 1, 10, 3)
    book.market(2, 1, -1, 3)
    assert list(book.cancel(1, 0).rejects["reason"]) == [RejectReason.UNKNOWN_ORDER]


def test_queries_depth_mid_spread():
    book = OrderBook(100)
    for oid, (side, price, qty) in enumerate([(1, 48, 2), (1, 47, 1), (1, 48, 3), (-1, 52, 4), (-1, 55, 1)]):
        book.limit(oid, 0, side, price, qty)
    assert book.mid == 50.0 and book.spread == 4
    d = book.depth(3)
    assert list(d.bid_prices) == [48, 47] and list(d.bid_volumes) == [5, 1]
    assert list(d.ask_prices) == [52, 55] and list(d.ask_volumes) == [4, 1]
    assert [o.order_id for o in book.level_orders(1, 48)] == [0, 2]
    info = book.order(2)
    assert (info.side, info.price, info.qty, info.queue_position) == (1, 48, 3, 1)


def test_growth_beyond_initial_capacity():
    n = 5000
    msgs = make_messages(kind=np.zeros(n, dtype=np.int64), side=np.ones(n, dtype=np.int64),
                         price=np.arange(n) % 50, qty=np.ones(n, dtype=np.int64),
                         order_id=np.arange(n), agent=np.zeros(n, dtype=np.int64))
    book = OrderBook(100, order_capacity=1, trade_capacity=1)
    book.process(msgs)
    assert book.n_orders == n and book.best_bid == 49
    sweep = book.market(n, 1, -1, n).trades
    assert len(sweep) == n and sweep["qty"].sum() == n
    book.check_invariants()


def test_batch_equals_one_by_one():
    msgs = make_messages(kind=[0, 0, 0, 3, 4, 1, 2], side=[1, -1, 1, 0, 0, -1, 1],
                         price=[10, 12, 11, 0, 0, 0, 12], qty=[5, 5, 2, 0, 1, 3, 9],
                         order_id=[1, 2, 3, 2, 1, 4, 5], agent=[0, 1, 0, 1, 0, 2, 2])
    batch, _ = match_messages(msgs, 20)
    book = OrderBook(20)
    trades = np.concatenate([book.process(m.reshape(1)).trades for m in msgs])
    assert batch.trades.tolist() == trades.tolist()
    assert batch.trades["seq"].tolist() == [5, 5]


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="n_ticks=1"):
        OrderBook(1)
    with pytest.raises(ValueError, match="'qty' must hold integers"):
        make_messages(kind=[0], qty=[1.5])
    with pytest.raises(ValueError, match="unknown message field"):
        make_messages(size=[1])
    with pytest.raises(ValueError, match="lack field"):
        OrderBook(10).process(np.zeros(2, dtype=[("kind", "i8")]))
    with pytest.raises(TypeError):
        OrderBook(10).process([1, 2, 3])
    with pytest.raises(ValueError, match="side=0 is not allowed; must be"):
        OrderBook(10).volume_at(0, 1)


@pytest.mark.parametrize("field, value", [("qty", 1.5), ("price", 400.7), ("price", "400"), ("order_id", 2.0),
                                          ("agent", None), ("side", True), ("qty", 2**70)])
def test_single_message_fields_must_be_integers(field, value):
    book = OrderBook(1000)
    order = {"order_id": 1, "agent": 0, "side": 1, "price": 400, "qty": 2, field: value}
    with pytest.raises((TypeError, ValueError), match=f"^{field}"):
        book.limit(**order)
    assert book.n_orders == 0 and book.messages_processed == 0
    assert book.limit(order_id=np.int64(1), agent=np.int32(0), side=1, price=np.int16(400), qty=2).rejects.size == 0
    assert book.order(1).price == 400


def test_message_kinds_are_stable():
    """Codes are part of the message contract: new kinds are appended, never renumbered."""
    assert [(k.name, int(k)) for k in MessageKind] == [
        ("LIMIT", 0), ("MARKET", 1), ("IOC", 2), ("CANCEL", 3), ("REDUCE", 4), ("POST_ONLY", 5), ("REPLACE", 6),
        ("FOK", 7), ("STOP", 8)]


def test_counters_of_the_book_and_the_batch():
    book = OrderBook(50)
    book.limit(1, 0, -1, 20, 4)
    result = book.process(make_messages(kind=[1, 3], side=[1, 0], qty=[3, 0], order_id=[2, 1], agent=[1, 0]))
    assert result.traded_qty == 3
    assert book.messages_processed == 3  # rejects and cancels count too


def test_batch_results_survive_later_messages():
    """A batch's results are views of the book's buffers: later batches and single messages
    must write elsewhere."""
    book = OrderBook(100)
    book.limit(1, 0, -1, 50, 10)
    first = book.process(make_messages(kind=[1, 1, 2], side=[1, 1, 1], price=[0, 0, 49], qty=[2, 3, 5],
                                       order_id=[2, 3, 4], agent=[1, 1, 1]))
    kept = [r.copy() for r in first]
    book.market(5, 2, 1, 1)
    book.process(make_messages(kind=[1, 0], side=[1, -1], price=[0, 60], qty=[9, 1], order_id=[6, 7], agent=[3, 3]))
    for before, now in zip(kept, first):
        np.testing.assert_array_equal(before, now)
    assert first.trades["qty"].tolist() == [2, 3] and first.expired["qty"].tolist() == [5]
