"""FD MFG solver: compiled kernels vs a plain numpy/scipy.sparse version of the same scheme.

LQ crowding with k=1, kappa=20, phi=1, A=10, T=1, sigma=0.3, m0=N(1, 0.2^2), solved to a
fixed-point residual of 1e-8 by both implementations with the same Anderson iteration, in
the same run. Also: the error against the closed form reached within 0.1 s by the
monotone first-order scheme and by the second-order option (``order=2``), and the orders
observed on halved grids.

    python benchmarks/mfg_solver.py           # Nx=1600, Nt=800 (the plain solve takes a minute or more)
    python benchmarks/mfg_solver.py --quick   # Nx=400, Nt=200, under 20 s
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import emit

import numpy as np  # noqa: E402
from plain_mfg import solve_plain  # noqa: E402

from mfg.closed_form import LQCrowding  # noqa: E402
from mfg.fd import Grid, LQCrowdingModel, solve  # noqa: E402
from mfg.laws import GaussianMixture  # noqa: E402

PARAMS = dict(k=1.0, kappa=20.0, phi=1.0, A=10.0, T=1.0, sigma=0.3)
X_MIN, X_MAX = -1.5, 2.5



def model() -> LQCrowding:
    return LQCrowding.single(m0=GaussianMixture.normal(1.0, 0.2), **PARAMS)


def mean_error(cf, grid, mu):
    """Sup error of the mean inventory implied by the rates μ (E^{n+1} = E^n + dt μ^n)."""
    E = cf.types[0].m0.mean + np.concatenate([[0.0], np.cumsum(mu) * grid.dt])
    return float(np.max(np.abs(E - cf.mean_inventory(grid.t))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Nx=400, Nt=200 (under 20 s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n_x, n_t = (400, 200) if args.quick else (1600, 800)
    cf = model()
    grid = Grid(X_MIN, X_MAX, n_x, PARAMS["T"], n_t)
    solve(LQCrowdingModel(cf), Grid(X_MIN, X_MAX, 200, 1.0, 100))  # compile / load the cache

    runs = []
    for _ in range(args.repeats):
        runs.append(solve(LQCrowdingModel(cf), grid, tol=1e-8))
    sol = runs[-1]
    fast_s = statistics.median(r.seconds for r in runs)
    err_E = mean_error(cf, grid, sol.mean_rate)
    err_mu = float(np.max(np.abs(sol.mean_rate - cf.mean_rate(grid.t[:-1]))))
    emit("grid", n_x, "nodes", n_t=n_t)
    emit("compiled_seconds", fast_s, "s", median_of=args.repeats)
    emit("compiled_iterations", sol.iterations, "count")
    emit("compiled_error_mean_inventory", err_E, "shares")
    emit("compiled_error_mean_rate", err_mu, "shares/time")

    m0 = grid.cell_masses(cf.types[0].m0)
    t0 = time.perf_counter()
    mu_plain, plain_iters = solve_plain(grid.x, 1.0, n_t, PARAMS["sigma"], PARAMS["k"], PARAMS["kappa"],
                                        PARAMS["phi"], 0.0, PARAMS["A"], m0, tol=1e-8)
    plain_s = time.perf_counter() - t0
    emit("plain_seconds", plain_s, "s", iterations=plain_iters)
    emit("plain_error_mean_inventory", mean_error(cf, grid, mu_plain), "shares")
    emit("plain_vs_compiled_max_rate_difference", float(np.max(np.abs(mu_plain - sol.mean_rate))), "shares/time")
    emit("speedup_vs_plain", plain_s / fast_s, "ratio", target=20)

    # error against cost: the finest grid that solves within 0.1 s
    best = None
    for r in range(1, 7):
        g = Grid(X_MIN, X_MAX, 50 * 2**r, 1.0, 25 * 2**r)
        try:
            secs = statistics.median(solve(LQCrowdingModel(cf), g).seconds for _ in range(3))
        except ValueError:  # too coarse: numerical diffusion pushes mass to the grid's ends
            continue
        if secs > 0.1:
            break
        s = solve(LQCrowdingModel(cf), g)
        best = (g, secs, mean_error(cf, g, s.mean_rate))
    if best is not None:
        g, secs, err = best
        emit("error_in_0.1s", err, "shares", n_x=g.n_x, n_t=g.n_t, seconds=round(secs, 4), order=1)

    # the second-order option (Richardson extrapolation): the smallest error within 0.1 s over
    # a few grids on a wider domain (the coarse solve must keep its mass off the ends)
    best = None
    for n_x in (80, 100, 120, 160):
        for n_t in (60, 80, 100, 120):
            g = Grid(-2.5, 3.0, n_x, 1.0, n_t)
            sols = [solve(LQCrowdingModel(cf), g, order=2) for _ in range(3)]
            secs = statistics.median(s.seconds for s in sols)
            if secs <= 0.1:
                err = mean_error(cf, g, sols[0].mean_rate)
                if best is None or err < best[2]:
                    best = (g, secs, err)
    if best is not None:
        g, secs, err = best
        emit("error_in_0.1s", err, "shares", n_x=g.n_x, n_t=g.n_t, seconds=round(secs, 4), order=2, target=5e-4)

    # observed orders on successively halved grids (dx and dt together)
    for order in (1, 2):
        errors = [mean_error(cf, g, solve(LQCrowdingModel(cf), g, order=order).mean_rate)
                  for g in (Grid(X_MIN, X_MAX, 200 * 2**r, 1.0, 100 * 2**r) for r in range(3))]
        emit("observed_order", float(np.log2(errors[-2] / errors[-1])), "ratio", scheme=order,
             errors=[float(f"{e:.3g}") for e in errors])


if __name__ == "__main__":
    main()
