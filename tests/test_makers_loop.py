"""The makers' loop on the book's own fill table, end to end on a tiny book."""

import polars as pl
import pytest

from conftest import assert_calibrate_refuses
from mfgsim.cli import main

LOOP = """
[calibration]
population = "makers"
n_makers = 4
seeds = 2
damping = 0.5
tol = {tol}
max_iter = {max_iter}
mean_bins = 2
scaling = [2, 3, 4]
scaling_seeds = 2

[market]
T = 0.2
dt = 0.002
n_ticks = 1024
initial_mid = 512

[market.noise]
limit_rate = 0.0
market_rate = 40.0
cancel_rate = 0.0
max_size = 1

[market.makers]
model = "mfg_tick"
lattice = [1.0, 2.0, 3.0]
risk_aversion = 0.05
fill_intensity = 100.0
fill_decay = 0.8
volatility = 2.0
quote_size = 1
max_inventory = 5
amend = "cancel"
"""


def test_makers_loop_end_to_end(tmp_path, capsys):
    """Each iteration's table and outcomes on disk, the fixed point across N, the tick MFG
    quoting the measured premia: the second iteration trades on the first measurement."""
    path = tmp_path / "makers.toml"
    path.write_text(LOOP.format(tol=0.5, max_iter=3))
    code = main(["calibrate", str(path), "--out", str(tmp_path), "--workers", "1"])
    out = tmp_path / "makers"
    rows = pl.read_parquet(out / "calibration.parquet")
    assert code == (0 if rows["converged"][-1] else 1)
    assert rows["iteration"].to_list() == list(range(rows.height)) and rows.height >= 2
    assert rows["traded_on"].to_list()[:2] == ["configured", "measured"]
    tables = pl.read_parquet(out / "fill_tables.parquet")
    assert set(tables["iteration"]) == set(rows["iteration"])
    # a level posted with fills has a rate and a premium of at least its own distance
    filled = tables.filter(pl.col("fills") > 0)
    assert (filled["premium"] >= filled["level"]).all() and (filled["rate"] > 0).all()
    scaling = pl.read_parquet(out / "scaling.parquet")
    assert sorted(set(scaling["N"])) == [2, 3, 4] and scaling.height == 6
    assert (scaling["pnl_gap_rel"] - (scaling["pnl"] / scaling["mf_pnl"] - 1)).abs().max() < 1e-12
    assert (out / "makers_w1.png").exists() and (out / "makers_pnl_gap.png").exists()
    printed = capsys.readouterr().out
    assert "pnl_gap_rel" in printed and "W1 = b + C N^-r" in printed and "|pnl_gap_rel| = b + C N^-r" in printed


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('model = "mfg_tick"', 'model = "mfg"'), "model = 'mfg_tick'"),
    (lambda t: t.replace("scaling = [2, 3, 4]", "scaling = [2, 3]"), "calibration.scaling"),
    (lambda t: t.replace("lattice = [1.0, 2.0, 3.0]", "lattice = [1.0, 2.0, 3.0]\npremia = [1.0, 2.0, 3.0]"),
     "the loop measures it"),
    (lambda t: t.replace("lattice = [1.0, 2.0, 3.0]", "lattice = [2.0, 1.0]"), "increasing"),
])
def test_makers_loop_bad_files(tmp_path, capsys, change, message):
    assert_calibrate_refuses(tmp_path, capsys, change(LOOP.format(tol=0.5, max_iter=2)), "makers", message)


def test_posted_quotes_counts_both_sides_filled_in_one_step(tmp_path):
    """The fills read from the makers' inventories and cash are the book's own trade records,
    including the steps in which both of a maker's quotes were filled (its inventory did
    not move: the sign of its change missed them)."""
    import dataclasses

    import numpy as np

    from mfgsim.studies import calibration, makers_loop
    from mfgsim.studies.makers import posted_quotes
    from simulator.market import run_market

    path = tmp_path / "makers.toml"
    path.write_text(LOOP.format(tol=0.5, max_iter=1).replace("market_rate = 40.0", "market_rate = 150.0"))
    plan = calibration.load(path)
    spec = dataclasses.replace(makers_loop.spec_at(plan, 8, None), max_trades_kept=100_000)
    run = run_market(spec, 3)
    trades = run.trades
    assert run.n_trades == trades.size
    counts = {}
    for side, aggressor in (("bought", -1), ("sold", 1)):  # a sell market order fills a maker's bid
        hit = (trades["side"] == aggressor) & (trades["maker_agent"] >= 1) & (trades["maker_agent"] <= 8)
        counts[side] = np.zeros((spec.n_steps, 8))
        np.add.at(counts[side], (trades["step"][hit], trades["maker_agent"][hit] - 1), trades["qty"][hit])
    quotes = posted_quotes(spec, run)
    both = (counts["bought"] > 0) & (counts["sold"] > 0)
    assert both.sum() >= 10  # steps that leave a maker's inventory where it was
    for side in ("bought", "sold"):
        exact = quotes[side] == counts[side]
        assert exact.mean() > 0.995 and exact[both].mean() > 0.95
        assert quotes[side].sum() == pytest.approx(counts[side].sum(), rel=0.005)
    # quotes of two lots against one-lot market orders: half a quote filled is 0.5
    halves = dataclasses.replace(spec, makers=dataclasses.replace(spec.makers, quote_size=2))
    run = run_market(halves, 3)
    hit = (run.trades["maker_agent"] >= 1) & (run.trades["maker_agent"] <= 8)
    quotes = posted_quotes(halves, run)
    filled = quotes["bought"] + quotes["sold"]
    assert np.any(filled % 1 == 0.5)
    assert filled.sum() == pytest.approx(run.trades["qty"][hit].sum() / 2, rel=0.005)
    table = makers_loop.measure([makers_loop._observe((halves, 3))], halves.dt, 2)
    assert table.fills.sum() == pytest.approx(filled.sum(), rel=0.005) and table.fills.dtype == np.float64
