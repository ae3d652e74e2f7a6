"""Campaigns: a TOML file -> frozen run specs -> runs on an engine -> Parquet shards.

A campaign file has a ``[campaign]`` table (``kind`` = particles | market | nash,
``seeds``, ``record_every``, ``keep_trades``, ``agents_kept``), the LQ ``[model]``, the ``[crowd]``, the
kind's own table (``[particles]``, ``[market]`` with ``[market.noise]`` and
``[market.makers]``, or ``[nash]``) and an optional ``[sweep]`` with ``grid`` (cartesian)
and ``zip`` (parallel lists) over dotted keys such as ``"crowd.n_agents"``. See the files
in ``runs/``.

Each run is identified by ``run_id`` = hash of its canonical spec, its seed and the schema
version; its shards go to ``<out>/<table>/N=<n>/seed=<s>/<run_id>.parquet``, written to a
temporary name and renamed, ``summary`` last. A run whose summary shard exists is skipped,
so a campaign killed at any moment resumes where it stopped. Failures are recorded per run
in ``manifest.parquet`` and do not stop the others; a run whose summary is not finite is a
failure. What cannot work is refused before anything is written: a stiff feedback for the
step, a run too big for this machine's memory, an output folder that cannot be written or
that another process is writing (a lock), an unreachable Dask scheduler.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .io import atomic_write, check_writable, output_lock

from .config import ConfigError, Section, lq_model, output_name, read_toml

KINDS = ("particles", "market", "nash")
# [campaign] keys that say what is kept or how runs are named, not what a run computes
BOOKKEEPING = ("name", "seeds", "keep_trades", "agents_kept")
# summary columns every particle or market run must have finite
SUMMARY_METRICS = ("w1_mean", "w1_max", "ks_max", "mean_inventory_error", "mean_rate_error", "cost_gap", "price_move")


# ---- specs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One run: its campaign, kind, N, seed and the resolved config as canonical JSON."""

    campaign: str
    kind: str
    n_agents: int
    seed: int
    config: str

    @property
    def run_id(self) -> str:
        from analysis.schemas import SCHEMA_VERSION

        text = f"{SCHEMA_VERSION}|{self.kind}|{self.config}|{self.seed}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    source: str
    kind: str
    runs: tuple[RunSpec, ...]
    keep_trades: bool
    agents_kept: int = 1000


def _set_path(cfg: dict, dotted: str, value, source: str) -> None:
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: sweep key {dotted!r} goes through {key!r}, which is not a table")
    node[keys[-1]] = value


def _sweep_points(sweep: Section) -> list[dict]:
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
    if isinstance(seeds, int) and not isinstance(seeds, bool) and 1 <= seeds <= MAX_RUNS:
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise camp.error("seeds", seeds, "seeds must be distinct")
        return list(seeds)
    raise camp.error("seeds", seeds, f"expected a count in [1, {MAX_RUNS}] or a list of distinct integers "
                                     "in [0, 2**32)")


def load_campaign(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign file; every run's spec is built (and so checked) here."""
    root = read_toml(path)
    source = root.source
    camp = root.table("campaign")
    name = output_name(camp, path)
    kind = camp.choice("kind", KINDS)
    seeds = _seeds(camp) if kind != "nash" else [0]
    if kind == "nash":
        camp.get("seeds", 1)
    keep_trades = camp.boolean("keep_trades", False)
    agents_kept = camp.integer("agents_kept", 1000, lo=0)
    points = _sweep_points(root.table("sweep", {}))
    if len(points) * len(seeds) > MAX_RUNS:
        raise ConfigError(f"{source}: the sweep gives {len(points)} points x {len(seeds)} seeds = "
                          f"{len(points) * len(seeds)} runs; at most {MAX_RUNS} per campaign")
    base = {k: v for k, v in root.data.items() if k != "sweep"}
    if points != [{}] and all(_has_path(base, dotted) for dotted in points[0]):
        build_run(copy.deepcopy(base), source)  # the values the sweep replaces must be valid too
    runs = []
    largest = (0, None)
    for point in points:
        cfg = copy.deepcopy(base)
        for dotted, value in point.items():
            _set_path(cfg, dotted, value, source)
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
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not POSIX: no check
        return
    if need > 0.8 * have:
        raise ConfigError(f"{source}: crowd.n_agents={n_agents} needs about {need / 2**30:.3g} GiB per run, more "
                          f"than this machine's {have / 2**30:.3g} GiB allow; lower n_agents or record_every's "
                          "number of records")


def build_run(cfg: dict, source: str) -> dict:
    """Objects of one resolved config: model, crowd and the kind's spec (strictly validated)."""
    from mfg.fd import Grid

    from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers, NoiseFlow
    from simulator.market import MarketSpec, ParticleSpec

    root = Section(cfg, "", source)
    root.used.add("sweep")  # read by load_campaign; named among the known keys
    camp = root.table("campaign")
    kind = camp.choice("kind", KINDS)
    for key in BOOKKEEPING:  # read by load_campaign
        camp.get(key, None)
    record_every = camp.integer("record_every", 10, lo=1)
    camp.done()
    try:
        model_sec = root.table("model")
        model = lq_model(model_sec)
        model_sec.done()
        crowd_sec = root.table("crowd")
        n_agents = crowd_sec.integer("n_agents", lo=1 if kind != "nash" else 2)
        out = {"kind": kind, "model": model, "n_agents": n_agents, "record_every": record_every}
        if kind == "nash":
            nash = root.table("nash", {})
            out["n_steps"] = nash.integer("n_steps", 2000, lo=10)
            nash.done()
            crowd_sec.done()
            root.done()
            return out
        fd_grid = None
        if "fd_grid" in crowd_sec.data:
            g = crowd_sec.table("fd_grid")
            fd_grid = Grid(g.number("x_min"), g.number("x_max"), g.integer("n_x", lo=5), model.T,
                           g.integer("n_t", lo=1))
            g.done()
        crowd = ExecutionCrowd(
            n_agents, model, strategy=crowd_sec.get("strategy", "mfg"),
            lots_per_unit=crowd_sec.integer("lots_per_unit", 20, lo=1),
            order_type=crowd_sec.get("order_type", "market"), ioc_ticks=crowd_sec.integer("ioc_ticks", 5, lo=0),
            stop_at_target=crowd_sec.boolean("stop_at_target", True), fd_grid=fd_grid)
        crowd_sec.done()
        if kind == "particles":
            p = root.table("particles")
            out["spec"] = ParticleSpec(T=model.T, dt=p.number("dt", lo=0.0, lo_open=True), crowd=crowd,
                                       sigma0=p.number("sigma0", 0.0, lo=0.0), s0=p.number("s0", 0.0),
                                       record_every=record_every)
            p.done()
        else:
            m = root.table("market")
            noise_obj = _dataclass_from(m.table("noise", {}), NoiseFlow)
            makers_obj = _dataclass_from(m.table("makers", {}), MarketMakers)
            latent_obj = _dataclass_from(m.table("latent"), LatentLiquidity) if "latent" in m.data else None
            out["spec"] = MarketSpec(
                T=model.T, dt=m.number("dt", lo=0.0, lo_open=True), n_ticks=m.integer("n_ticks", 4096, lo=16),
                initial_mid=m.integer("initial_mid", 2048, lo=1), tick_size=m.number("tick_size", 0.01, lo=0.0,
                                                                                       lo_open=True),
                noise=noise_obj, makers=makers_obj if makers_obj.count else None, latent=latent_obj, crowd=crowd,
                scale_liquidity=m.boolean("scale_liquidity", True), warmup_steps=m.integer("warmup_steps", 200, lo=0),
                record_every=record_every, max_trades_kept=m.integer("max_trades_kept", 100_000, lo=0))
            m.done()
        root.done()
        if crowd.strategy != "mfg_fd":  # cheap for affine strategies: refuse a stiff one before any run
            from simulator.agents import strategy_tables

            spec = out["spec"]
            strategy_tables(crowd, np.arange(spec.n_steps + 1) * spec.dt, spec.dt)
        return out
    except TypeError as exc:  # a value of the wrong type reached a spec's checks
        raise ConfigError(f"{source}: {exc}") from None
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _dataclass_from(sec: Section, cls):
    """Build a spec dataclass from a table: its fields are the known keys, the rest are typos."""
    from dataclasses import fields

    kwargs = {f.name: sec.get(f.name) for f in fields(cls) if f.name in sec.data}
    for f in fields(cls):
        sec.used.add(f.name)
    sec.done()
    return cls(**kwargs)


# ---- one run (executed in a worker) -----------------------------------------------------------
def _write(df, out_dir: Path, table: str, run: RunSpec) -> None:
    from analysis.schemas import TABLES

    schema = TABLES[table]
    atomic_write(shard_path(out_dir, table, run), df.select(list(schema)).cast(dict(schema)).write_parquet)


def shard_path(out_dir: Path, table: str, run: RunSpec) -> Path:
    return Path(out_dir) / table / f"N={run.n_agents}" / f"seed={run.seed}" / f"{run.run_id}.parquet"


def execute_run(run: RunSpec, out_dir: str, keep_trades: bool = False, agents_kept: int | None = None) -> dict:
    """Simulate one run, compute its metrics and write its shards. Returns its record.

    The metrics use every agent; the ``agents`` shard holds the paths of the first
    ``agents_kept`` agents (all when None), whose draws are iid, so they are a sample.
    """
    import polars as pl

    from analysis.compare import compare_run
    from mfg.nash import NASH_GAP_COLUMNS, nash_gap_columns

    from simulator.market import run_market, run_particles

    t0 = time.perf_counter()
    out = Path(out_dir)
    objects = build_run(json.loads(run.config), run.campaign)
    model = objects["model"]
    nan = float("nan")
    shards = {}
    if run.kind == "nash":
        summary = {"kind": run.kind, "strategy": "nash", "w1_mean": nan, "w1_max": nan, "ks_max": nan,
                   "mean_inventory_error": nan, "mean_rate_error": nan, "cost_gap": nan, "price_move": nan,
                   **nash_gap_columns(model, run.n_agents, objects["n_steps"])}
    else:
        spec = objects["spec"]
        result = run_particles(spec, run.seed) if run.kind == "particles" else run_market(spec, run.seed)
        mfg_rows, summary = compare_run(result, model)
        summary.update(kind=run.kind, strategy=spec.crowd.strategy, **dict.fromkeys(NASH_GAP_COLUMNS, nan))
        agents = pl.DataFrame(result.agents)
        shards["agents"] = agents if agents_kept is None else agents.filter(pl.col("agent") < agents_kept)
        shards["market"] = pl.DataFrame(result.market)
        if run.kind == "market":
            shards["depth"] = depth_frame(result)
        if keep_trades and result.trades.size:
            shards["trades"] = pl.DataFrame(result.trades)
        shards["mfg"] = pl.DataFrame(mfg_rows)
    measured = NASH_GAP_COLUMNS if run.kind == "nash" else SUMMARY_METRICS
    broken = {key: summary[key] for key in measured if not math.isfinite(summary[key])}
    if broken:  # nothing is written: the run is not done, and a rerun tries it again
        raise FloatingPointError("the run's summary is not finite (" + ", ".join(f"{k}={v}" for k, v in broken.items())
                                 + "); not recorded as done")
    shards["summary"] = pl.DataFrame([summary])
    lit = pl.lit(run.run_id)
    for table, frame in shards.items():  # summary last: its shard marks the run as done
        if frame.height:
            _write(frame.with_columns(run_id=lit), out, table, run)
    return {"run_id": run.run_id, "status": "done", "error": "", "seconds": time.perf_counter() - t0}


def depth_frame(result):
    """The run's depth profile in long form: step, side, level (ticks behind the best), lots."""
    import polars as pl

    records, _, levels = result.depth.shape
    return pl.DataFrame({
        "step": np.repeat(np.asarray(result.market["step"], dtype=np.int64), 2 * levels),
        "side": np.tile(np.repeat(np.array([1, -1], dtype=np.int64), levels), records),
        "level": np.tile(np.arange(levels, dtype=np.int64), 2 * records),
        "lots": result.depth.reshape(-1).astype(np.int64),
    })


# ---- engines ---------------------------------------------------------------------------------
def warm_kernels() -> None:
    """Compile, or load from the numba cache, every kernel a run uses (tiny inputs)."""
    from mfg.closed_form import LQCrowding
    from mfg.laws import GaussianMixture

    from simulator.agents import ExecutionCrowd
    from simulator.market import MarketSpec, ParticleSpec, run_market, run_particles

    from mfg.market_making import MarketMakingMFG, solve_market_making

    solve_market_making(MarketMakingMFG(0.05, 2.0, 1.0, 0.8, 0.5, 2, 1.0), n_t=20)
    model = LQCrowding.single(1.0, 1.0, 1.0, 1.0, 1.0, GaussianMixture.normal(1.0, 0.1))
    crowd = ExecutionCrowd(2, model)
    run_particles(ParticleSpec(T=1.0, dt=0.1, crowd=crowd, record_every=1), seed=0)
    run_market(MarketSpec(T=1.0, dt=0.1, crowd=crowd, record_every=1, warmup_steps=1), seed=0)


class EngineError(RuntimeError):
    """The engine could not be started (Dask missing or its scheduler unreachable)."""


def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the driver, which cancels what has not started and
    lets running runs finish (their shards are written atomically either way)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_kernels()


@contextmanager
def make_engine(workers: int | None = None, dask: str | None = None):
    """A concurrent.futures Executor: a spawn process pool, or Dask ('local' or an address).

    ``workers`` sizes the process pool or the local Dask cluster; with a scheduler
    address the cluster's own workers run, so ``workers`` is refused there.
    """
    if dask is not None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EngineError("the Dask engine needs the optional extra: pip install 'mfgsim[dask]'") from None
        if dask == "local":
            import dask as dask_lib

            # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which turns
            # off glibc's adaptive mmap threshold: every large temporary array is then
            # mapped and unmapped afresh, and a run's comparison costs 3-5x more
            # (benchmarks/campaign_scaling.py: 2.4x slower campaigns before this)
            with dask_lib.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            if workers is not None:
                raise EngineError(f"--workers={workers} does not apply to the Dask scheduler at {dask}: its "
                                  "workers are started with the cluster (use --workers with --dask local)")
            cluster = None
            try:
                client = Client(dask, timeout="5s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise EngineError(f"cannot reach the Dask scheduler at {dask!r}: {exc}") from None
        try:
            trimmed = {addr: value for addr, value in client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").items()
                       if value is not None}
            if trimmed:
                print(f"mfgsim: warning: {len(trimmed)} Dask worker(s) run with MALLOC_TRIM_THRESHOLD_="
                      f"{next(iter(trimmed.values()))}, which makes runs several times slower; start them with "
                      "the Dask config distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ set to null",
                      file=sys.stderr)
            client.run(warm_kernels)
            yield client.get_executor()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    n = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        yield pool


# ---- the driver ------------------------------------------------------------------------------
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("mfgsim", "numpy", "numba", "polars"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return json.dumps(out, sort_keys=True)


def _git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write_manifest(out: Path, rows: dict[str, dict]) -> None:
    import polars as pl

    from analysis.schemas import MANIFEST

    table = pl.DataFrame(list(rows.values()), schema=MANIFEST).sort("run_id")
    atomic_write(out / "manifest.parquet", table.write_parquet)


def run_campaign(campaign: CampaignSpec | str | Path, out_root: str | Path = "runs/out", *,
                 workers: int | None = None, dask: str | None = None, engine: Executor | None = None,
                 progress: bool = True) -> Path:
    """Run every unfinished run of a campaign; return its output folder.

    engine : an existing Executor to use; otherwise a spawn pool of ``workers`` processes,
    or Dask when ``dask`` is ``"local"`` or a scheduler address.
    """
    import polars as pl

    from analysis.schemas import MANIFEST, SCHEMA_VERSION

    if not isinstance(campaign, CampaignSpec):
        campaign = load_campaign(campaign)
    from analysis.readers import check_schema_version

    out = Path(out_root) / campaign.name
    check_writable(out, "campaign output folder")
    check_schema_version(out)
    rows: dict[str, dict] = {}
    if (out / "manifest.parquet").exists():
        for row in pl.read_parquet(out / "manifest.parquet", schema=MANIFEST).to_dicts():
            rows[row["run_id"]] = row
    versions, revision = _versions(), _git_revision()
    todo = []
    for run in campaign.runs:
        base = {"run_id": run.run_id, "campaign": run.campaign, "kind": run.kind, "N": run.n_agents,
                "seed": run.seed, "params": run.config, "versions": versions, "git_revision": revision,
                "schema_version": SCHEMA_VERSION}
        if shard_path(out, "summary", run).exists():
            rows[run.run_id] = {**rows.get(run.run_id, {**base, "error": "", "seconds": math.nan}),
                                "status": "done"}
        else:
            rows[run.run_id] = {**base, "status": "pending", "error": "", "seconds": math.nan}
            todo.append(run)
    done = len(campaign.runs) - len(todo)
    if progress and done:
        print(f"{campaign.name}: {done} of {len(campaign.runs)} runs already done in {out}; "
              f"{'resuming' if todo else 'nothing to do'}", flush=True)
    with ExitStack() as stack:
        if todo and engine is None:
            warm_kernels()  # compile once here so that the workers load from the cache
            engine = stack.enter_context(make_engine(workers, dask))  # before writing: it may fail
        stack.enter_context(output_lock(out))
        for stale in out.rglob(".*.tmp"):  # left by a killed writer; nobody else writes here now
            stale.unlink(missing_ok=True)
        _write_manifest(out, rows)
        if todo:
            _consume(engine, campaign, todo, out, rows, progress)
    return out


def _consume(pool: Executor, campaign: CampaignSpec, todo: list[RunSpec], out: Path, rows: dict[str, dict],
             progress: bool) -> None:
    """Submit the runs, record each outcome in the manifest as it arrives."""
    from tqdm import tqdm

    failures = 0
    futures = {pool.submit(execute_run, run, str(out), campaign.keep_trades, campaign.agents_kept): run
               for run in todo}
    with tqdm(total=len(campaign.runs), initial=len(campaign.runs) - len(todo), disable=not progress,
              desc=campaign.name, unit="run") as bar:
        try:
            for fut in as_completed(futures):
                run = futures[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - recorded per run, the others go on
                    rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": math.nan}
                    failures += 1
                rows[run.run_id].update(status=rec["status"], error=rec["error"], seconds=rec["seconds"])
                _write_manifest(out, rows)
                bar.update(1)
                bar.set_postfix(failed=failures)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            raise
