"""The makers' loop on the book's own fill table (runs/makers_loop.toml): the fill table
measured from the book, the tick MFG solved on it, to a fixed point; then the fixed point
at every N on fresh seeds (JSON lines).

Prints ``pnl_gap_rel`` = (book P&L per maker - MFG expected P&L) / MFG expected P&L at the
loop's N (start and fixed point) and at every N, with 95% bootstrap intervals over seeds;
``w1``, the mean W1 at each N with its 95% interval over seeds (W1 falls towards the bias,
so the largest N bounds it from above), and ``w1_bias``, the b of W1(N) = b + C N^-r with
its bootstrap interval; ``pnl_gap_bias``, the same fit to each run's |pnl_gap_rel|.
``table_N`` is the N at which the loop measured its fill table, ``table_seeds`` the book
runs per iteration it measured it from.

    python benchmarks/makers_loop.py            # N up to 10^4, 16 seeds per N; then the loop again with its
                                                # table measured at N = 300, from 8 and 32 seeds (~4.5 min)
    python benchmarks/makers_loop.py --quick    # N up to 100, 8 seeds per N
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from _common import ROOT, emit


def main(argv=None):
    from mfgsim.engines import make_engine, warm_kernels
    from mfgsim.studies import calibration, makers_loop

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N up to 100, 8 seeds per N")
    args = parser.parse_args(argv)
    plan = calibration.load(ROOT / "runs" / "makers_loop.toml")
    if not args.quick:  # W1 falls like N^-0.44: the bias is identified only well past N = 300
        plan = dataclasses.replace(plan, scaling=plan.scaling + (300, 1000, 3000, 10_000),
                                   scaling_seeds=tuple(range(100, 116)))
    warm_kernels()
    with make_engine() as pool:
        result = makers_loop.run(plan, pool, verbose=False)
        report(plan, result)
        if not args.quick:
            # the same loop measuring its table at N = 300, where the lattice MFG's equilibrium
            # is mixed, on the file's seeds and on four times as many: whether the fixed point's
            # P&L gap at large N is the table's N or its sampling error
            for seeds in (plan.seeds, tuple(range(32))):
                large = dataclasses.replace(plan, n_makers=300, seeds=seeds, scaling=(300, 1000, 3000, 10_000))
                report(large, makers_loop.run(large, pool, verbose=False))


def report(plan, result):
    """Print the loop's P&L gaps (start, fixed point, every N), W1 at every N and its bias."""
    table = {"table_N": plan.n_makers, "table_seeds": len(plan.seeds)}  # where its fill table came from
    first, last = result.rows[0], result.rows[-1]
    for label, row in (("start", first), ("fixed_point", last)):
        emit("pnl_gap_rel", row["pnl_gap_rel"], "relative", at=label, N=plan.n_makers, **table,
             seeds=len(plan.seeds), interval=[round(row["pnl_gap_rel_lo"], 4), round(row["pnl_gap_rel_hi"], 4)],
             book_pnl=round(row["pnl"], 3), mfg_pnl=round(row["mf_pnl"], 3), w1=round(row["w1"], 4),
             iterations=int(last["iteration"]), converged=result.converged)
    s = result.summary
    for n in plan.scaling:
        emit("pnl_gap_rel", s[f"pnl_gap_rel_N{n}"], "relative", at="fixed_point", N=n, **table,
             seeds=len(plan.scaling_seeds),
             interval=[round(s[f"pnl_gap_rel_lo_N{n}"], 4), round(s[f"pnl_gap_rel_hi_N{n}"], 4)])
    # W1 itself at each N: it falls towards the bias, so the largest N bounds it from above
    for n in plan.scaling:
        w1s = np.array([row["w1"] for row in result.scaling if row["N"] == n])
        half = 1.96 * w1s.std(ddof=1) / np.sqrt(w1s.size)
        emit("w1", float(w1s.mean()), "quotes", N=n, **table, seeds=int(w1s.size),
             interval=[round(float(w1s.mean() - half), 4), round(float(w1s.mean() + half), 4)])
    emit("w1_bias", s["w1_bias"], "quotes", N=list(plan.scaling), **table, seeds=len(plan.scaling_seeds),
         interval=[round(s["w1_bias_lo"], 4), round(s["w1_bias_hi"], 4)], rate=round(s["w1_rate"], 3))
    # each run's |pnl_gap_rel| against N: the part N does not remove, and the rate of the rest
    emit("pnl_gap_bias", s["pnl_gap_bias"], "relative", N=list(plan.scaling), **table,
         seeds=len(plan.scaling_seeds), interval=[round(s["pnl_gap_bias_lo"], 4), round(s["pnl_gap_bias_hi"], 4)],
         rate=round(s["pnl_gap_rate"], 3))


if __name__ == "__main__":
    main()
