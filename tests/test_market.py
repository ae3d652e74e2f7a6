"""The market loop: conservation, determinism, stationarity, strategies, scaling, makers."""

import dataclasses
import math
import pickle

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from mfg.closed_form import LQCrowding
from mfg.fd import Grid
from mfg.laws import GaussianMixture as GM
from mfg.market_making import glft_v
from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, MetaOrderTraders, NoiseFlow
from simulator.market import MarketSpec, ParticleSpec, run_market, run_particles, warm_up

MODEL = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2))


def spec(n_agents=20, strategy="mfg", dt=0.002, **kw):
    crowd = ExecutionCrowd(n_agents, kw.pop("model", MODEL), strategy, **kw.pop("crowd_kw", {}))
    return MarketSpec(T=1.0, dt=dt, crowd=crowd, record_every=50, **kw)


def test_shares_and_cash_are_conserved_exactly():
    run = run_market(spec(30, makers=MarketMakers(count=3)), seed=4)
    assert run.n_trades > 1000
    inv, cash = run.accounts_inventory, run.accounts_cash
    assert np.all(inv.sum(axis=1) == inv[0].sum()) and np.all(cash.sum(axis=1) == cash[0].sum())
    assert np.any(inv[-1, 1:4] != 0)  # the makers did trade
    # what the crowd bought on the book is what its inventory changed by
    crowd = inv[:, 4:]
    assert crowd[-1].sum() - crowd[0].sum() == run.market["crowd_flow"].sum()


def test_same_seed_same_tables_other_seed_other_tables():
    a, b, c = (run_market(spec(10), seed=s) for s in (7, 7, 8))
    for name in a.market:
        np.testing.assert_array_equal(a.market[name], b.market[name])
    for name in a.agents:
        np.testing.assert_array_equal(a.agents[name], b.agents[name])
    assert a.trades.tobytes() == b.trades.tobytes()
    assert not np.array_equal(a.market["mid"], c.market["mid"])


def test_a_markets_seeds_share_their_repeated_agents_columns_within_a_budget(monkeypatch):
    """Seeds of one market share the agents table's step/t/agent/type columns, read-only; a
    market whose columns exceed the budget gets its own, as before, and the same values."""

    import simulator.market as market

    a, b = run_market(spec(10), seed=7), run_market(spec(10), seed=8)
    assert a.agents["step"] is b.agents["step"] and not a.agents["t"].flags.writeable
    with pytest.raises(ValueError):
        a.agents["type"][0] = 1
    assert pickle.loads(pickle.dumps(a)).agents["agent"] is a.agents["agent"]  # rebuilt from the same
    monkeypatch.setattr(market, "_REPEATED_BYTES", 0)
    monkeypatch.setattr(market, "_REPEATED", {})
    c = run_market(spec(10), seed=7)
    assert c.agents["step"] is not a.agents["step"] and c.agents["step"].flags.writeable
    for name in a.agents:
        np.testing.assert_array_equal(a.agents[name], c.agents[name])


def _same_run(a, b):
    for table in ("market", "agents", "executions"):
        for name, column in getattr(a, table).items():
            np.testing.assert_array_equal(column, getattr(b, table)[name], err_msg=f"{table}.{name}")
    for name in ("accounts_inventory", "accounts_cash", "depth"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.trades.tobytes() == b.trades.tobytes()
    assert (a.n_trades, a.n_messages, a.decisions) == (b.n_trades, b.n_messages, b.decisions)


def test_a_run_from_its_warm_up_is_the_run():
    """The crowd trades from step 0, so a warm-up made under another strategy starts the
    same run, byte for byte, as often as it is reused. The market draws from every part of
    the generator in its warm-up: Poisson, binomial and uniform draws, and normal pairs for
    the activity, whose second half is pending when the warm-up ends (301 normals)."""
    latent = (LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=60, reveal_ticks=5),
              LatentLiquidity(deposit_rate=0.5, cancel_rate=0.01, band=80, reveal_ticks=3, start_depletion=20.0))
    market = spec(20, makers=MarketMakers(count=2, amend="replace"), latent=latent, warmup_steps=300,
                  meta_traders=MetaOrderTraders(count=2, activity_volatility=0.5, activity_time=0.2),
                  max_trades_kept=50_000, post_steps=50, max_executions_kept=10_000)
    twap = dataclasses.replace(market, crowd=dataclasses.replace(market.crowd, strategy="twap"))
    cold = run_market(market, seed=5)
    warm = warm_up(twap, seed=5)
    assert 0 < warm.kept.shape[0] < cold.trades.size  # trades of the warm-up are kept, and more follow
    # reused, and as a pool's worker gets it: pickled (its arrays compressed)
    for start in (warm, warm, pickle.loads(pickle.dumps(warm))):
        _same_run(cold, run_market(market, seed=5, warm=start))
    # a run comes back from a worker with its agents table's repeated columns, and the
    # inventories and cash its accounts hold, sent once
    sent = pickle.dumps(cold)
    _same_run(cold, pickle.loads(sent))
    assert pickle.loads(sent).agents_frame().equals(cold.agents_frame())
    whole = pickle.dumps(tuple(getattr(cold, f.name) for f in dataclasses.fields(cold)))
    derived = ("step", "t", "agent", "type", "inventory", "cash")
    assert len(whole) - len(sent) > 0.9 * sum(cold.agents[k].nbytes for k in derived)
    _same_run(run_market(twap, seed=5), run_market(twap, seed=5, warm=warm))
    with pytest.raises(ValueError, match="warm: a warm start of seed 5"):
        run_market(market, seed=6, warm=warm)
    with pytest.raises(ValueError, match="another market"):
        run_market(dataclasses.replace(market, warmup_steps=299), seed=5, warm=warm)


def test_a_feedback_table_is_read_bilinearly_and_clamped_at_its_edges():
    """A bilinear ν(t, x) = α + βt + γx + δtx is what bilinear interpolation reproduces
    exactly inside the table; outside, the reading is the edge's."""
    from simulator.market import feedback_rates

    x_min, dx, dt = -1.0, 0.25, 0.1
    t = np.arange(11) * dt
    x = x_min + np.arange(13) * dx
    coef = np.array([[0.5, -2.0, 1.5, 3.0], [-1.0, 0.7, -0.3, 2.0]])  # (α, β, γ, δ) per type

    def exact(times, q, j):
        a, b, c, d = coef[j].T if np.ndim(j) else coef[j]
        return a + b * times + c * q + d * times * q

    grid = np.stack([exact(t[:, None], x[None, :], j) for j in range(2)])
    rng = np.random.default_rng(4)
    times, q, types = rng.uniform(0.0, 1.0, 500), rng.uniform(-1.0, 2.0, 500), rng.integers(0, 2, 500)
    assert np.allclose(feedback_rates(grid, x_min, dx, dt, times, q, types), exact(times, q, types), atol=1e-12)
    # broadcast: one time column against agents' rows; beyond the table, its edge
    out = feedback_rates(grid, x_min, dx, dt, np.array([[-0.5], [2.0]]), np.array([-3.0, 9.0]), np.array([0, 1]))
    assert out.shape == (2, 2)
    assert np.allclose(out, [[exact(0.0, -1.0, 0), exact(0.0, 2.0, 1)], [exact(1.0, -1.0, 0), exact(1.0, 2.0, 1)]])


def test_noise_only_market_is_stationary_without_drift():
    runs = [run_market(MarketSpec(T=4.0, dt=0.004, crowd=None, record_every=10, warmup_steps=500,
                                  noise=NoiseFlow(400.0, 200.0, 2.0, 4.0, 5), makers=MarketMakers(quote_size=20)),
                       seed=s) for s in range(6)]
    spreads = np.stack([r.market["best_ask"] - r.market["best_bid"] for r in runs])
    depth = np.stack([r.market["bid_depth"] + r.market["ask_depth"] for r in runs]).astype(float)
    half = spreads.shape[1] // 2
    # spread and depth settle: the two halves of the run have the same level
    assert abs(np.nanmean(spreads[:, :half]) - np.nanmean(spreads[:, half:])) < 0.25 * np.nanmean(spreads)
    assert abs(depth[:, :half].mean() - depth[:, half:].mean()) < 0.25 * depth.mean()
    # no drift: the mean final move is within 3 standard errors of zero, and the mid does move
    moves = np.array([r.market["mid"][-1] - r.market["mid"][0] for r in runs])
    assert np.std(moves) > 1.0
    assert abs(moves.mean()) < 3 * moves.std(ddof=1) / math.sqrt(len(moves)) + 1.0


def test_mfg_crowd_tracks_the_mean_field_mean_better_as_n_grows():
    t = np.linspace(0.0, 1.0, 11)
    err = {}
    for n in (8, 400):
        devs = []
        for seed in range(3):
            run = run_market(spec(n, dt=0.002, crowd_kw={"lots_per_unit": 50}), seed=seed)
            mean = run.agents["inventory"].reshape(-1, n).mean(axis=1)
            devs.append(np.max(np.abs(mean - MODEL.mean_inventory(t))))
        err[n] = np.mean(devs)
    assert err[400] < 0.05
    assert err[400] < 0.6 * err[8]


@pytest.mark.parametrize("strategy", ["twap", "almgren_chriss", "nash_open", "nash_closed", "mfg_fd"])
def test_every_strategy_liquidates(strategy):
    crowd_kw = {"fd_grid": Grid(-1.5, 2.5, 120, 1.0, 50)} if strategy == "mfg_fd" else {}
    run = run_market(spec(15, strategy, crowd_kw=crowd_kw), seed=1)
    inv = run.agents["inventory"].reshape(-1, 15)
    assert np.all(np.abs(inv[-1]) < 0.25 * np.abs(inv[0]) + 0.05)
    if strategy == "twap":  # TWAP sells a constant amount: the mean falls linearly
        mean = inv.mean(axis=1)
        np.testing.assert_allclose(mean, mean[0] * (1 - np.linspace(0, 1, mean.size)), atol=0.05)


def test_stop_at_target_never_crosses_zero():
    run = run_market(spec(20, "almgren_chriss"), seed=2)
    inv = run.agents["inventory"].reshape(-1, 20)
    assert np.all(inv * np.sign(inv[0]) >= 0)


def price_impact(n, scale):
    """Mid move caused by a TWAP crowd selling one unit each (noise-only run as baseline)."""
    model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.0))
    moves = []
    for crowd in (None, ExecutionCrowd(n, model, "twap", lots_per_unit=10)):
        s = n if crowd is None and scale else 1
        noise = NoiseFlow(40.0 * s, 20.0 * s, 2.0, 4.0, 5) if crowd is None else NoiseFlow()
        # cancel-and-repost makers: the bounds below were set on them (2 seeds sit at the edge
        # of the noise; amending by REPLACE moves the 2-seed means within it)
        makers = MarketMakers(quote_size=5 * s, amend="cancel") if crowd is None else MarketMakers(amend="cancel")
        m = MarketSpec(T=1.0, dt=0.005, n_ticks=200_000, initial_mid=100_000, crowd=crowd, noise=noise,
                       makers=makers, scale_liquidity=scale, record_every=200)
        mids = np.mean([run_market(m, seed=k).market["mid"][-1] - m.initial_mid for k in range(2)])
        moves.append(mids)
    return moves[0] - moves[1]


def test_mean_field_scaling_keeps_the_price_response_order_one():
    impacts = {n: price_impact(n, True) for n in (10, 100, 1000, 10_000)}
    values = np.array(list(impacts.values()))
    # sellers push the price down by O(1) ticks at every N; small books are grainier, so the
    # response eases towards the large-N (fluid) limit but neither vanishes nor grows
    assert np.all((values > 1.0) & (values < 10.0)), impacts
    assert values.max() / values.min() < 5.0, impacts
    # without the scaling the same per-agent flow moves the price far more at large N
    assert price_impact(1000, False) > 5 * impacts[1000]


def test_glft_exact_quotes_against_ode():
    Q, g, A, k, s = 4, 0.1, 50.0, 0.5, 1.5
    alpha, eta = 0.5 * k * g * s**2, A * (1 + g / k) ** (-(1 + k / g))
    q = np.arange(-Q, Q + 1)

    def rhs(tau, v):  # dv/dτ = -M v
        out = -alpha * q**2 * v
        out[1:] += eta * v[:-1]
        out[:-1] += eta * v[1:]
        return out

    taus = np.array([0.1, 0.5, 2.0])
    sol = solve_ivp(rhs, (0.0, 2.0), np.ones(q.size), rtol=1e-11, atol=1e-13, dense_output=True)
    v = glft_v(taus, g, A, k, s, Q)
    for i, tau in enumerate(taus):
        ref = sol.sol(tau)
        np.testing.assert_allclose(v[i] / v[i, Q], ref / ref[Q], rtol=1e-8)


def asymptotic_gap(mm: MarketMakers) -> float:
    """Largest relative gap between exact (long horizon) and asymptotic bids for |q| <= 3."""
    bid, _ = mm.quote_offsets(np.array([200.0]))
    asym, _ = MarketMakers(**{**mm.__dict__, "model": "glft_asymptotic"}).quote_offsets(np.array([200.0]))
    centre = slice(mm.max_inventory - 3, mm.max_inventory + 4)
    return float(np.max(np.abs(bid[0, centre] - asym[0, centre])) / np.abs(asym[0, centre]).max())


def test_glft_asymptotics_hold_only_far_from_the_inventory_limits():
    # stationary profile ~ exp(-sqrt(α/η) q²/2): width ~2 quotes here, Q = 12 is far away
    wide = MarketMakers(model="glft", risk_aversion=0.1, fill_intensity=4.2, fill_decay=0.5, volatility=1.5,
                        max_inventory=12)
    assert asymptotic_gap(wide) < 0.02
    # width ~4 quotes and Q = 4: the limits shape the exact quotes, the asymptotics miss it
    tight = MarketMakers(model="glft", risk_aversion=0.1, fill_intensity=50.0, fill_decay=0.5, volatility=1.5,
                         max_inventory=4)
    assert asymptotic_gap(tight) > 0.2
    # near the horizon inventory risk matters less: quotes are less skewed than far from it
    bid, _ = wide.quote_offsets(np.array([0.05, 200.0]))
    assert np.ptp(bid[0, 1:-1]) < np.ptp(bid[1, 1:-1])


def test_avellaneda_stoikov_quotes_are_the_formula():
    mm = MarketMakers(model="avellaneda_stoikov", risk_aversion=0.2, fill_decay=1.0, volatility=2.0, max_inventory=3)
    bid, ask = mm.quote_offsets(np.array([0.5]))
    q = np.arange(-3, 4)
    r = -q * 0.2 * 4.0 * 0.5
    spread = 0.2 * 4.0 * 0.5 + 2 / 0.2 * math.log(1 + 0.2)
    np.testing.assert_allclose(-bid[0], r - spread / 2)
    np.testing.assert_allclose(ask[0], r + spread / 2)


def test_posted_maker_quotes_follow_the_tables():
    mm = MarketMakers(count=1, model="avellaneda_stoikov", risk_aversion=0.05, quote_size=3)
    s = MarketSpec(T=1.0, dt=0.01, crowd=None, makers=mm, record_every=10, noise=NoiseFlow(50.0, 0.0, 1.0, 3.0, 3))
    run = run_market(s, seed=3)
    bid_off, ask_off = mm.quote_offsets(s.T - run.market["t"][:-1])
    mid = run.market["mid"][:-1]
    q0 = mm.max_inventory  # no market orders: the maker never trades, inventory stays 0
    np.testing.assert_array_equal(run.market["maker_bid"][:-1], np.floor(mid - bid_off[:, q0]))
    np.testing.assert_array_equal(run.market["maker_ask"][:-1], np.ceil(mid + ask_off[:, q0]))


def test_particle_system_matches_the_closed_form_law():
    model = LQCrowding.single(k=1.0, kappa=3.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), sigma=0.3)
    run = run_particles(ParticleSpec(T=1.0, dt=0.001, crowd=ExecutionCrowd(20_000, model, "mfg"), record_every=100),
                        seed=5)
    inv = run.agents["inventory"].reshape(-1, 20_000)
    t = run.market["t"]
    np.testing.assert_allclose(inv.mean(axis=1), model.mean_inventory(t), atol=0.01)
    np.testing.assert_allclose(inv.var(axis=1), model.variance(t), rtol=0.05, atol=2e-3)
    rate = run.agents["rate"].reshape(-1, 20_000).mean(axis=1)[1:]
    mid_interval = 0.5 * (t[1:] + t[:-1])
    np.testing.assert_allclose(rate, model.mean_rate(mid_interval), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("make, message", [
    (lambda: NoiseFlow(limit_rate=-1.0), "noise.limit_rate"),
    (lambda: ExecutionCrowd(0, MODEL), "crowd.n_agents"),
    (lambda: MarketSpec(T=1.0, dt=0.3), "dt=0.3 is not allowed; must divide T=1.0"),
    (lambda: MarketSpec(T=1.0, dt=0.01, n_ticks=100, initial_mid=50,
                        crowd=ExecutionCrowd(100, MODEL)), "price grid too small"),
    (lambda: MarketMakers(model="magic"), "makers.model"),
    (lambda: spec(5, "nash_closed", model=LQCrowding.single(1.0, 1.0, 1.0, 1.0, 1.0, GM.normal(1, 0.1), c=0.5)),
     "one preference type"),
    (lambda: run_market(spec(5), seed=-1), "seed"),
])
def test_bad_specs_fail_before_any_work(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_market_figure_shows_the_recorded_data():
    from analysis.figures import plot_market

    run = run_market(spec(10), seed=0)
    fig = plot_market(run)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), run.market["mid"])
    heights = [p.get_height() for p in fig.axes[1].patches]
    np.testing.assert_allclose(heights, np.concatenate(run.depth.mean(axis=0)))
    assert run.depth[:, :, 0].min() > 0  # the touch is never empty in this market


@pytest.mark.parametrize("c, rho", [(0.0, 0.0), (0.5, 0.0), (0.5, 4.0)])
def test_particle_cash_pays_the_model_costs(c, rho):
    """Deterministic particles (σ = 0, one initial inventory): the realised gain equals the
    MFG value up to the O(dt²) Heun error, the crowd term c μ ν and a decaying impact
    (ρ > 0: the price follows dY = (κμ - ρY) dt) included."""
    from analysis.compare import cost_gap

    model = LQCrowding.single(k=1.0, kappa=5.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.0), c=c, rho=rho)
    run = run_particles(ParticleSpec(T=1.0, dt=0.002, crowd=ExecutionCrowd(3, model, "mfg"), record_every=50), 0)
    assert abs(cost_gap(run, model)) < 1e-4


def test_run_tables_as_polars_frames():
    run = run_market(MarketSpec(T=1.0, dt=0.02, crowd=ExecutionCrowd(4, MODEL), record_every=10,
                                max_executions_kept=1000), seed=0)
    assert run.market_frame().columns == list(run.market)
    assert run.agents_frame().height == run.agents["inventory"].size
    ex = run.executions_frame()
    assert ex.height > 0 and (ex["filled"].abs() <= ex["requested"].abs()).all()
