"""The latent order book: mechanics, conservation, mean-field scaling, configuration."""

import numpy as np
import pytest

from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture as GM
from mfgsim import load_campaign
from mfgsim.config import ConfigError
from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, NoiseFlow
from simulator.market import MarketSpec, run_market
from conftest import MARKET, write

QUIET = NoiseFlow(limit_rate=0.0, market_rate=0.0, cancel_rate=0.0)


def test_intentions_show_only_near_the_price_and_live_one_over_nu():
    """Deposits only (no trading, so the price stays put): each tick's volume, latent plus
    visible, follows dV/dt = λ - νV, and only the ``reveal_ticks`` nearest ticks show."""
    latent = LatentLiquidity(deposit_rate=50.0, cancel_rate=0.5, band=40, reveal_ticks=4)
    spec = MarketSpec(T=2.0, dt=0.01, n_ticks=2048, initial_mid=1024, noise=QUIET, makers=None, latent=latent,
                      warmup_steps=0, record_every=50)
    runs = [run_market(spec, seed) for seed in range(4)]
    depth = np.mean([r.depth[-1] for r in runs], axis=0)  # (2, levels) behind the best quotes
    expected = 50.0 / 0.5 * (1 - np.exp(-0.5 * 2.0))
    # each tick's volume is a thinned Poisson count with this mean (8 ticks x 4 runs here)
    assert depth[:, :4].mean() == pytest.approx(expected, rel=0.06)
    assert depth[:, :4].min() > 0.5 * expected
    # beyond the reveal zone: only what was shown while the touch briefly emptied early on
    assert depth[:, 4:].sum() < 0.01 * depth[:, :4].sum()


def test_a_crowd_trading_against_the_latent_book_conserves_shares_and_cash():
    model = LQCrowding.single(1.0, 1.0, 1.0, 10.0, 1.0, GM.normal(1.0, 0.2))
    spec = MarketSpec(T=1.0, dt=0.005, n_ticks=8192, initial_mid=4096, crowd=ExecutionCrowd(30, model, "mfg"),
                      makers=MarketMakers(count=2), latent=LatentLiquidity(), record_every=20, warmup_steps=300)
    run = run_market(spec, seed=3)
    inv, cash = run.accounts_inventory, run.accounts_cash
    assert np.all(inv.sum(axis=1) == inv[0].sum()) and np.all(cash.sum(axis=1) == cash[0].sum())
    assert inv[-1, -2] != 0  # the latent account (before the meta-order traders') did trade
    again = run_market(spec, seed=3)
    np.testing.assert_array_equal(run.market["mid"], again.market["mid"])


def sell_impact(n: int) -> float:
    """Mean mid move (ticks) when n TWAP sellers of one unit each meet a latent book."""
    model = LQCrowding.single(1.0, 0.0, 0.0, 0.0, 1.0, GM.normal(1.0, 0.0))
    spec = MarketSpec(T=1.0, dt=0.01, n_ticks=200_000, initial_mid=100_000,
                      crowd=ExecutionCrowd(n, model, "twap", lots_per_unit=100), makers=None,
                      noise=NoiseFlow(limit_rate=5.0, market_rate=2.0, cancel_rate=2.0),
                      latent=LatentLiquidity(deposit_rate=1.0, cancel_rate=0.2, band=100),
                      warmup_steps=500, record_every=100)
    return float(np.mean([spec.initial_mid - run_market(spec, seed).market["mid"][-1] for seed in range(4)]))


def test_mean_field_scaling_keeps_the_latent_books_response_order_one():
    impacts = np.array([sell_impact(n) for n in (10, 100, 1000)])
    assert np.all(impacts > 5.0), impacts
    assert impacts.max() / impacts.min() < 3.0, impacts
    assert abs(impacts[2] - impacts[1]) < 0.2 * impacts[2]  # the large-N limit is reached


def test_latent_book_in_a_campaign_file(tmp_path):
    text = MARKET + "[market.latent]\ndeposit_rate = 2.0\ncancel_rate = 0.1\nband = 50\n"
    assert load_campaign(write(tmp_path, text, "m")).runs
    with pytest.raises(ConfigError, match=r"market\.latent\.reveal_ticks=500 is not allowed; .*band = 50"):
        load_campaign(write(tmp_path, text.replace("band = 50", "band = 50\nreveal_ticks = 500"), "m"))
    with pytest.raises(ConfigError, match="did you mean 'band'"):
        load_campaign(write(tmp_path, text.replace("band = 50", "bnd = 50"), "m"))
