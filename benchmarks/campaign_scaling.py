"""Campaign engine scaling: 2 workers against 1 on the same 40 short runs, and Dask's
local cluster against the process pool with 2 workers each (JSON lines).

Each configuration runs into a fresh output folder; the engine's start (spawn, numba cache
load; for Dask the cluster) is included, as a user would see it, and reported apart.

    python benchmarks/campaign_scaling.py           # 40 runs of ~1 s
    python benchmarks/campaign_scaling.py --quick   # 40 runs of ~0.2 s (about 15 s on 2 cores)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import emit

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



def main(argv=None):
    from mfgsim import load_campaign, run_campaign
    from mfgsim.engines import make_engine, warm_kernels

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
        for label, kwargs in (("pool", {"workers": 1}), ("pool", {"workers": 2}),
                              ("dask_local", {"workers": 2, "dask": "local"})):
            if label == "dask_local" and not _has_dask():
                continue
            t0 = time.perf_counter()
            with make_engine(**kwargs) as engine:
                started = time.perf_counter() - t0
                run_campaign(campaign, Path(tmp) / f"{label}{kwargs['workers']}", engine=engine, progress=False)
            seconds[label, kwargs["workers"]] = time.perf_counter() - t0
            emit("campaign_seconds", seconds[label, kwargs["workers"]], "s", engine=label, workers=kwargs["workers"],
                 runs=len(campaign.runs), n_agents=n_agents, engine_start_s=round(started, 3))
    emit("speedup_2_vs_1_workers", seconds["pool", 1] / seconds["pool", 2], "ratio", target=1.8)
    if ("dask_local", 2) in seconds:
        emit("dask_local_vs_pool_2_workers", seconds["dask_local", 2] / seconds["pool", 2], "ratio", target=1.1)


def _has_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
