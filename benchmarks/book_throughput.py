"""Order-book throughput: compiled batch kernel vs OrderBook methods vs the reference book.

Two fixed-seed streams, each processed by all three in the same run:

* today's stream, the mix the book had before replace, fill-or-kill and stops (60% limits
  placed 0..5 ticks behind the opposite touch, so one in six is marketable; 25% cancels of
  live orders; 15% market orders);
* the full stream, with every kind: 50% limits, 20% cancels (of resting orders and pending
  stops), 10% replaces, 5% fill-or-kill orders, 5% stop orders (half stop-limit), 10% market
  orders.

``batch_vs_reference`` is measured on the full stream (target 25). ``batch_vs_previous``
puts today's batch kernel beside the one of the commit before the new kinds
(``--previous``, read from git) on today's stream: the median over interleaved pairs of
previous / current time (>= 1: no slower). Prints one JSON line per figure.

    python benchmarks/book_throughput.py            # 2e6 messages
    python benchmarks/book_throughput.py --quick    # 2e5 messages, under a minute
"""

from __future__ import annotations

import argparse
import importlib.util
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
from simulator.book import MESSAGE_FIELDS, MessageKind, compiled_call_floor  # noqa: E402
from simulator.streams import mixed_stream  # noqa: E402

N_TICKS = 65_536
FULL_MIX = {"p_limit": 0.5, "p_cancel": 0.2, "p_replace": 0.1, "p_fok": 0.05, "p_stop": 0.05}
PREVIOUS = "b59caf8"  # the last commit before REPLACE, FOK, STOP and expiry records


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
    for kind, side, price, qty, order_id, agent, stop_price in stream.tolist():
        if kind == MessageKind.LIMIT:
            calls.append((book.limit, (order_id, agent, side, price, qty)))
        elif kind == MessageKind.MARKET:
            calls.append((book.market, (order_id, agent, side, qty)))
        elif kind == MessageKind.CANCEL:
            calls.append((book.cancel, (order_id, agent)))
        elif kind == MessageKind.REPLACE:
            calls.append((book.replace, (order_id, agent, price, qty)))
        elif kind == MessageKind.FOK:
            calls.append((book.fok, (order_id, agent, side, price, qty)))
        elif kind == MessageKind.STOP:
            calls.append((book.stop, (order_id, agent, side, stop_price, qty, price)))
        else:
            raise ValueError(f"no method timed for message kind {kind}")
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


def time_reference(stream: np.ndarray, repeats: int = 1) -> tuple[float, int]:
    """Median seconds of ``repeats`` runs of the reference book over the stream, and its trades."""
    from reference_book import ReferenceBook

    rows = stream.tolist()
    seconds = []
    for _ in range(repeats):
        ref = ReferenceBook(N_TICKS)
        t0 = time.perf_counter()
        for m in rows:
            ref.process(*m)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), len(ref.trades)


def previous_kernels(rev: str, directory: str):
    """The batch kernel module of commit ``rev``, compiled from its source (read with git)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:simulator/_book_kernels.py"],
                            capture_output=True, text=True, check=True).stdout
    path = os.path.join(directory, "book_kernels_previous.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("book_kernels_previous", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_previous(kernels, stream: np.ndarray) -> tuple[float, int]:
    """Seconds for the previous kernel to match the stream as ``match_messages`` did then:
    the same capacities, the columns in, the trades and rejects copied out."""
    t0 = time.perf_counter()
    cols = [np.ascontiguousarray(np.asarray(stream[f]).astype(np.int64)) for f in MESSAGE_FIELDS[:6]]
    n_limit = int(np.count_nonzero((cols[0] == MessageKind.LIMIT) | (cols[0] == MessageKind.POST_ONLY)))
    levels, blocks, meta, pool, table, trades, rejects = kernels.new_book(
        N_TICKS, max(1024, n_limit // 8), max(1024, len(stream) // 4))
    pool, table, trades, rejects = kernels.process_batch(levels, blocks, meta, pool, table, trades, rejects,
                                                         *cols, 0)
    n_trades = int(meta[kernels.N_TRADES])
    trades[:n_trades].copy(), rejects[:int(meta[kernels.N_REJECTS])].copy()
    return time.perf_counter() - t0, n_trades


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
    parser.add_argument("--previous", default=PREVIOUS,
                        help=f"git revision of the kernel batch_vs_previous compares with (default {PREVIOUS})")
    args = parser.parse_args(argv)
    n = args.messages or (200_000 if args.quick else 2_000_000)

    streams = {"today": mixed_stream(n, N_TICKS, seed=2024), "full": mixed_stream(n, N_TICKS, seed=2024, **FULL_MIX)}
    match_messages(streams["full"][:1000], N_TICKS)  # compile or load from cache before timing
    methods_n = min(n, 200_000)
    for name, stream in streams.items():
        batch_s, n_trades = time_batch(stream, args.repeats)
        ref_s, ref_trades = time_reference(stream, repeats=3)
        if ref_trades != n_trades:
            raise SystemExit(f"{name} stream: reference book made {ref_trades} trades, compiled book {n_trades}")
        # the single-message comparison is short and noisy: time both on the same prefix,
        # interleaved, and take the median of the per-pair ratios
        pairs = [(time_methods(stream[:methods_n]), time_reference(stream[:methods_n])[0])
                 for _ in range(args.repeats)]
        methods_s = statistics.median(m for m, _ in pairs)
        ratio = statistics.median(r / m for m, r in pairs)
        suffix = "" if name == "full" else "_today"
        kinds = {MessageKind(k).name: int(c) for k, c in enumerate(np.bincount(stream["kind"])) if c}
        emit(f"messages{suffix}", n, "count", stream=name, trades=n_trades, kinds=kinds)
        emit(f"batch_throughput{suffix}", n / batch_s, "messages/s", stream=name, median_of=args.repeats)
        emit(f"orderbook_methods_throughput{suffix}", methods_n / methods_s, "messages/s", stream=name,
             messages=methods_n, median_of=args.repeats)
        emit(f"reference_throughput{suffix}", n / ref_s, "messages/s", stream=name, median_of=3)
        emit(f"batch_vs_reference{suffix}", ref_s / batch_s, "ratio", stream=name, target=25)
        emit(f"methods_vs_reference{suffix}", ratio, "ratio", stream=name, messages=methods_n, target=5,
             median_of=args.repeats, all=[round(r / m, 2) for m, r in pairs])  # same prefix
        if name == "today":
            ref_prefix_s = statistics.median(r for _, r in pairs)
            methods_today_s = methods_s
    with tempfile.TemporaryDirectory() as directory:
        try:
            previous = previous_kernels(args.previous, directory)
        except (OSError, subprocess.CalledProcessError) as error:  # no git, or not a clone
            print(f"batch_vs_previous skipped: cannot read {args.previous} from git ({error})", file=sys.stderr)
        else:
            today = streams["today"]
            time_previous(previous, today[:1000])  # compile
            pairs = []
            for _ in range(args.repeats):
                previous_s, previous_trades = time_previous(previous, today)
                current_s, current_trades = time_batch(today, 1)
                if previous_trades != current_trades:
                    raise SystemExit(f"previous kernel made {previous_trades} trades, current {current_trades}")
                pairs.append((previous_s, current_s))
            emit("batch_vs_previous", statistics.median(p / c for p, c in pairs), "ratio", stream="today",
                 previous=args.previous, target=1.0, median_of=args.repeats,
                 all=[round(p / c, 3) for p, c in pairs])
    kernel_floor, python_floor = call_floors()
    emit("compiled_call_floor", kernel_floor * 1e9, "ns/message")
    emit("python_method_floor", python_floor * 1e9, "ns/message")
    emit("methods_ns_per_message", methods_today_s / methods_n * 1e9, "ns/message", stream="today",
         five_times_reference=ref_prefix_s / methods_n / 5 * 1e9)

    with tempfile.TemporaryDirectory() as cache:
        emit("start_cold_cache", start_time(cache), "s")
        emit("start_warm_cache", start_time(cache), "s", target=1.0)


if __name__ == "__main__":
    main()
