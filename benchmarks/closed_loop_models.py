"""The closed loop on the resilient book with the transient-impact MFG (κ, ρ, c) against
the permanent-impact one (κ, c): both calibrated from the same start, then both fixed
points evaluated on the same fresh seeds (JSON lines).

Prints, for the start and each fixed point, the price error (max over t of the mean book
price move against the model's impact path, model price units) and the cost gap (mean
realised gain against the MFG value), with the price error of each half of the seeds as
a noise gauge.

    python benchmarks/closed_loop_models.py            # 48 evaluation seeds (~1.5 min on 2 cores)
    python benchmarks/closed_loop_models.py --quick    # 16
"""

from __future__ import annotations

import argparse

from _common import ROOT, emit



def main(argv=None):
    import polars as pl

    from mfgsim.engines import make_engine
    from mfgsim.studies import calibration
    from simulator.market import run_market

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 evaluation seeds")
    args = parser.parse_args(argv)
    seeds = list(range(1000, 1016 if args.quick else 1048))
    points = {}
    for label, name in (("permanent", "closed_loop_permanent"), ("transient", "closed_loop")):
        result = calibration.run(calibration.load(ROOT / "runs" / f"{name}.toml"), verbose=False)
        table = pl.DataFrame(result.rows).sort("iteration")
        first, last = table.row(0, named=True), table.row(-1, named=True)
        points["start"] = tuple(first[p] for p in ("kappa", "k", "c", "rho"))
        points[label] = tuple(last[p] for p in ("kappa", "k", "c", "rho"))
        emit("fixed_point", last["kappa"], "kappa", model=label, rho=round(last["rho"], 4), c=round(last["c"], 5),
             iterations=int(last["iteration"]), converged=result.converged)
    plan = calibration.load(ROOT / "runs" / "closed_loop.toml")
    with make_engine() as pool:
        for label, theta in points.items():
            config = calibration.with_params(plan.points[0], *theta)
            model, spec = calibration.market_objects(config, plan.source)
            runs = list(pool.map(run_market, [spec] * len(seeds), seeds))
            records = plan.settings.w1_records
            gap = calibration.finite_n_gap(runs, model, spec, records)
            halves = [calibration.finite_n_gap(runs[i::2], model, spec, records)["price_error"] for i in (0, 1)]
            emit("price_error", gap["price_error"], "model price units", model=label, seeds=len(seeds),
                 halves=[round(h, 4) for h in halves])
            emit("cost_gap", gap["cost_gap"], "model units", model=label, seeds=len(seeds))


if __name__ == "__main__":
    main()
