"""The finite-difference HJB–FP solver against the closed forms, and its guarantees."""

import numpy as np
import polars as pl
import pytest

from mfg import _fd_kernels as K
from mfg.closed_form import LQCrowding, PreferenceType
from mfg.fd import CrowdAversionModel, Grid, LQCrowdingModel, MFGConvergenceError, solve
from mfg.laws import GaussianMixture as GM


def crowding(kappa, **kw):
    params = dict(k=1.0, kappa=kappa, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), sigma=0.3)
    params.update(kw)
    return LQCrowding.single(**params)


def errors(cf: LQCrowding, sol):
    """Sup errors in E(t), Var(t), μ(t) and the value (in the bulk: |x - E(t)| <= 2 sd)."""
    g = sol.grid
    t = g.t
    err_E = np.max(np.abs(sol.mean_inventory() - cf.mean_inventory(t)))
    err_V = np.max(np.abs(sol.variance() - cf.variance(t)))
    err_mu = np.max(np.abs(sol.mean_rate - cf.mean_rate(t[:-1])))
    err_u = 0.0
    for n in range(0, g.n_t + 1, max(1, g.n_t // 10)):
        law = cf.law(float(t[n]))
        bulk = np.abs(g.x - law.mean) <= 2 * np.sqrt(law.variance)
        exact = -cf.value(t[n], g.x[bulk])  # the solver's value is a cost: u = -h
        err_u = max(err_u, np.max(np.abs(sol.value[0, n, bulk] - exact)))
    return np.array([err_E, err_V, err_mu, err_u])


def test_first_order_convergence_against_closed_form():
    cf = crowding(2.0)
    errs = [errors(cf, solve(LQCrowdingModel(cf), Grid(-1.5, 2.5, 50 * r, 1.0, 25 * r))) for r in (4, 8, 16)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # rows: refinement step; columns: E, Var, μ, value. First-order scheme: errors halve.
    assert np.all(orders > 0.8) and np.all(orders < 1.3), orders
    assert errs[-1][0] < 5e-3


def test_mass_is_conserved_and_density_stays_nonnegative():
    sol = solve(LQCrowdingModel(crowding(5.0)), Grid(-1.5, 2.5, 120, 1.0, 60))
    np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-12)
    assert sol.m.min() >= 0.0


def test_fp_kernel_conserves_mass_for_any_upwind_velocities():
    rng = np.random.default_rng(7)
    n_t, n_x, dx, dt = 40, 60, 0.05, 0.02
    bplus = np.abs(rng.normal(0, 5, (n_t + 1, n_x)))
    bminus = -np.abs(rng.normal(0, 5, (n_t + 1, n_x)))
    m0 = rng.random(n_x)
    m0 /= m0.sum() * dx
    m = np.empty((n_t + 1, n_x))
    K.fp_forward(dx, dt, 0.4, bplus, bminus, m0, m, np.empty(n_t))
    np.testing.assert_allclose(m.sum(axis=1) * dx, 1.0, atol=1e-13)
    assert m.min() >= 0.0


@pytest.mark.parametrize("kappa", [20.0, 50.0])
@pytest.mark.parametrize("method", ["anderson", "newton"])
def test_strong_crowding_converges(kappa, method):
    cf = crowding(kappa)
    sol = solve(LQCrowdingModel(cf), Grid(-2.5, 3.0, 220, 1.0, 220), method=method, tol=1e-8)
    assert sol.residuals[-1] <= 1e-8
    assert errors(cf, sol)[0] < 0.03


def test_undamped_picard_diverges_with_a_clear_error():
    with pytest.raises(MFGConvergenceError) as info:
        solve(LQCrowdingModel(crowding(20.0)), Grid(-1.5, 2.5, 100, 1.0, 50), method="picard", damping=1.0,
              max_iter=40)
    assert len(info.value.residuals) >= 5
    assert info.value.residuals[-1] > info.value.residuals[0]


def test_fictitious_play_converges_slowly_but_surely():
    """Averaging with weights 1/(k+2): the residual falls like 1/k, not geometrically."""
    sol = solve(LQCrowdingModel(crowding(1.0)), Grid(-1.5, 2.5, 80, 1.0, 40), method="fictitious", tol=2e-2,
                max_iter=400)
    r = np.array(sol.residuals)
    assert r[-1] <= 2e-2 and np.all(np.diff(r) < 0)


def test_preference_types_agree_with_their_bvp():
    cf = LQCrowding(k=1.0, kappa=3.0, T=1.0, sigma=0.25, c=0.5, types=(
        PreferenceType(1.0, 10.0, GM.normal(1.0, 0.2), weight=0.6),
        PreferenceType(4.0, 2.0, GM.normal(-0.5, 0.2), weight=0.4)))
    errs = []
    for r in (1, 2):
        g = Grid(-2.0, 2.5, 150 * r, 1.0, 75 * r)
        sol = solve(LQCrowdingModel(cf), g)
        per_type = sol.m @ g.x * g.dx  # (J, N+1)
        errs.append(max(np.max(np.abs(per_type[j] - cf.mean_inventory(g.t, j))) for j in range(2)))
        np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-12)
    assert errs[1] < 0.6 * errs[0] and errs[1] < 5e-3


def test_crowd_aversion_spreads_the_crowd():
    base = dict(k=1.0, phi=1.0, A=2.0, T=1.0, m0=GM.normal(1.0, 0.15), sigma=0.2)
    g = Grid(-1.5, 2.5, 160, 1.0, 80)
    calm = solve(CrowdAversionModel(alpha=0.0, **base), g)
    averse = solve(CrowdAversionModel(alpha=0.5, beta=1.5, **base), g)
    assert averse.residuals[-1] <= 1e-8
    np.testing.assert_allclose(averse.mass(), 1.0, atol=1e-12)
    # congestion cost: the crowd avoids dense places, so the peak density is lower
    assert averse.density[1:].max(axis=1).mean() < calm.density[1:].max(axis=1).mean()


def test_parquet_output_long_format(tmp_path):
    g = Grid(-1.5, 2.5, 40, 1.0, 10)
    sol = solve(LQCrowdingModel(crowding(1.0)), g)
    path = sol.write_parquet(tmp_path / "sol" / "lq.parquet")
    df = pl.read_parquet(path)
    assert df.columns == ["type", "t", "x", "m", "V", "control"]
    assert df.height == (g.n_t + 1) * g.n_x
    mass = df.group_by("t").agg((pl.col("m").sum() * g.dx).alias("mass"))["mass"]
    np.testing.assert_allclose(mass.to_numpy(), 1.0, atol=1e-12)
    assert not list(tmp_path.glob("sol/*.tmp"))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="grid.n_x"):
        Grid(0.0, 1.0, 3, 1.0, 10)
    with pytest.raises(ValueError, match="x_max"):
        Grid(1.0, 0.0, 10, 1.0, 10)
    with pytest.raises(ValueError, match="method"):
        solve(LQCrowdingModel(crowding(1.0)), Grid(-1.5, 2.5, 20, 1.0, 5), method="magic")
    with pytest.raises(ValueError, match="differs from the model's horizon"):
        solve(LQCrowdingModel(crowding(1.0)), Grid(-1.5, 2.5, 20, 2.0, 5))
    with pytest.raises(ValueError, match="widen the grid"):
        solve(LQCrowdingModel(crowding(1.0)), Grid(0.5, 1.5, 40, 1.0, 10))
    with pytest.raises(ValueError, match="alpha"):
        CrowdAversionModel(k=1.0, phi=1.0, A=1.0, alpha=-1.0, T=1.0, m0=GM.normal(0, 1))


def test_newton_tolerance_scales_with_the_value():
    """|u| ~ A x_max² = 1e4 on this grid: an absolute 1e-12 test could never pass."""
    cf = crowding(100.0, A=100.0, sigma=0.0)
    grid = Grid(-10.0, 10.0, 200, 1.0, 100)
    sol = solve(LQCrowdingModel(cf), grid)
    assert np.max(np.abs(sol.value)) > 1e3
    assert np.max(np.abs(sol.mean_inventory() - cf.mean_inventory(grid.t))) < 0.2


def test_a_newton_failure_names_its_cause():
    with pytest.raises(MFGConvergenceError, match="max_newton=1"):
        solve(LQCrowdingModel(crowding(2.0)), Grid(-1.5, 2.5, 40, 1.0, 10), max_newton=1)


def test_iterations_count_map_evaluations_for_every_method():
    cf, grid = crowding(5.0), Grid(-1.5, 2.5, 80, 1.0, 40)
    anderson = solve(LQCrowdingModel(cf), grid)
    newton = solve(LQCrowdingModel(cf), grid, method="newton")
    assert anderson.iterations == len(anderson.residuals)
    assert newton.iterations > len(newton.residuals)  # GMRES evaluates Φ between Newton steps
    assert newton.evaluations == newton.iterations


@pytest.mark.parametrize("kwargs, field", [
    ({"tol": float("nan")}, "tol"), ({"tol": 0.0}, "tol"), ({"tol": -1.0}, "tol"),
    ({"max_iter": 0}, "max_iter"), ({"anderson_depth": -1}, "anderson_depth"),
    ({"newton_tol": float("inf")}, "newton_tol"), ({"max_newton": 0}, "max_newton"),
    ({"max_iter": 2.5}, "max_iter"),
])
def test_solver_arguments_are_checked(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        solve(LQCrowdingModel(crowding(1.0)), Grid(-1.5, 2.5, 20, 1.0, 5), **kwargs)


def test_grid_takes_numpy_integers_and_m0_off_the_grid_says_widen():
    grid = Grid(-1.5, 2.5, np.int64(20), 1.0, np.int32(5))
    assert type(grid.n_x) is int and grid.x.size == 20
    with pytest.raises(ValueError, match="grid.n_t"):
        Grid(0.0, 1.0, 10, 1.0, True)
    with pytest.raises(ValueError, match="initial law m0 .* widen the grid"):
        solve(LQCrowdingModel(crowding(1.0, m0=GM.normal(5.0, 0.2))), Grid(-1.5, 2.5, 20, 1.0, 5))


def test_transient_impact_converges_to_the_closed_form():
    """Resilience ρ: the solver's price trend comes from Y, integrated over each step;
    the mean and the impact path converge at first order to the exact BVP solution."""
    cf = crowding(5.0, c=0.3, rho=4.0)
    errs = []
    for r in (2, 4, 8):
        grid = Grid(-1.5, 2.5, 100 * r, 1.0, 50 * r)
        model = LQCrowdingModel(cf)
        sol = solve(model, grid)
        errs.append([np.max(np.abs(sol.mean_inventory() - cf.mean_inventory(grid.t))),
                     np.max(np.abs(model.impact_path(sol.mean_rate, grid) - cf.price_impact(grid.t)))])
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 0.9) and np.all(orders < 1.1), orders
    assert errs[-1][0] < 2e-3
    # ρ = 0 in the solver is the permanent model: Y = κ (E - E0) step by step
    permanent = LQCrowdingModel(crowding(5.0))
    grid = Grid(-1.5, 2.5, 100, 1.0, 50)
    sol = solve(permanent, grid)
    np.testing.assert_allclose(permanent.impact_path(sol.mean_rate, grid),
                               5.0 * np.concatenate([[0.0], np.cumsum(sol.mean_rate) * grid.dt]))


def test_second_order_option_converges_at_second_order():
    """Richardson extrapolation of the monotone scheme: the mean inventory's error falls by
    about 4 per halving (the first-order scheme's by 2), mass is still one."""
    cf = crowding(2.0)
    errs = []
    for r in (2, 4, 8):
        grid = Grid(-1.5, 2.5, 50 * r, 1.0, 25 * r)
        sol = solve(LQCrowdingModel(cf), grid, order=2)
        errs.append(np.max(np.abs(sol.mean_inventory() - cf.mean_inventory(grid.t))))
        np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-9)
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 1.7), orders
    assert "Richardson" in sol.method and sol.evaluations > 0
    with pytest.raises(ValueError, match="order=3"):
        solve(LQCrowdingModel(cf), Grid(-1.5, 2.5, 20, 1.0, 5), order=3)


def test_warm_started_sweeps_solve_the_same_hjb():
    """After its first call the sweeper starts each HJB step from its previous sweep: the
    map Φ must not depend on where it was last evaluated (only through Newton's tolerance)."""
    from mfg.fd import _Sweeper

    cf, grid = crowding(5.0), Grid(-1.5, 2.5, 80, 1.0, 40)
    model = LQCrowdingModel(cf)
    rng = np.random.default_rng(3)
    c1, c2 = rng.normal(0.0, 1.0, grid.n_t), rng.normal(-1.0, 0.5, grid.n_t)
    cold = _Sweeper(model, grid, 1e-12, 50)
    expected, u_cold = cold(c2), cold.u.copy()
    warm = _Sweeper(model, grid, 1e-12, 50)
    warm(c1)
    np.testing.assert_allclose(warm(c2), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(warm.u, u_cold, rtol=0, atol=1e-10 * np.max(np.abs(u_cold)))


def test_second_order_is_the_extrapolation_of_two_separate_solves():
    """order=2 starts its fine solve from the coarse coupling: it must land on the same
    fixed point as a fine solve from the model's own start, in fewer iterations."""
    cf = crowding(5.0)
    model = LQCrowdingModel(cf)
    grid, fine_grid = Grid(-1.5, 2.5, 60, 1.0, 30), Grid(-1.5, 2.5, 119, 1.0, 60)
    coarse, fine = solve(model, grid, tol=1e-11), solve(model, fine_grid, tol=1e-11)
    sol = solve(model, grid, order=2, tol=1e-11)
    np.testing.assert_allclose(sol.mean_rate, 2 * fine.mean_rate.reshape(-1, 2).mean(axis=1) - coarse.mean_rate,
                               rtol=0, atol=1e-8)
    assert sol.iterations - coarse.iterations < fine.iterations
    refined = model.refine_coupling(coarse.coupling, grid)
    assert refined.shape == (fine_grid.n_t,)
    np.testing.assert_array_equal(refined[::2], coarse.coupling)
    # a local coupling (N, I): steps repeated, nodes interpolated onto the fine grid
    averse = CrowdAversionModel(k=1.0, phi=1.0, A=5.0, alpha=0.5, T=1.0, m0=GM.normal(0.5, 0.3), sigma=0.3)
    density = averse.initial_coupling(grid)
    refined = averse.refine_coupling(density, grid)
    assert refined.shape == (fine_grid.n_t, fine_grid.n_x)
    np.testing.assert_array_equal(refined[1::2, ::2], density)
    np.testing.assert_allclose(refined[0, 1::2], 0.5 * (density[0, 1:] + density[0, :-1]))


def test_initial_coupling_is_checked_and_used():
    cf, grid = crowding(5.0), Grid(-1.5, 2.5, 60, 1.0, 30)
    model = LQCrowdingModel(cf)
    with pytest.raises(ValueError, match=r"initial_coupling must be finite and shaped \(30,\)"):
        solve(model, grid, initial_coupling=np.zeros(29))
    with pytest.raises(ValueError, match="initial_coupling"):
        solve(model, grid, initial_coupling=np.full(30, np.nan))
    sol = solve(model, grid)
    again = solve(model, grid, initial_coupling=sol.coupling)
    assert again.iterations == 1
    np.testing.assert_allclose(again.mean_rate, sol.mean_rate, atol=1e-8)


def direct_mean_path(k, phi, A, alpha, m0, T, n=100):
    """No coupling and no noise: each agent solves min Σ (k|ν|^α + φ x²) dt + A x_T² over a
    piecewise-constant rate path (direct transcription, L-BFGS-B); the mean over Gauss–
    Hermite starting points is the population's mean path."""
    from scipy.optimize import minimize

    dt = T / n
    nodes, weights = np.polynomial.hermite_e.hermegauss(12)
    weights = weights / weights.sum()
    paths = []
    for z in nodes:
        x0 = m0.mean + np.sqrt(m0.variance) * z

        def cost(nu, x0=x0):
            x = x0 + np.concatenate([[0.0], np.cumsum(nu) * dt])
            J = np.sum(k * np.abs(nu) ** alpha + phi * x[:-1] ** 2) * dt + A * x[-1] ** 2
            dx = 2 * phi * x[:-1] * dt  # ∂J/∂x_i for i < n, then propagate: x_j depends on ν_i for j > i
            grad_x = np.concatenate([dx, [2 * A * x[-1]]])
            back = np.cumsum(grad_x[::-1])[::-1][1:] * dt
            return J, k * alpha * np.abs(nu) ** (alpha - 1) * np.sign(nu) * dt + back

        res = minimize(cost, -np.full(n, x0 / T), jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-12})
        paths.append(x0 + np.concatenate([[0.0], np.cumsum(res.x) * dt]))
    return np.linspace(0.0, T, n + 1), weights @ np.array(paths)


def test_power_law_trading_cost_against_a_direct_optimisation():
    """A concave per-share cost k|ν|^{1/2} (α = 3/2): no closed form, so the FD mean path is
    checked against each agent's optimal path found by direct optimisation; α = 2 gives
    back the quadratic solver exactly."""
    m0 = GM.normal(1.0, 0.2)
    cf = LQCrowding.single(k=1.0, kappa=0.0, phi=1.0, A=10.0, T=1.0, m0=m0, sigma=0.0)
    t_ref, E_ref = direct_mean_path(1.0, 1.0, 10.0, 1.5, m0, 1.0)
    errors = []
    for r in (4, 8):
        grid = Grid(-0.6, 2.2, 70 * r, 1.0, 25 * r)
        sol = solve(LQCrowdingModel(cf, cost_exponent=1.5), grid)
        errors.append(np.max(np.abs(np.interp(t_ref, grid.t, sol.mean_inventory()) - E_ref)))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.02, errors
    grid = Grid(-0.6, 2.2, 140, 1.0, 50)
    quadratic = solve(LQCrowdingModel(cf), grid)
    np.testing.assert_array_equal(solve(LQCrowdingModel(cf, cost_exponent=2.0), grid).m, quadratic.m)
    # the concave cost makes the agents trade faster early (big rates are relatively cheap)
    assert solve(LQCrowdingModel(cf, cost_exponent=1.5), grid).mean_inventory()[5] < quadratic.mean_inventory()[5]
    with pytest.raises(ValueError, match="cost_exponent"):
        LQCrowdingModel(cf, cost_exponent=1.0)


def test_convergence_error_survives_pickling():
    """A worker process sends its exception back pickled: it must come back whole."""
    import pickle

    err = MFGConvergenceError("did not converge", [1.0, 0.5])
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, MFGConvergenceError) and back.residuals == [1.0, 0.5] and str(back) == str(err)
