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
# Demo of experiment (c): the full (resilient) book, W1 = b + C N^-r.
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

[market]
dt = 0.002
n_ticks = 16384
initial_mid = 8192
warmup_steps = 1500

[market.noise]             # light zero-intelligence flow beside the resilient (latent) book
limit_rate = 2.0

[market.latent]
deposit_rate = 2.0
cancel_rate = 0.1
band = 400
reveal_ticks = 5

[sweep]
grid = { "crowd.n_agents" = [10, 30, 100, 300, 1000, 3000] }
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
