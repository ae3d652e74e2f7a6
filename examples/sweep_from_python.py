"""A campaign built in Python: experiment (a), particles on the MFG feedback, with its
sweep over N computed here (log-spaced), run on the local process pool; then its
convergence table (W1 should fall like N^-1/2).

    python examples/sweep_from_python.py             # N = 10 .. 10^4, 8 seeds (about 20 s)
    python examples/sweep_from_python.py --tiny      # what the tests run
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

import mfgsim  # noqa: E402


def campaign(n_values: list[int], seeds: int, phi: float = 1.0) -> dict:
    """The campaign as a dict with the TOML's structure (see runs/experiment_a_particles.toml)."""
    return {
        "campaign": {"name": "example_sweep", "kind": "particles", "seeds": seeds, "record_every": 10},
        "model": {"k": 1.0, "kappa": 5.0, "T": 1.0, "sigma": 0.3,
                  "types": [{"phi": phi, "A": 10.0, "m0": {"means": [1.0], "stds": [0.2]}}]},
        "crowd": {"n_agents": n_values[0], "strategy": "mfg"},
        "particles": {"dt": 0.01},
        "sweep": {"grid": {"crowd.n_agents": n_values}},
    }


def main(argv=None) -> mfgsim.CampaignOutput:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few seconds: what the tests run")
    parser.add_argument("--out", default="runs/out", help="output root (default runs/out)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    top, seeds = (2, 2) if args.tiny else (4, 8)
    n_values = sorted({int(round(n)) for n in np.logspace(1, top, 2 * (top - 1) + 1)})  # 2 points a decade
    out = mfgsim.run_campaign(campaign(n_values, seeds), args.out, workers=args.workers,
                              progress=not args.tiny)
    summary = out.scan("summary").collect()
    print(f"{summary.height} runs in {out.folder}")
    print(out.report(figures=False).table.select("metric", "slope", "slope_lo", "slope_hi", "reference_slope"))
    return out


if __name__ == "__main__":
    main()
