"""Building a run: one resolved campaign config (a dict with the TOML's structure) -> the
model, the crowd and the kind's spec, every value checked by the spec dataclasses.

:func:`build_run` is what a campaign calls for each point of its sweep, what a worker calls
to rebuild its run from the run's canonical JSON, and what the studies and the calibration
call for the markets they run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mfg.fd import Grid
from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, MetaOrderTraders, NoiseFlow, strategy_tables
from simulator.market import MarketSpec, ParticleSpec

from .config import ConfigError, Section, lq_model

KINDS = ("particles", "market", "nash")
# [campaign] keys that say what is kept or how runs are named, not what a run computes
BOOKKEEPING = ("name", "seeds", "keep_trades", "agents_kept")


def build_run(cfg: dict, source: str) -> dict:
    """The objects of one resolved campaign config, strictly validated.

    Parameters
    ----------
    cfg : dict
        The config with the TOML's structure: ``campaign``, ``model``, ``crowd`` and the
        kind's own table (``particles``, ``market`` or ``nash``); no ``sweep`` values left
        to substitute.
    source : str
        Where the config came from (a file, or ``<dict>``), for messages.

    Returns
    -------
    dict
        ``kind``, ``model`` (:class:`mfg.closed_form.LQCrowding`), ``n_agents``,
        ``record_every``, and ``spec`` (:class:`simulator.market.ParticleSpec` or
        :class:`simulator.market.MarketSpec`) or, for ``nash``, ``n_steps``.

    Raises
    ------
    ConfigError
        For any key that is missing, unknown or not allowed, naming the file and key path.
    """
    root = Section(cfg, "", source)
    root.used.add("sweep")  # read by load_campaign; named among the known keys
    camp = root.table("campaign")
    kind = camp.choice("kind", KINDS)
    for key in BOOKKEEPING:  # read by load_campaign
        camp.get(key, None)
    record_every = camp.integer("record_every", 10, lo=1, hi=10**9)
    camp.done()
    model_sec = root.table("model")
    model = lq_model(model_sec)
    crowd_sec = root.table("crowd")
    n_agents = crowd_sec.integer("n_agents", lo=1 if kind != "nash" else 2, hi=10**9)
    out = {"kind": kind, "model": model, "n_agents": n_agents, "record_every": record_every}
    if kind == "nash":
        nash = root.table("nash", {})
        out["n_steps"] = nash.integer("n_steps", 2000, lo=10, hi=10**7)
        nash.done()
        crowd_sec.done()
        root.done()
        return out
    fd_grid = crowd_sec.table("fd_grid").dataclass(Grid, T=model.T) if "fd_grid" in crowd_sec.data else None
    crowd = crowd_sec.dataclass(ExecutionCrowd, n_agents=n_agents, model=model, fd_grid=fd_grid)
    if kind == "particles":
        out["spec"] = root.table("particles").dataclass(ParticleSpec, T=model.T, crowd=crowd,
                                                        record_every=record_every)
    else:
        m = root.table("market")
        noise = m.table("noise", {}).dataclass(NoiseFlow)
        makers = m.table("makers", {}).dataclass(MarketMakers)
        latent = latent_populations(m)
        meta = m.table("meta_traders").dataclass(MetaOrderTraders) if "meta_traders" in m.data else None
        out["spec"] = m.dataclass(MarketSpec, T=model.T, noise=noise, makers=makers if makers.count else None,
                                  latent=latent, crowd=crowd, meta_traders=meta, record_every=record_every)
    root.done()
    if crowd.strategy != "mfg_fd":  # cheap for affine strategies: refuse a stiff one before any run
        spec = out["spec"]
        try:
            strategy_tables(crowd, np.arange(spec.n_steps + 1) * spec.dt, spec.dt)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return out


def latent_populations(market: Section):
    """The latent book of a ``[market]`` table: None, one population (``[market.latent]``)
    or several of different memories (``[[market.latent]]``).

    Parameters
    ----------
    market : Section

    Returns
    -------
    LatentLiquidity, tuple of LatentLiquidity, or None
    """
    if "latent" not in market.data:
        return None
    if isinstance(market.data["latent"], list):
        return tuple(sec.dataclass(LatentLiquidity) for sec in market.tables("latent"))
    return market.table("latent").dataclass(LatentLiquidity)


def market_objects(cfg: dict, source: str):
    """The model and market spec of a resolved config, set up for the impact estimators.

    Recorded at every step and keeping every crowd execution, but no trades.

    Parameters
    ----------
    cfg : dict
        A resolved market config.
    source : str
        The file, for error messages.

    Returns
    -------
    (model, spec) : tuple of (mfg.closed_form.LQCrowding, simulator.market.MarketSpec)
    """
    obj = build_run(cfg, source)
    spec = dataclasses.replace(obj["spec"], max_executions_kept=obj["n_agents"] * obj["spec"].n_steps,
                               record_every=1, max_trades_kept=0)
    return obj["model"], spec
