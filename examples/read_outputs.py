"""Reading a campaign's Parquet outputs with Polars, and a figure of your own.

    python examples/read_outputs.py runs/out/example_sweep        # after sweep_from_python.py

Every table has a fixed schema (analysis/schemas.py) and is hive-partitioned by N and seed,
so ``pl.scan_parquet`` with ``hive_partitioning`` reads any subset lazily;
``mfgsim.CampaignOutput(folder).scan(table)`` does the same with the schema applied.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

import mfgsim  # noqa: E402


def w1_by_n(folder: Path) -> pl.DataFrame:
    """Mean and standard error over seeds of each run's mean W1 distance, per N."""
    summary = mfgsim.CampaignOutput(folder).scan("summary")
    return (summary.group_by("N")
            .agg(w1=pl.col("w1_mean").mean(), se=pl.col("w1_mean").std() / pl.len().sqrt(), seeds=pl.len())
            .sort("N").collect())


def main(argv=None) -> pl.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a campaign's output folder")
    args = parser.parse_args(argv)
    table = w1_by_n(args.folder)
    print(table)
    # W1 over time at the largest N, one line per seed, from the mfg table
    largest = table["N"].max()
    paths = mfgsim.CampaignOutput(args.folder).scan("mfg").filter(pl.col("N") == largest).collect()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.errorbar(table["N"], table["w1"], yerr=table["se"], marker="o")
    left.set(xscale="log", yscale="log", xlabel="N", ylabel="mean W1", title="W1 against N")
    for (seed,), run in paths.sort("t").group_by("seed", maintain_order=True):
        right.plot(run["t"], run["w1"], lw=0.8, label=f"seed {seed}")
    right.set(xlabel="t", ylabel="W1", title=f"W1 over time, N={largest}")
    fig.tight_layout()
    fig.savefig(args.folder / "example_w1.png", dpi=100)
    print(f"wrote {args.folder / 'example_w1.png'}")
    return table


if __name__ == "__main__":
    main()
