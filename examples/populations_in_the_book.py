"""A market of your own: zero-intelligence flow, GLFT market makers, a latent (resilient)
book and a crowd of MFG liquidators, mixed in the compiled order book; then what the
market did and who paid whom.

    python examples/populations_in_the_book.py           # 100 liquidators, 4 seeds
    python examples/populations_in_the_book.py --tiny    # what the tests run
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mfg.closed_form import LQCrowding  # noqa: E402
from mfg.laws import GaussianMixture  # noqa: E402
from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, NoiseFlow  # noqa: E402
from simulator.market import MarketSpec, run_market  # noqa: E402


def market(n_agents: int) -> MarketSpec:
    """The spec: every population is a frozen dataclass, checked when it is built."""
    model = LQCrowding.single(k=1.0, kappa=5.0, phi=1.0, A=10.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2))
    crowd = ExecutionCrowd(n_agents, model, strategy="mfg", lots_per_unit=50, stop_at_target=False)
    return MarketSpec(
        T=1.0, dt=0.002, n_ticks=16384, initial_mid=8192,
        noise=NoiseFlow(limit_rate=2.0, market_rate=20.0, cancel_rate=2.0),   # per liquidator (scaled with N)
        makers=MarketMakers(count=2, model="glft", risk_aversion=0.05, fill_intensity=100.0, fill_decay=0.8),
        latent=LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=400, reveal_ticks=5),
        crowd=crowd, warmup_steps=1500, record_every=50)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few seconds: what the tests run")
    args = parser.parse_args(argv)
    n_agents, seeds = (10, 2) if args.tiny else (100, 4)
    spec = market(n_agents)
    moves, spreads, volumes = [], [], []
    for seed in range(seeds):
        run = run_market(spec, seed)
        m = run.market
        moves.append((m["mid"][-1] - m["mid"][0]) * spec.tick_size * spec.crowd.lots_per_unit)
        spreads.append(np.nanmean(m["best_ask"] - m["best_bid"]))
        volumes.append(m["volume"].sum())
        # every trade moves shares and cash between two accounts: the totals never change
        assert np.all(run.accounts_inventory.sum(axis=1) == run.accounts_inventory[0].sum())
        assert np.allclose(run.accounts_cash.sum(axis=1), run.accounts_cash[0].sum())
    model_move = spec.crowd.model.price_impact(np.array([spec.T]))[0]
    out = {"N": n_agents, "seeds": seeds, "price_move": float(np.mean(moves)), "model_price_move": float(model_move),
           "mean_spread_ticks": float(np.mean(spreads)), "volume_lots": float(np.mean(volumes))}
    print(f"{n_agents} liquidators, {seeds} seeds: price moved {out['price_move']:+.3f} (model kappa x (E(T) - E(0)) "
          f"= {model_move:+.3f}); mean spread {out['mean_spread_ticks']:.2f} ticks; {out['volume_lots']:.0f} lots "
          "traded per run; shares and cash conserved in every run")
    return out


if __name__ == "__main__":
    main()
