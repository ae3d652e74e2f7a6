"""Polars readers over a campaign's output folder.

``scan(outdir, "agents")`` is what a user would write by hand,
``pl.scan_parquet(".../agents/**/*.parquet", hive_partitioning=True)``, with the table's
fixed schema and integer hive keys ``N`` and ``seed`` made explicit.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .schemas import MANIFEST, SCHEMA_VERSION, TABLES

HIVE = pl.Schema({"N": pl.Int64, "seed": pl.Int64})


def check_schema_version(outdir: str | Path) -> None:
    """Refuse a folder of runs written under another schema version.

    Parameters
    ----------
    outdir : str or os.PathLike
        A campaign output folder.

    Raises
    ------
    ValueError
        If its manifest records another schema version.
    """
    path = Path(outdir) / "manifest.parquet"
    if path.exists():
        versions = set(pl.read_parquet(path, columns=["schema_version"])["schema_version"].to_list())
        if versions - {SCHEMA_VERSION}:
            raise ValueError(f"{outdir} holds runs written with schema version(s) {sorted(versions)}; this mfgsim "
                             f"writes version {SCHEMA_VERSION}. Use a new output folder (or delete this one).")


def scan(outdir: str | Path, table: str) -> pl.LazyFrame:
    """Lazy frame of one table of a campaign.

    Parameters
    ----------
    outdir : str or os.PathLike
        A campaign output folder.
    table : str
        One of ``analysis.schemas.TABLES``.

    Returns
    -------
    polars.LazyFrame
        The table's fixed schema, then N and seed (the hive partitions).
    """
    if table not in TABLES:
        raise ValueError(f"table={table!r} is not one of {sorted(TABLES)}")
    check_schema_version(outdir)
    folder = Path(outdir) / table
    if not folder.is_dir():
        raise FileNotFoundError(f"no {table!r} table under {outdir} (has the campaign run?)")
    return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=True, schema=TABLES[table],
                           hive_schema=HIVE, hidden_file_prefix=".")


def manifest(outdir: str | Path) -> pl.DataFrame:
    """The campaign's manifest: one row per run with its status and provenance.

    Parameters
    ----------
    outdir : str or os.PathLike
        A campaign output folder.

    Returns
    -------
    polars.DataFrame
        Schema ``analysis.schemas.MANIFEST``.
    """
    path = Path(outdir) / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{outdir} has no manifest.parquet: is it a campaign output folder?")
    return pl.read_parquet(path, schema=MANIFEST)
