"""mfgsim simulator: compiled limit order book, agent populations, market loop."""

from .book import (
    MESSAGE_DTYPE,
    REJECT_DTYPE,
    TRADE_DTYPE,
    BatchResult,
    DepthSnapshot,
    MessageKind,
    OrderBook,
    OrderInfo,
    RejectReason,
    make_messages,
    match_messages,
)

__all__ = [
    "MESSAGE_DTYPE", "REJECT_DTYPE", "TRADE_DTYPE", "BatchResult", "DepthSnapshot",
    "MessageKind", "OrderBook", "OrderInfo", "RejectReason", "make_messages", "match_messages",
]
