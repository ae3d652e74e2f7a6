"""Order flow with long memory: meta-order splitting traders against Lillo–Mike–Farmer.

Markets of meta-order traders (``simulator.agents.MetaOrderTraders``: Pareto meta-order
sizes of tail exponent alpha, split into one-lot child market orders) on the latent book.
For each alpha, the decay exponent gamma of the autocorrelation of market-order signs,
C(l) ∝ l^-gamma over lags 40 .. 2000 orders, averaged over seeds with a 95% interval,
against the LMF prediction gamma = alpha - 1 (``sign_acf_exponent``, one line per alpha).
On the alpha = 1.5 market: the Hurst exponent of the mid (``hurst``, variance of mid
changes over 1 .. 100 records) and the stylized facts inside their literature ranges
(``facts_in_range``; this market has no liquidity at the touch yet, so few are).

    python benchmarks/realism.py --quick   # 4 seeds of 200 000 steps per alpha
    python benchmarks/realism.py           # 8 seeds of 400 000 steps per alpha
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import emit

import numpy as np  # noqa: E402

from analysis.realism import autocorrelation, decay_exponent, hurst_exponent, order_signs, stylized_facts  # noqa: E402
from mfgsim.engines import make_engine  # noqa: E402
from simulator.agents import LatentLiquidity, MetaOrderTraders, NoiseFlow  # noqa: E402
from simulator.market import MarketSpec, run_market  # noqa: E402

ALPHAS = (1.3, 1.5, 1.8)
LAGS = np.unique(np.geomspace(40, 2000, 25).astype(int))
HURST_LAGS = [1, 2, 5, 10, 20, 50, 100]


def spec(alpha: float, T: float) -> MarketSpec:
    meta = MetaOrderTraders(count=4, tail_exponent=alpha, min_size=1, max_size=10**6, participation=(0.5, 1.0),
                            child_size=1, child_rate=100.0)
    return MarketSpec(T=T, dt=0.01, n_ticks=1 << 20, initial_mid=1 << 19,
                      noise=NoiseFlow(limit_rate=2.0, market_rate=0.0, cancel_rate=0.1), makers=None,
                      latent=LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=400, reveal_ticks=5),
                      meta_traders=meta, scale_liquidity=False, record_every=10, max_trades_kept=10_000_000,
                      warmup_steps=100)


def measure(args) -> dict:
    alpha, T, seed = args
    run = run_market(spec(alpha, T), seed)
    signs = order_signs(run.trades)
    gamma, _ = decay_exponent(LAGS, autocorrelation(signs, int(LAGS.max()))[LAGS - 1])
    market = run.market
    out = {"alpha": alpha, "gamma": gamma, "orders": int(signs.size), "seconds": run.seconds}
    if alpha == 1.5:
        mid = np.asarray(market["mid"], dtype=np.float64)
        out["hurst"] = hurst_exponent(mid, HURST_LAGS)[0]
        flow = np.sign(np.asarray(market["signed_volume"], dtype=np.float64))[1:]
        facts = stylized_facts([mid], np.asarray(market["best_ask"] - market["best_bid"], dtype=np.float64),
                               [signs], [np.concatenate([flow, [0.0]])], run.depth.mean(axis=0))["facts"]
        out["facts"] = [(f.name, f.value, f.inside) for f in facts]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 seeds of 200 000 steps per alpha")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    args = parser.parse_args(argv)
    seeds, T = (4, 2000.0) if args.quick else (8, 4000.0)
    t0 = time.perf_counter()
    with make_engine(args.workers) as pool:
        results = list(pool.map(measure, [(alpha, T, seed) for alpha in ALPHAS for seed in range(1, seeds + 1)]))
    for alpha in ALPHAS:
        rows = [r for r in results if r["alpha"] == alpha]
        gammas = np.array([r["gamma"] for r in rows])
        half = 1.96 * gammas.std(ddof=1) / np.sqrt(gammas.size)
        emit("sign_acf_exponent", float(gammas.mean()), "exponent", alpha=alpha, theory=round(alpha - 1, 3),
             interval=[round(gammas.mean() - half, 4), round(gammas.mean() + half, 4)], seeds=gammas.size,
             orders_per_run=int(statistics.median(r["orders"] for r in rows)), lags=[int(LAGS[0]), int(LAGS[-1])])
    rows = [r for r in results if r["alpha"] == 1.5]
    hursts = np.array([r["hurst"] for r in rows])
    half = 1.96 * hursts.std(ddof=1) / np.sqrt(hursts.size)
    emit("hurst", float(hursts.mean()), "exponent", alpha=1.5, interval=[round(hursts.mean() - half, 4),
                                                                      round(hursts.mean() + half, 4)],
         lags_records=[HURST_LAGS[0], HURST_LAGS[-1]], target=[0.45, 0.55])
    facts = rows[0]["facts"]
    emit("facts_in_range", sum(inside for _, _, inside in facts), "count", of=len(facts), alpha=1.5, seed=1,
         facts={name: [round(value, 4), inside] for name, value, inside in facts}, target=7)
    emit("seconds", time.perf_counter() - t0, "s", runs=len(results))


if __name__ == "__main__":
    main()
