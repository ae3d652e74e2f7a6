"""The closed loop on the resilient book: the transient-impact MFG (κ, ρ, c), the
permanent-impact one (κ, c) and the MFG on the book's own measured primitives (a nonlinear
propagator, the half-spread and the crowd term), each calibrated from the same start, then
every fixed point evaluated on the same fresh seeds (JSON lines).

Prints, for the start and each fixed point:

* ``price_error`` (max over t of the mean book price move against the model's impact path,
  model price units) and ``cost_gap`` (mean realised gain against the MFG value), as before;
* ``price_error_rel`` = price_error / max |model impact path|, with a basic bootstrap
  interval over seeds and the statistic on each half of the seeds as a noise gauge;
* ``cost_gap_rel`` = (mean realised gain - MFG value) / |MFG expected execution cost|,
  with a bootstrap interval; the realised gain is charged the agents' speed friction k∫ν²
  as the model's objective is (see :mod:`mfgsim.studies.measured`);
* for the measured model, the held-out meta-order errors of its kernel (peak, plateau,
  against ``held_out_seeds`` fresh seeds, with 95% bootstrap intervals ``peak_interval`` and
  ``plateau_interval`` over the fit's seeds and the observed ones), the
  cost decomposition, book against MFG, term by term (``cost_term``), the fixed point
  against N (``cost_gap_rel`` and ``price_error_rel`` with ``N`` and ``fixed_point``: the loop's
  fixed point carried to each N, and, in the full run, each N's own), the seconds of one
  MFG solve on the measured primitives (``mfg_solve_seconds``, median of 5), of one book run
  of its fixed point from scratch and from its warm-up (``run_seconds``, ``start`` cold or
  warm, median of 5, with their ratio) and of one
  calibration iteration of each loop (``iteration_seconds``, the median over its iterations);
* the same loop with the other choice of the kernel's permanent exponent
  (``permanent_exponent``, "shared" or "fitted"), as ``model = "measured_<choice>_exponent"``:
  its fixed point, held-out errors and outcomes on the same seeds, without the scaling.

    python benchmarks/closed_loop_models.py            # 48 evaluation seeds, each N's own loop (~11 min on 2 cores)
    python benchmarks/closed_loop_models.py --quick    # 16, without each N's own loop (~6 min on 2 cores)
"""

from __future__ import annotations

import argparse

from _common import ROOT, emit


def main(argv=None):
    import polars as pl

    import dataclasses
    import statistics
    import time

    from mfg.fd import solve
    from mfgsim.build import market_objects
    from mfgsim.engines import make_engine
    from mfgsim.studies import calibration, measured
    from simulator.market import run_market, warm_up

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 evaluation seeds")
    args = parser.parse_args(argv)
    seeds = list(range(1000, 1016 if args.quick else 1048))
    plan = calibration.load(ROOT / "runs" / "closed_loop.toml")
    configs = {}
    for label, name in (("permanent", "closed_loop_permanent"), ("transient", "closed_loop")):
        start = time.perf_counter()
        loop_plan = calibration.load(ROOT / "runs" / f"{name}.toml")
        result = calibration.run(loop_plan, verbose=False)
        table = pl.DataFrame(result.rows).sort("iteration")
        per_iteration = statistics.median(table["seconds"].to_list())
        emit("iteration_seconds", per_iteration, "s", model=label, iterations=table.height,
             total_seconds=round(time.perf_counter() - start, 2))
        emit("iteration_seconds_per_seed", per_iteration / len(loop_plan.settings.seeds), "s", model=label)
        first, last = table.row(0, named=True), table.row(-1, named=True)
        configs["start"] = calibration.with_params(plan.points[0], *(first[p] for p in ("kappa", "k", "c", "rho")))
        configs[label] = calibration.with_params(plan.points[0], *(last[p] for p in ("kappa", "k", "c", "rho")))
        emit("fixed_point", last["kappa"], "kappa", model=label, rho=round(last["rho"], 4), c=round(last["c"], 5),
             iterations=int(last["iteration"]), converged=result.converged)
    measured_plan = calibration.load(ROOT / "runs" / "closed_loop_measured.toml")
    scaling = measured_plan.settings.scaling
    # the file's kernel ("measured") and the other choice of its permanent exponent beside it
    mode = measured_plan.settings.permanent_exponent
    other = "shared" if mode == "fitted" else "fitted"
    fits = {}
    for label, lasting in (("measured", mode), (f"measured_{other}_exponent", other)):
        loop_only = dataclasses.replace(measured_plan, settings=dataclasses.replace(
            measured_plan.settings, scaling=(), permanent_exponent=lasting))
        start = time.perf_counter()
        result = calibration.run(loop_only, verbose=False)
        per_iteration = statistics.median(row["seconds"] for row in result.rows)
        emit("iteration_seconds", per_iteration, "s", model=label,
             iterations=len(result.rows), total_seconds=round(time.perf_counter() - start, 2),
             note="total includes the meta-orders and the held-out fits, done once")
        # the measured loop runs twice the LQ loops' book runs per iteration (24 seeds, not 12)
        emit("iteration_seconds_per_seed", per_iteration / len(measured_plan.settings.seeds), "s", model=label)
        last = pl.DataFrame(result.rows).sort("iteration").row(-1, named=True)
        fixed = measured.Primitives.from_columns(last)
        configs[label] = fixed.configured(measured_plan.points[0])
        kernel = fixed.propagator
        emit("fixed_point", kernel.exponent, "impact exponent delta", model=label,
             permanent_exponent=kernel.permanent_exponent, permanent=round(kernel.permanent, 4),
             exponentials=[[round(a, 4), round(r, 4)] for a, r in zip(kernel.amplitudes, kernel.rates)],
             spread=round(fixed.temporary.spread, 4), crowd=round(fixed.temporary.crowd, 5),
             iterations=int(last["iteration"]), converged=result.converged)
        for row in result.held_out:
            emit("held_out_peak_error", row["peak_error"], "relative", model=label, held_out=row["held_out"],
                 plateau_error=round(row["plateau_error"], 4), peak_se=round(row["peak_se"], 4),
                 plateau_se=round(row["plateau_se"], 4), observed_seeds=row["observed_seeds"],
                 **{f"{key}_interval": [round(row[f"{key}_error_lo"], 4), round(row[f"{key}_error_hi"], 4)]
                    for key in ("peak", "plateau") if f"{key}_error_lo" in row})
        fits[label] = fixed
    fixed = fits["measured"]
    model, spec = market_objects(configs["measured"], plan.source)
    crowd = spec.crowd
    fd_model = crowd.fd_model()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        solve(fd_model, crowd.fd_grid)
        times.append(time.perf_counter() - start)
    emit("mfg_solve_seconds", statistics.median(times), "s", model="measured", grid=[crowd.fd_grid.n_x,
                                                                                      crowd.fd_grid.n_t])
    # one book run of the measured fixed point from scratch and from its warm-up, side by side
    warm = warm_up(spec, seeds[0])
    cold_times, warm_times = [], []
    for _ in range(5):
        for times, start_from in ((cold_times, None), (warm_times, warm)):
            start = time.perf_counter()
            run_market(spec, seeds[0], start_from)
            times.append(time.perf_counter() - start)
    emit("run_seconds", statistics.median(cold_times), "s", model="measured", start="cold",
         warmup_steps=spec.warmup_steps, steps=spec.n_steps)
    emit("run_seconds", statistics.median(warm_times), "s", model="measured", start="warm",
         ratio=round(statistics.median(cold_times) / statistics.median(warm_times), 2))
    with make_engine() as pool:
        if scaling:
            # each N's own fixed point in the full run only: at N = 3000 it is a loop of its own
            settings = dataclasses.replace(measured_plan.settings, scaling_recalibrate=(
                measured_plan.settings.scaling_recalibrate and not args.quick))
            _, by_n = measured.scaling(measured_plan.points[0], dataclasses.replace(measured_plan, settings=settings),
                                       fixed, pool)
            for row in by_n:
                tags = {"model": "measured", "N": row["N"], "fixed_point": row["fixed_point"], "seeds": row["seeds"]}
                if row["fixed_point"] == "own":
                    tags.update(iterations=row["iterations"], exponent=round(row["exponent"], 4),
                                permanent_exponent=round(row["permanent_exponent"], 4),
                                permanent=round(row["permanent"], 4))
                emit("cost_gap_rel", row["cost_gap_rel"], "relative", **tags,
                     interval=[round(row["cost_gap_rel_lo"], 4), round(row["cost_gap_rel_hi"], 4)])
                emit("price_error_rel", row["price_error_rel"], "relative", **tags,
                     interval=[round(row["price_error_rel_lo"], 4), round(row["price_error_rel_hi"], 4)],
                     halves=[round(row["price_error_rel_half_a"], 4), round(row["price_error_rel_half_b"], 4)])
        for label, config in configs.items():
            model, spec = market_objects(config, plan.source)
            runs = list(pool.map(run_market, [spec] * len(seeds), seeds))
            if not label.startswith("measured"):  # the absolute metrics of the LQ models, as before
                records = plan.settings.w1_records
                gap = calibration.finite_n_gap(runs, model, spec, records)
                halves = [calibration.finite_n_gap(runs[i::2], model, spec, records)["price_error"] for i in (0, 1)]
                emit("price_error", gap["price_error"], "model price units", model=label, seeds=len(seeds),
                     halves=[round(h, 4) for h in halves])
                emit("cost_gap", gap["cost_gap"], "model units", model=label, seeds=len(seeds))
            out = measured.evaluate(runs, model, spec)
            emit("cost_gap_rel", out["cost_gap_rel"], "relative", model=label, seeds=len(seeds),
                 interval=[round(out["cost_gap_rel_lo"], 4), round(out["cost_gap_rel_hi"], 4)],
                 execution_cost=round(out["execution_cost"], 4))
            emit("price_error_rel", out["price_error_rel"], "relative", model=label, seeds=len(seeds),
                 interval=[round(out["price_error_rel_lo"], 4), round(out["price_error_rel_hi"], 4)],
                 halves=[round(h, 4) for h in out["price_error_rel_halves"]],
                 debiased=round(out["price_error_rel_debiased"], 4))
            if label.startswith("measured"):
                parts = measured.cost_decomposition(runs, model, spec)
                for term in measured.DECOMPOSITION:
                    emit("cost_term", parts["book"][term], "model value units per agent", model=label, term=term,
                         mfg=round(parts["model"][term], 5))


if __name__ == "__main__":
    main()
