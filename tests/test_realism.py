"""Stylized-fact estimators on synthetic series with known answers, and the report."""

from pathlib import Path

import numpy as np
import pytest

from analysis.realism import (autocorrelation, decay_exponent, excess_kurtosis, response, returns, signature,
                              stylized_facts)


def test_excess_kurtosis_of_known_laws():
    rng = np.random.default_rng(1)
    assert excess_kurtosis(rng.standard_normal(400_000)) == pytest.approx(0.0, abs=0.05)
    # Student-t with 8 degrees of freedom: 6/(ν - 4) = 1.5
    assert excess_kurtosis(rng.standard_t(8, 2_000_000)) == pytest.approx(1.5, abs=0.25)
    assert excess_kurtosis(rng.uniform(size=400_000)) == pytest.approx(-1.2, abs=0.02)


def test_autocorrelation_of_a_markov_sign_process():
    """Signs that flip with probability p: corr(ε_t, ε_{t+l}) = (1 - 2p)^l exactly."""
    rng = np.random.default_rng(2)
    p, n = 0.2, 400_000
    flips = rng.random(n) < p
    signs = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    acf = autocorrelation(signs, 5)
    np.testing.assert_allclose(acf, (1 - 2 * p) ** np.arange(1, 6), atol=0.01)


def test_decay_exponent_recovers_a_power_law():
    lags = np.arange(1, 200)
    rng = np.random.default_rng(3)
    acf = 0.4 * lags**-0.55 * np.exp(rng.normal(0, 0.05, lags.size))
    gamma, se = decay_exponent(lags, acf)
    assert gamma == pytest.approx(0.55, abs=3 * se + 0.01) and se < 0.02
    assert np.isnan(decay_exponent(lags[:3], acf[:3])[0])


def test_signature_and_response_of_known_prices():
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.standard_normal(200_000))
    sig = signature(walk, [1, 10, 100])
    np.testing.assert_allclose(sig, 1.0, rtol=0.05)  # a random walk's signature is flat
    noisy = walk + 3 * rng.standard_normal(walk.size)  # microstructure noise: 1 + 2·9 at lag 1
    assert signature(noisy, [1])[0] == pytest.approx(19.0, rel=0.05)
    assert signature(noisy, [100])[0] == pytest.approx(1.18, rel=0.1)
    # each independent sign moves the price one tick its way: R(l) = 1 at every lag, exactly
    # at lag 1 and up to the other signs' noise beyond
    signs = rng.choice([-1.0, 1.0], size=100_000)
    mid = np.cumsum(np.concatenate([[0.0], signs[:-1]]))
    r = response(mid, signs, [1, 5, 20])
    assert r[0] == 1.0
    np.testing.assert_allclose(r[1:], 1.0, atol=0.06)
    assert returns(np.arange(10.0), 3).tolist() == [3.0, 3.0, 3.0]


def test_stylized_facts_flag_the_literature_ranges():
    rng = np.random.default_rng(5)
    mids = [np.cumsum(rng.standard_t(3, 5000)) for _ in range(3)]
    signs = [np.where(np.cumsum(rng.random(5000) < 0.1) % 2 == 0, 1.0, -1.0) for _ in range(3)]
    facts = stylized_facts(mids, np.ones(100), signs, [np.sign(np.diff(m, append=m[-1])) for m in mids],
                           np.array([[1, 3, 5, 4, 2], [2, 4, 6, 3, 1]]))
    rows = {f.name: f for f in facts["facts"]}
    assert rows["share of spreads of 1-2 ticks"].inside
    assert rows["excess kurtosis, 1-record returns"].value > 1.0  # Student-t(3) increments
    assert rows["depth profile: level of the maximum (ticks)"].value == 2.0
    # Markov signs decay exponentially, not like a power law with γ in [0.3, 0.7]
    assert not rows["trade-sign ACF decay exponent γ"].inside
    # a random walk's response to the sign of its next step is that step: flat in the lag
    assert rows["price response rise R(50)/R(1)"].value == pytest.approx(1.0, abs=0.15)
    assert not rows["price response rise R(50)/R(1)"].inside


def test_realism_command_on_a_tiny_book_campaign(tmp_path, capsys):
    from mfgsim.cli import main
    from conftest import MARKET, write

    text = MARKET.replace("record_every = 10", "record_every = 1").replace("dt = 0.02", "dt = 0.005")
    assert main(["run", str(write(tmp_path, text, "tiny_market")), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["realism", str(tmp_path / "out" / "tiny_market")]) == 0
    printed = capsys.readouterr().out
    assert "share of spreads of 1-2 ticks" in printed and "Lillo & Farmer" in printed
    assert (tmp_path / "out" / "tiny_market" / "figures" / "realism.png").exists()
    from analysis.realism import realism_table

    facts, table = realism_table(tmp_path / "out" / "tiny_market")
    assert table.height == 8 and table["available"].any()
    # the price moves with the net flow: the response R(l) is positive
    assert np.nanmean(facts["response"]) > 0


REALISM_PEAK = """
import sys
import polars as pl
from analysis.realism import memory_estimate, realism_table


def peak():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


out = sys.argv[1]
realism_table(out, 10)  # load the readers and the kernels: their memory is not the work's
before = peak()
realism_table(out)
print(peak() - before, memory_estimate(out))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_realism_memory_estimate_bounds_its_peak(tmp_path, capsys):
    import os
    import subprocess
    import sys

    from conftest import MARKET, ROOT, write
    from mfgsim.cli import main

    text = (MARKET.replace("record_every = 10", "record_every = 1").replace("dt = 0.02", "dt = 0.001")
            .replace('grid = { "crowd.n_agents" = [5, 10, 20] }', 'grid = { "crowd.n_agents" = [10, 400] }')
            .replace("seeds = 1", "seeds = 4"))
    assert main(["run", str(write(tmp_path, text, "tiny_market")), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    result = subprocess.run([sys.executable, "-c", REALISM_PEAK, str(tmp_path / "out" / "tiny_market")],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300,
                            check=True)
    grown, estimate = map(int, result.stdout.split())
    assert 0.2 * estimate < grown < estimate


def test_realism_reports_a_book_that_empties(tmp_path, capsys):
    """No makers, a trickle of limit orders and many market orders: the book keeps running
    dry. The report says how often and what to raise, and exits non-zero."""
    from mfgsim.cli import main
    from conftest import MARKET, write

    text = (MARKET.replace("record_every = 10", "record_every = 1").replace("limit_rate = 40.0", "limit_rate = 2.0\n"
            "market_rate = 40.0\ncancel_rate = 0.5").replace("[sweep]", "[market.makers]\ncount = 0\n[sweep]"))
    assert main(["run", str(write(tmp_path, text, "tiny_market")), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["realism", str(tmp_path / "out" / "tiny_market")]) == 1
    err = capsys.readouterr().err
    assert "the book had an empty side at" in err and "market.noise.limit_rate" in err
