"""Mixed lattice equilibria of the makers: fictitious play's behavioural strategy, and the
book's makers playing it (``model = "mfg_tick"`` where the fixed-point iteration cycles)."""

import numpy as np
import pytest

from mfg.market_making import MixedEquilibrium, TabulatedIntensity, TickMarketMakingMFG, makers_equilibrium

# a table on which no level is an equilibrium: with everyone at one tick the two-tick quote
# earns more (2 × 6 > 1 × 10), with everyone at two ticks the one-tick quote does (20 > 2 × 8)
MEANS, RATES = (1.0, 2.0), ((10.0, 20.0), (6.0, 8.0))


def _game(Q=3, T=1.0):
    return TickMarketMakingMFG(gamma=0.05, sigma=2.0, quotes=(1.0, 2.0), intensity=TabulatedIntensity(
        (1.0, 2.0), MEANS, RATES), max_inventory=Q, T=T)


def _particles(sol, policy, n_t, T, Q, n=20_000, seed=1):
    """Makers drawing each quote from ``policy`` and filled at the table's rate (read here by
    linear interpolation in the equilibrium's mean quote), with probability rate × dt per step:
    their law, mean posted quotes and mean spread income."""
    rng = np.random.default_rng(seed)
    dt, levels = T / n_t, np.array([1.0, 2.0, np.nan])
    q = np.zeros(n, dtype=np.int64)
    law = np.zeros((n_t + 1, 2 * Q + 1))
    law[0, Q] = 1.0
    posted_mean, income = np.zeros((2, n_t)), np.zeros(n)
    for step in range(n_t):
        moves = []
        for side, mean in enumerate((sol.mean_bid, sol.mean_ask)):
            choice = (rng.random(n)[:, None] >= np.cumsum(policy[side, step, q + Q], axis=1)).sum(axis=1)
            level = levels[choice]
            posted_mean[side, step] = np.nanmean(level)
            rate = np.array([np.interp(mean[step], MEANS, RATES[0]), np.interp(mean[step], MEANS, RATES[1]), 0.0])
            filled = rng.random(n) < rate[choice] * dt
            income += np.where(filled, level, 0.0)
            moves.append(filled.astype(np.int64))
        q = q + moves[0] - moves[1]
        law[step + 1] = np.bincount(q + Q, minlength=2 * Q + 1) / n
    return law, posted_mean, income.mean()


def test_a_mixed_equilibrium_is_played_by_its_behavioural_strategy():
    """Where Anderson cycles, fictitious play's behavioural strategy, drawn by 20 000 makers
    simulated here, gives its law, its mean quotes and its P&L; the pure strategy nearest to
    it (each state's likelier level) does not give its mean quotes."""
    n_t, T, Q = 400, 1.0, 3
    sol = makers_equilibrium(_game(Q, T), n_t, iterations=200)  # mixed only where Anderson raised
    assert isinstance(sol, MixedEquilibrium) and sol.levels == (1.0, 2.0)
    posting = sol.policy.sum(axis=-1)
    assert np.all(sol.policy >= 0) and np.all(posting <= 1 + 1e-12)
    assert np.all(posting[0, :, -1] == 0) and np.all(posting[1, :, 0] == 0)  # no bid at +Q, no ask at -Q
    assert 1.2 < sol.mean_bid.mean() < 1.8  # a real mixture of the two levels
    law, posted_mean, income = _particles(sol, sol.policy, n_t, T, Q)
    w1 = np.abs(np.cumsum(law - sol.m, axis=1)).sum(axis=1)
    assert w1.max() < 0.045, w1.max()
    for side, mean in enumerate((sol.mean_bid, sol.mean_ask)):
        assert np.max(np.abs(posted_mean[side] - mean[:-1])) < 0.03
        seen = (sol.m > 0) & (posting[side] > 0)  # the expected quote is the policy's where the law is
        np.testing.assert_allclose((sol.policy[side] @ np.array(sol.levels))[seen] / posting[side][seen],
                                   (sol.bid, sol.ask)[side][seen], rtol=1e-12)
    assert income == pytest.approx(sol.expected_pnl(), rel=0.01)
    likelier = np.zeros_like(sol.policy)
    likelier[..., 1] = (sol.policy[..., 1] > sol.policy[..., 0]) & (posting > 0.5)
    likelier[..., 0] = (sol.policy[..., 1] <= sol.policy[..., 0]) & (posting > 0.5)
    _, pure_mean, _ = _particles(sol, likelier, n_t, T, Q, n=5000)
    assert np.max(np.abs(pure_mean[0] - sol.mean_bid[:-1])) > 0.2


def test_draws_follow_the_policy():
    """Each drawn quote's frequency is the policy's, within four standard errors; a side the
    policy never posts is NaN; the same generator state gives the same draws."""
    sol = makers_equilibrium(_game(T=0.5), 100, iterations=100)
    times = np.array([0, 37, 99])
    drawn = sol.draw_quotes(np.random.default_rng(3), 4000, times=times)
    assert drawn.shape == (4000, 2, 3, 7)
    np.testing.assert_array_equal(drawn, sol.draw_quotes(np.random.default_rng(3), 4000, times=times))
    for level_index, level in enumerate(sol.levels):
        p = sol.policy[:, times][..., level_index]
        share = (drawn == level).mean(axis=0)
        assert np.all(np.abs(share - p) <= 4 * np.sqrt(p * (1 - p) / 4000) + 1e-12)
    assert np.all(np.isnan(drawn[:, 0, :, -1])) and np.all(np.isnan(drawn[:, 1, :, 0]))


def test_book_makers_play_a_mixed_equilibrium():
    """Makers of model "mfg_tick" on a table whose equilibrium is mixed run in the book: each posted
    quote is two ticks as often as the policy says at the maker's time and inventory, the same
    seed gives the same bytes, and the tables cannot be read without a seed."""
    from mfgsim.studies.makers import posted_quotes
    from simulator.agents import MarketMakers, NoiseFlow
    from simulator.market import MarketSpec, run_market

    makers = MarketMakers(count=40, model="mfg_tick", lattice=(1.0, 2.0), table_means=MEANS, table_rates=RATES,
                          risk_aversion=0.05, volatility=2.0, fill_intensity=20.0, quote_size=1, max_inventory=3,
                          amend="cancel")
    spec = MarketSpec(T=0.4, dt=0.002, n_ticks=4096, initial_mid=2048, crowd=None, makers=makers,
                      scale_with="makers", record_every=1,
                      noise=NoiseFlow(limit_rate=0.0, market_rate=400.0, cancel_rate=0.0, max_size=1))
    tau = spec.T - np.arange(spec.n_steps) * spec.dt
    with pytest.raises(ValueError, match="mixed"):
        makers.quote_offsets(tau)
    with pytest.raises(ValueError, match="seed"):
        makers.group_quote_offsets(tau)
    sol, sub = makers.mean_field(spec.T, spec.n_steps)
    assert isinstance(sol, MixedEquilibrium)
    bid, ask, groups = makers.group_quote_offsets(tau, 7)
    assert bid.shape == (40, spec.n_steps, 7) and np.array_equal(groups, np.arange(40))
    assert not np.array_equal(bid, makers.group_quote_offsets(tau, 8)[0], equal_nan=True)
    runs = [run_market(spec, seed=7) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].accounts_cash, runs[1].accounts_cash)
    quotes = posted_quotes(spec, runs[0])
    inventory = np.clip(np.round(runs[0].accounts_inventory[:-1, 1:41]).astype(int), -3, 3)
    steps = np.arange(spec.n_steps)[:, None] * sub
    for side, key in enumerate(("bid", "ask")):
        posted = ~np.isnan(quotes[key])
        p = sol.policy[side, steps, inventory + 3]  # (steps, makers, levels)
        expected = (p[..., 1] / np.maximum(p.sum(axis=-1), 1e-300))[posted]
        two = (quotes[key][posted] == 2.0)
        assert 0.1 < two.mean() < 0.9
        assert abs(two.mean() - expected.mean()) < 4 * np.sqrt((expected * (1 - expected)).sum()) / posted.sum() + 0.002
