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
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def emit(metric, value, unit, **extra):
    print(json.dumps({"metric": metric, "value": round(float(value), 4), "unit": unit, **extra}), flush=True)


def main(argv=None):
    import polars as pl

    from mfgsim.calibrate import _finite_n_gap, _market_objects, _with_params, load_calibration, run_calibration
    from mfgsim.campaign import make_engine
    from simulator.market import run_market

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 evaluation seeds")
    args = parser.parse_args(argv)
    seeds = list(range(1000, 1016 if args.quick else 1048))
    points = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, name in (("permanent", "closed_loop_permanent"), ("transient", "closed_loop")):
            out, converged = run_calibration(ROOT / "runs" / f"{name}.toml", tmp, verbose=False)
            table = pl.read_parquet(out / "calibration.parquet").sort("iteration")
            first, last = table.row(0, named=True), table.row(-1, named=True)
            points["start"] = tuple(first[p] for p in ("kappa", "k", "c", "rho"))
            points[label] = tuple(last[p] for p in ("kappa", "k", "c", "rho"))
            emit("fixed_point", last["kappa"], "kappa", model=label, rho=round(last["rho"], 4), c=round(last["c"], 5),
                 iterations=int(last["iteration"]), converged=converged)
    plan = load_calibration(ROOT / "runs" / "closed_loop.toml")
    with make_engine() as pool:
        for label, theta in points.items():
            model, spec = _market_objects(_with_params(plan.points[0], *theta), plan.source)
            runs = list(pool.map(run_market, [spec] * len(seeds), seeds))
            gap = _finite_n_gap(runs, model, spec, plan.settings.w1_records)
            halves = [_finite_n_gap(runs[i::2], model, spec, plan.settings.w1_records)["price_error"] for i in (0, 1)]
            emit("price_error", gap["price_error"], "model price units", model=label, seeds=len(seeds),
                 halves=[round(h, 4) for h in halves])
            emit("cost_gap", gap["cost_gap"], "model units", model=label, seeds=len(seeds))


if __name__ == "__main__":
    main()
