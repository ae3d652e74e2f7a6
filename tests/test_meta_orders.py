"""Meta-order splitting traders (Lillo–Mike–Farmer) in the book, and the estimators of the
memory of order flow and of the price's diffusion."""

import numpy as np
import pytest

from analysis.realism import autocorrelation, hurst_exponent, order_signs
from mfg.validation import InvalidValue
from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture
from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, MetaOrderTraders, NoiseFlow
from simulator.market import MarketSpec, run_market


def market(meta: MetaOrderTraders | None, T: float = 200.0, seed: int = 1):
    spec = MarketSpec(T=T, dt=0.01, n_ticks=1 << 18, initial_mid=1 << 17,
                      noise=NoiseFlow(limit_rate=2.0, market_rate=0.0 if meta is not None else 50.0, cancel_rate=0.1),
                      makers=None, latent=LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=400, reveal_ticks=5),
                      meta_traders=meta, scale_liquidity=False, record_every=100, max_trades_kept=2_000_000,
                      warmup_steps=100)
    return spec, run_market(spec, seed)


def test_meta_orders_give_order_flow_long_memory_and_conserve_everything():
    meta = MetaOrderTraders(count=2, tail_exponent=1.5, min_size=1, max_size=10**6, participation=(0.5, 1.0),
                            child_rate=100.0)
    spec, run = market(meta)
    signs = order_signs(run.trades)
    assert signs.size > 20_000
    acf = autocorrelation(signs, 500)
    noise = 1 / np.sqrt(signs.size)
    # long memory: still well above the noise hundreds of orders apart
    assert acf[99] > 10 * noise and np.mean(acf[99:500]) > 5 * noise and acf[9] > acf[99] > acf[499]
    # the population trades through its own account; shares and cash are conserved
    assert run.accounts_inventory.shape[1] == 3  # noise, latent book, meta-order traders
    assert np.all(run.accounts_inventory.sum(axis=1) == 0) and np.all(run.accounts_cash.sum(axis=1) == 0)
    assert np.any(run.accounts_inventory[:, -1] != 0)
    _, again = market(meta)
    np.testing.assert_array_equal(again.trades, run.trades)  # same spec and seed, same bytes
    # zero-intelligence market orders have no memory
    _, zi = market(None, T=50.0)
    zi_acf = autocorrelation(order_signs(zi.trades), 100)
    assert np.max(np.abs(zi_acf[9:])) < 5 / np.sqrt(order_signs(zi.trades).size)


@pytest.mark.parametrize("scaled", [False, True])
def test_decisions_count_every_agent(scaled):
    """A run's decisions: each crowd agent on each step of the horizon, each maker and each
    meta-order trader (their count scaled with N under scale_liquidity) on every step."""
    model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2))
    spec = MarketSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(5, model, "mfg", stop_at_target=False),
                      makers=MarketMakers(count=2), meta_traders=MetaOrderTraders(count=3), warmup_steps=50,
                      post_steps=20, record_every=10, scale_liquidity=scaled)
    steps = 50 + 100 + 20
    assert run_market(spec, seed=1).decisions == 5 * 100 + (2 + 3 * (5 if scaled else 1)) * steps


def test_hurst_exponent_of_known_paths():
    rng = np.random.default_rng(3)
    H, se = hurst_exponent(np.cumsum(rng.normal(size=100_000)), [1, 2, 5, 10, 20, 50, 100])
    assert H == pytest.approx(0.5, abs=0.02) and se < 0.02
    trending = np.cumsum(np.repeat(rng.choice([-1.0, 1.0], size=2000), 50))  # runs of 50 equal steps
    assert hurst_exponent(trending, [1, 2, 5, 10, 20])[0] > 0.9
    reverting = rng.normal(size=50_000)  # a stationary level: no diffusion at all
    assert hurst_exponent(reverting, [1, 2, 5, 10, 20, 50])[0] < 0.1


@pytest.mark.parametrize("fields, name", [
    (dict(tail_exponent=1.0), "tail_exponent"),
    (dict(tail_exponent=0.8), "tail_exponent"),
    (dict(participation=(0.0, 0.5)), "participation"),
    (dict(participation=(0.5, 1.2)), "participation"),
    (dict(participation=(0.6, 0.5)), "participation"),
    (dict(min_size=10, max_size=5), "max_size"),
    (dict(count=0), "count"),
])
def test_bad_meta_traders_are_refused_by_name(fields, name):
    with pytest.raises(InvalidValue, match=f"market.meta_traders.{name}"):
        MetaOrderTraders(**fields)


def test_a_child_rate_beyond_one_order_per_step_is_refused():
    with pytest.raises(InvalidValue, match="child_rate"):
        MarketSpec(T=1.0, dt=0.01, meta_traders=MetaOrderTraders(child_rate=500.0))


def test_propagator_is_recovered_from_signs_and_prices():
    """Signs with memory (a persistent Markov chain) move a price through a known
    power-law propagator G(l) = l^-0.3; the Toeplitz estimator gives G back."""
    from analysis.realism import propagator

    rng = np.random.default_rng(11)
    n, L = 200_000, 30
    flips = rng.random(n) < 0.1
    eps = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    G = np.arange(1, 4 * L + 1) ** -0.3
    g = np.diff(np.concatenate([[0.0], G]))  # G(l) = Σ_{k<l} g_k
    r = np.convolve(eps, g)[:n] + rng.normal(0.0, 0.5, n)
    estimate = propagator(eps, r, L)
    np.testing.assert_allclose(estimate, G[:L], atol=0.03)
    with pytest.raises(ValueError, match="longer than"):
        propagator(eps[:100], r[:100], L)
