"""Meta-order impact laws of the resilient (latent) book and the zero-intelligence book,
measured side by side in one run (JSON lines).

Prints per book ``impact_exponent`` (δ of peak impact ∝ (Q/V)^δ with its 95% bootstrap
interval over seeds, and the decades of Q/V it spans), ``permanent_fraction`` (impact a
long relaxation after the end over the peak) and ``decay_time`` (1/ρ of the fitted
relaxation, with its standard error). Targets for the latent book: δ in [0.4, 0.6] with
its interval inside [0.35, 0.65] over >= 1.5 decades, permanent fraction in [0.4, 0.85].

    python benchmarks/impact_law.py --quick    # runs/impact_square_root.toml as it is (~1 min on 2 cores)
    python benchmarks/impact_law.py            # 3x the seeds

With ``--realistic``, the realistic market of ``runs/impact_realistic.toml`` instead (its
seeds; 3x without ``--quick``), whose line also carries the local exponents between
neighbouring sizes and the Q/V range. Targets there: >= 2.5 decades of Q/V and an interval
at most 0.1 wide.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from _common import ROOT, emit



def main(argv=None):
    from mfgsim.engines import make_engine, warm_kernels
    from mfgsim.studies.impact import load, measure

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the study file's seeds (else three times as many)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--realistic", action="store_true", help="runs/impact_realistic.toml (the realistic market)")
    args = parser.parse_args(argv)
    study = load(ROOT / "runs" / ("impact_realistic.toml" if args.realistic else "impact_square_root.toml"))
    if not args.quick:
        study = dataclasses.replace(study, seeds=tuple(range(3 * len(study.seeds))))
    warm_kernels()
    t0 = time.perf_counter()
    with make_engine(args.workers) as pool:
        laws = measure(study, pool).laws
    for row in laws:
        extra = {}
        if args.realistic:
            extra = {"local_slopes": [round(x, 3) for x in row["local_slopes"]],
                     "participation": [round(row["participation_min"], 4), round(row["participation_max"], 3)],
                     "target": {"decades": 2.5, "ci_width": 0.1}}
        emit("impact_exponent", row["impact_exponent"], "ratio", book=row["book"],
             ci=[round(row["exponent_lo"], 4), round(row["exponent_hi"], 4)], decades=round(row["decades"], 2),
             seeds=row["seeds"], **(extra or {"target": [0.4, 0.6] if row["book"] == "latent" else None}))
        emit("permanent_fraction", row["permanent_fraction"], "ratio", book=row["book"],
             target=[0.4, 0.85] if row["book"] == "latent" else None)
        emit("decay_time", row["decay_time"], "time", book=row["book"],
             se=round(row["decay_time"] * row["rho_se"] / row["rho"], 4))
    emit("seconds", time.perf_counter() - t0, "s", runs=len(study.books) * len(study.sizes) * len(study.seeds))


if __name__ == "__main__":
    main()
