"""Order flow with long memory: meta-order splitting traders against Lillo–Mike–Farmer.

Markets of meta-order traders (``simulator.agents.MetaOrderTraders``: Pareto meta-order
sizes of tail exponent alpha, split into one-lot child market orders) on the latent book.
For each alpha, the decay exponent gamma of the autocorrelation of market-order signs,
C(l) ∝ l^-gamma over lags 40 .. 2000 orders, averaged over seeds with a 95% interval,
against the LMF prediction gamma = alpha - 1 (``sign_acf_exponent``, one line per alpha).
Then the realistic market of ``runs/realism_market.toml`` (the same flow, with makers at
the touch, a latent book behind them and busy and quiet spells): the stylized facts of
``analysis.realism`` pooled over its seeds, and how many are inside their literature ranges
(``facts_in_range``, of 8), and the Hurst exponent of its mid (``hurst``: variance of mid
changes over 1 .. 100 records, mean over seeds with a 95% interval).

    python benchmarks/realism.py --quick   # LMF: 4 seeds of 200 000 steps per alpha; the market: 4 seeds
    python benchmarks/realism.py           # LMF: 8 seeds of 400 000 steps per alpha; the market: 8 seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import ROOT, emit

import numpy as np  # noqa: E402

from analysis.realism import (autocorrelation, decay_exponent, hurst_exponent, order_signs, propagator,  # noqa: E402
                              stylized_facts)
from mfgsim.build import build_run  # noqa: E402
from mfgsim.campaign import load_campaign  # noqa: E402
from mfgsim.engines import make_engine  # noqa: E402
from simulator.agents import LatentLiquidity, MetaOrderTraders, NoiseFlow  # noqa: E402
from simulator.market import MarketSpec, run_market  # noqa: E402

ALPHAS = (1.3, 1.5, 1.8)
LAGS = np.unique(np.geomspace(40, 2000, 25).astype(int))
HURST_LAGS = [1, 2, 5, 10, 20, 50, 100]
PROPAGATOR_LAGS = 50  # records


def spec(alpha: float, T: float) -> MarketSpec:
    meta = MetaOrderTraders(count=4, tail_exponent=alpha, min_size=1, max_size=10**6, participation=(0.5, 1.0),
                            child_size=1, child_rate=100.0)
    return MarketSpec(T=T, dt=0.01, n_ticks=1 << 20, initial_mid=1 << 19,
                      noise=NoiseFlow(limit_rate=2.0, market_rate=0.0, cancel_rate=0.1), makers=None,
                      latent=LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=400, reveal_ticks=5),
                      meta_traders=meta, scale_liquidity=False, record_every=10, max_trades_kept=10_000_000,
                      warmup_steps=100)


def lmf(args) -> dict:
    """The sign memory of one run of the LMF market."""
    alpha, T, seed = args
    run = run_market(spec(alpha, T), seed)
    signs = order_signs(run.trades)
    gamma, _ = decay_exponent(LAGS, autocorrelation(signs, int(LAGS.max()))[LAGS - 1])
    return {"alpha": alpha, "gamma": gamma, "orders": int(signs.size), "seconds": run.seconds}


def realistic_market():
    """The MarketSpec of ``runs/realism_market.toml``."""
    campaign = load_campaign(ROOT / "runs" / "realism_market.toml")
    run = campaign.runs[0]
    return build_run(json.loads(run.config), run.campaign)["spec"]


def market_facts(args) -> dict:
    """What the stylized facts need from one run of the realistic market."""
    market_spec, seed = args
    run = run_market(market_spec, seed)
    m = run.market
    mid = np.asarray(m["mid"], dtype=np.float64)
    flow = np.sign(np.asarray(m["signed_volume"], dtype=np.float64))[1:]
    return {"mid": mid, "spreads": np.asarray(m["best_ask"] - m["best_bid"], dtype=np.float64),
            "signs": order_signs(run.trades), "flow": np.concatenate([flow, [0.0]]),
            "depth": run.depth.mean(axis=0), "hurst": hurst_exponent(mid, HURST_LAGS)[0],
            "propagator": propagator(flow, np.diff(mid), PROPAGATOR_LAGS)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 seeds of 200 000 steps per alpha")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    args = parser.parse_args(argv)
    seeds, T = (4, 2000.0) if args.quick else (8, 4000.0)
    t0 = time.perf_counter()
    market_spec = realistic_market()
    with make_engine(args.workers) as pool:
        results = list(pool.map(lmf, [(alpha, T, seed) for alpha in ALPHAS for seed in range(1, seeds + 1)]))
        runs = list(pool.map(market_facts, [(market_spec, seed) for seed in range(1, seeds + 1)]))
    for alpha in ALPHAS:
        rows = [r for r in results if r["alpha"] == alpha]
        gammas = np.array([r["gamma"] for r in rows])
        half = 1.96 * gammas.std(ddof=1) / np.sqrt(gammas.size)
        emit("sign_acf_exponent", float(gammas.mean()), "exponent", alpha=alpha, theory=round(alpha - 1, 3),
             interval=[round(gammas.mean() - half, 4), round(gammas.mean() + half, 4)], seeds=gammas.size,
             orders_per_run=int(statistics.median(r["orders"] for r in rows)), lags=[int(LAGS[0]), int(LAGS[-1])])
    hursts = np.array([r["hurst"] for r in runs])
    half = 1.96 * hursts.std(ddof=1) / np.sqrt(hursts.size)
    emit("hurst", float(hursts.mean()), "exponent", market="runs/realism_market.toml",
         interval=[round(hursts.mean() - half, 4), round(hursts.mean() + half, 4)],
         lags_records=[HURST_LAGS[0], HURST_LAGS[-1]], seeds=hursts.size, target=[0.45, 0.55])
    spreads = np.concatenate([r["spreads"] for r in runs])
    one_sided = float(np.mean(np.isnan(spreads)))  # records with an empty side: no spread, a stale mid
    facts = stylized_facts([r["mid"] for r in runs], spreads[~np.isnan(spreads)],
                           [r["signs"] for r in runs], [r["flow"] for r in runs],
                           np.mean([r["depth"] for r in runs], axis=0))["facts"]
    emit("facts_in_range", sum(f.inside for f in facts), "count", of=len(facts), market="runs/realism_market.toml",
         seeds=len(runs), one_sided_share=one_sided,
         facts={f.name: [round(f.value, 4), f.low, f.high, f.inside] for f in facts}, target=7)
    # the propagator from the records' net flow signs and mid changes: G(l) ∝ l^-beta from its
    # peak (a record's net flow moves the price over the next few records) to 50 records,
    # beside beta = (1 - gamma)/2, the decay that keeps the price diffusive under signs of
    # memory exponent gamma (Bouchaud et al. 2004), and the latent book's 1/2 (Donier et al. 2015)
    G = np.mean([r["propagator"] for r in runs], axis=0)
    lags = np.arange(1, PROPAGATOR_LAGS + 1)
    peak = int(np.argmax(G))
    beta, beta_se = decay_exponent(lags[peak:], G[peak:])
    gamma = next(f.value for f in facts if f.name.startswith("trade-sign ACF"))
    emit("propagator_decay_exponent", beta, "exponent", market="runs/realism_market.toml", se=round(beta_se, 4),
         diffusive_if=round((1 - gamma) / 2, 4), latent_book=0.5, lags_records=[peak + 1, PROPAGATOR_LAGS],
         G=[round(float(G[i - 1]), 3) for i in (1, 2, 5, 10, 20, 50)])
    emit("seconds", time.perf_counter() - t0, "s", runs=len(results) + len(runs))


if __name__ == "__main__":
    main()
