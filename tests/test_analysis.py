"""Metrics against brute force, convergence fits on synthetic data, figures by their data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.convergence import fit_power_law, fit_with_bias
from analysis.figures import plot_convergence, plot_density_heatmaps, plot_inventory_paths, plot_law_vs_histogram
from analysis.metrics import kolmogorov_smirnov, wasserstein1
from mfg.laws import GaussianMixture as GM

LAWS = [GM.normal(0.3, 0.5), GM((0.7, 0.3), (1.0, -0.5), (0.2, 0.1)), GM((0.5, 0.5), (0.0, 2.0), (0.0, 0.4))]


def brute(samples, law):
    grid = np.linspace(-8, 10, 1_000_001)
    Fn = np.searchsorted(np.sort(samples), grid, side="right") / len(samples)
    diff = np.abs(Fn - law.cdf(grid))
    return np.trapezoid(diff, grid), diff.max()


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(range(len(LAWS))), st.lists(st.floats(-3, 4, allow_nan=False), min_size=1, max_size=40))
def test_w1_and_ks_against_brute_force(which, samples):
    law = LAWS[which]
    w_brute, ks_brute = brute(np.array(samples), law)
    assert wasserstein1(samples, law) == pytest.approx(w_brute, abs=5e-5)
    if min(law.stds) > 0:  # a grid cannot resolve the sup next to an atom; see the test below
        assert kolmogorov_smirnov(samples, law) == pytest.approx(ks_brute, abs=2e-3)


def test_ks_sees_the_atoms_of_the_law():
    law = GM((0.5, 0.5), (0.0, 2.0), (0.0, 0.4))
    assert kolmogorov_smirnov([-1e-9], law) == pytest.approx(1.0)  # F_N = 1 just left of the atom at 0
    # a sample exactly on the atom: F_N jumps to 1 where F jumps to 1/2
    assert kolmogorov_smirnov([0.0], law) == pytest.approx(0.5)


def test_w1_known_values():
    assert wasserstein1([0.0, 1.0], GM.normal(0.5, 0.0)) == pytest.approx(0.5)
    # a point mass at m against N(m, s²): E|X - m| = s sqrt(2/π)
    assert wasserstein1([1.0], GM.normal(1.0, 2.0)) == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=1e-10)


def synthetic(slope, bias=0.0, seeds=30, ns=(10, 30, 100, 300, 1000, 3000), noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat(ns, seeds)
    values = (bias + 2.0 * n.astype(float) ** slope) * np.exp(noise * rng.standard_normal(n.size))
    return n, values


def test_power_law_fit_recovers_the_slope_within_its_interval():
    n, values = synthetic(-0.5)
    fit = fit_power_law(n, values)
    assert fit.slope_ci[0] < -0.5 < fit.slope_ci[1]
    assert fit.slope_ci[1] - fit.slope_ci[0] < 0.05


def test_bias_fit_recovers_bias_and_rate():
    n, values = synthetic(-0.5, bias=0.01, noise=0.02, ns=(10, 100, 1000, 10_000, 100_000))
    fit = fit_with_bias(n, values)
    assert fit.bias_ci[0] < 0.01 < fit.bias_ci[1]
    assert fit.bias == pytest.approx(0.01, rel=0.2)
    assert fit.rate == pytest.approx(0.5, abs=0.05)
    # a plain power law on the same data is biased towards a shallower slope
    assert fit_power_law(n, values).slope > -0.45


def test_fits_need_enough_values_of_n():
    with pytest.raises(ValueError, match="two values of N"):
        fit_power_law([10, 10], [1.0, 2.0])
    with pytest.raises(ValueError, match="three values of N"):
        fit_with_bias([10, 20], [1.0, 2.0])


def test_convergence_figure_data():
    n, values = synthetic(-0.5, seeds=4)
    fit = fit_power_law(n, values)
    fig = plot_convergence(n, values, fit, metric="w1", reference_slope=-0.5)
    runs, means, line, ref = fig.axes[0].get_lines()
    np.testing.assert_allclose(runs.get_ydata(), values)
    np.testing.assert_allclose(means.get_ydata(), fit.means)
    np.testing.assert_allclose(line.get_ydata(), np.exp(fit.intercept) * np.array(fit.n_values) ** fit.slope)
    slope_ref = np.diff(np.log(ref.get_ydata())) / np.diff(np.log(ref.get_xdata()))
    np.testing.assert_allclose(slope_ref, -0.5)


def test_inventory_paths_and_histogram_figures():
    t = np.linspace(0, 1, 5)
    paths = np.array([[1.0, 0.6, 0.3, 0.1, 0.0], [1.2, 0.8, 0.5, 0.2, 0.1]])
    fig = plot_inventory_paths(t, paths, reference=1 - t)
    centre, ref = fig.axes[0].get_lines()
    np.testing.assert_allclose(centre.get_ydata(), paths.mean(axis=0))
    np.testing.assert_allclose(ref.get_ydata(), 1 - t)
    law = GM.normal(0.0, 1.0)
    x = np.random.default_rng(1).standard_normal(500)
    fig = plot_law_vs_histogram([0.5], [x], [law], bins=20)
    heights = np.array([p.get_height() for p in fig.axes[0].patches])
    expected, _ = np.histogram(x, bins=20, density=True)
    np.testing.assert_allclose(heights, expected)
    curve = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(curve.get_ydata(), law.pdf(curve.get_xdata()))


def test_density_heatmaps_show_law_and_histogram():
    rng = np.random.default_rng(3)
    laws = [GM.normal(1.0 - 0.5 * s, 0.2) for s in (0.0, 0.5, 1.0)]
    samples = [law.sample(400, rng) for law in laws]
    fig = plot_density_heatmaps([0.0, 0.5, 1.0], samples, laws, bins=30)
    law_map, hist_map = fig.axes[0].images[0].get_array(), fig.axes[1].images[0].get_array()
    edges = np.linspace(*fig.axes[0].images[0].get_extent()[:2], 31)
    centres = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(law_map[1], laws[1].pdf(centres))
    np.testing.assert_allclose(hist_map[2], np.histogram(samples[2], bins=edges, density=True)[0])


def test_histograms_align_with_the_lot_lattice():
    lots = 20
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(0.5, 0.1, 2000) * lots) / lots  # inventories on the 1/L lattice
    fig = plot_law_vs_histogram([0.5], [x], [GM.normal(0.5, 0.1)], bins=10, lattice=1 / lots, source="N=2000, seed 3")
    patches = fig.axes[0].patches
    edges = np.array([p.get_x() for p in patches] + [patches[-1].get_x() + patches[-1].get_width()])
    np.testing.assert_allclose(edges * lots - 0.5, np.round(edges * lots - 0.5), atol=1e-9)  # half-way points
    widths = np.diff(edges) * lots
    np.testing.assert_allclose(widths, widths[0])  # the same whole number of lattice points per bin
    assert widths[0] == pytest.approx(round(widths[0])) and round(widths[0]) >= 1
    counts = np.histogram(x, bins=edges)[0]
    assert counts.sum() == x.size
    assert "N=2000, seed 3" in fig._suptitle.get_text()
    fig = plot_density_heatmaps([0.0, 1.0], [x, x], [GM.normal(0.5, 0.1)] * 2, bins=10, lattice=1 / lots,
                                source="N=2000, seed 3")
    left, right = fig.axes[0].images[0].get_extent()[:2]
    assert (left * lots - 0.5) == pytest.approx(round(left * lots - 0.5))
    assert fig.axes[-1].get_ylabel() == "density (1/inventory)"  # the colourbar says what it shows


def test_meta_order_axes_label_the_sizes_without_overlap():
    import polars as pl

    from analysis.figures import plot_meta_orders

    size = np.array([2.0, 4.0, 8.0, 16.0])
    meta = pl.DataFrame({"lots_per_agent": size, "peak_ticks": 3 * size**0.5,
                         "path": [list(np.linspace(0, 3 * s**0.5, 5)) for s in size]})
    fig = plot_meta_orders(meta, pl.DataFrame({"delta": [0.5], "log_a": [np.log(3.0)]}))
    ax = fig.axes[1]
    np.testing.assert_allclose(ax.xaxis.get_majorticklocs(), size)
    assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    assert not [t for t in ax.yaxis.get_minorticklabels() if t.get_text()]


def test_market_table_figure_draws_steps_at_every_record():
    import polars as pl

    from analysis.figures import plot_market_table

    t = np.linspace(0, 1, 6)
    market = pl.DataFrame({"t": t, "mid": 100 + t, "best_bid": 99.5 + t, "best_ask": 100.5 + t,
                           "bid_depth": np.arange(6), "ask_depth": np.arange(6)[::-1]})
    fig = plot_market_table(market, source="N=10, seed 2")
    mid, bid, ask = fig.axes[0].get_lines()
    assert {line.get_drawstyle() for line in (mid, bid, ask)} == {"steps-post"}
    np.testing.assert_allclose(bid.get_ydata(), market["best_bid"])
    bid_depth, ask_depth = fig.axes[1].get_lines()
    assert bid_depth.get_drawstyle() == "steps-post" and bid_depth.get_marker() == "."
    np.testing.assert_allclose(ask_depth.get_ydata(), market["ask_depth"])
    assert "N=10, seed 2" in fig._suptitle.get_text()
