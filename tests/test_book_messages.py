"""The book's full message set: replace, fill-or-kill, stop orders and expiry records.

Several scenarios are translated from the unit tests of Liquibook, a public C++
price-time-priority matching engine (github.com/enewhuis/liquibook,
``test/unit/ut_order_book.cpp``, ``ut_immediate_or_cancel.cpp``, ``ut_stop_orders.cpp``):
the orders, prices, sizes and the fills and depth they expect are theirs; the code is ours.
Liquibook's replace takes a size *change*, ours the new open size, so the sizes below are
the sums. Where the engines differ by design (Liquibook rests market orders it cannot
fill; ours expire them) the test says so.
"""

import numpy as np
import pytest

from simulator import ExpiryReason, MessageKind, OrderBook, RejectReason, make_messages, match_messages

N_TICKS = 2000


def depth(book: OrderBook) -> tuple[list, list]:
    """(bids, asks) as [(price, order count, lots)], best first."""
    snap = book.depth(book.n_ticks)
    return ([(int(p), len(book.level_orders(1, int(p))), int(v)) for p, v in zip(snap.bid_prices, snap.bid_volumes)],
            [(int(p), len(book.level_orders(-1, int(p))), int(v)) for p, v in zip(snap.ask_prices, snap.ask_volumes)])


def fills(result) -> list[tuple[int, int, int]]:
    """(maker order, price, lots) per trade."""
    return [(int(t["maker_order"]), int(t["price"]), int(t["qty"])) for t in result.trades]


def state(book: OrderBook, ids) -> tuple:
    return depth(book), [book.order(i) for i in ids], book.last_price, book.n_stops


def two_sided(bids, asks) -> OrderBook:
    """A book with resting (order id, price, lots) bids then asks, all from agent 0, in that order."""
    book = OrderBook(N_TICKS)
    for side, orders in ((1, bids), (-1, asks)):
        for order_id, price, qty in orders:
            assert not book.limit(order_id, 0, side, price, qty).trades.size
    return book


# ---- replace ---------------------------------------------------------------------------
def test_replace_size_increase_liquibook():
    """Liquibook TestReplaceSizeIncrease: bid 1250x100 -> 125, ask 1252x300 -> 350."""
    bid0, bid1, ask0, ask1 = 1, 2, 3, 4
    book = two_sided([(bid0, 1250, 100), (bid1, 1249, 100)], [(ask0, 1252, 300), (ask1, 1251, 200)])
    assert not book.replace(bid0, 0, 1250, 125).trades.size
    book.replace(ask0, 0, 1252, 350)
    assert depth(book) == ([(1250, 1, 125), (1249, 1, 100)], [(1251, 1, 200), (1252, 1, 350)])
    book.check_invariants()


def test_replace_size_decrease_keeps_priority_liquibook():
    """Liquibook TestReplaceSizeDecrease: bid 1250x100 -> 40, ask 1252x300 -> 150 (first
    of two at 1252); a cut in place keeps the order first in its queue."""
    bid0, bid1, ask0, ask1 = 1, 2, 3, 4
    book = two_sided([(bid0, 1250, 100), (bid1, 1251, 100)], [(ask0, 1252, 300), (ask1, 1252, 200)])
    book.replace(bid0, 0, 1250, 40)
    book.replace(ask0, 0, 1252, 150)
    assert depth(book) == ([(1251, 1, 100), (1250, 1, 40)], [(1252, 2, 350)])
    assert book.order(ask0).queue_position == 0 and book.order(ask0).qty == 150
    assert fills(book.market(9, 1, 1, 160)) == [(ask0, 1252, 150), (ask1, 1252, 10)]


def test_replace_price_change_goes_to_the_back_liquibook():
    """Liquibook TestReplaceBidPriceChange: bid 1250 -> 1251 joins behind the bid there;
    then that bid moves 1251 -> 1250."""
    ask0, ask1, bid1, bid0 = 1, 2, 3, 4
    book = two_sided([(bid0, 1250, 120), (bid1, 1251, 140)], [(ask0, 1253, 300), (ask1, 1252, 200)])
    book.replace(bid0, 0, 1251, 120)
    assert [o.order_id for o in book.level_orders(1, 1251)] == [bid1, bid0]
    assert depth(book) == ([(1251, 2, 260)], [(1252, 1, 200), (1253, 1, 300)])
    book.replace(bid1, 0, 1250, 140)
    assert depth(book) == ([(1251, 1, 120), (1250, 1, 140)], [(1252, 1, 200), (1253, 1, 300)])
    assert book.order(bid1).price == 1250 and book.order(bid1).qty == 140


def test_replace_that_crosses_trades_liquibook():
    """Liquibook TestReplaceBidMatch: bid 1250 -> 1252 (new best, no trade), then bid
    1251x140 -> 1253 trades 140 against the ask at 1253."""
    ask1, ask0, bid1, bid0 = 1, 2, 3, 4
    book = two_sided([(bid0, 1250, 120), (bid1, 1251, 140)], [(ask0, 1253, 300), (ask1, 1254, 200)])
    assert not book.replace(bid0, 0, 1252, 120).trades.size
    assert depth(book) == ([(1252, 1, 120), (1251, 1, 140)], [(1253, 1, 300), (1254, 1, 200)])
    result = book.replace(bid1, 0, 1253, 140)
    assert fills(result) == [(ask0, 1253, 140)]
    assert result.trades["taker_order"].tolist() == [bid1]  # the order keeps its id
    assert book.order(bid1) is None
    assert depth(book) == ([(1252, 1, 120)], [(1253, 1, 160), (1254, 1, 200)])


def test_replace_larger_size_at_same_price_loses_priority_and_partial_cross_rests():
    book = OrderBook(100)
    book.limit(1, 0, 1, 40, 5)
    book.limit(2, 1, 1, 40, 5)
    book.replace(1, 0, 40, 6)
    assert [o.order_id for o in book.level_orders(1, 40)] == [2, 1]
    book.limit(3, 2, -1, 45, 2)
    result = book.replace(2, 1, 46, 5)  # crosses: 2 lots at 45, the rest rests at 46
    assert fills(result) == [(3, 45, 2)]
    assert book.order(2).price == 46 and book.order(2).qty == 3 and book.best_bid == 46


def test_replace_keeps_post_only():
    """A post-only order stays post-only (as on exchanges that carry an order's
    instructions through a replace): a replace that would cross is rejected, order unchanged."""
    book = OrderBook(100)
    book.post_only(1, 0, 1, 40, 5)
    book.limit(2, 1, -1, 42, 5)
    assert book.order(1).post_only
    before = state(book, [1, 2])
    result = book.replace(1, 0, 42, 5)
    assert result.rejects["reason"].tolist() == [RejectReason.WOULD_CROSS]
    assert state(book, [1, 2]) == before
    book.replace(1, 0, 41, 5)
    assert book.order(1).price == 41 and book.order(1).post_only


# ---- fill-or-kill and IOC ----------------------------------------------------------------
def fok_book(ask_sizes=(100, 100, 100)):
    """Liquibook's FOK/IOC book: asks 10, 11, 12 at 1250, 1251, 1252 (size 0: left out), bids at 1249, 1248."""
    asks = [(10 + i, 1250 + i, qty) for i, qty in enumerate(ask_sizes) if qty]
    return two_sided([(20, 1249, 100), (21, 1248, 100)], asks)


@pytest.mark.parametrize("asks, order, expected_fills, asks_after", [
    # TestFokBidNoMatch: nothing at or below 1250
    ((0, 100, 100), (1250, 100), [], [(1251, 1, 100), (1252, 1, 100)]),
    # TestFokBidPartialMatch: only 100 of 300 at 1250: nothing trades
    ((100, 100, 100), (1250, 300), [], [(1250, 1, 100), (1251, 1, 100), (1252, 1, 100)]),
    # TestFokBidFullMatch: 300 of the 400 at 1250
    ((400, 100, 100), (1250, 300), [(10, 1250, 300)], [(1250, 1, 100), (1251, 1, 100), (1252, 1, 100)]),
    # TestFokBidMultiMatch: 400 at 1250 and 100 at 1251 (cost 625100)
    ((400, 100, 100), (1251, 500), [(10, 1250, 400), (11, 1251, 100)], [(1252, 1, 100)]),
])
def test_fill_or_kill_liquibook(asks, order, expected_fills, asks_after):
    """Liquibook's FOK (all-or-none + immediate-or-cancel) buy cases."""
    book = fok_book(asks)
    price, qty = order
    result = book.fok(1, 0, 1, price, qty)
    assert fills(result) == expected_fills
    assert result.rejects["reason"].tolist() == ([] if expected_fills else [RejectReason.NOT_FILLABLE])
    assert not result.expired.size and book.order(1) is None
    assert depth(book) == ([(1249, 1, 100), (1248, 1, 100)], asks_after)
    if expected_fills:
        assert int((result.trades["price"] * result.trades["qty"]).sum()) == {300: 1250 * 300, 500: 625100}[qty]


def test_ioc_partial_match_expires_the_rest_liquibook():
    """Liquibook TestIocBidPartialMatch: IOC buy 300 at 1250 fills 100; the 200 left expire."""
    book = fok_book()
    result = book.ioc(1, 7, 1, 1250, 300)
    assert fills(result) == [(10, 1250, 100)]
    expired = result.expired
    assert expired[["order_id", "agent", "kind", "qty", "reason"]].tolist() == [
        (1, 7, MessageKind.IOC, 200, ExpiryReason.LIMIT_REACHED)]
    assert depth(book) == ([(1249, 1, 100), (1248, 1, 100)], [(1251, 1, 100), (1252, 1, 100)])


def test_market_order_on_a_thin_book_expires_with_book_exhausted():
    book = OrderBook(100)
    book.limit(1, 0, -1, 50, 3)
    result = book.market(2, 5, 1, 10)
    assert fills(result) == [(1, 50, 3)]
    assert result.expired[["order_id", "agent", "kind", "qty", "reason"]].tolist() == [
        (2, 5, MessageKind.MARKET, 7, ExpiryReason.BOOK_EXHAUSTED)]
    assert book.market(3, 5, 1, 4).expired["qty"].tolist() == [4]


# ---- stops -------------------------------------------------------------------------------
def establish_last_price(book: OrderBook, price: int, ids=(900, 901)):
    book.limit(ids[0], 99, 1, price, 1)
    assert fills(book.market(ids[1], 99, -1, 1)) == [(ids[0], price, 1)]


def test_stops_off_market_do_not_trade_liquibook():
    """Liquibook TestStopOrdersOffMarketNoTrade: after a trade at 55, a buy stop at 56 and
    a sell stop at 54 are accepted and wait; they are not in the depth."""
    book = OrderBook(100)
    book.limit(1, 0, 1, 55, 100)
    book.market(2, 1, -1, 100)
    assert book.last_price == 55
    for result in (book.stop(3, 2, 1, 56, 100), book.stop(4, 2, -1, 54, 100)):
        assert not (result.trades.size or result.rejects.size or result.expired.size)
    assert book.order(3).state == "pending_stop" and book.order(3).stop_price == 56 and book.order(3).price is None
    assert book.n_stops == 2 and book.n_orders == 0 and depth(book) == ([], [])


def test_stop_market_orders_trade_when_stop_price_reached_liquibook():
    """Liquibook TestStopMarketOrdersTradeWhenStopPriceReached: bid 53, ask 57, last 55;
    buy stop 56 and sell stop 54. A trade at 56 triggers the buy stop, which lifts the ask
    at 57; a trade at 54 triggers the sell stop, which hits the bid at 53."""
    book = OrderBook(100)
    establish_last_price(book, 55)
    book.limit(0, 0, 1, 53, 100)
    book.limit(1, 0, -1, 57, 100)
    book.stop(2, 1, 1, 56, 100)
    book.stop(3, 1, -1, 54, 100)
    book.limit(4, 2, 1, 56, 1000)
    result = book.limit(5, 3, -1, 56, 1000)
    assert fills(result) == [(4, 56, 1000), (1, 57, 100)]
    assert result.trades["taker_order"].tolist() == [5, 2]
    assert len(set(result.trades["seq"].tolist())) == 1  # one message's result
    assert book.last_price == 57 and book.order(2) is None
    book.limit(6, 2, 1, 54, 1000)
    result = book.limit(7, 3, -1, 54, 1000)
    assert fills(result) == [(6, 54, 1000), (0, 53, 100)]
    assert book.last_price == 53 and book.n_stops == 0
    book.check_invariants()


def test_stop_already_reached_enters_at_once_liquibook():
    """Liquibook TestStopMarketOrdersOnMarketTradeImmediately: with the last trade at 55, stops
    at 55 trigger on entry. (Liquibook rests the market buy that finds no asks; here its lots
    expire, and the sell stop then finds no bid either.)"""
    book = OrderBook(100)
    book.limit(0, 0, 1, 55, 100)
    book.market(1, 0, -1, 100)
    buy = book.stop(2, 1, 1, 55, 100)
    assert buy.expired[["order_id", "kind", "qty", "reason"]].tolist() == [
        (2, MessageKind.STOP, 100, ExpiryReason.BOOK_EXHAUSTED)]
    book.limit(3, 4, 1, 54, 100)
    sell = book.stop(4, 1, -1, 55, 100)
    assert fills(sell) == [(3, 54, 100)] and book.n_stops == 0


def test_stop_limit_rests_at_its_limit_once_triggered():
    book = OrderBook(100)
    establish_last_price(book, 50)
    book.limit(1, 0, -1, 52, 2)
    book.limit(2, 0, -1, 54, 5)
    book.stop(3, 1, 1, 51, 4, price=52)  # buy stop at 51, limit 52
    assert book.order(3).price == 52 and book.order(3).state == "pending_stop"
    book.limit(4, 2, -1, 51, 1)
    result = book.limit(5, 3, 1, 51, 1)  # trades at 51: the stop enters as a limit buy at 52
    assert fills(result) == [(4, 51, 1), (1, 52, 2)]
    assert book.order(3).state == "resting" and book.order(3).price == 52 and book.order(3).qty == 2
    assert not result.expired.size


def test_stop_cascade_order_is_deterministic():
    """Sell stops at 50, 49, 48 over bids at 50, 49, 48, 47: a sale at 50 triggers the stop
    at 50, whose sale at 49 triggers the next, and so on; all in one message. Two stops at
    one price enter first come first served; one sweep through several stop prices triggers
    the nearest first."""
    book = OrderBook(100)
    establish_last_price(book, 51)
    for i, price in enumerate((50, 49, 48, 47)):
        book.limit(10 + i, 0, 1, price, 1)
    book.stop(20, 1, -1, 50, 1)
    book.stop(21, 2, -1, 49, 1)
    book.stop(22, 3, -1, 48, 1)
    result = book.market(30, 4, -1, 1)
    assert [(int(t["taker_order"]), int(t["price"])) for t in result.trades] == [(30, 50), (20, 49), (21, 48),
                                                                               (22, 47)]
    assert set(result.trades["seq"].tolist()) == {book.messages_processed - 1}
    book2 = OrderBook(100)
    establish_last_price(book2, 40)
    for i, price in enumerate((41, 42, 43, 44, 45, 46)):
        book2.limit(10 + i, 0, -1, price, 1)
    book2.stop(20, 1, 1, 43, 1)  # arrives first, stop further away
    book2.stop(21, 2, 1, 42, 1)
    book2.stop(22, 3, 1, 42, 1)
    result = book2.market(30, 4, 1, 3)  # trades at 41, 42, 43
    # 42 is reached first: its two stops (in arrival order), then the one at 43
    assert result.trades["taker_order"].tolist() == [30, 30, 30, 21, 22, 20]
    assert result.trades["price"].tolist() == [41, 42, 43, 44, 45, 46]
    book.check_invariants()
    book2.check_invariants()


def test_pending_stops_cancel_reduce_and_refuse_replace():
    book = OrderBook(100)
    book.stop(1, 0, 1, 60, 5)
    book.reduce(1, 0, 2)
    assert book.order(1).qty == 3
    assert book.replace(1, 0, 60, 3).rejects["reason"].tolist() == [RejectReason.PENDING_STOP]
    assert book.cancel(1, 1).rejects["reason"].tolist() == [RejectReason.NOT_OWNER]
    book.cancel(1, 0)
    assert book.order(1) is None and book.n_stops == 0
    book.check_invariants()


# ---- bad input: a reject with its own reason, the book unchanged, nothing raised -----------
@pytest.mark.parametrize("call, reason", [
    (lambda b: b.stop(9, 0, 1, 100, 1), RejectReason.STOP_OFF_GRID),
    (lambda b: b.stop(9, 0, 1, -1, 1), RejectReason.STOP_OFF_GRID),
    (lambda b: b.stop(9, 0, 1, 60, 1, price=59), RejectReason.STOP_LIMIT_WRONG_SIDE),
    (lambda b: b.stop(9, 0, -1, 40, 1, price=41), RejectReason.STOP_LIMIT_WRONG_SIDE),
    (lambda b: b.stop(9, 0, 1, 60, 1, price=100), RejectReason.PRICE_OFF_GRID),
    (lambda b: b.stop(9, 0, 1, 60, 0), RejectReason.BAD_QTY),
    (lambda b: b.replace(1, 0, 45, 0), RejectReason.BAD_QTY),
    (lambda b: b.replace(1, 0, 45, -3), RejectReason.BAD_QTY),
    (lambda b: b.replace(1, 0, 100, 3), RejectReason.PRICE_OFF_GRID),
    (lambda b: b.replace(77, 0, 45, 3), RejectReason.UNKNOWN_ORDER),
    (lambda b: b.replace(1, 5, 45, 3), RejectReason.NOT_OWNER),
    (lambda b: b.fok(9, 0, 1, 60, 0), RejectReason.BAD_QTY),
    (lambda b: b.fok(9, 0, 1, 60, 99), RejectReason.NOT_FILLABLE),
    (lambda b: b.fok(2, 0, 1, 60, 1), RejectReason.DUPLICATE_ID),
])
def test_bad_messages_are_rejected_and_change_nothing(call, reason):
    book = OrderBook(100)
    book.limit(1, 0, 1, 45, 5)
    book.limit(2, 1, -1, 55, 5)
    book.stop(3, 2, 1, 70, 1)
    establish_last_price(book, 50)
    before = state(book, [1, 2, 3, 9])
    result = call(book)
    assert result.rejects["reason"].tolist() == [reason]
    assert not (result.trades.size or result.expired.size)
    assert state(book, [1, 2, 3, 9]) == before
    book.check_invariants()


def test_batch_path_takes_every_kind_and_stop_price_is_optional():
    msgs = make_messages(kind=[0, 0, 8, 6, 7, 1], side=[1, -1, 1, 0, 1, 1], price=[40, 45, -1, 44, 45, 0],
                         qty=[5, 5, 2, 5, 1, 9], order_id=[1, 2, 3, 2, 4, 5], agent=[0, 1, 2, 1, 3, 4],
                         stop_price=[0, 0, 44, 0, 0, 0])
    result, book = match_messages(msgs, 100)
    # replace 2 -> 44; FOK buys 1 at 44 (last 44 triggers the buy stop: 2 at 44);
    # the market buy takes the last 2 at 44 and 7 lots expire
    assert fills(result) == [(2, 44, 1), (2, 44, 2), (2, 44, 2)]
    assert result.trades["taker_order"].tolist() == [4, 3, 5]
    assert result.expired["qty"].tolist() == [7]
    legacy = np.zeros(2, dtype=[(f, np.int64) for f in ("kind", "side", "price", "qty", "order_id", "agent")])
    legacy["side"], legacy["price"], legacy["qty"], legacy["order_id"] = [1, -1], [40, 40], [1, 1], [1, 2]
    assert len(match_messages(legacy, 100)[0].trades) == 1
