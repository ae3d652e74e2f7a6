"""End to end: `mfgsim solve` on tiny configs, malformed configs, and the figure's data."""

import numpy as np
import polars as pl
import pytest

from analysis.figures import plot_solution
from mfgsim.cli import main
from mfgsim.config import ConfigError, parse_solve_config

GOOD = """
[model]
kind = "lq_crowding"
k = 1.0
kappa = 2.0
T = 1.0
sigma = 0.3
[[model.types]]
phi = 1.0
A = 10.0
m0 = { means = [1.0], stds = [0.2] }
[grid]
x_min = -1.5
x_max = 2.5
n_x = 60
n_t = 20
"""


def write(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_solve_writes_parquet_and_figures(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["solve", str(write(tmp_path, GOOD)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "converged" in printed and "vs closed form (exact LQ solution" in printed
    assert "max |mu_fd - mu|" in printed and "shares/time" in printed
    df = pl.read_parquet(out / "solution.parquet")
    assert df.height == 21 * 60 and set(df.columns) == {"type", "t", "x", "m", "V", "control"}
    assert (out / "solution.png").stat().st_size > 0 and (out / "solution.pdf").stat().st_size > 0


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("kappa", "kapa"), "did you mean 'kappa'"),
    (GOOD.replace("n_x = 60", "n_x = 2"), "grid.n_x=2 is not allowed"),
    (GOOD.replace("k = 1.0", "k = -1.0"), "model.k=-1.0 is not allowed"),
    (GOOD.replace('kind = "lq_crowding"', 'kind = "lq"'), "expected one of"),
    (GOOD.replace("stds = [0.2]", "stds = [0.2, 0.1]"), "model.types[0].m0"),
    (GOOD.replace("x_max = 2.5", "x_max = -2.0"), "must exceed"),
    (GOOD + "\n[solver]\nmethod = 'newtn'\n", "solver.method"),
    (GOOD + "\n[extra]\na = 1\n", "extra is not a known key"),
    ("[model\nkind=1", "not valid TOML"),
])
def test_malformed_configs_name_the_field_and_write_nothing(tmp_path, capsys, text, message):
    out = tmp_path / "out"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_solve_config(path)
    assert main(["solve", str(path), "--out", str(out)]) == 2
    assert str(path) in capsys.readouterr().err
    assert not out.exists()


def test_solution_figure_shows_the_solution(tmp_path):
    from mfg.fd import solve

    cfg = parse_solve_config(write(tmp_path, GOOD))
    sol = solve(cfg.model, cfg.grid)
    fig = plot_solution(sol, cfg.model.closed_form)
    density_img, control_img = fig.axes[0].images[0], fig.axes[1].images[0]
    np.testing.assert_allclose(density_img.get_array(), sol.density)
    visible = ~np.ma.getmaskarray(control_img.get_array())
    np.testing.assert_allclose(control_img.get_array()[visible], sol.control[0][visible])
    vmin, vmax = control_img.get_clim()
    assert vmin == -vmax  # the diverging scale is centred at 0
    assert fig.axes[3].get_ylabel().startswith("m ") and fig.axes[4].get_ylabel().startswith("ν")
    lines = fig.axes[2].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), sol.mean_inventory())
    np.testing.assert_allclose(lines[1].get_ydata(), cfg.model.closed_form.mean_inventory(cfg.grid.t))


def test_solve_with_a_power_law_cost(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace('kind = "lq_crowding"', 'kind = "lq_crowding"\ncost_exponent = 1.5'))
    assert main(["solve", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "converged" in printed and "vs closed form" not in printed  # no closed form for α != 2
    path = write(tmp_path, GOOD.replace('kind = "lq_crowding"', 'kind = "lq_crowding"\ncost_exponent = 2.5'))
    with pytest.raises(ConfigError, match="model.cost_exponent=2.5 is not allowed"):
        parse_solve_config(path)


def test_mfgsim_run_routes_every_shipped_study_file():
    """`mfgsim run FILE` runs campaigns itself and hands studies and calibrations to their
    commands; the solve files are neither and are left to the campaign loader's message."""
    import tomllib
    from pathlib import Path

    from mfgsim.cli import study_command

    expected = {"closed_loop": "calibrate", "closed_loop_depth_sweep": "calibrate",
                "closed_loop_measured": "calibrate", "makers_loop": "calibrate",
                "closed_loop_permanent": "calibrate", "experiment_d_makers": "makers",
                "experiment_d_makers_fine_tick": "makers", "impact_square_root": "impact",
                "learn_executors": "learn", "learn_makers": "learn", "closed_loop_realistic": "calibrate",
                "impact_realistic": "impact"}
    for path in sorted(Path(__file__).parent.parent.glob("runs/*.toml")):
        routed = study_command(tomllib.loads(path.read_text()))
        assert (routed[0] if routed else None) == expected.get(path.stem), path.name
