"""The market-making MFG: GLFT limit, an independent HJB solve, the limits, the equilibrium."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

from mfg.market_making import MarketMakingMFG, quotes, solve_market_making
from simulator.agents import MarketMakers

BASE = dict(gamma=0.05, sigma=2.0, A=100.0, k=0.8, max_inventory=5, T=1.0)


def test_one_maker_without_competition_is_glft():
    """ε = 0 against GLFT's exact v = exp(-Mτ)·1 (eigen-decomposition): RK4 converges at
    fourth order to it."""
    model = MarketMakingMFG(competition=0.0, **BASE)
    makers = MarketMakers(model="glft", risk_aversion=0.05, fill_intensity=100.0, fill_decay=0.8, volatility=2.0,
                          max_inventory=5)
    errors = []
    for n_t in (200, 400):
        sol = solve_market_making(model, n_t=n_t)
        bid, ask = makers.quote_offsets(model.T - sol.t)
        errors.append(max(np.max(np.abs(sol.bid[:, :-1] - bid[:, :-1])), np.max(np.abs(sol.ask[:, 1:] - ask[:, 1:]))))
    assert errors[1] < 1e-5 and errors[0] / errors[1] > 12  # order ~4
    assert np.isnan(sol.bid[:, -1]).all() and np.isnan(sol.ask[:, 0]).all()


def hjb_reference(model, mean_bid, mean_ask, t_eval):
    """θ of the CARA maker solved directly (scipy), each sup over δ found numerically:
    ∂tθ - γσ²q²/2 + Σ_side sup_δ Λ(δ)(1 - e^{-γ(δ + θ(q±1) - θ(q))})/γ = 0, θ(T) = 0."""
    Q, g, s, k, eps = model.max_inventory, model.gamma, model.sigma, model.k, model.competition
    q = np.arange(-Q, Q + 1)

    def best(intensity, jump):
        res = minimize_scalar(lambda d: -intensity(d) * (1 - math.exp(-g * (d + jump))) / g,
                              bounds=(-jump - 5.0, -jump + 50.0), method="bounded", options={"xatol": 1e-12})
        return res.x, -res.fun

    def rhs(t, theta):
        out = 0.5 * g * s * s * q * q.astype(float)
        for i in range(q.size):
            if i < q.size - 1:  # bid
                bid_rate = lambda d: model.A * math.exp(-k * d - eps * (d - mean_bid(t)))  # noqa: E731
                out[i] -= best(bid_rate, theta[i + 1] - theta[i])[1]
            if i > 0:  # ask
                ask_rate = lambda d: model.A * math.exp(-k * d - eps * (d - mean_ask(t)))  # noqa: E731
                out[i] -= best(ask_rate, theta[i - 1] - theta[i])[1]
        return out

    sol = solve_ivp(rhs, (model.T, 0.0), np.zeros(q.size), t_eval=t_eval[::-1], rtol=1e-9, atol=1e-10)
    theta = sol.y[:, ::-1].T
    bids = np.array([[best(lambda d, tt=tt: model.A * math.exp(-k * d - eps * (d - mean_bid(tt))),
                           th[i + 1] - th[i])[0] for i in range(q.size - 1)] for tt, th in zip(t_eval, theta)])
    return bids


def test_quotes_against_a_direct_hjb_solve_with_moving_competitors():
    model = MarketMakingMFG(competition=0.5, **{**BASE, "max_inventory": 3})
    t = np.linspace(0.0, 1.0, 401)

    def mean_bid(tt):
        return 1.5 + 0.5 * np.sin(3 * tt)

    def mean_ask(tt):
        return 1.2 + 0.3 * np.cos(2 * tt)

    bid, _ = quotes(model, t, mean_bid(t), mean_ask(t))
    pick = np.array([0, 100, 300])
    ref = hjb_reference(model, mean_bid, mean_ask, t[pick])
    np.testing.assert_allclose(bid[pick, :-1], ref, atol=2e-5)


def test_no_risk_aversion_gives_the_constant_spread():
    model = MarketMakingMFG(gamma=1e-7, sigma=2.0, A=100.0, k=0.8, competition=0.4, max_inventory=30, T=0.2)
    sol = solve_market_making(model, n_t=400)
    ke = 0.8 + 0.4
    middle = slice(25, 36)  # q = -5..5
    np.testing.assert_allclose(sol.bid[0, middle], 1 / ke, atol=5e-3 / ke)
    np.testing.assert_allclose(sol.mean_ask, 1 / ke, atol=5e-3 / ke)


def test_a_symmetric_population_keeps_zero_mean_inventory():
    m0 = np.zeros(11)
    m0[3:8] = 0.2  # uniform on -2..2
    sol = solve_market_making(MarketMakingMFG(competition=0.5, m0=tuple(m0), **BASE), n_t=400)
    np.testing.assert_allclose(sol.mean_inventory(), 0.0, atol=1e-10)
    np.testing.assert_allclose(sol.mean_bid, sol.mean_ask, atol=1e-10)
    np.testing.assert_allclose(sol.m.sum(axis=1), 1.0, atol=1e-12)
    assert sol.residuals[-1] < 1e-10 and np.all(sol.m > -1e-12)
    # the mean quotes are the law's average of what is posted: a fixed point
    posted = ~np.isnan(sol.bid)
    np.testing.assert_allclose(sol.mean_bid, (sol.m * np.nan_to_num(sol.bid)).sum(1) / (sol.m * posted).sum(1))


def test_competition_tightens_the_spread():
    spreads = [solve_market_making(MarketMakingMFG(competition=eps, **BASE), n_t=300).spread()[0]
               for eps in (0.0, 0.3, 1.0)]
    assert spreads[0] > spreads[1] > spreads[2]


def test_bad_models_are_refused():
    with pytest.raises(ValueError, match="gamma"):
        MarketMakingMFG(competition=0.0, **{**BASE, "gamma": 0.0})
    with pytest.raises(ValueError, match="competition"):
        MarketMakingMFG(competition=-1.0, **BASE)
    with pytest.raises(ValueError, match="m0"):
        MarketMakingMFG(competition=0.0, m0=(1.0,), **BASE)
    with pytest.raises(ValueError, match="n_t=20 too small"):
        solve_market_making(MarketMakingMFG(competition=0.0, **{**BASE, "A": 1e4}), n_t=20)


def test_solve_command_writes_the_market_making_solution(tmp_path, capsys):
    import polars as pl

    from mfgsim.cli import main

    text = ('[model]\nkind = "market_making"\ngamma = 0.05\nsigma = 2.0\nA = 100.0\nk = 0.8\ncompetition = 0.5\n'
            'max_inventory = 4\nT = 1.0\n[grid]\nn_t = 400\n')
    path = tmp_path / "mm.toml"
    path.write_text(text)
    assert main(["solve", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "anderson iterations" in capsys.readouterr().out
    df = pl.read_parquet(tmp_path / "out" / "solution.parquet")
    assert df.columns == ["t", "q", "m", "bid", "ask"] and df.height == 401 * 9
    assert (tmp_path / "out" / "solution.png").exists()
    path.write_text(text.replace("competition = 0.5", "competition = -0.5"))
    assert main(["solve", str(path), "--out", str(tmp_path / "bad")]) == 2
    assert "competition" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_book_makers_quote_the_mean_field_quotes():
    """model = "mfg": the quote tables are the MFG's (GLFT's at ε = 0), and N makers scale
    the flow with themselves."""
    from simulator.agents import MarketMakers
    from simulator.market import MarketSpec

    glft = MarketMakers(model="glft", max_inventory=4)
    mfg0 = MarketMakers(model="mfg", max_inventory=4, competition=0.0)
    tau = 1.0 - np.arange(100) * 0.01
    for a, b in zip(glft.quote_offsets(tau), mfg0.quote_offsets(tau)):
        np.testing.assert_allclose(a[:, 1:-1], b[:, 1:-1], atol=1e-4)
    spec = MarketSpec(T=1.0, dt=0.01, crowd=None, makers=MarketMakers(count=30, model="mfg", competition=0.5),
                      scale_with="makers")
    assert spec.liquidity_scale == 30
    with pytest.raises(ValueError, match="scale_with"):
        MarketSpec(T=1.0, dt=0.01, scale_with="everyone")


def test_experiment_d_end_to_end(tmp_path, capsys):
    import polars as pl

    from mfgsim.cli import main

    text = """
[study]
n_makers = [2, 4, 8]
seeds = 3
fit_intensity = 1
[market]
T = 0.4
dt = 0.004
n_ticks = 1024
initial_mid = 512
record_every = 10
[market.noise]
limit_rate = 0.0
market_rate = 40.0
cancel_rate = 0.0
max_size = 1
[market.makers]
quote_size = 1
max_inventory = 5
competition = 0.5
amend = "cancel"
"""
    path = tmp_path / "d.toml"
    path.write_text(text)
    assert main(["makers", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    assert "w1" in capsys.readouterr().out
    runs = pl.read_parquet(tmp_path / "out" / "d" / "makers_runs.parquet")
    assert runs.height == 9 and set(runs["N"]) == {2, 4, 8}
    assert (runs["w1"] >= 0).all() and (runs["mf_spread"] > 0).all()
    fits = pl.read_parquet(tmp_path / "out" / "d" / "makers_fits.parquet")
    assert set(fits["metric"]) == {"w1", "mean_quote_error", "spread_gap", "pnl_gap"}
    fitted = fits["fill_intensity_path"][0].to_list()
    assert len(fitted) == 2 and fitted[0] == 100.0 and 0 < fitted[1] < 100.0  # the book fills less than A e^{-kδ}
    assert fits["competition_path"][0].to_list() == [0.5, 0.5]  # fit_competition is off
    assert fits["book_sensitivity"][0] > 0 and fits["book_sensitivity_se"][0] > 0
    assert (tmp_path / "out" / "d" / "makers_fill_sensitivity.png").exists()
    # from eps = 0.5 the fitted eps (0.98) puts all 8 makers on one tick: the book's sensitivity
    # is then not identified and the command exits 1; from 0.2 their quotes still differ
    path.write_text(text.replace("fit_intensity = 1", "fit_intensity = 1\nfit_competition = true")
                    .replace("competition = 0.5", "competition = 0.2"))
    assert main(["run", str(path), "--out", str(tmp_path / "eps"), "--workers", "1"]) == 0  # routed to makers
    fits = pl.read_parquet(tmp_path / "out" / "d" / "makers_fits.parquet")
    eps = pl.read_parquet(tmp_path / "eps" / "d" / "makers_fits.parquet")["competition_path"][0].to_list()
    out = capsys.readouterr().out
    assert eps[0] == 0.2 and eps[1] != 0.2 and "competition eps fitted" in out and "running `mfgsim makers`" in out
    path.write_text(text.replace("n_makers = [2, 4, 8]", "n_makers = [1, 4, 8]"))
    assert main(["makers", str(path), "--out", str(tmp_path / "bad")]) == 2


def test_poisson_slope_recovers_a_known_sensitivity():
    """Counts drawn with a known b: the estimate is within three standard errors and the
    standard error matches the spread of estimates over repeated draws."""
    from analysis.impact import poisson_slope

    rng = np.random.default_rng(1)
    estimates, errors = [], []
    for _ in range(200):
        x = rng.uniform(-0.5, 0.5, 5_000)
        y = rng.poisson(np.exp(-3.0 - 2.5 * x)).astype(float)
        _, b, se = poisson_slope(x, y)
        estimates.append(b)
        errors.append(se)
    assert abs(np.mean(estimates) - 2.5) < 3 * np.mean(errors) / np.sqrt(200)
    assert 0.8 < np.std(estimates) / np.mean(errors) < 1.25
    assert all(np.isnan(poisson_slope(np.ones(10), np.ones(10))))


def test_the_fill_sensitivity_figure_draws_its_data():
    from analysis.figures import plot_fill_sensitivity
    from analysis.impact import FillSensitivity

    s = FillSensitivity(2.0, 0.1, 20.0, np.array([-0.5, 0.0, 0.5]), np.array([50.0, 20.0, 8.0]),
                        np.array([100.0, 40.0, 16.0]), np.array([1000, 1000, 1000]))
    fig = plot_fill_sensitivity(s, 1.3)
    ax = fig.axes[0]
    points = ax.containers[0].lines[0]
    np.testing.assert_allclose(points.get_xdata(), s.relative_quote)
    np.testing.assert_allclose(points.get_ydata(), s.fill_rate)
    fit, model = ax.get_lines()[-2:]
    np.testing.assert_allclose(fit.get_ydata(), 20.0 * np.exp(-2.0 * fit.get_xdata()))
    np.testing.assert_allclose(model.get_ydata(), 20.0 * np.exp(-1.3 * model.get_xdata()))
    errors = ax.containers[0].lines[2][0].get_segments()
    np.testing.assert_allclose([seg[1, 1] - seg[0, 1] for seg in errors], 2 * s.fill_rate / np.sqrt(s.fills))
