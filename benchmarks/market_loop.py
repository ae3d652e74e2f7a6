"""Market loop throughput: N execution agents (MFG feedback) with scaled liquidity.

Each case runs in a fresh process (numba cache warm) so that its peak memory is its own.
Prints JSON lines: agent decisions/s, book messages/s inside the loop, peak memory.

    python benchmarks/market_loop.py           # N = 1e5 x 1000 steps, and N = 1e6
    python benchmarks/market_loop.py --quick   # N = 1e4 x 1000 steps (under 20 s)
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



def run_case(n: int, steps: int, record_every: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", CASE, str(n), str(steps), str(record_every)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_mib"] = max(peak_kib, before) / 1024.0  # ru_maxrss is the largest child so far
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1e4 only (under 20 s)")
    args = parser.parse_args(argv)
    cases = [(10_000, 1000, 100)] if args.quick else [(100_000, 1000, 100), (1_000_000, 1000, 500)]
    for n, steps, every in cases:
        r = run_case(n, steps, every)
        tag = {"n_agents": n, "steps": steps}
        emit("agent_decisions_per_s", r["decisions"] / r["seconds"], "decisions/s", target=5e6, **tag)
        emit("book_messages_per_s", r["messages"] / r["seconds"], "messages/s", messages=r["messages"], **tag)
        emit("run_seconds", r["seconds"], "s", **tag)
        emit("peak_memory", r["peak_mib"], "MiB", **tag, **({"target": 4096} if n >= 1_000_000 else {}))


if __name__ == "__main__":
    main()
