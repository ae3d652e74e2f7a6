"""Solve a mean-field game, then run N agents on its feedback and compare them with it.

The LQ trade-crowding MFG is solved twice, in closed form and by finite differences
(HJB-FP); N particles then trade on the finite-difference feedback, and their empirical
inventory law is compared with m(t, .) at every record (W1), for a few N.

    python examples/solve_and_compare.py           # N = 100, 1000, 10000
    python examples/solve_and_compare.py --tiny    # what the tests run
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from analysis.compare import compare_run  # noqa: E402
from mfg.closed_form import LQCrowding  # noqa: E402
from mfg.fd import Grid, LQCrowdingModel, solve  # noqa: E402
from mfg.laws import GaussianMixture  # noqa: E402
from simulator.agents import ExecutionCrowd  # noqa: E402
from simulator.market import ParticleSpec, run_particles  # noqa: E402


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few seconds: what the tests run")
    args = parser.parse_args(argv)
    model = LQCrowding.single(k=1.0, kappa=5.0, phi=1.0, A=10.0, T=1.0, sigma=0.3, m0=GaussianMixture.normal(1.0, 0.2))
    grid = Grid(-1.5, 2.5, n_x=200 if args.tiny else 800, T=1.0, n_t=100 if args.tiny else 400)
    sol = solve(LQCrowdingModel(model), grid)
    t = grid.t
    gap = np.max(np.abs(sol.mean_inventory() - model.mean_inventory(t)))
    print(f"FD solve: {len(sol.residuals)} iterations, {sol.seconds:.2f} s; max |E_fd - E_exact| = {gap:.2e}")
    rows = []
    for n in ((50, 500) if args.tiny else (100, 1000, 10000)):
        crowd = ExecutionCrowd(n, model, strategy="mfg_fd", fd_grid=grid)
        spec = ParticleSpec(T=1.0, dt=0.01, crowd=crowd, record_every=10)
        w1 = [compare_run(run_particles(spec, seed), model)[1]["w1_mean"] for seed in range(4)]
        rows.append({"N": n, "w1": float(np.mean(w1)), "w1_se": float(np.std(w1, ddof=1) / 2)})
        print(f"N={n:>6}: W1 to the MFG law {rows[-1]['w1']:.4f} ± {rows[-1]['w1_se']:.4f} (4 seeds)")
    slope = np.polyfit(np.log([r["N"] for r in rows]), np.log([r["w1"] for r in rows]), 1)[0]
    print(f"log-log slope {slope:+.2f} (the mean field predicts -1/2)")
    return rows


if __name__ == "__main__":
    main()
