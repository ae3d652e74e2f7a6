"""Shared test set-up: the numba cache location, the tests folder on sys.path (for the
reference book), and the tiny campaign files the end-to-end tests run (seconds each).

The campaign texts are module constants because ``pytest.mark.parametrize`` needs them when
tests are collected; test modules import them with ``from conftest import ...``.
"""

import os
import sys
from pathlib import Path

import polars as pl

# numba reads its cache location at import; keep it out of the source tree.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis.readers import scan  # noqa: E402 (after NUMBA_CACHE_DIR)

ROOT = Path(__file__).resolve().parents[1]

MODEL = """
[model]
k = 1.0
kappa = 2.0
T = 1.0
sigma = {sigma}
[[model.types]]
phi = 1.0
A = 10.0
m0 = {{ means = [1.0], stds = [0.2] }}
"""

PARTICLES = """
[campaign]
name = "tiny_particles"
kind = "particles"
seeds = 2
record_every = 5
""" + MODEL.format(sigma=0.3) + """
[crowd]
n_agents = 5
[particles]
dt = 0.02
[sweep]
grid = { "crowd.n_agents" = [5, 20, 80] }
"""

MARKET = """
[campaign]
name = "tiny_market"
kind = "market"
seeds = 1
record_every = 10
keep_trades = true
""" + MODEL.format(sigma=0.0) + """
[crowd]
n_agents = 5
lots_per_unit = 20
stop_at_target = false
[market]
dt = 0.02
warmup_steps = 20
[market.noise]
limit_rate = 40.0
[sweep]
grid = { "crowd.n_agents" = [5, 10, 20] }
"""

NASH = """
[campaign]
name = "tiny_nash"
kind = "nash"
""" + MODEL.format(sigma=0.0) + """
[crowd]
n_agents = 2
[nash]
n_steps = 200
[sweep]
grid = { "crowd.n_agents" = [2, 4, 8] }
"""


def write(tmp_path, text, name):
    """Write a campaign text to ``tmp_path/<name>.toml``; returns the path."""
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def assert_calibrate_refuses(tmp_path, capsys, text: str, name: str, message: str,
                             command: str = "calibrate") -> None:
    """``mfgsim calibrate`` (or ``command``) on the file ``text`` exits 2 with ``message``; no output folder."""
    from mfgsim.cli import main

    assert main([command, str(write(tmp_path, text, name)), "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def frames(out: Path) -> dict[str, pl.DataFrame]:
    """Every table's shards, sorted, for comparing two output folders."""
    out_tables = {}
    for table in ("agents", "market", "trades", "depth", "mfg", "summary"):
        if (out / table).is_dir():
            df = scan(out, table).collect()
            out_tables[table] = df.sort(df.columns)
    return out_tables


def assert_same_outputs(a: Path, b: Path):
    fa, fb = frames(a), frames(b)
    assert fa.keys() == fb.keys()
    for table in fa:
        assert fa[table].equals(fb[table], null_equal=True), table



