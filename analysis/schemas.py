"""One fixed Polars schema per output table: cast before writing, passed when scanning.

Shards live at ``<outdir>/<table>/N=<int>/seed=<int>/<run_id>.parquet``; the hive keys
``N`` and ``seed`` are integers and are not stored inside the files (they come from the
path when scanning with ``hive_partitioning=True``).
"""

import polars as pl

SCHEMA_VERSION = 4

AGENTS = pl.Schema({
    "run_id": pl.String, "step": pl.Int64, "t": pl.Float64, "agent": pl.Int64, "type": pl.Int64,
    "inventory": pl.Float64,  # model units
    "cash": pl.Float64,  # currency (book) or model units (particles)
    "rate": pl.Float64,  # realised trading rate over the interval ending at t (units/time)
})

MARKET = pl.Schema({
    "run_id": pl.String, "step": pl.Int64, "t": pl.Float64, "best_bid": pl.Float64, "best_ask": pl.Float64,
    "mid": pl.Float64,  # ticks (book) or price (particles)
    "bid_depth": pl.Int64, "ask_depth": pl.Int64, "volume": pl.Int64, "crowd_flow": pl.Int64,
    "trades": pl.Int64, "messages": pl.Int64, "maker_bid": pl.Float64, "maker_ask": pl.Float64,
    "signed_volume": pl.Int64,  # net taker flow (buys - sells, lots) over the interval
})

TRADES = pl.Schema({
    "run_id": pl.String, "step": pl.Int64, "seq": pl.Int64, "price": pl.Int64, "qty": pl.Int64, "side": pl.Int64,
    "taker_order": pl.Int64, "taker_agent": pl.Int64, "maker_order": pl.Int64, "maker_agent": pl.Int64,
})

# the book's depth profile at each record: lots resting ``level`` ticks behind the best quote
DEPTH = pl.Schema({
    "run_id": pl.String, "step": pl.Int64, "side": pl.Int64,  # +1 bids, -1 asks
    "level": pl.Int64, "lots": pl.Int64,
})

# finite-N against the mean field, per recorded time
MFG = pl.Schema({
    "run_id": pl.String, "t": pl.Float64,
    "w1": pl.Float64, "ks": pl.Float64,
    "mean_inventory": pl.Float64, "mf_mean_inventory": pl.Float64,
    "mean_rate": pl.Float64, "mf_mean_rate": pl.Float64,  # averages over the interval ending at t
    "variance": pl.Float64, "mf_variance": pl.Float64,
})

# one row per run
SUMMARY = pl.Schema({
    "run_id": pl.String, "kind": pl.String, "strategy": pl.String,
    "w1_mean": pl.Float64, "w1_max": pl.Float64, "ks_max": pl.Float64,
    "mean_inventory_error": pl.Float64, "mean_rate_error": pl.Float64,
    "cost_gap": pl.Float64,  # mean realised gain minus the MFG value (model units)
    # N-player runs (mfg.nash.NashGaps of each loop), NaN otherwise
    "own_gain_gap_closed": pl.Float64, "own_gain_gap_open": pl.Float64,
    "mean_rate_gap_closed": pl.Float64, "mean_rate_gap_open": pl.Float64,
    "value_gap_closed": pl.Float64, "value_gap_open": pl.Float64,
    "price_move": pl.Float64,  # mid(T) - mid(0)
})

MANIFEST = pl.Schema({
    "run_id": pl.String, "campaign": pl.String, "kind": pl.String, "N": pl.Int64, "seed": pl.Int64,
    "params": pl.String,  # canonical JSON of the run spec
    "status": pl.String, "error": pl.String, "seconds": pl.Float64,
    "versions": pl.String, "git_revision": pl.String, "schema_version": pl.Int64,
})

TABLES = {"agents": AGENTS, "market": MARKET, "trades": TRADES, "depth": DEPTH, "mfg": MFG, "summary": SUMMARY}
