"""Market loop throughput: N execution agents (MFG feedback) with scaled liquidity, and the
realistic market of ``runs/realism_market.toml`` with a crowd of N small MFG executors.

Each case runs in a fresh process (numba cache warm) so that its peak memory is its own.
Prints JSON lines: agent decisions/s (crowd, makers and meta-order traders; the lines of
the realistic market carry ``"market": "realism_market"``), book messages/s inside the
loop, peak memory.

    python benchmarks/market_loop.py           # N = 1e5 x 1000 steps, and N = 1e6; realistic: N = 1e5 x 10 000 steps
    python benchmarks/market_loop.py --quick   # N = 1e4 (the realistic market: 10 000 steps), under 30 s
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from _common import ROOT, emit

CASE = """
import json, sys, time
from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture
from simulator.agents import ExecutionCrowd
from simulator.market import MarketSpec, run_market

n, steps, record_every = (int(a) for a in sys.argv[1:4])
model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2))
spec = MarketSpec(T=1.0, dt=1.0 / steps, crowd=ExecutionCrowd(n, model, "mfg", lots_per_unit=20),
                  n_ticks=1 << 16, initial_mid=1 << 15, warmup_steps=100, record_every=record_every,
                  max_trades_kept=10_000)
run_market(MarketSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(2, model, "mfg"), record_every=10), seed=0)  # warm
run = run_market(spec, seed=1)
print(json.dumps({"seconds": run.seconds, "decisions": run.decisions, "messages": run.n_messages,
                  "trades": run.n_trades}))
"""

# The realistic market as its file builds it (its own liquidity, not scaled, its dt), with N
# small executors: buyers and sellers of about 2 lots each (0.1 units of 20 lots, mean 0),
# so the crowd's gross flow at N = 1e5 over 10 000 steps is about the market's own volume.
# They trade to the end (stop_at_target = False): every agent decides at every step, so the
# figure is the loop's speed, not how soon the market lets the crowd finish.
REALISTIC = """
import dataclasses, json, sys
from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture
from mfgsim.build import build_run
from mfgsim.campaign import load_campaign
from simulator.agents import ExecutionCrowd
from simulator.market import run_market

n, steps, record_every = (int(a) for a in sys.argv[1:4])
run0 = load_campaign(sys.argv[4]).runs[0]
market = build_run(json.loads(run0.config), run0.campaign)["spec"]
T = steps * market.dt
model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=T, m0=GaussianMixture.normal(0.0, 0.1))
spec = dataclasses.replace(market, T=T, crowd=ExecutionCrowd(n, model, "mfg", lots_per_unit=20, stop_at_target=False),
                           record_every=record_every, max_trades_kept=10_000)
run_market(dataclasses.replace(spec, crowd=ExecutionCrowd(2, model, "mfg"), warmup_steps=10), seed=0)  # warm
run = run_market(spec, seed=1)
print(json.dumps({"seconds": run.seconds, "decisions": run.decisions, "messages": run.n_messages,
                  "trades": run.n_trades}))
"""



def run_case(n: int, steps: int, record_every: int, realistic: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    script, extra = (REALISTIC, [str(ROOT / "runs" / "realism_market.toml")]) if realistic else (CASE, [])
    out = subprocess.run([sys.executable, "-c", script, str(n), str(steps), str(record_every), *extra], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_mib"] = max(peak_kib, before) / 1024.0  # ru_maxrss is the largest child so far
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1e4 only (under 30 s)")
    args = parser.parse_args(argv)
    if args.quick:
        cases = [(10_000, 1000, 100, False), (10_000, 10_000, 100, True)]
    else:
        cases = [(100_000, 1000, 100, False), (1_000_000, 1000, 500, False), (100_000, 10_000, 100, True)]
    for n, steps, every, realistic in cases:
        r = run_case(n, steps, every, realistic)
        tag = {"n_agents": n, "steps": steps, **({"market": "realism_market"} if realistic else {})}
        emit("agent_decisions_per_s", r["decisions"] / r["seconds"], "decisions/s", target=5e6, **tag)
        emit("book_messages_per_s", r["messages"] / r["seconds"], "messages/s", messages=r["messages"], **tag)
        emit("run_seconds", r["seconds"], "s", **tag)
        emit("peak_memory", r["peak_mib"], "MiB", **tag, **({"target": 4096} if n >= 1_000_000 else {}))


if __name__ == "__main__":
    main()
