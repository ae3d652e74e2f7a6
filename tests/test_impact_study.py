"""`mfgsim impact`: a tiny study end to end, its tables and figures, and bad files."""

import numpy as np
import polars as pl
import pytest

from mfgsim.cli import main
from mfgsim.config import ConfigError
from mfgsim.studies.impact import load

STUDY = """
[study]
name = "tiny_impact"
sizes = [0.3, 0.9, 2.7]
seeds = 8
agents = 4
lots_per_unit = 50
post_steps = 40

[market]
dt = 0.02
n_ticks = 8192
initial_mid = 4096
warmup_steps = 300

[[books]]
name = "latent"
noise = { limit_rate = 2.0, market_rate = 20.0, cancel_rate = 2.0 }
latent = { deposit_rate = 2.0, cancel_rate = 0.2, band = 200, reveal_ticks = 5 }

[[books]]
name = "zero_intelligence"
"""


def test_impact_study_end_to_end(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    assert main(["impact", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "latent" in printed and "zero_intelligence" in printed and "exponent" in printed
    out = tmp_path / "out" / "tiny_impact"
    sizes = pl.read_parquet(out / "impact_sizes.parquet")
    laws = pl.read_parquet(out / "impact_laws.parquet")
    assert sizes.height == 6 and laws.height == 2
    latent = sizes.filter(pl.col("book") == "latent").sort("Q")
    assert np.all(np.diff(latent["peak"].to_numpy()) > 0)  # bigger meta-orders move the price more
    assert latent["filled"][0] == pytest.approx(1.0, abs=0.05) and latent["filled"].min() > 0.5
    np.testing.assert_allclose(latent["Q"].to_numpy(), np.array([0.3, 0.9, 2.7]) * 4 * 50)
    row = laws.filter(pl.col("book") == "latent").row(0, named=True)
    assert row["exponent_lo"] <= row["impact_exponent"] <= row["exponent_hi"]
    assert row["decay_time"] > 0 and row["decades"] > 0.9
    for stem in ("impact_law", "impact_decay"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0


def test_impact_figures_show_their_data():
    from analysis.figures import plot_impact_decay, plot_impact_law
    from analysis.impact import Relaxation, impact_law

    x = np.array([0.1, 0.3, 0.9])
    peaks = 5 * x[:, None] ** 0.5 + np.random.default_rng(0).normal(0, 0.05, (3, 20))
    law = impact_law(x * 100, x, peaks, n_boot=50)
    fig = plot_impact_law({"book": law})
    dots, fit, guide = fig.axes[0].get_lines()
    np.testing.assert_allclose(dots.get_ydata(), peaks.mean(axis=1))
    np.testing.assert_allclose(np.diff(np.log(guide.get_ydata())) / np.diff(np.log(x)), 0.5)
    t = np.linspace(0, 2, 50)
    relax = Relaxation(t, 0.5 + 0.5 * np.exp(-2 * t), 2.0, 0.1, 0.5, 0.02)
    fig = plot_impact_decay({"book": relax})
    data, fitted = fig.axes[0].get_lines()[:2]
    np.testing.assert_allclose(fitted.get_ydata(), 0.5 + 0.5 * np.exp(-2 * t))


@pytest.mark.parametrize("change, message", [
    (("sizes = [0.3, 0.9, 2.7]", "sizes = [0.9, 0.3, 2.7]"), "study.sizes"),
    (('latent = { deposit_rate = 2.0', 'latent = { deposit_rte = 2.0'), "did you mean 'deposit_rate'"),
    (("seeds = 8", "seeds = 1"), "study.seeds"),
    (('name = "zero_intelligence"', 'name = "latent"'), "distinct"),
])
def test_bad_study_files(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(STUDY.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_an_impact_exponent_that_cannot_be_computed_exits_non_zero(tmp_path, capsys, monkeypatch):
    """When the law cannot be fitted (too few resamples with positive impacts, say), the
    study still writes what it has, names the quantity and the cause, and exits 1."""
    from mfgsim.studies import impact

    def no_law(*args, **kwargs):
        raise ValueError("too few resamples with positive impacts at every size")

    monkeypatch.setattr(impact, "impact_law", no_law)
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY.split("[[books]]\nname = \"zero")[0])
    code = main(["impact", str(path), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    laws = pl.read_parquet(tmp_path / "out" / "tiny_impact" / "impact_laws.parquet")
    assert np.isnan(laws["impact_exponent"][0]) and np.isfinite(laws["decay_time"][0])  # the rest is kept
    assert code == 1
    assert err.strip() == ("mfgsim impact: the impact exponent of book latent could not be computed (too few "
                           "resamples with positive impacts at every size); raise the seeds or widen the sizes")


def test_a_book_may_hold_meta_order_traders(tmp_path):
    """The loader builds each book's market at both ends of the sizes: the section must pass."""
    path = tmp_path / "meta.toml"
    path.write_text(STUDY + 'meta_traders = { count = 2, tail_exponent = 1.5, child_rate = 20.0 }\n')
    assert load(path).books[1].market["meta_traders"]["count"] == 2
    path.write_text(STUDY + 'meta_traders = { tail_exponent = 0.9 }\n')
    with pytest.raises(ConfigError, match="meta_traders.tail_exponent=0.9 is not allowed"):
        load(path)
