"""`mfgsim learn`: execution agents who only see the book learn its mean field, end to end on a
tiny market; the round's pieces (belief on the solver's steps, deviators as a second type,
the deviation gain) checked on their own; bad files and divergence."""

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
from conftest import assert_calibrate_refuses
from test_impact import CLOSED_LOOP
from test_makers_loop import LOOP

from mfgsim.cli import main

# the closed loop's tiny market, crowd and meta-orders, with 60 agents and the FD grid
LEARN = """
[learning]
rounds = {rounds}
seeds = 2
deviators = 0.1
horizon = 5
max_policy_error = {max_error}

[model]""" + CLOSED_LOOP.split("[model]")[1].replace("n_agents = 30", "n_agents = 60").replace(
    "stop_at_target = false\n",
    "stop_at_target = false\n\n[crowd.fd_grid]\nx_min = -0.6\nx_max = 2.2\nn_x = 57\nn_t = 25\n")


def test_learning_end_to_end(tmp_path, capsys):
    """Every round is a row with the learned policy against the MFG of the learners' own
    primitives and the exploitability in the book; the first round's policy is a lone
    trader's (no crowd believed in), later ones move towards the MFG; the figure shows
    the table's numbers."""
    from analysis.figures import plot_learning
    from mfgsim.studies.learning import LearningResult

    path = tmp_path / "learn.toml"
    path.write_text(LEARN.format(rounds=4, max_error=10.0))
    assert main(["learn", str(path), "--out", str(tmp_path), "--workers", "1"]) == 0
    out = tmp_path / "learn"
    table = pl.read_parquet(out / "learning.parquet")
    assert table["round"].to_list() == [0, 1, 2, 3] and set(table["population"]) == {"executors"}
    assert table["weight"].to_list() == pytest.approx([1.0, 1 / 2, 1 / 3, 1 / 4])  # fictitious play
    for key in ("policy_error", "inventory_error", "exploitability", "mfg_value", "hat_exponent", "hat_spread"):
        assert np.all(np.isfinite(table[key].to_numpy())), key
    assert (table["exploitability_lo"] <= table["exploitability_hi"]).all()
    assert (table["deviators"] > 0).all() and (table["mfg_value"] < 0).all()
    # the policy after the first round believes in the crowd it saw: it is closer to the MFG
    # than the lone trader's best response the first round was played on
    assert table["policy_error"][-1] < 0.5 * table["inventory_error"][0]
    printed = capsys.readouterr().out
    assert "round 3:" in printed and "exploitability in the book over rounds 2..3" in printed
    assert (out / "learning.png").exists()
    t = (np.arange(25) + 0.5) / 25
    fig = plot_learning(table, t)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), table["policy_error"].to_numpy())
    np.testing.assert_allclose(fig.axes[2].lines[0].get_ydata(), table["mfg_rate"][-1].to_numpy())
    np.testing.assert_allclose(fig.axes[2].lines[1].get_ydata(), table["policy_rate"][-1].to_numpy())
    plt.close(fig)
    # the solvers' learners on the learners' last model: exploitability falls on log-log axes
    from analysis.figures import plot_exploitability
    from mfgsim.studies.learning import load, model_learners

    histories = model_learners(LearningResult(load(path), table.to_dicts(), False), iterations=40)
    assert histories["fictitious play"].exploitability[-1] < 0.1 * histories["fictitious play"].exploitability[0]
    fig = plot_exploitability(histories)
    e = histories["fictitious play"].exploitability
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), e[1:][e[1:] > 0])
    plt.close(fig)
    assert (out / "exploitability.png").exists()


def test_a_learning_run_that_diverges_keeps_its_rounds_and_exits_1(tmp_path, capsys):
    path = tmp_path / "learn.toml"
    path.write_text(LEARN.format(rounds=6, max_error=1e-9).split("[meta_orders]")[0])
    assert main(["learn", str(path), "--out", str(tmp_path), "--workers", "1"]) == 1
    table = pl.read_parquet(tmp_path / "learn" / "learning.parquet")
    assert table["round"].to_list() == [0, 1, 2]  # stopped at the first round it may judge
    assert "diverged at round 2" in capsys.readouterr().err


def test_rounds_that_cannot_identify_the_cost_say_what_to_raise(tmp_path, capsys):
    """Agents holding one lot each sell it in one order: every cell trades at the same rate,
    the temporary cost curve is not identified after the first round, and the message says
    so in one line."""
    path = tmp_path / "learn.toml"
    path.write_text(LEARN.format(rounds=3, max_error=10.0).replace("stds = [0.2]", "stds = [0.0]")
                    .replace("lots_per_unit = 20", "lots_per_unit = 1"))
    assert main(["learn", str(path), "--out", str(tmp_path), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "after round 0: temporary cost" in err and "wider initial law" in err


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("[crowd.fd_grid]", "[crowd.grid]"), "crowd.fd_grid"),
    (lambda t: t.replace("deviators = 0.1", "deviators = 0.01"), "at least 5 are needed"),
    (lambda t: t.replace("lots_per_unit = 20", "lots_per_unit = 1").replace("means = [1.0]", "means = [0.5]"),
     "lots per agent"),
    (lambda t: t.replace("seeds = 2\ndeviators", 'seeds = 2\naveraging = "adam"\ndeviators'), "learning.averaging"),
    (lambda t: t.replace("[learning]", '[learning]\npopulation = "takers"'), "learning.population"),
    (lambda t: t.replace("[meta_orders]", "[meta_orders]\nheld_out_seeds = 8"),
     "meta_orders.held_out_seeds=8 is not allowed; not used by learning"),
])
def test_bad_learning_files(tmp_path, capsys, change, message):
    assert_calibrate_refuses(tmp_path, capsys, change(LEARN.format(rounds=3, max_error=10.0)), "learn", message,
                             command="learn")


def test_beliefs_and_rounds_pieces():
    """A rate path carried to the solver's steps keeps the inventory it moves; the deviators
    are a second type with the first's costs; fictitious play's weights are 1/(r+1)."""
    from mfg.closed_form import LQCrowding
    from mfg.fd import Grid
    from mfg.laws import GaussianMixture as GM
    from mfgsim.studies.learning import LearningSettings, on_grid, round_spec
    from simulator.agents import ExecutionCrowd
    from simulator.market import MarketSpec

    grid = Grid(-1.0, 2.0, 31, 1.0, 20)
    rates = np.sin(np.arange(100) * 0.1)
    carried = on_grid(rates, 0.01, grid)
    assert carried.sum() * grid.dt == pytest.approx(rates.sum() * 0.01)
    np.testing.assert_allclose(carried, rates.reshape(20, 5).mean(axis=1))
    model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2))
    spec = MarketSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(50, model, "mfg", lots_per_unit=7))
    table = np.zeros((21, 31))
    two = round_spec(spec, model, grid, table, table + 1.0, 0.2).crowd
    assert two.strategy == "feedback" and two.lots_per_unit == 7 and two.feedback.shape == (2, 21, 31)
    assert [p.weight for p in two.model.types] == pytest.approx([0.8, 0.2])
    assert two.model.types[0].m0 == two.model.types[1].m0 and two.model.types[1].A == 10.0
    s = LearningSettings(rounds=3, seeds=2, averaging="fictitious", deviators=0.1, horizon=5, n_exponentials=None,
                         crowd_share=0.8, max_policy_error=2.0)
    assert [s.weight(r) for r in range(3)] == pytest.approx([1.0, 0.5, 1 / 3])
    damped = LearningSettings(**{**s.__dict__, "averaging": 0.3})
    assert [damped.weight(r) for r in range(3)] == pytest.approx([1.0, 0.3, 0.3])


MAKERS = """
[learning]
population = "makers"
learner = "{learner}"
n_makers = 6
rounds = {rounds}
seeds = 2
deviators = 0.2
mean_bins = 2

[market]""" + LOOP.split("[market]")[1].replace("{", "{{").replace("}", "}}")  # the makers' loop's market


@pytest.mark.parametrize("learner", ["model", "bandit"])
def test_makers_learning_end_to_end(tmp_path, capsys, learner):
    """Makers who measure the book (or only their own P&L) quote on the lattice: each round is
    a row with their spread in the book against the lattice MFG on the book's own fill table;
    the model-based makers' deviators give the exploitability; the figure shows the table."""
    from analysis.figures import plot_makers_learning

    path = tmp_path / "makers.toml"
    scaled = learner == "model"  # the model learners also learn at a second N; the bandits at one
    text = MAKERS.format(learner=learner, rounds=3)
    path.write_text(text.replace("mean_bins = 2", "mean_bins = 2\nscaling = [8]") if scaled else text)
    assert main(["learn", str(path), "--out", str(tmp_path), "--workers", "1"]) == 0
    everything = pl.read_parquet(tmp_path / "makers" / "learning.parquet")
    assert everything["n_makers"].to_list() == ([6, 6, 6, 8, 8, 8] if scaled else [6, 6, 6])
    assert (tmp_path / "makers" / "learning_by_n.parquet").exists() == scaled
    if scaled:
        by_n = pl.read_parquet(tmp_path / "makers" / "learning_by_n.parquet")
        assert by_n["n_makers"].to_list() == [6, 8] and (by_n["spread_lo"] <= by_n["spread_hi"]).all()
        assert (tmp_path / "makers" / "learned_spread_by_n.png").exists()
        from analysis.figures import plot_learned_spread_by_n

        fig = plot_learned_spread_by_n(by_n)
        np.testing.assert_allclose(fig.axes[0].lines[-1].get_ydata(), by_n["mfg_spread"].to_numpy())
        plt.close(fig)
    table = everything.filter(pl.col("n_makers") == 6)
    assert table["round"].to_list() == [0, 1, 2] and set(table["learner"]) == {learner}
    for key in ("spread", "mfg_spread", "pnl", "mfg_pnl"):
        assert np.all(np.isfinite(table[key].to_numpy())), key
    assert (table["spread_lo"] <= table["spread"]).all() and (table["spread"] <= table["spread_hi"]).all()
    assert ((table["mfg_spread"] > 1.0) & (table["mfg_spread"] < 6.0)).all()  # one to three ticks a side
    if learner == "model":
        assert np.all(np.isfinite(table["exploitability"].to_numpy()))
        assert np.all(table["quote_error"].to_numpy() < 1.0)
    else:
        weights = np.array(table["level_weights"].to_list())
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert "lattice MFG" in capsys.readouterr().out
    fig = plot_makers_learning(table)
    np.testing.assert_allclose(fig.axes[0].lines[-1].get_ydata(), table["mfg_spread"].to_numpy())
    plt.close(fig)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('model = "mfg_tick"', 'model = "glft"'), "model = 'mfg_tick'"),
    (lambda t: t.replace("amend =", "premia = [1.0, 2.0, 3.0]\namend ="), "the learners measure it"),
    (lambda t: t.replace("deviators = 0.2", "deviators = 0.1"), "no deviating maker"),
    (lambda t: t.replace('learner = "model"', 'learner = "q"'), "learning.learner"),
    (lambda t: t.replace("mean_bins = 2", "mean_bins = 2\nscaling = [30, 10]"), "learning.scaling"),
])
def test_bad_makers_learning_files(tmp_path, capsys, change, message):
    assert_calibrate_refuses(tmp_path, capsys, change(MAKERS.format(learner="model", rounds=3)), "makers", message,
                             command="learn")


def test_fictitious_play_finds_the_makers_equilibrium():
    """Where the lattice game has a pure equilibrium (Anderson reaches it), fictitious play's
    averaged mean quotes approach it like 1/iteration; its P&L approaches the equilibrium's."""
    from mfg.market_making import ExponentialIntensity, TickMarketMakingMFG, fictitious_makers, solve_market_making

    game = TickMarketMakingMFG(gamma=0.05, sigma=2.0, quotes=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
                               intensity=ExponentialIntensity(100.0, 0.8, 0.3), max_inventory=5, T=0.2)
    exact = solve_market_making(game, n_t=200)
    errors = []
    for iterations in (20, 160):
        fp = fictitious_makers(game, 200, iterations)
        errors.append(max(np.max(np.abs(fp.mean_bid - exact.mean_bid)), np.max(np.abs(fp.mean_ask - exact.mean_ask))))
    assert errors[1] < 0.25 * errors[0] and errors[1] < 0.02, errors
    assert fp.expected_pnl() == pytest.approx(exact.expected_pnl(), rel=0.01)
    assert fp.residuals[-1] < 2.0 / 160 * max(fp.residuals[:3])


def test_table_makers_quote_what_they_are_given():
    """Makers of model "table" quoting the tick MFG's own quotes trade the bytes of "mfg_tick";
    a group given NaN quotes never posts; bad tables and groups are refused by name."""
    from mfg.validation import InvalidValue
    from simulator.agents import MarketMakers, NoiseFlow
    from simulator.market import MarketSpec, run_market

    tick = MarketMakers(count=4, model="mfg_tick", lattice=(1.0, 2.0, 3.0), fill_intensity=100.0, fill_decay=0.8,
                        quote_size=1, max_inventory=5, amend="cancel")
    spec = MarketSpec(T=0.2, dt=0.002, n_ticks=1024, initial_mid=512, crowd=None, makers=tick, scale_with="makers",
                      noise=NoiseFlow(limit_rate=0.0, market_rate=40.0, cancel_rate=0.0, max_size=1), record_every=1)
    bid, ask = tick.quote_offsets(spec.T - np.arange(spec.n_steps) * spec.dt)
    import dataclasses

    table = dataclasses.replace(tick, model="table", lattice=(), bid_table=bid[None], ask_table=ask[None])
    runs = [run_market(dataclasses.replace(spec, makers=m), seed=5) for m in (tick, table)]
    np.testing.assert_array_equal(runs[0].accounts_cash, runs[1].accounts_cash)
    silent = dataclasses.replace(table, bid_table=np.stack([bid, np.full_like(bid, np.nan)]),
                                 ask_table=np.stack([ask, np.full_like(ask, np.nan)]), groups=(0, 0, 1, 1))
    run = run_market(dataclasses.replace(spec, makers=silent), seed=5)
    assert np.all(run.accounts_inventory[:, 3:5] == 0) and np.any(run.accounts_inventory[:, 1:3] != 0)
    for change, match in (({"bid_table": bid}, "bid_table"), ({"groups": (0, 0, 0, 3)}, "groups"),
                          ({"ask_table": -ask[None]}, "negative"), ({"bid_table": None}, "needs bid_table")):
        with pytest.raises(InvalidValue, match=match):
            dataclasses.replace(table, **change)
    with pytest.raises(InvalidValue, match="only model 'table'"):
        dataclasses.replace(tick, groups=(0, 0, 0, 0))


def test_interval_bars_draw_an_interval_that_misses_its_estimate():
    """A basic bootstrap interval of a maximum can lie wholly below the estimate: its bars are
    drawn (the far side as 0), not refused by matplotlib as negative."""
    from analysis.figures import interval_bars

    np.testing.assert_allclose(interval_bars([1.0, 2.0], [0.5, 2.2], [1.5, 2.9]), [[0.5, 0.0], [0.5, 0.9]])
