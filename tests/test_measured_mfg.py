"""The execution MFG on measured primitives: a propagator of several exponentials and a
temporary cost a|ν| + k|ν|^α, each against a reference derived another way."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

from mfg.closed_form import LQCrowding
from mfg.fd import Grid, LQCrowdingModel, solve, trading_hamiltonian
from mfg.laws import GaussianMixture as GM
from mfg.validation import InvalidValue


@settings(max_examples=60, deadline=None)
@given(q=st.floats(-20, 20), k=st.floats(0.05, 5), alpha=st.floats(1.2, 2.0), a=st.floats(0, 5))
def test_hamiltonian_is_the_sup_over_rates(q, k, alpha, a):
    """H(q) = sup_ν [-qν - a|ν| - k|ν|^α] by a bounded scalar search on each side of 0."""
    def negative_gain(nu):
        return q * nu + a * abs(nu) + k * abs(nu) ** alpha

    # beyond (|q|/k)^{1/(α-1)} the gain -qν - k|ν|^α is negative: the sup lies inside
    reach = 2.0 * (abs(q) / k) ** (1.0 / (alpha - 1.0)) + 1.0
    best = 0.0
    for lo, hi in ((-reach, 0.0), (0.0, reach)):
        res = minimize_scalar(negative_gain, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        best = max(best, -res.fun)
    H, rate = trading_hamiltonian(q, k, alpha, a)
    assert float(H) == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert -negative_gain(float(rate)) == pytest.approx(float(H), rel=1e-9, abs=1e-12)
    if abs(q) <= a:  # the no-trade zone
        assert float(rate) == 0.0 and float(H) == 0.0


def test_hamiltonian_refuses_bad_arguments():
    with pytest.raises(InvalidValue, match="spread_cost"):
        trading_hamiltonian(1.0, 1.0, 2.0, -0.1)
    with pytest.raises(InvalidValue, match="alpha"):
        trading_hamiltonian(1.0, 1.0, 1.0)


def propagator_model(**kw):
    params = dict(k=1.0, kappa=1.5, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), sigma=0.3, c=0.2)
    params.update(kw)
    return LQCrowding.single(**params)


def test_propagator_bvp_against_an_independent_ode_shooting():
    """The means with a permanent part and two exponentials, solved by scipy's ODE
    integrator and a shooting on E'(0) (written here from the equations of motion, not
    from the code's matrix)."""
    terms = ((1.5, 0.0), (2.0, 3.0), (1.0, 12.0))
    cf = propagator_model(transient=terms[1:])
    k, c, phi, A, E0 = 1.0, 0.2, 1.0, 10.0, 1.0

    def rhs(_, y):  # y = (E, E', Y_1, Y_2, Y_3); one type: μ = E'
        E, dE, *Y = y
        trend = sum(kap * dE - rho * Yi for (kap, rho), Yi in zip(terms, Y))
        ddE = (2 * phi * E - trend) / (2 * k + c)  # (2k + c) E'' + D - 2φE = 0
        return [dE, ddE, *(kap * dE - rho * Yi for (kap, rho), Yi in zip(terms, Y))]

    def terminal(slope):
        sol = solve_ivp(rhs, (0, 1), [E0, slope, 0, 0, 0], rtol=1e-11, atol=1e-12, dense_output=True)
        E, dE = sol.y[0, -1], sol.y[1, -1]
        return k * dE + 0.5 * c * dE + A * E, sol

    # the terminal condition is affine in the unknown slope: two shots solve it
    f0, _ = terminal(0.0)
    f1, _ = terminal(-1.0)
    _, sol = terminal(-f0 / (f0 - f1))  # F(s) = f0 + (f0 - f1) s
    t = np.linspace(0, 1, 21)
    ref = sol.sol(t)
    np.testing.assert_allclose(cf.mean_inventory(t), ref[0], atol=1e-8)
    np.testing.assert_allclose(cf.price_impact(t), ref[2:].sum(axis=0), atol=1e-8)
    # the kernel is what was asked for
    np.testing.assert_allclose(cf.impact_kernel([0.0, 0.5]),
                               [4.5, 1.5 + 2 * math.exp(-1.5) + math.exp(-6)])


def test_splitting_an_exponential_changes_nothing():
    one = propagator_model(rho=3.0)
    split = propagator_model(kappa=0.5, rho=3.0, transient=((1.0, 3.0),))
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(split.mean_inventory(t), one.mean_inventory(t), atol=1e-12)
    np.testing.assert_allclose(split.price_impact(t), one.price_impact(t), atol=1e-12)


def test_fd_solver_with_a_propagator_converges_to_the_closed_form():
    cf = propagator_model(transient=((2.0, 3.0), (1.0, 12.0)))
    errs = []
    for r in (2, 4):
        grid = Grid(-1.5, 2.5, 100 * r, 1.0, 50 * r)
        model = LQCrowdingModel(cf)
        sol = solve(model, grid)
        errs.append([np.max(np.abs(sol.mean_inventory() - cf.mean_inventory(grid.t))),
                     np.max(np.abs(model.impact_path(sol.mean_rate, grid) - cf.price_impact(grid.t)))])
    errs = np.array(errs)
    assert np.all(errs[1] < 0.6 * errs[0]) and errs[1, 0] < 3e-3, errs


def test_a_permanent_exponent_of_its_own_moves_the_permanent_terms_only():
    """The impact path by a direct double sum over the steps, each step's flow through each
    term's exact step response, against the model's recursion; δ∞ acts on ρ = 0 only."""
    cf = propagator_model(kappa=0.7, transient=((2.0, 3.0), (1.0, 12.0)))
    grid = Grid(-1.5, 2.5, 40, 1.0, 25)
    mu = -np.linspace(2.0, 0.1, grid.n_t) * np.where(np.arange(grid.n_t) % 7 == 3, -0.5, 1.0)
    delta, lasting = 0.4, 0.8
    f, f_lasting = np.sign(mu) * np.abs(mu) ** delta, np.sign(mu) * np.abs(mu) ** lasting
    t = np.arange(grid.n_t + 1) * grid.dt
    direct = np.zeros(grid.n_t + 1)
    for n in range(1, grid.n_t + 1):
        for m in range(n):
            direct[n] += 0.7 * f_lasting[m] * grid.dt
            for kappa, rho in ((2.0, 3.0), (1.0, 12.0)):
                direct[n] += kappa * f[m] * (np.exp(-rho * (t[n] - t[m + 1])) - np.exp(-rho * (t[n] - t[m]))) / rho
    model = LQCrowdingModel(cf, impact_exponent=delta, permanent_exponent=lasting)
    np.testing.assert_allclose(model.impact_path(mu, grid), direct, rtol=1e-12, atol=1e-12)
    parts = model.term_paths(mu, grid.dt)
    assert [rho for rho, _ in parts] == [0.0, 3.0, 12.0]
    np.testing.assert_allclose(parts[0][1], 0.7 * np.concatenate([[0.0], np.cumsum(f_lasting)]) * grid.dt)
    shared = LQCrowdingModel(cf, impact_exponent=delta)
    np.testing.assert_array_equal(shared.term_paths(mu, grid.dt)[1][1], parts[1][1])
    with pytest.raises(InvalidValue, match="permanent_exponent"):
        LQCrowdingModel(cf, permanent_exponent=0.0)


def test_a_crowd_reads_its_permanent_exponent_from_a_file(tmp_path):
    """``crowd.permanent_impact_exponent = 1`` (a TOML integer) is a float exponent of the
    crowd's FD model; a typo of the key is named."""
    from mfgsim.config import ConfigError, read_toml
    from simulator.agents import ExecutionCrowd

    cf = propagator_model()
    grid = Grid(-0.6, 2.2, 29, 1.0, 10)
    path = tmp_path / "crowd.toml"
    path.write_text('[crowd]\nn_agents = 5\nstrategy = "mfg_fd"\nimpact_exponent = 0.5\n'
                    "permanent_impact_exponent = 1\n")
    crowd = read_toml(path).table("crowd").dataclass(ExecutionCrowd, model=cf, fd_grid=grid)
    assert type(crowd.permanent_impact_exponent) is float and crowd.permanent_impact_exponent == 1.0
    assert crowd.fd_model().permanent_exponent == 1.0 and crowd.fd_model().impact_exponent == 0.5
    path.write_text('[crowd]\nn_agents = 5\nstrategy = "mfg_fd"\npermanent_exponent = 0.7\n')
    with pytest.raises(ConfigError, match="permanent_exponent"):
        read_toml(path).table("crowd").dataclass(ExecutionCrowd, model=cf, fd_grid=grid)


def test_propagator_terms_are_checked():
    with pytest.raises(InvalidValue, match=r"transient\[0\].rho"):
        propagator_model(transient=((1.0, 0.0),))
    with pytest.raises(InvalidValue, match=r"transient\[1\]"):
        propagator_model(transient=((1.0, 2.0), (1.0,)))


def deterministic_spread_value(x0, k, phi, A, a, T):
    """min ∫(kν² + φx²) dt + A x_T² + a ∫|ν| dt for a seller that sells throughout: then
    ∫|ν| = x0 - x_T, and the Euler–Lagrange equation k x'' = φ x with x(0) = x0 and
    2k x'(T) + 2A x(T) = a gives x = x0 cosh ωt + C sinh ωt, ω = √(φ/k)."""
    w = math.sqrt(phi / k)
    ch, sh = math.cosh(w * T), math.sinh(w * T)
    C = (a - 2 * k * w * x0 * sh - 2 * A * x0 * ch) / (2 * k * w * ch + 2 * A * sh)
    t = np.linspace(0, T, 20001)
    x = x0 * np.cosh(w * t) + C * np.sinh(w * t)
    v = w * (x0 * np.sinh(w * t) + C * np.cosh(w * t))
    assert np.all(v <= 0), "the reference assumes the seller sells throughout"
    value = np.trapezoid(k * v**2 + phi * x**2, t) + A * x[-1] ** 2 + a * (x0 - x[-1])
    return value


def test_spread_cost_value_against_the_euler_lagrange_solution():
    """σ = 0 and no crowd (κ = c = 0): the value at x0 is the deterministic optimum with the
    half-spread paid on every share sold, and it converges at first order."""
    k, phi, A, a = 1.0, 1.0, 5.0, 0.4
    cf = LQCrowding.single(k=k, kappa=0.0, phi=phi, A=A, T=1.0, m0=GM.normal(1.0, 0.1), sigma=0.0)
    exact = {x0: deterministic_spread_value(x0, k, phi, A, a, 1.0) for x0 in (0.8, 1.0, 1.2)}
    errs = []
    for r in (2, 4):
        grid = Grid(-0.5, 2.0, 100 * r + 1, 1.0, 50 * r)
        sol = solve(LQCrowdingModel(cf, spread_cost=a), grid)
        errs.append(max(abs(np.interp(x0, grid.x, sol.value[0, 0]) - v) / v for x0, v in exact.items()))
    assert errs[1] < 0.6 * errs[0] and errs[1] < 0.015, errs
    # Richardson extrapolation (order=2) on the coarse grid does better than first order on the fine one
    coarse = Grid(-0.5, 2.0, 201, 1.0, 100)
    second = solve(LQCrowdingModel(cf, spread_cost=a), coarse, order=2)
    err2 = max(abs(np.interp(x0, coarse.x, second.value[0, 0]) - v) / v for x0, v in exact.items())
    assert err2 < 0.5 * errs[1], (err2, errs)
    # paying a on every share makes the optimum worse than without it, by less than a x0
    free = solve(LQCrowdingModel(cf), grid)
    gap = np.interp(1.0, grid.x, sol.value[0, 0]) - np.interp(1.0, grid.x, free.value[0, 0])
    assert 0 < gap < a * 1.0


def test_spread_cost_makes_a_no_trade_zone():
    """With φ = 0 an agent holding |x| <= a/(2A) never trades (the terminal penalty saved
    by a share, 2A|x|, is below the spread paid on it); its value is then A x²."""
    A, a = 5.0, 1.0
    cf = LQCrowding.single(k=1.0, kappa=0.0, phi=0.0, A=A, T=1.0, m0=GM.normal(0.0, 0.3), sigma=0.0)
    grid = Grid(-2.0, 2.0, 401, 1.0, 50)
    sol = solve(LQCrowdingModel(cf, spread_cost=a), grid)
    inside = np.abs(grid.x) < a / (2 * A) - 2 * grid.dx
    assert inside.sum() > 5
    assert np.all(sol.control[0][:, inside] == 0.0)
    np.testing.assert_allclose(sol.value[0, 0, inside], A * grid.x[inside] ** 2, atol=1e-12)
    outside = np.abs(grid.x) > a / (2 * A) + 0.2
    assert np.all(np.abs(sol.control[0][0, outside]) > 0)


@pytest.mark.parametrize("lasting", [None, 0.9])
def test_cost_decomposition_of_the_model_adds_up_to_its_value(lasting):
    """The model's cost terms (integrals of the FP law against the control and the impact
    path) add up to the execution cost its HJB value gives, to the grid's first order."""
    from mfgsim.studies.measured import DECOMPOSITION, cost_decomposition
    from simulator.agents import ExecutionCrowd
    from simulator.market import MarketSpec

    m0 = GM.normal(1.0, 0.2)
    cf = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=m0, c=0.1, transient=((2.0, 5.0),))
    errors = []
    for r in (1, 2):
        grid = Grid(-0.6, 2.2, 70 * r + 1, 1.0, 50 * r)
        crowd = ExecutionCrowd(10, cf, strategy="mfg_fd", fd_grid=grid, spread_cost=0.3, impact_exponent=0.7,
                               permanent_impact_exponent=lasting)
        spec = MarketSpec(T=1.0, dt=0.01, crowd=crowd)
        parts = cost_decomposition([], cf, spec)["model"]
        assert set(parts) == set(DECOMPOSITION) and parts["spread"] > 0 and parts["transient_impact"] > 0
        fd = LQCrowdingModel(cf, spread_cost=0.3, impact_exponent=0.7, permanent_exponent=lasting)
        assert crowd.fd_model() == fd
        sol = solve(fd, grid)
        value = float((sol.value[0, 0] * grid.cell_masses(m0)).sum() * grid.dx)  # E[u(0, Q0)], a cost
        errors.append(abs(parts["total"] / value - 1))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.02, errors


def test_a_feedback_table_trades_as_the_strategy_it_was_read_from():
    """``strategy="feedback"`` with the FD solution's control gives the bytes of ``"mfg_fd"``;
    a table of the wrong shape, a NaN in it, or one without the strategy is refused by name."""
    from simulator.agents import ExecutionCrowd
    from simulator.market import MarketSpec, run_market

    cf = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), transient=((2.0, 5.0),))
    grid = Grid(-0.6, 2.2, 71, 1.0, 50)
    fd_crowd = ExecutionCrowd(20, cf, strategy="mfg_fd", fd_grid=grid, spread_cost=0.3, impact_exponent=0.7)
    control = solve(LQCrowdingModel(cf, spread_cost=0.3, impact_exponent=0.7), grid).control
    table_crowd = ExecutionCrowd(20, cf, strategy="feedback", fd_grid=grid, feedback=control)
    runs = [run_market(MarketSpec(T=1.0, dt=0.01, crowd=c, record_every=10), seed=3) for c in (fd_crowd, table_crowd)]
    np.testing.assert_array_equal(runs[0].trades, runs[1].trades)
    np.testing.assert_array_equal(runs[0].agents["inventory"], runs[1].agents["inventory"])
    # a process keeps the strategy tables of the crowds it ran last; a crowd with another
    # table compares equal (its equality ignores the table) and must not get the old one
    slower = ExecutionCrowd(20, cf, strategy="feedback", fd_grid=grid, feedback=0.5 * control)
    again = run_market(MarketSpec(T=1.0, dt=0.01, crowd=slower, record_every=10), seed=3)
    assert slower == table_crowd and not np.array_equal(again.agents["inventory"], runs[1].agents["inventory"])
    bad = control.copy()
    bad[0, 3, 4] = np.nan
    for table, match in ((control[:, :-1], "crowd.feedback"), (bad, "finite"), (None, "needs a policy table")):
        with pytest.raises(InvalidValue, match=match):
            ExecutionCrowd(20, cf, strategy="feedback", fd_grid=grid, feedback=table)
    with pytest.raises(InvalidValue, match="only strategy 'feedback'"):
        ExecutionCrowd(20, cf, strategy="mfg", feedback=control)
    with pytest.raises(InvalidValue, match="crowd.strategy='mfg' .* permanent_impact_exponent are solved by 'mfg_fd'"):
        ExecutionCrowd(20, cf, strategy="mfg", permanent_impact_exponent=0.8)
    with pytest.raises(InvalidValue, match="crowd.permanent_impact_exponent"):
        ExecutionCrowd(20, cf, strategy="mfg_fd", fd_grid=grid, permanent_impact_exponent=-1.0)
