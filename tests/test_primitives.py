"""The book's primitives (analysis.primitives) on synthetic data with known truth: the data
are made here by a direct convolution sum and plain random draws, not by the estimators'
own formulas."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from analysis.impact import ExecutionCells
from analysis.primitives import (ImpactCurve, Propagator, PrimitiveError, fill_table, fit_propagator,
                                 fit_temporary_cost, held_out_error)

TRUE = {"permanent": 0.5, "terms": ((2.0, 1.0), (1.0, 12.0))}


def true_kernel(tau):
    return TRUE["permanent"] + sum(a * np.exp(-r * np.asarray(tau)) for a, r in TRUE["terms"])


def convolve(rates, dt, kernel=true_kernel):
    """price(t_n) = Σ_{m<n} μ_m ∫_{t_m}^{t_m+1} G(t_n - s) ds, the integral by a 40-point
    Gauss–Legendre rule on each step (a different route from the fit's exact exponentials)."""
    x, w = np.polynomial.legendre.leggauss(40)
    out = np.zeros(rates.size + 1)
    for n in range(1, rates.size + 1):
        t_n = n * dt
        s = (np.arange(n)[:, None] + 0.5 * (x[None, :] + 1)) * dt
        out[n] = np.sum(rates[:n, None] * kernel(t_n - s) * w[None, :] * 0.5 * dt)
    return out


def curves(seeds=8, noise=0.01, seed=1):
    rng = np.random.default_rng(seed)
    dt = 0.01
    out = []
    crowd_rate = -3.0 * np.exp(-3.0 * (np.arange(100) + 0.5) * dt)
    shapes = {"crowd": crowd_rate}
    for size in (0.5, 1.0, 2.0):
        shapes[f"meta {size}"] = np.concatenate([np.full(50, -size / 0.5), np.zeros(150)])
    for name, rate in shapes.items():
        clean = convolve(rate, dt)
        walk = noise * np.cumsum(rng.standard_normal((seeds, rate.size)), axis=1) * math.sqrt(dt)
        prices = clean[None, :] + np.concatenate([np.zeros((seeds, 1)), walk], axis=1)
        out.append(ImpactCurve(name, np.tile(rate, (seeds, 1)), prices, dt))
    return out


def test_propagator_recovers_a_known_kernel_jointly():
    fit = fit_propagator(curves(), n_boot=20)
    tau = np.array([0.0, 0.05, 0.2, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(fit.kernel(tau), true_kernel(tau), rtol=0.08)
    # over a window of 2 time units a permanent part and a slow exponential are hard to tell
    # apart: the bootstrap says so, and the truth lies within its error
    assert abs(fit.permanent - 0.5) < 3 * fit.permanent_se
    assert len(fit.rates) >= 1 and all(np.isfinite(fit.rates_se)) and fit.permanent_se > 0
    assert max(fit.curve_errors.values()) < 0.05
    # the model's terms carry the same kernel into the MFG
    from mfg.closed_form import LQCrowding
    from mfg.laws import GaussianMixture as GM
    terms = fit.model_terms()
    assert terms.pop("impact_exponent") == 1.0 and terms.pop("permanent_exponent") is None
    cf = LQCrowding.single(k=1.0, phi=1.0, A=5.0, T=1.0, m0=GM.normal(1.0, 0.1), **terms)
    np.testing.assert_allclose(cf.impact_kernel(tau), fit.kernel(tau))


def test_held_out_meta_order_is_predicted():
    out = held_out_error(curves(), "meta 1.0")
    assert abs(out["peak_error"]) < 0.05 and abs(out["plateau_error"]) < 0.1, out
    # the observed peak's noise over the 8 seeds: a walk of 0.01 per √time, 0.5 time units in
    expected = 0.01 * math.sqrt(0.5) / math.sqrt(8)
    assert out["peak_se"] * abs(out["peak"]) == pytest.approx(expected, rel=0.5)
    assert 0 < out["plateau_se"] < 0.2
    with pytest.raises(PrimitiveError, match="relaxation"):
        held_out_error(curves(), "crowd")


def test_a_held_out_size_can_be_observed_on_other_seeds():
    own = held_out_error(curves(), "meta 1.0")
    other = {c.name: c for c in curves(seeds=32, seed=7)}["meta 1.0"]
    out = held_out_error(curves(), "meta 1.0", observed=other)
    # the same kernel, fitted without the size, against the other seeds' peak and plateau
    assert out["propagator"] == own["propagator"] and out["peak_predicted"] == own["peak_predicted"]
    assert out["peak"] == pytest.approx(other.mean_prices[other.end_index]) and out["peak"] != own["peak"]
    # the observed peak's noise over the other 32 seeds (as in the test above)
    assert out["peak_se"] * abs(out["peak"]) == pytest.approx(0.01 * math.sqrt(0.5) / math.sqrt(32), rel=0.3)
    with pytest.raises(ValueError, match="observed"):
        held_out_error(curves(), "meta 1.0", observed=other.prices)


def test_the_point_fit_is_handed_on_before_its_errors():
    """on_point gets the kernel without errors, once the bootstrap's refits are queued, so
    that a loop can start what needs only the kernel beside them."""
    events, seen = [], []

    def mapper(*args):
        events.append("refits queued")
        return map(*args)

    def on_point(kernel):
        events.append("point")
        seen.append(kernel)

    fit = fit_propagator(curves(), n_boot=8, mapper=mapper, on_point=on_point)
    assert events == ["refits queued", "point"]
    assert seen[0].rates == fit.rates and seen[0].permanent == fit.permanent
    assert math.isnan(seen[0].permanent_se) and fit.permanent_se > 0
    seen.clear()
    assert fit_propagator(curves(), n_boot=0, on_point=seen.append) == seen[0]


def test_a_held_out_error_has_a_bootstrap_interval():
    """The interval covers the noise of the fit and of the observation: a right kernel's
    true error, zero, lies inside it, and it is wider than the observed values' noise alone."""
    other = {c.name: c for c in curves(seeds=32, seed=7)}["meta 1.0"]
    point = held_out_error(curves(), "meta 1.0", observed=other)
    out = held_out_error(curves(), "meta 1.0", observed=other, n_boot=60, seed=3)
    # the same point fit, now with its errors
    assert out["plateau_error"] == point["plateau_error"] and out["propagator"].rates == point["propagator"].rates
    assert out["propagator"].permanent_se > 0
    for key in ("peak", "plateau"):
        lo, hi = out[f"{key}_error_lo"], out[f"{key}_error_hi"]
        assert lo < out[f"{key}_error"] < hi and lo < 0.0 < hi, (key, out)
        assert hi - lo > 2 * 1.96 * out[f"{key}_se"], (key, out)
    # the same draws through a pool
    with ThreadPoolExecutor(2) as pool:
        pooled = held_out_error(curves(), "meta 1.0", observed=other, n_boot=60, seed=3, mapper=pool.map)
    assert pooled["plateau_error_lo"] == out["plateau_error_lo"]
    assert "peak_error_lo" not in point


def test_propagator_recovers_a_concave_instantaneous_impact():
    """Curves made with f(μ) = sign(μ)|μ|^0.6 fed to the kernel: a linear propagator cannot
    explain meta-orders of several sizes and the crowd together, the fitted δ can."""
    delta = 0.6
    concave = []
    for c in curves(noise=0.003):
        flow = np.sign(c.rates[0]) * np.abs(c.rates[0]) ** delta
        clean = convolve(flow, c.dt)
        concave.append(ImpactCurve(c.name, c.rates, c.prices - c.prices.mean(axis=0) + clean, c.dt))
    linear = fit_propagator(concave, n_boot=0)
    fitted = fit_propagator(concave, n_boot=10, exponent=None)
    assert fitted.exponent == pytest.approx(delta, abs=0.03) and fitted.exponent_se > 0
    assert max(fitted.curve_errors.values()) < 0.02 < max(linear.curve_errors.values())
    assert fitted.model_terms()["impact_exponent"] == fitted.exponent
    # the bootstrap's refits through a pool's map, in chunks: the resamples are drawn
    # before they are sent, so the errors are the same to the bit
    with ThreadPoolExecutor(3) as pool:
        assert fit_propagator(concave, n_boot=10, exponent=None, mapper=pool.map) == fitted


def test_a_permanent_part_with_its_own_exponent_is_recovered():
    """Curves whose lasting impact acts on |μ|^0.9 and transient one on |μ|^0.4: one exponent
    cannot give the meta-orders their plateau/peak ratios, which grow with size; δ and δ∞
    fitted apart can, and the fitted kernel predicts a held-out size's plateau."""
    delta, lasting = 0.4, 0.9

    def transient(tau):
        return true_kernel(tau) - TRUE["permanent"]

    made = []
    for c in curves(noise=0.003):
        rate = c.rates[0]
        clean = (TRUE["permanent"] * np.concatenate([[0.0], np.cumsum(np.sign(rate) * np.abs(rate) ** lasting)]) * c.dt
                 + convolve(np.sign(rate) * np.abs(rate) ** delta, c.dt, transient))
        made.append(ImpactCurve(c.name, c.rates, c.prices - c.prices.mean(axis=0) + clean, c.dt))
    shared = fit_propagator(made, n_boot=0, exponent=None)
    own = fit_propagator(made, n_boot=10, exponent=None, permanent_exponent=None)
    # over a window of 2 time units G∞ |μ|^δ∞ trades off against the slow exponential's
    # |μ|^δ (as G∞ against that exponential above): δ∞ within 0.1, the misfit 10 times smaller
    assert own.permanent_exponent == pytest.approx(lasting, abs=0.1) and own.exponent == pytest.approx(delta, abs=0.1)
    assert 0 < own.permanent_exponent_se < 0.05 and shared.permanent_exponent is None
    assert max(own.curve_errors.values()) < 0.1 * max(shared.curve_errors.values())
    tau = np.array([0.0, 0.1, 0.5, 2.0])
    np.testing.assert_allclose(own.kernel(tau), true_kernel(tau), rtol=0.1)
    terms = own.model_terms()
    assert (terms["impact_exponent"], terms["permanent_exponent"]) == (own.exponent, own.permanent_exponent)
    for name in ("meta 0.5", "meta 2.0"):  # an end of the sizes: an extrapolation either way
        held = held_out_error(made, name, exponent=None, permanent_exponent=None)
        one = held_out_error(made, name, exponent=None)
        assert abs(held["plateau_error"]) < 0.05 < abs(one["plateau_error"]), (name, held, one)
    # without exponentials δ acts on nothing: the one exponent is the permanent part's
    alone = fit_propagator(made, 0, n_boot=5, exponent=None, permanent_exponent=None)
    one = fit_propagator(made, 0, n_boot=0, exponent=None)
    assert alone.permanent_exponent is None and alone.exponent_se > 0
    assert alone.exponent == pytest.approx(one.exponent, abs=1e-3)
    with pytest.raises(ValueError, match="permanent_exponent"):
        fit_propagator(made, permanent_exponent="own")


def test_propagator_with_one_exponential_is_the_exact_exponential():
    dt = 0.02
    rate = np.concatenate([np.full(30, -1.0), np.zeros(70)])
    truth = Propagator(0.3, (1.5,), (4.0,))
    prices = truth.impact(rate, dt)
    fit = fit_propagator([ImpactCurve("one", rate[None], prices[None], dt)], n_exponentials=1, n_boot=0)
    assert fit.permanent == pytest.approx(0.3, rel=1e-5)
    assert fit.amplitudes[0] == pytest.approx(1.5, rel=1e-5) and fit.rates[0] == pytest.approx(4.0, rel=1e-4)


def test_propagator_refuses_curves_without_trading():
    flat = ImpactCurve("flat", np.zeros((2, 50)), np.zeros((2, 51)), 0.1)
    with pytest.raises(PrimitiveError, match="no curve has any trading"):
        fit_propagator([flat])
    with pytest.raises(ValueError, match="prices"):
        ImpactCurve("bad", np.zeros((2, 50)), np.zeros((2, 50)), 0.1)


def synthetic_cells(a=0.02, k=0.3, alpha=1.5, c=0.1, n=4000, runs=10, seed=3):
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.normal(0.0, 0.7, n))
    crowd = rng.normal(0.5, 0.3, n)
    cost = a + k * rate ** (alpha - 1) + c * crowd + rng.normal(0, 0.02, n)
    return ExecutionCells(cost, rate, crowd, rng.integers(runs, size=n))


def test_temporary_cost_recovers_spread_slippage_and_exponent():
    fit = fit_temporary_cost(synthetic_cells(), n_boot=50)
    for name, truth in (("spread", 0.02), ("k", 0.3), ("alpha", 1.5), ("crowd", 0.1)):
        value, se = getattr(fit, name), getattr(fit, f"{name}_se")
        assert abs(value - truth) < max(4 * se, 1e-3), (name, value, se)
    assert fit.cost_per_share(1.0, 0.0) == pytest.approx(fit.spread + fit.k)


def test_temporary_cost_says_what_is_missing():
    few = synthetic_cells(n=20)
    with pytest.raises(PrimitiveError, match="at least 30"):
        fit_temporary_cost(few)
    flat = synthetic_cells()
    flat = ExecutionCells(flat.cost, np.ones_like(flat.rate), flat.crowd, flat.run)
    with pytest.raises(PrimitiveError, match="hardly vary"):
        fit_temporary_cost(flat)
    falling = synthetic_cells(k=-0.3)
    with pytest.raises(PrimitiveError, match="does not grow"):
        fit_temporary_cost(falling, n_boot=0)


def test_fill_table_counts_fills_and_leaves_unquoted_levels_empty():
    rng = np.random.default_rng(7)
    n, dt = 200_000, 0.01
    levels = rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], size=n)
    mean = rng.uniform(1.0, 3.0, n)
    intensity = 20.0 * np.exp(-1.2 * levels + 0.4 * mean)
    filled = (rng.random(n) < intensity * dt).astype(float)
    table = fill_table(levels, mean, filled, dt, mean_bins=3)
    assert table.levels.tolist() == [0.5, 1.0, 1.5, 2.0, 3.0]
    expected = 20.0 * np.exp(-1.2 * table.levels[:, None] + 0.4 * table.mean_centres[None, :])
    z = (table.rate - expected) / table.rate_se
    assert np.all(np.abs(z) < 4.5), z
    assert table.intensity(1.0, float(table.mean_centres[1])) == pytest.approx(table.rate[1, 1])
    with pytest.raises(PrimitiveError, match="2.5 ticks was never quoted"):
        table.intensity(2.5, 2.0)
    # a level quoted only while the mean was high has no rate at low means: NaN, not invented
    sparse = fill_table(np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0]), np.array([1.0, 1.1, 2.9, 3.0, 1.0, 1.0]),
                        np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0]), dt, mean_bins=2)
    assert np.isnan(sparse.rate[1, 1]) and sparse.observations[1, 1] == 0
    with pytest.raises(PrimitiveError, match="never quoted while the mean quote"):
        sparse.intensity(2.0, 3.0)
    with pytest.raises(PrimitiveError, match="0 fills"):
        fill_table(levels[:10], mean[:10], np.zeros(10), dt)


def test_fill_table_counts_parts_of_a_quote():
    """Half a two-lot quote filled is half a fill: the rate counts 0.5 and the premium is what
    that fill earned, not diluted by a count rounded up to one."""
    from analysis.primitives import fill_table

    table = fill_table(np.array([1.0, 1.0, 2.0, 2.0]), np.ones(4), np.array([0.5, 0.0, 1.0, 0.0]), 0.1,
                       mean_bins=1, earned=np.array([1.5, 1.5, 2.0, 2.0]))
    assert table.fills[:, 0].tolist() == [0.5, 1.0]
    assert table.rate[:, 0] == pytest.approx([0.5 / (2 * 0.1), 1.0 / (2 * 0.1)])
    assert table.premium.tolist() == [1.5, 2.0]


def test_compiled_nnls_matches_scipy_on_random_problems():
    """The exact support search of the propagator fit against scipy's Lawson–Hanson NNLS."""
    from scipy.optimize import nnls

    from analysis._nnls_kernels import nnls_normal

    rng = np.random.default_rng(5)
    for trial in range(200):
        p = 1 + trial % 4
        X = rng.normal(size=(30, p))
        if trial % 7 == 0:
            X[:, -1] = X[:, 0]  # a singular Gram matrix
        y = rng.normal(size=30) + X @ rng.normal(size=p)
        coef, sse = nnls_normal(X.T @ X, X.T @ y, float(y @ y))
        ref, norm = nnls(X, y)
        assert np.all(coef >= 0)
        assert sse == pytest.approx(norm**2, rel=1e-8, abs=1e-9)
        assert float(np.sum((X @ coef - y) ** 2)) == pytest.approx(norm**2, rel=1e-8, abs=1e-9)


def test_one_call_builds_the_weighted_column_of_every_curve():
    """The compiled column over curves of several lengths and steps is, bit for bit, each
    curve's own decaying_impact times its weights, end to end (the fit's reference path)."""
    from analysis._nnls_kernels import weighted_column
    from mfg.closed_form import decay_gain, decaying_impact

    rng = np.random.default_rng(9)
    flows = [rng.normal(size=n) for n in (3, 40, 17)]
    dts = [0.5, 0.002, 0.01]
    weights = [rng.uniform(0.1, 2.0, size=f.size + 1) for f in flows]
    starts = np.cumsum([0] + [f.size + 1 for f in flows]).astype(np.int64)
    for rate in (0.0, 0.7, 35.0):
        decay, gain = np.array([decay_gain(rate, dt) for dt in dts]).T
        out = np.full(starts[-1], np.nan)
        weighted_column(np.concatenate(flows), starts, decay, gain, np.concatenate(weights), out)
        reference = np.concatenate([decaying_impact(f, dt, rate) * w for f, dt, w in zip(flows, dts, weights)])
        assert np.array_equal(out, reference)
    # a unit flow without decay is the running time
    assert np.allclose(decaying_impact(np.ones(4), 0.5, 0.0), [0.0, 0.5, 1.0, 1.5, 2.0])


def test_pooled_fill_tables_are_the_table_of_all_the_observations():
    """Two rounds' tables pooled (their levels differ, one level unfilled in one round) give
    the table fill_table makes from both rounds' observations at once, on the same bins."""
    from analysis.primitives import fill_table, pool_fill_tables
    from mfg.validation import InvalidValue

    rng = np.random.default_rng(3)

    def observations(levels, n):
        distance = rng.choice(levels, n)
        mean = rng.uniform(1.0, 2.5, n)
        filled = (rng.random(n) < 0.2 / distance).astype(float)
        earned = distance + rng.choice([0.0, 0.5], n)
        return distance, mean, filled, earned

    a, b = observations([1.0, 2.0], 4000), observations([1.0, 2.0, 3.0], 3000)
    b[2][b[0] == 3.0] = 0.0  # a level posted, never filled
    first = fill_table(*a[:3], 0.01, mean_bins=3, earned=a[3])
    second = fill_table(*b[:3], 0.01, mean_edges=first.mean_edges, earned=b[3])
    pooled = pool_fill_tables([first, second])
    both = fill_table(*(np.concatenate([x, y]) for x, y in zip(a[:3], b[:3])), 0.01, mean_edges=first.mean_edges,
                      earned=np.concatenate([a[3], b[3]]))
    for field in ("levels", "mean_edges", "mean_centres", "rate", "rate_se", "fills", "observations", "premium"):
        np.testing.assert_allclose(getattr(pooled, field), getattr(both, field), rtol=1e-12, err_msg=field)
    with pytest.raises(InvalidValue, match="tables"):
        pool_fill_tables([first, fill_table(*b[:3], 0.01, mean_bins=2, earned=b[3])])
