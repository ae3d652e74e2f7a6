"""The latent order book: mechanics, conservation, mean-field scaling, configuration."""

import dataclasses
import json

import numpy as np
import pytest

from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture as GM
from mfgsim import load_campaign
from mfg.validation import InvalidValue
from mfgsim.build import build_run
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


def test_two_populations_each_keep_their_own_memory():
    """Deposits only, two populations: each tick's visible volume is the sum of each
    population's dV/dt = λ_p - ν_p V over the ticks it reveals (its own reveal zone), so the
    slow population's revealed lots are cancelled at its own rate, not the fast one's."""
    fast = LatentLiquidity(deposit_rate=50.0, cancel_rate=0.5, band=40, reveal_ticks=4)
    slow = LatentLiquidity(deposit_rate=20.0, cancel_rate=0.05, band=40, reveal_ticks=2)
    spec = MarketSpec(T=2.0, dt=0.01, n_ticks=2048, initial_mid=1024, noise=QUIET, makers=None,
                      latent=(fast, slow), warmup_steps=0, record_every=50)
    depth = np.mean([run_market(spec, seed).depth[-1] for seed in range(4)], axis=0)

    def grown(p):
        return p.deposit_rate / p.cancel_rate * (1 - np.exp(-p.cancel_rate * 2.0))

    assert depth[:, :2].mean() == pytest.approx(grown(fast) + grown(slow), rel=0.06)
    assert depth[:, 2:4].mean() == pytest.approx(grown(fast), rel=0.06)
    assert depth[:, 4:].sum() < 0.01 * depth[:, :4].sum()


def test_a_population_can_start_in_its_stationary_profile():
    """start_depletion = ℓ: at the start, tick x from the mid holds Poisson((λ/ν)(1 - e^{-x/ℓ}))
    lots. Revealed at once (reveal_ticks = band) and read a tenth of a time unit later, when
    cancellations (ν = 0.001) and deposits (0.1 per tick) have not changed it."""
    latent = LatentLiquidity(deposit_rate=0.1, cancel_rate=0.001, band=60, reveal_ticks=60, start_depletion=10.0)
    spec = MarketSpec(T=0.1, dt=0.01, n_ticks=2048, initial_mid=1024, noise=QUIET, makers=None, latent=latent,
                      warmup_steps=0, record_every=10)
    depth = np.mean([run_market(spec, seed).depth[-1] for seed in range(8)], axis=(0, 1))  # both sides, 8 runs
    x = np.arange(1, depth.size + 1)
    profile = 100.0 * (1 - np.exp(-x / 10.0))
    assert np.abs(depth - profile).max() < 0.1 * profile.max()
    assert depth.sum() == pytest.approx(profile.sum(), rel=0.03)
    empty = run_market(dataclasses.replace(spec, latent=dataclasses.replace(latent, start_depletion=0.0)), 0)
    assert empty.depth[-1].sum() < 0.01 * depth.sum()  # without it the book starts empty


def test_one_population_is_the_same_market_as_a_tuple_of_one():
    model = LQCrowding.single(1.0, 1.0, 1.0, 10.0, 1.0, GM.normal(1.0, 0.2))
    spec = MarketSpec(T=1.0, dt=0.005, n_ticks=8192, initial_mid=4096, crowd=ExecutionCrowd(30, model, "mfg"),
                      makers=MarketMakers(count=2), latent=LatentLiquidity(), record_every=20, warmup_steps=300)
    one, tupled = run_market(spec, 5), run_market(dataclasses.replace(spec, latent=[LatentLiquidity()]), 5)
    np.testing.assert_array_equal(one.market["mid"], tupled.market["mid"])
    np.testing.assert_array_equal(one.accounts_cash, tupled.accounts_cash)
    with pytest.raises(InvalidValue, match="market.latent"):
        dataclasses.replace(spec, latent=())


def test_several_latent_populations_in_a_campaign_file(tmp_path):
    text = MARKET + ("[[market.latent]]\ndeposit_rate = 2.0\ncancel_rate = 0.1\nband = 50\n"
                     "[[market.latent]]\ndeposit_rate = 0.2\ncancel_rate = 0.001\nband = 300\nstart_depletion = 20.0\n")
    spec = build_run(json.loads(load_campaign(write(tmp_path, text, "m")).runs[0].config), "m")["spec"]
    assert [p.cancel_rate for p in spec.latent_populations] == [0.1, 0.001]
    with pytest.raises(ConfigError, match=r"market\.latent\[1\]\.cancel_rate=-1.0 is not allowed"):
        load_campaign(write(tmp_path, text.replace("cancel_rate = 0.001", "cancel_rate = -1.0"), "m"))
    with pytest.raises(ConfigError, match=r"market\.latent\[1\]\.start_depletion=-2.0 is not allowed"):
        load_campaign(write(tmp_path, text.replace("start_depletion = 20.0", "start_depletion = -2.0"), "m"))
