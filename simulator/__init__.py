"""mfgsim simulator: compiled limit order book, agent populations, market loop."""

from .book import (
    EXPIRED_DTYPE,
    MESSAGE_DTYPE,
    NO_LIMIT,
    REJECT_DTYPE,
    TRADE_DTYPE,
    BatchResult,
    DepthSnapshot,
    ExpiryReason,
    MessageKind,
    OrderBook,
    OrderInfo,
    RejectReason,
    make_messages,
    match_messages,
)

__all__ = [
    "EXPIRED_DTYPE", "MESSAGE_DTYPE", "NO_LIMIT", "REJECT_DTYPE", "TRADE_DTYPE", "BatchResult", "DepthSnapshot",
    "ExpiryReason", "MessageKind", "OrderBook", "OrderInfo", "RejectReason", "make_messages", "match_messages",
]
