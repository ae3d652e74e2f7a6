"""Campaign engine scaling: 2 workers against 1 on the same 40 short runs (JSON lines).

Each configuration runs into a fresh output folder; the pool start (spawn, numba cache
load) is included, as a user would see it.

    python benchmarks/campaign_scaling.py           # 40 runs of ~1 s
    python benchmarks/campaign_scaling.py --quick   # 40 runs of ~0.2 s (about 15 s on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAMPAIGN = """
[campaign]
name = "scaling"
kind = "particles"
seeds = 40
record_every = 50

[model]
k = 1.0
kappa = 5.0
T = 1.0
sigma = 0.3
[[model.types]]
phi = 1.0
A = 10.0
m0 = {{ means = [1.0], stds = [0.2] }}

[crowd]
n_agents = {n_agents}

[particles]
dt = 0.001
"""


def emit(metric, value, unit, **extra):
    print(json.dumps({"metric": metric, "value": float(f"{value:.6g}"), "unit": unit, **extra}), flush=True)


def main(argv=None):
    from mfgsim.campaign import load_campaign, run_campaign, warm_kernels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args(argv)
    n_agents = 4000 if args.quick else 20000
    warm_kernels()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scaling.toml"
        path.write_text(CAMPAIGN.format(n_agents=n_agents))
        campaign = load_campaign(path)
        seconds = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            run_campaign(campaign, Path(tmp) / f"w{workers}", workers=workers, progress=False)
            seconds[workers] = time.perf_counter() - t0
            emit("campaign_seconds", seconds[workers], "s", workers=workers, runs=len(campaign.runs),
                 n_agents=n_agents)
    emit("speedup_2_vs_1_workers", seconds[1] / seconds[2], "ratio", target=1.8)


if __name__ == "__main__":
    main()
