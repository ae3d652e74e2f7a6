"""Order-book throughput: compiled batch kernel vs OrderBook methods vs the reference book.

All three process the same fixed-seed mixed stream in the same run (60% limits placed
0..5 ticks behind the opposite touch, so one in six is marketable; 25% cancels of live
orders; 15% market orders). Prints one JSON line per figure.

    python benchmarks/book_throughput.py            # 2e6 messages
    python benchmarks/book_throughput.py --quick    # 2e5 messages, under 20 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import ROOT, emit
sys.path.insert(0, str(ROOT / "tests"))  # the reference book is a test fixture

import numpy as np  # noqa: E402

from simulator import OrderBook, match_messages  # noqa: E402
from simulator.book import MessageKind, compiled_call_floor  # noqa: E402
from simulator.streams import mixed_stream  # noqa: E402

N_TICKS = 65_536



def time_batch(stream: np.ndarray, repeats: int) -> tuple[float, int]:
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result, _book = match_messages(stream, N_TICKS)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), len(result.trades)


def time_methods(stream: np.ndarray) -> float:
    """The single-message methods, one call per message. Calls are prepared up front as
    (bound method, arguments), as the reference's are (``process(*row)``), so both loops
    pay the same Python overhead per message."""
    book = OrderBook(N_TICKS)
    calls = []
    for kind, side, price, qty, order_id, agent in stream.tolist():
        if kind == MessageKind.LIMIT:
            calls.append((book.limit, (order_id, agent, side, price, qty)))
        elif kind == MessageKind.MARKET:
            calls.append((book.market, (order_id, agent, side, qty)))
        else:
            calls.append((book.cancel, (order_id, agent)))
    t0 = time.perf_counter()
    for method, args in calls:
        method(*args)
    return time.perf_counter() - t0


def call_floors(n: int = 200_000) -> tuple[float, float]:
    """Seconds per message that no single-message API over this kernel can go below here:
    one compiled call with seven integers (a rejected cancel: no matching), and a Python
    method taking five arguments that does nothing, each driven like the methods above."""
    class Noop:
        def limit(self, order_id, agent, side, price, qty):
            return None

    noop = [(Noop().limit, (i, 0, 1, 100, 1)) for i in range(n)]
    t0 = time.perf_counter()
    for method, args in noop:
        method(*args)
    return compiled_call_floor(n), (time.perf_counter() - t0) / n


def time_reference(stream: np.ndarray) -> tuple[float, int]:
    from reference_book import ReferenceBook

    ref = ReferenceBook(N_TICKS)
    rows = stream.tolist()
    t0 = time.perf_counter()
    for m in rows:
        ref.process(*m)
    return time.perf_counter() - t0, len(ref.trades)


def start_time(cache_dir: str) -> float:
    """Seconds for a fresh interpreter to import the book and match 1000 messages."""
    code = (
        "import time; t0 = time.perf_counter();"
        "from simulator import match_messages; from simulator.streams import mixed_stream;"
        "match_messages(mixed_stream(1000, seed=1), 65536);"
        "print(time.perf_counter() - t0)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2e5 messages (under 20 s)")
    parser.add_argument("--messages", type=int, default=None, help="stream length (default 2e6, 2e5 with --quick)")
    parser.add_argument("--repeats", type=int, default=5, help="batch timings to take the median of")
    args = parser.parse_args(argv)
    n = args.messages or (200_000 if args.quick else 2_000_000)

    stream = mixed_stream(n, N_TICKS, seed=2024)
    match_messages(stream[:1000], N_TICKS)  # compile or load from cache before timing

    batch_s, n_trades = time_batch(stream, args.repeats)
    ref_s, ref_trades = time_reference(stream)
    if ref_trades != n_trades:
        raise SystemExit(f"reference book made {ref_trades} trades, compiled book {n_trades}")
    methods_n = min(n, 200_000)
    # the single-message comparison is short and noisy: time both on the same prefix,
    # interleaved, and take the median of the per-pair ratios
    pairs = [(time_methods(stream[:methods_n]), time_reference(stream[:methods_n])[0]) for _ in range(args.repeats)]
    methods_s = statistics.median(m for m, _ in pairs)
    ref_prefix_s = statistics.median(r for _, r in pairs)
    ratio = statistics.median(r / m for m, r in pairs)

    emit("messages", n, "count", trades=n_trades)
    emit("batch_throughput", n / batch_s, "messages/s", median_of=args.repeats)
    emit("orderbook_methods_throughput", methods_n / methods_s, "messages/s", messages=methods_n,
         median_of=args.repeats)
    emit("reference_throughput", n / ref_s, "messages/s")
    emit("batch_vs_reference", ref_s / batch_s, "ratio", target=25)
    emit("methods_vs_reference", ratio, "ratio", messages=methods_n, target=5, median_of=args.repeats,
         all=[round(r / m, 2) for m, r in pairs])  # same prefix
    kernel_floor, python_floor = call_floors()
    emit("compiled_call_floor", kernel_floor * 1e9, "ns/message")
    emit("python_method_floor", python_floor * 1e9, "ns/message")
    emit("methods_ns_per_message", methods_s / methods_n * 1e9, "ns/message",
         five_times_reference=ref_prefix_s / methods_n / 5 * 1e9)

    with tempfile.TemporaryDirectory() as cache:
        emit("start_cold_cache", start_time(cache), "s")
        emit("start_warm_cache", start_time(cache), "s", target=1.0)


if __name__ == "__main__":
    main()
