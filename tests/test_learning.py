"""Learning the LQ crowding equilibrium (mfg.learning): the grid game against the closed form,
the best response against a numerical optimiser, and what each learner does."""

import numpy as np
import pytest
from scipy.optimize import minimize

from mfg.closed_form import LQCrowding, PreferenceType
from mfg.laws import GaussianMixture as GM
from mfg.learning import LQLearningGame, best_response_learning, fictitious_play, mirror_descent
from mfg.validation import InvalidValue


def crowd(kappa=1.0, **extra) -> LQCrowding:
    return LQCrowding.single(k=0.1, kappa=kappa, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), **extra)


@pytest.mark.parametrize("model", [
    crowd(c=0.05),
    crowd(rho=0.5, transient=((2.0, 3.0),)),
    LQCrowding(k=0.2, kappa=2.0, T=1.0, types=(PreferenceType(1.0, 10.0, GM.normal(1.0, 0.1), 2.0),
                                              PreferenceType(0.2, 2.0, GM.normal(-0.5, 0.1), 1.0))),
], ids=["permanent", "transient", "two_types"])
def test_grid_equilibrium_converges_to_the_closed_form_at_second_order(model):
    """The closed form solves the continuous-time BVP by its eigenmodes; the grid game's
    equilibrium is a direct linear solve of its own best-response fixed point."""
    errors = []
    for n in (100, 200):
        game = LQLearningGame(model, n)
        eq = game.equilibrium()
        assert game.exploitability(eq) < 1e-10
        errors.append(np.max(np.abs(game.population(eq) - model.mean_rate(game.t))))
    assert errors[1] < 5e-3 * max(1.0, np.max(np.abs(model.mean_rate(game.t))))
    assert 3.0 < errors[0] / errors[1] < 5.0  # second order in dt


def test_best_response_is_the_maximiser_a_numerical_optimiser_finds():
    game = LQLearningGame(crowd(kappa=3.0, c=0.05, rho=1.0), 40)
    rng = np.random.default_rng(1)
    policy = game.start() + rng.normal(0, 0.3, size=(1, 40))
    mu = game.population(policy)
    found = minimize(lambda nu: -game.gains(nu[None], mu)[0], policy[0], method="L-BFGS-B",
                     options={"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-12})
    best = game.best_response(mu)
    assert game.gains(best, mu)[0] == pytest.approx(-found.fun, abs=1e-7)
    np.testing.assert_allclose(best[0], found.x, atol=1e-3)
    assert np.max(np.abs(game.gradient(best, mu))) < 1e-9
    # exploitability is the optimiser's gain over the policy
    assert game.exploitability(policy) == pytest.approx(-found.fun - game.gains(policy, mu)[0], rel=1e-6)
    for _ in range(5):
        assert game.gains(best + rng.normal(0, 0.01, best.shape), mu)[0] < game.gains(best, mu)[0]


def test_plain_best_response_diverges_past_the_threshold_and_fictitious_play_still_converges():
    calm, crowded = LQLearningGame(crowd(kappa=1.0), 100), LQLearningGame(crowd(kappa=5.0), 100)
    assert calm.picard_radius() < 1.0 < crowded.picard_radius()
    assert not best_response_learning(calm, 60).diverged
    assert best_response_learning(calm, 60).exploitability[-1] < 1e-10
    picard = best_response_learning(crowded, 60)
    assert picard.diverged and np.all(np.diff(picard.exploitability[1:]) > 0)
    fp = fictitious_play(crowded, 1000)
    assert not fp.diverged and fp.exploitability[-1] < 1e-3 * fp.exploitability[0]
    slope, se = fp.slope(10)
    assert slope + 2 * se < -0.8
    # fictitious play's iterate is the running average of the best responses
    two = fictitious_play(crowded, 2)
    first = crowded.best_response(crowded.population(crowded.start()))
    np.testing.assert_allclose(fictitious_play(crowded, 1).policy, 0.5 * (crowded.start() + first))
    assert two.iterations == 2


def test_damped_best_response_and_mirror_descent_converge_with_small_steps():
    game = LQLearningGame(crowd(kappa=5.0), 100)
    damped = best_response_learning(game, 400, damping=0.05)
    assert damped.exploitability[-1] < 1e-8 and damped.distance[-1] < 1e-4
    omd = mirror_descent(game, 2000, step_size=0.05)
    assert omd.exploitability[-1] < 1e-6 and not omd.diverged
    assert mirror_descent(game, 50, step_size=1.0).diverged  # past 2 / (largest curvature)


def test_bad_input_names_the_field():
    game = LQLearningGame(crowd(), 20)
    with pytest.raises(InvalidValue, match="policy"):
        game.exploitability(np.zeros((2, 20)))
    with pytest.raises(InvalidValue, match="schedule"):
        fictitious_play(game, 3, schedule=lambda i: 0.0)
    with pytest.raises(InvalidValue, match="iterations"):
        fictitious_play(game, 0)
    with pytest.raises(InvalidValue, match="damping"):
        best_response_learning(game, 3, damping=1.5)
    with pytest.raises(InvalidValue, match="n_t"):
        LQLearningGame(crowd(), 1)


def test_fd_best_response_is_the_grid_games_best_response():
    """The FD solver's best response to a crowd's rate path (HJB then FP on an inventory
    grid) against the learning game's (one linear solve in the mean rates): two
    discretisations of the same control problem, agreeing to their first-order errors;
    and at the FD equilibrium the best response reproduces its own population."""
    from mfg.fd import Grid, LQCrowdingModel, best_response, solve

    model = crowd(kappa=1.0, rho=0.5, transient=((2.0, 3.0),))
    fd_model = LQCrowdingModel(model)
    grid = Grid(-0.6, 2.0, 261, 1.0, 200)
    game = LQLearningGame(model, 200)
    mu = -1.5 * np.exp(-2.0 * game.t)  # a belief: the crowd sells fast early
    br = best_response(fd_model, grid, mu)
    expected = game.best_response(mu)[0]
    assert br.method == "best_response" and br.residuals[0] == pytest.approx(np.max(np.abs(br.mean_rate - mu)))
    # first order in (dx, dt) inside; the last steps, where the feedback gain reaches A/k, are a
    # boundary layer the two time discretisations treat differently: compare inventories there
    inside = slice(0, 190)
    np.testing.assert_allclose(br.mean_rate[inside], expected[inside], atol=0.03 * np.max(np.abs(expected)))
    held = model.types[0].m0.mean + np.concatenate([[0.0], np.cumsum(expected) * game.dt])
    np.testing.assert_allclose(np.asarray(br.mean_inventory()).ravel(), held, atol=0.01)
    assert np.max(np.abs(br.mean_rate - game.best_response(np.zeros(200))[0])) > 0.2  # the belief matters
    eq = solve(fd_model, grid, tol=1e-10)
    again = best_response(fd_model, grid, eq.mean_rate)
    np.testing.assert_allclose(again.mean_rate, eq.mean_rate, atol=1e-8)
    np.testing.assert_allclose(again.control, eq.control, atol=1e-8)
    with pytest.raises(ValueError, match="coupling must be finite and shaped"):
        best_response(fd_model, grid, np.zeros(7))


def test_fd_exploitability_is_the_grid_games_and_zero_at_the_equilibrium():
    """The FD game's exploitability (a policy's forward cost against the coupling it makes,
    minus the best response's HJB value) against the LQ grid game's exact one for the same
    policy, the lone trader's best response: two discretisations, first order apart. At the
    FD equilibrium it is zero to round-off, and a policy's forward cost is its HJB value
    (the FP sweep is the adjoint of the HJB's)."""
    from mfg.fd import Grid, LQCrowdingModel, best_response, exploitability, policy, solve

    cf = crowd(kappa=1.0, rho=0.5, transient=((2.0, 3.0),))
    model = LQCrowdingModel(cf)
    errors = []
    for nx, nt in ((131, 100), (261, 200)):
        grid = Grid(-0.6, 2.0, nx, 1.0, nt)
        lone = best_response(model, grid, np.zeros(nt))
        e_fd = exploitability(model, grid, policy(model, grid, lone.bplus, lone.bminus))[0]
        game = LQLearningGame(cf, nt)
        errors.append(abs(e_fd / game.exploitability(game.best_response(np.zeros(nt))) - 1))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.03, errors
    eq = solve(model, grid, tol=1e-11)
    at_eq = policy(model, grid, eq.bplus, eq.bminus)
    assert abs(exploitability(model, grid, at_eq)[0]) < 1e-10
    value = grid.dx * (eq.value[:, 0] * model.initial_densities(grid)).sum(axis=1)
    # round-off of sums over the 261 x 200 grid, 1.8e-12 with numpy 2.4: far below the
    # discretisation's 1e-3, which a wrong adjoint would show
    np.testing.assert_allclose(at_eq.expected_cost(model, grid, eq.coupling), value, rtol=1e-10)


def test_fd_fictitious_play_converges_on_the_nonlinear_measured_model_and_a_density_coupling():
    """Fictitious play on the FD games the book's primitives make (spread cost, concave
    impact) and on crowd aversion (a density coupling): exploitability falls like 1/i or
    faster; plain best response converges here too (kappa below its threshold)."""
    from mfg.fd import CrowdAversionModel, Grid, LQCrowdingModel
    from mfg.learning import fd_learning

    model = LQCrowdingModel(crowd(kappa=1.0), spread_cost=0.05, impact_exponent=0.7)
    fp = fd_learning(model, Grid(-0.6, 2.0, 131, 1.0, 100), 200)
    slope, se = fp.slope(10)
    assert slope < -0.8 and se < 0.05 and fp.exploitability[-1] < 0.01 * fp.exploitability[0]
    assert fp.distance[-1] < 0.1 * fp.distance[0]
    br = fd_learning(model, Grid(-0.6, 2.0, 131, 1.0, 100), 10, method="best_response")
    assert not br.diverged and br.exploitability[-1] < 1e-3 * br.exploitability[0]
    aversion = CrowdAversionModel(k=1.0, phi=1.0, A=1.0, alpha=1.0, T=1.0, m0=GM.normal(1.0, 0.2), sigma=0.2)
    fp = fd_learning(aversion, Grid(-1.0, 3.0, 81, 1.0, 50), 100)
    assert fp.slope(10)[0] < -0.8 and np.all(fp.exploitability >= -1e-10)
    with pytest.raises(InvalidValue, match="method"):
        fd_learning(model, Grid(-0.6, 2.0, 131, 1.0, 100), 10, method="adam")


def test_jump_policy_value_against_a_matrix_exponential_and_the_hjb():
    """A fixed-quote policy's value: for a risk-neutral maker quoting a constant δ the value
    solves a linear ODE, dθ/dτ = -φq² + Σ± A e^{-kδ} (δ - θ(q) + θ(q±1)), here by scipy's
    matrix exponential; and the equilibrium's own quotes are worth its HJB value, to second
    order in dt."""
    from scipy.linalg import expm

    from mfg.jump import policy_value, time_grid
    from mfg.market_making import MarketMakingMFG, RiskNeutralMakers, solve_market_making

    model = RiskNeutralMakers(A=50.0, k=0.8, phi=0.5, ell=1.0, max_inventory=3, T=0.5)
    t = time_grid(model.T, 400)
    delta = 1.2
    S = 7
    quotes = np.full((2, t.size, S), delta)
    quotes[0, :, -1] = np.nan  # no bid at +Q, no ask at -Q
    quotes[1, :, 0] = np.nan
    theta = policy_value(model, t, model.initial_coupling(t), quotes)
    rate = 50.0 * np.exp(-0.8 * delta)
    q = np.arange(-3, 4, dtype=float)
    G, c = np.zeros((S, S)), -0.5 * q**2
    for s in range(S):
        for target in (s + 1, s - 1):
            if 0 <= target < S:
                G[s, target] += rate
                G[s, s] -= rate
                c[s] += rate * delta
    # dθ/dτ = G θ + c from θ(T) = -ℓ q²: augmented with a constant 1
    M = np.zeros((S + 1, S + 1))
    M[:S, :S], M[:S, S] = G, c
    exact = (expm(M * model.T) @ np.append(-q**2, 1.0))[:S]
    np.testing.assert_allclose(theta[0], exact, rtol=1e-8)
    errors = []
    for n_t in (200, 400):
        sol = solve_market_making(MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=0.3,
                                                  max_inventory=5, T=0.2), n_t=n_t).jump_solution
        errors.append(np.max(np.abs(policy_value(sol.model, sol.t, sol.coupling, sol.quotes) - sol.value)))
    assert errors[1] < 0.35 * errors[0] and errors[1] < 1e-4, errors


def test_jump_learners_reach_the_equilibrium_to_the_grids_error():
    """Makers who believe the others quote wider than they will: best response gets there in
    one step (the makers' game is a strong contraction), fictitious play in a few; the
    exploitability of the start is far above the floor left by the time grid, which is of
    second order."""
    from mfg.jump import time_grid
    from mfg.learning import jump_learning
    from mfg.market_making import MarketMakingMFG

    model = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=2.0, max_inventory=5, T=1.0)
    floors = []
    for n_t in (800, 1600):
        start = np.full((2, n_t + 1), 0.45)
        br = jump_learning(model, n_t, 4, method="best_response", start=start)
        floors.append(abs(br.exploitability[-1]))
        assert br.exploitability[0] > 20 * floors[-1] and not br.diverged
    assert floors[1] < 0.35 * floors[0]
    fp = jump_learning(model, 800, 30, start=np.full((2, 801), 0.45))
    assert abs(fp.exploitability[10]) < 0.1 * fp.exploitability[0] and fp.distance[-1] < 1e-5
    with pytest.raises(ValueError, match="on its lattice"):
        from mfg.jump import policy_value
        from mfg.market_making import ExponentialIntensity, TickMarketMakingMFG

        tick = TickMarketMakingMFG(gamma=0.05, sigma=2.0, quotes=(1.0, 2.0), intensity=ExponentialIntensity(100, 0.8),
                                   max_inventory=2, T=0.1)
        t = time_grid(0.1, 20)
        policy_value(tick, t, tick.initial_coupling(t), np.full((2, 21, 5), 1.5))


def test_mirror_descent_on_the_fd_and_jump_games():
    """Online mirror descent on the measured model's FD shape and on the makers' jump game:
    the FD policy's backward value is its forward cost (and the best response's HJB value),
    the exploitability falls to round-off / the grid's floor; a step too long is a divergence
    reported, not a crash."""
    from mfg.fd import Grid, LQCrowdingModel, best_response, policy, policy_value
    from mfg.learning import fd_mirror_descent, jump_mirror_descent
    from mfg.market_making import MarketMakingMFG

    model = LQCrowdingModel(crowd(kappa=1.0), spread_cost=0.05, impact_exponent=0.7)
    grid = Grid(-0.6, 2.0, 131, 1.0, 100)
    br = best_response(model, grid, -np.ones(100))
    np.testing.assert_allclose(policy_value(model, grid, br.bplus, br.bminus, br.coupling), br.value, atol=1e-9)
    zero = np.zeros(100)
    u = policy_value(model, grid, br.bplus, br.bminus, zero)
    np.testing.assert_allclose(grid.dx * (u[:, 0] * model.initial_densities(grid)).sum(axis=1),
                               policy(model, grid, br.bplus, br.bminus).expected_cost(model, grid, zero), rtol=1e-12)
    omd = fd_mirror_descent(model, grid, 30, step_size=3.0)
    assert not omd.diverged and omd.exploitability[-1] < 1e-8 * omd.exploitability[0]
    makers = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=2.0, max_inventory=5, T=1.0)
    start = np.full((2, 801), 0.45)
    jump = jump_mirror_descent(makers, 800, 10, step_size=0.3, start=start)
    assert not jump.diverged and abs(jump.exploitability[-1]) < 0.05 * jump.exploitability[0]
    assert jump_mirror_descent(makers, 800, 10, step_size=1.0, start=start).diverged


def test_mirror_descent_on_the_lattice_makers_game():
    """Exponential weights over the lattice quotes (and not posting): a one-hot mixture is
    valued as its pure quotes are, and from the uniform mixture the exploitability falls by
    more than two orders of magnitude in 30 steps."""
    from mfg.jump import best_response, lattice_policy, policy_value, time_grid
    from mfg.learning import jump_mirror_descent
    from mfg.market_making import ExponentialIntensity, TickMarketMakingMFG

    tick = TickMarketMakingMFG(gamma=0.05, sigma=2.0, quotes=(1.0, 2.0, 3.0, 4.0, 5.0),
                               intensity=ExponentialIntensity(100.0, 0.8, 0.3), max_inventory=5, T=1.0)
    t = time_grid(1.0, 400)
    coupling = tick.initial_coupling(t)
    br = best_response(tick, t, coupling)
    one_hot = np.zeros((2, 401, 11, 6))
    lattice = np.array(tick.quotes)
    for k in range(2):
        posted = np.isfinite(br.quotes[k])
        index = np.where(posted, np.searchsorted(lattice, np.nan_to_num(br.quotes[k])), 5)
        np.put_along_axis(one_hot[k], index[..., None], 1.0, axis=2)
    theta, population = lattice_policy(tick, t, coupling, one_hot)
    np.testing.assert_allclose(theta, policy_value(tick, t, coupling, br.quotes), rtol=1e-12)
    np.testing.assert_allclose(population.rates, br.rates, rtol=1e-12)
    omd = jump_mirror_descent(tick, 1600, 30, step_size=0.03)
    assert not omd.diverged and omd.exploitability[-1] < 0.005 * omd.exploitability[0]
