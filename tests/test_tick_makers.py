"""Makers on the tick lattice (mfg.market_making.TickMarketMakingMFG): against a brute-force
dynamic programme over every pair of lattice quotes written here, and against the smooth
GLFT mean field as the tick goes to zero."""

import math

import numpy as np
import pytest

from mfg.jump import Jump
from mfg.market_making import (ExponentialIntensity, MarketMakingMFG, TabulatedIntensity, TickMarketMakingMFG,
                               solve_market_making)
from mfg.validation import InvalidValue

QUOTES = (0.5, 1.0, 1.5, 2.0, 3.0)


def brute_force(gamma, sigma, A, k, Q, T, quotes, steps):
    """Exponential-utility dynamic programme on steps of Δ = T/steps: each step a maker at
    inventory q picks a bid and an ask among the lattice quotes or not posting, is filled
    with probability Λ(δ)Δ on each side, and pays the inventory risk γσ²q²/2 Δ. θ is the
    certainty equivalent: -e^{-γθ_n(q)} = max E[-e^{-γ(gain + θ_{n+1}(q'))}]."""
    dt = T / steps
    q = np.arange(-Q, Q + 1)
    options = [(None, 0.0)] + [(d, A * math.exp(-k * d) * dt) for d in quotes]  # (quote, fill probability)
    theta = np.zeros(q.size)
    for _ in range(steps):
        new = np.empty_like(theta)
        for i, qi in enumerate(q):
            best = -np.inf
            for bid, p_bid in options:
                if bid is not None and qi == Q:
                    continue
                for ask, p_ask in options:
                    if ask is not None and qi == -Q:
                        continue
                    stay = (1.0 - p_bid - p_ask) * math.exp(-gamma * theta[i])
                    up = p_bid * math.exp(-gamma * (bid + theta[i + 1])) if bid is not None else 0.0
                    down = p_ask * math.exp(-gamma * (ask + theta[i - 1])) if ask is not None else 0.0
                    best = max(best, -(stay + up + down))
            new[i] = -math.log(-best * math.exp(0.5 * gamma**2 * sigma**2 * qi**2 * dt)) / gamma
        theta = new
    return theta


def test_lattice_values_and_quotes_match_a_brute_force_programme():
    gamma, sigma, A, k, Q, T = 0.3, 1.0, 4.0, 1.0, 2, 1.0
    model = TickMarketMakingMFG(gamma=gamma, sigma=sigma, quotes=QUOTES, intensity=ExponentialIntensity(A, k),
                                max_inventory=Q, T=T)
    sol = solve_market_making(model, n_t=400)
    reference = brute_force(gamma, sigma, A, k, Q, T, QUOTES, steps=4000)
    np.testing.assert_allclose(sol.jump_solution.value[0], reference, atol=2e-3)
    # every quote the solver posts is a lattice quote
    posted = sol.bid[~np.isnan(sol.bid)]
    assert np.all(np.isin(posted, QUOTES))


def test_no_quote_is_posted_when_every_lattice_quote_loses():
    """Quotes far inside the value of the inventory are worse than not quoting."""
    model = TickMarketMakingMFG(gamma=2.0, sigma=3.0, quotes=(0.1, 0.2), intensity=ExponentialIntensity(5.0, 1.0),
                                max_inventory=3, T=1.0)
    sol = solve_market_making(model, n_t=400)
    # long inventory: the maker does not want to buy more at a premium of 0.1-0.2 ticks
    assert np.isnan(sol.bid[0, -2])
    assert not np.isnan(sol.ask[0, -2])


def lattice_errors(eps, ticks, n_t=800):
    gamma, sigma, A, k, Q, T = 0.2, 1.0, 20.0, 1.0, 3, 1.0
    smooth = solve_market_making(MarketMakingMFG(gamma, sigma, A, k, eps, Q, T), n_t=n_t)
    value, pnl = [], []
    for h in ticks:
        lattice = tuple(np.round(np.arange(-2.0, 6.0 + 1e-9, h), 10))
        sol = solve_market_making(TickMarketMakingMFG(gamma, sigma, lattice, ExponentialIntensity(A, k, eps), Q, T),
                                  n_t=n_t)
        value.append(abs(sol.jump_solution.value[0, Q] - smooth.jump_solution.value[0, Q]))
        pnl.append(abs(sol.expected_pnl() - smooth.expected_pnl()))
    return np.array(value), np.array(pnl), smooth


def test_lattice_tends_to_the_smooth_model():
    """Without competition the lattice value converges at second order in the tick (the sup
    over a lattice misses the smooth maximum by O(h²)), the P&L, which depends on the quotes
    themselves, at first order; the slopes are fitted over four ticks because where the
    smooth optimum falls between lattice points varies irregularly with h."""
    ticks = np.array([0.4, 0.2, 0.1, 0.05])
    value, pnl, smooth = lattice_errors(0.0, ticks)
    value_order = np.polyfit(np.log(ticks), np.log(value), 1)[0]
    pnl_order = np.polyfit(np.log(ticks), np.log(pnl), 1)[0]
    assert value_order > 1.7 and pnl_order > 0.8, (value_order, pnl_order, value, pnl)
    assert pnl[-1] < 1e-3 * smooth.expected_pnl()


def test_competing_makers_on_a_fine_lattice_approach_the_smooth_equilibrium():
    """With competition the lattice game's equilibrium is pinned to lattice values at t = 0
    (every maker is flat and quotes the same level), so the error is not monotone in the
    tick; on a fine lattice it is small."""
    value, pnl, smooth = lattice_errors(0.5, [0.05])
    assert value[0] < 1e-3 and pnl[0] < 1e-3 * smooth.expected_pnl(), (value, pnl)


def test_tabulated_intensity_interpolates_in_the_mean_quote_and_refuses_holes():
    table = TabulatedIntensity(quotes=(0.5, 1.5), means=(1.0, 2.0), rates=((4.0, 6.0), (1.0, 2.0)))
    rates = table(np.array([0.5, 1.5]), np.array([0.5, 1.5, 3.0]))
    np.testing.assert_allclose(rates, [[4.0, 1.0], [5.0, 1.5], [6.0, 2.0]])
    with pytest.raises(InvalidValue, match="was not measured"):
        TabulatedIntensity(quotes=(0.5, 1.5), means=(1.0,), rates=((4.0,), (float("nan"),)))
    model = TickMarketMakingMFG(gamma=0.2, sigma=1.0, quotes=(0.5, 1.5), intensity=table, max_inventory=2, T=0.5)
    sol = solve_market_making(model, n_t=200)
    assert np.all(np.isin(sol.bid[~np.isnan(sol.bid)], (0.5, 1.5)))
    assert np.all(np.isin(sol.mean_bid[:1], (0.5, 1.5)))  # everyone flat at t = 0 quotes one level


def test_lattice_jumps_are_checked():
    with pytest.raises(InvalidValue, match="decay"):
        Jump(+1, 1.0, shape="lattice", quotes=(1.0,))
    with pytest.raises(InvalidValue, match="increasing"):
        Jump(+1, shape="lattice", quotes=(1.0, 0.5))
    with pytest.raises(InvalidValue, match="only the lattice shape"):
        Jump(+1, 1.0, quotes=(1.0,))
