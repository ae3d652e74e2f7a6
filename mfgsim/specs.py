"""Campaign specs and sweeps: a campaign file (or dict) -> one frozen :class:`RunSpec` per
sweep point and seed.

A ``[sweep]`` has ``grid`` (cartesian) and ``zip`` (parallel lists) over dotted keys such as
``"crowd.n_agents"``. Each run is identified by ``run_id`` = hash of its canonical spec, its
seed and the schema version, so that adding seeds or renaming the campaign never redoes a
finished run. What cannot work is refused here, before anything runs or is written.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from analysis.schemas import SCHEMA_VERSION
from mfg import validation as check

from .build import BOOKKEEPING, KINDS, build_run
from .config import ConfigError, Section, check_memory, output_name, read_toml

DICT_SOURCE = "<dict>"  # the source named in messages about a campaign given as a dict


# ---- specs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign.

    Parameters
    ----------
    campaign : str
        The campaign's name.
    kind : str
        ``particles``, ``market`` or ``nash``.
    n_agents : int
        N.
    seed : int
    config : str
        The resolved config as canonical JSON (the run's identity).
    """

    campaign: str
    kind: str
    n_agents: int
    seed: int
    config: str

    @property
    def run_id(self) -> str:
        """16 hex digits of the hash of the run's kind, config, seed and the schema version."""
        text = f"{SCHEMA_VERSION}|{self.kind}|{self.config}|{self.seed}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CampaignSpec:
    """A loaded campaign.

    Parameters
    ----------
    name : str
        The output folder's name.
    source : str
        The file it came from, or ``"<dict>"``.
    kind : str
        ``particles``, ``market`` or ``nash``.
    runs : tuple of RunSpec
        Every run.
    keep_trades : bool
        Whether runs keep their trades.
    agents_kept : int
        How many agents' paths each run keeps.
    """

    name: str
    source: str
    kind: str
    runs: tuple[RunSpec, ...]
    keep_trades: bool
    agents_kept: int = 1000


def resolve_point(base: dict, point: dict, source: str) -> dict:
    """A copy of the config with the sweep point's values set at their dotted keys.

    ``{"crowd.n_agents": 100}`` sets ``cfg["crowd"]["n_agents"]``.

    Parameters
    ----------
    base : dict
        The campaign's config.
    point : dict
        ``{dotted key: value}``.
    source : str
        The file, for error messages.

    Returns
    -------
    dict
    """
    cfg = copy.deepcopy(base)
    for dotted, value in point.items():
        _set_path(cfg, dotted, value, source)
    return cfg


def _set_path(cfg: dict, dotted: str, value, source: str) -> None:
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: sweep key {dotted!r} goes through {key!r}, which is not a table")
    node[keys[-1]] = value


def sweep_points(sweep: Section) -> list[dict]:
    """The points of a ``[sweep]`` table.

    The cartesian product of ``grid`` times the rows of ``zip``.

    Parameters
    ----------
    sweep : Section

    Returns
    -------
    list of dict
        ``{dotted key: value}`` each; ``[{}]`` for no sweep.
    """
    grid = sweep.get("grid", {})
    zipped = sweep.get("zip", {})
    sweep.done()
    for name, table in (("grid", grid), ("zip", zipped)):
        if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
            raise ConfigError(f"{sweep.source}: sweep.{name} must map dotted keys to non-empty lists")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError(f"{sweep.source}: sweep.zip lists must have equal lengths, got {sorted(lengths)}")
    grid_points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    zip_points = [dict(zip(zipped, row)) for row in zip(*zipped.values())] or [{}]
    return [{**g, **z} for g in grid_points for z in zip_points]


MAX_RUNS = 100_000  # a campaign's runs are listed in memory and in the manifest


def _seeds(camp: Section) -> list[int]:
    seeds = camp.get("seeds", 1)
    if check.is_integer(seeds) and 1 <= seeds <= MAX_RUNS:
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(check.is_integer(s) and 0 <= s < 2**32 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise camp.error("seeds", seeds, "seeds must be distinct")
        return list(seeds)
    raise camp.error("seeds", seeds, f"expected a count in [1, {MAX_RUNS}] or a list of distinct integers "
                                     "in [0, 2**32)")


def load_campaign(campaign: str | Path | dict) -> CampaignSpec:
    """Read and validate a campaign; every run's spec is built (and so checked) here.

    Parameters
    ----------
    campaign : str, Path or dict
        A campaign TOML file, or a dict with the same structure (``[campaign]``,
        ``[model]``, ``[crowd]``, the kind's table, an optional ``[sweep]``); a dict needs
        ``campaign.name``, since there is no file name to default to.

    Returns
    -------
    CampaignSpec

    Raises
    ------
    ConfigError
        Naming the file (or ``<dict>``), the key path, the value and what is allowed.
    """
    root = _campaign_section(campaign)
    source = root.source
    camp = root.table("campaign")
    if source == DICT_SOURCE and "name" not in camp.data:
        raise ConfigError(f"{source}: campaign.name is missing (a campaign given as a dict names its output folder)")
    name = output_name(camp, source)
    kind = camp.choice("kind", KINDS)
    seeds = _seeds(camp) if kind != "nash" else [0]
    if kind == "nash":
        camp.get("seeds", 1)
    keep_trades = camp.boolean("keep_trades", False)
    agents_kept = camp.integer("agents_kept", 1000, lo=0, hi=10**9)
    points = sweep_points(root.table("sweep", {}))
    if len(points) * len(seeds) > MAX_RUNS:
        raise ConfigError(f"{source}: the sweep gives {len(points)} points x {len(seeds)} seeds = "
                          f"{len(points) * len(seeds)} runs; at most {MAX_RUNS} per campaign")
    base = {k: v for k, v in root.data.items() if k != "sweep"}
    if points != [{}] and all(_has_path(base, dotted) for dotted in points[0]):
        build_run(copy.deepcopy(base), source)  # the values the sweep replaces must be valid too
    runs = []
    largest = (0, None)
    for point in points:
        cfg = resolve_point(base, point, source)
        objects = build_run(cfg, source)  # validates this point of the sweep
        if "spec" in objects and objects["spec"].memory_estimate() > largest[0]:
            largest = (objects["spec"].memory_estimate(), objects["n_agents"])
        # the run's identity is what changes its output: not the campaign's name, its list
        # of seeds or what is kept (adding seeds must not redo finished runs)
        ident = {**cfg, "campaign": {k: v for k, v in cfg["campaign"].items() if k not in BOOKKEEPING}}
        canonical = json.dumps(ident, sort_keys=True, separators=(",", ":"))
        runs.extend(RunSpec(name, kind, objects["n_agents"], seed, canonical) for seed in seeds)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: the sweep produces duplicate runs (the same parameters twice)")
    _check_memory(largest, source)
    return CampaignSpec(name, source, kind, tuple(runs), keep_trades, agents_kept)


def _campaign_section(campaign: str | Path | dict) -> Section:
    """The root Section of a campaign file, or of a dict with a file's structure (copied)."""
    if isinstance(campaign, dict):
        return Section(copy.deepcopy(campaign), "", DICT_SOURCE)
    return read_toml(campaign)


def _has_path(cfg: dict, dotted: str) -> bool:
    node = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _check_memory(largest: tuple[int, int | None], source: str) -> None:
    """Refuse up front a run that cannot fit in this machine's memory."""
    need, n_agents = largest
    check_memory(need, source, f"crowd.n_agents={n_agents}", "lower n_agents or record_every's number of records",
                 per="per run")
