"""`mfgsim demo`: small versions of experiments (a) and (c), written next to their outputs."""

from __future__ import annotations

from pathlib import Path

from .specs import CampaignSpec, load_campaign

_MODEL = """
[model]
k = 1.0
kappa = 5.0
T = 1.0
sigma = {sigma}

[[model.types]]
phi = 1.0
A = 10.0
m0 = {{ means = [1.0], stds = [0.2] }}
"""

PARTICLES = """
# Demo of experiment (a): particles on the MFG feedback, W1 ~ N^-1/2.
[campaign]
name = "demo_particles"
kind = "particles"
seeds = 12
record_every = 10
""" + _MODEL.format(sigma=0.3) + """
[crowd]
n_agents = 10
strategy = "mfg"

[particles]
dt = 0.01

[sweep]
grid = { "crowd.n_agents" = [10, 100, 1000, 10000, 100000] }
"""

BOOK = """
# Demo of experiment (c): the full book, W1 = b + C N^-r, on the realistic market of
# runs/realism_market.toml (its populations scaled with N like the crowd).
[campaign]
name = "demo_book"
kind = "market"
seeds = 6
record_every = 50
""" + _MODEL.format(sigma=0.0) + """
[crowd]
n_agents = 10
strategy = "mfg"
lots_per_unit = 50
stop_at_target = false

[market]                   # the realistic market's own step
dt = 0.01
n_ticks = 16384
initial_mid = 8192
warmup_steps = 500

[market.noise]             # limit orders a tick or two behind the touch
limit_rate = 20.0
market_rate = 0.0
cancel_rate = 1.0
mean_depth = 1.5
max_size = 2

[market.makers]            # GLFT makers at the touch, amending by REPLACE
count = 4
model = "glft"
quote_size = 2
risk_aversion = 0.05
fill_intensity = 100.0
fill_decay = 2.0
volatility = 1.0

[[market.latent]]          # fast latent liquidity: resilience near the price
deposit_rate = 2.0
cancel_rate = 0.1
band = 400
reveal_ticks = 3

[[market.latent]]          # slow latent liquidity: the square-root law
deposit_rate = 0.28
cancel_rate = 0.0005
band = 2000
reveal_ticks = 3
start_depletion = 61.0

[market.meta_traders]      # long-memory order flow (Lillo–Mike–Farmer), busy and quiet spells
count = 4
tail_exponent = 1.5
min_size = 1
max_size = 100000
participation = [0.5, 1.0]
child_size = 1
child_rate = 100.0
activity_volatility = 1.5
activity_time = 20.0

[sweep]
grid = { "crowd.n_agents" = [10, 30, 100, 300, 1000] }
"""


def demo_campaigns(out_root: str | Path) -> list[CampaignSpec]:
    """Write the two demo campaign files under ``out_root`` and load them.

    Parameters
    ----------
    out_root : str or os.PathLike

    Returns
    -------
    list of CampaignSpec
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, text in (("demo_particles", PARTICLES), ("demo_book", BOOK)):
        path = out_root / f"{name}.toml"
        path.write_text(text.lstrip())
        specs.append(load_campaign(path))
    return specs
