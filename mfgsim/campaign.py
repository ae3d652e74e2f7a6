"""The campaign driver: run every unfinished run of a campaign on an engine, write its
shards and its manifest, and hand back the output folder.

A campaign file has a ``[campaign]`` table (``kind`` = particles | market | nash,
``seeds``, ``record_every``, ``keep_trades``, ``agents_kept``), the LQ ``[model]``, the
``[crowd]``, the kind's own table (``[particles]``, ``[market]`` with ``[market.noise]`` and
``[market.makers]``, or ``[nash]``) and an optional ``[sweep]`` (:mod:`mfgsim.specs`). See
the files in ``runs/``; a dict with the same structure works too.

A run's shards go to ``<out>/<table>/N=<n>/seed=<s>/<run_id>.parquet``, written to a
temporary name and renamed, ``summary`` last. A run whose summary shard exists is skipped,
so a campaign killed at any moment resumes where it stopped. Failures are recorded per run
in ``manifest.parquet`` and do not stop the others; a run whose summary is not finite is a
failure. What cannot work is refused before anything is written: a stiff feedback for the
step, a run too big for this machine's memory (:mod:`mfgsim.specs`), an output folder that
cannot be written or that another process is writing (a lock), an unreachable Dask
scheduler (:mod:`mfgsim.engines`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from concurrent.futures import Executor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from analysis.compare import compare_run
from analysis.readers import check_schema_version, manifest, scan
from analysis.report import Report, report
from analysis.schemas import MANIFEST, SCHEMA_VERSION, TABLES
from mfg.io import atomic_write
from mfg.nash import NASH_GAP_COLUMNS, nash_gap_columns
from simulator.market import run_market, run_particles

from .build import build_run
from .engines import RestartablePool, death_cause, make_engine, warm_kernels
from .io import check_writable, output_lock
from .specs import CampaignSpec, RunSpec, load_campaign

# summary columns every particle or market run must have finite
SUMMARY_METRICS = ("w1_mean", "w1_max", "ks_max", "mean_inventory_error", "mean_rate_error", "cost_gap", "price_move")


@dataclass(frozen=True)
class CampaignOutput:
    """A campaign's output folder, as :func:`run_campaign` returns it.

    Parameters
    ----------
    folder : Path
        ``<out_root>/<campaign name>``: the shards, ``manifest.parquet`` and ``figures/``.
    """

    folder: Path

    def scan(self, table: str) -> pl.LazyFrame:
        """One table of every run as a Polars LazyFrame with its fixed schema, plus ``N`` and ``seed``.

        Parameters
        ----------
        table : str
            ``agents``, ``market``, ``depth``, ``trades``, ``mfg`` or ``summary``.

        Returns
        -------
        polars.LazyFrame
        """
        return scan(self.folder, table)

    def manifest(self) -> pl.DataFrame:
        """The campaign's runs.

        Returns
        -------
        polars.DataFrame
            One row per run: parameters, status, error, seconds, versions, git revision.
        """
        return manifest(self.folder)

    @property
    def failed(self) -> int:
        """The number of runs recorded as failed."""
        return self.manifest().filter(pl.col("status") == "failed").height

    def report(self, figures: bool = True) -> Report:
        """The convergence table (W1, KS, ... against N with fitted slopes and intervals).

        Parameters
        ----------
        figures : bool
            Also write its figures to ``folder/figures``.

        Returns
        -------
        analysis.report.Report
        """
        return report(self.folder, build_run, figures=figures)


def _write(df, out_dir: Path, table: str, run: RunSpec) -> None:
    schema = TABLES[table]
    atomic_write(shard_path(out_dir, table, run), df.select(list(schema)).cast(dict(schema)).write_parquet)


def shard_path(out_dir: Path, table: str, run: RunSpec) -> Path:
    """Where a run's shard of a table goes: ``<out>/<table>/N=<n>/seed=<s>/<run_id>.parquet``.

    Parameters
    ----------
    out_dir : pathlib.Path
        The campaign's output folder.
    table : str
        The table's name.
    run : RunSpec

    Returns
    -------
    pathlib.Path
    """
    return Path(out_dir) / table / f"N={run.n_agents}" / f"seed={run.seed}" / f"{run.run_id}.parquet"


def execute_run(run: RunSpec, out_dir: str, keep_trades: bool = False, agents_kept: int | None = None) -> dict:
    """Simulate one run, compute its metrics and write its shards (in a worker).

    Parameters
    ----------
    run : RunSpec
    out_dir : str
        The campaign's output folder.
    keep_trades : bool
        Write the run's trades too (market runs).
    agents_kept : int, optional
        The ``agents`` shard holds the paths of the first ``agents_kept`` agents (all when
        None); their draws are iid, so they are a sample. The metrics use every agent.

    Returns
    -------
    dict
        The run's manifest record: ``run_id``, ``status``, ``error``, ``seconds``.

    Raises
    ------
    FloatingPointError
        The summary is not finite; nothing is written, and a rerun tries again.
    """
    out = Path(out_dir)
    # a marker while the run is in flight: if its worker dies, the driver knows who was running
    marker = out / RUNNING / run.run_id
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    try:
        return _execute(run, out, keep_trades, agents_kept)
    finally:
        marker.unlink(missing_ok=True)


RUNNING = ".running"  # the folder of the in-flight markers, inside a campaign's output folder


def _execute(run: RunSpec, out: Path, keep_trades: bool, agents_kept: int | None) -> dict:
    t0 = time.perf_counter()
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
    """The run's depth profile in long form.

    Parameters
    ----------
    result : simulator.market.MarketRun

    Returns
    -------
    polars.DataFrame
        Columns step, side (+1 bid, -1 ask), level (ticks behind the best) and lots.
    """
    records, _, levels = result.depth.shape
    return pl.DataFrame({
        "step": np.repeat(np.asarray(result.market["step"], dtype=np.int64), 2 * levels),
        "side": np.tile(np.repeat(np.array([1, -1], dtype=np.int64), levels), records),
        "level": np.tile(np.arange(levels, dtype=np.int64), 2 * records),
        "lots": result.depth.reshape(-1).astype(np.int64),
    })


def _versions() -> str:
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
    table = pl.DataFrame(list(rows.values()), schema=MANIFEST).sort("run_id")
    atomic_write(out / "manifest.parquet", table.write_parquet)


def run_campaign(campaign: CampaignSpec | str | Path | dict, out_root: str | Path = "runs/out", *,
                 workers: int | None = None, dask: str | None = None, engine: Executor | None = None,
                 progress: bool = True) -> CampaignOutput:
    """Run every unfinished run of a campaign.

    Parameters
    ----------
    campaign : CampaignSpec, str, Path or dict
        A loaded campaign, a campaign TOML file, or a dict with the file's structure
        (see :func:`mfgsim.specs.load_campaign`).
    out_root : str or Path
        The outputs go to ``out_root / <campaign name>``.
    workers : int, optional
        Processes of the spawn pool (or of the local Dask cluster); default all cores.
    dask : str, optional
        ``"local"`` or a Dask scheduler address; None runs on the process pool.
    engine : concurrent.futures.Executor, optional
        An engine to use as it is (then ``workers`` and ``dask`` are not used).
    progress : bool
        Show a progress bar and a line on resuming.

    Returns
    -------
    CampaignOutput
        The output folder, with ``.scan(table)``, ``.manifest()`` and ``.report()``.
    """
    if not isinstance(campaign, CampaignSpec):
        campaign = load_campaign(campaign)
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
        for stale in [*out.rglob(".*.tmp"), *(out / RUNNING).glob("*")]:  # left by a killed run or writer
            stale.unlink(missing_ok=True)
        _write_manifest(out, rows)
        if todo:
            _consume(engine, campaign, todo, out, rows, progress)
        markers = out / RUNNING
        if markers.is_dir() and not any(markers.iterdir()):  # only in-flight runs leave a trace there
            markers.rmdir()
    return CampaignOutput(out)


def _consume(pool: Executor, campaign: CampaignSpec, todo: list[RunSpec], out: Path, rows: dict[str, dict],
             progress: bool) -> None:
    """Submit the runs, record each outcome in the manifest as it arrives.

    When a pool worker dies, every pending run fails with ``BrokenProcessPool``: the pool is
    started afresh, the runs that were not running go back in the queue, and those that were
    running (their in-flight markers say which) are retried once each, alone, so that a run
    that kills its worker again is the one recorded as failed ("worker died: signal 9 (out of
    memory?)") and the others go on.
    """
    with tqdm(total=len(campaign.runs), initial=len(campaign.runs) - len(todo), disable=not progress,
              desc=campaign.name, unit="run") as bar:
        state = {"failures": 0}

        def record(run: RunSpec, rec: dict) -> None:
            if rec["status"] == "failed":
                state["failures"] += 1
            rows[run.run_id].update(status=rec["status"], error=rec["error"], seconds=rec["seconds"])
            _write_manifest(out, rows)
            bar.update(1)
            bar.set_postfix(failed=state["failures"])

        queue, suspects = list(todo), []
        while queue or suspects:
            for run in suspects:  # each alone: if the pool breaks now, this run broke it
                broken, codes = _submit(pool, [run], campaign, out, record)
                if broken:
                    record(run, {"status": "failed", "seconds": math.nan,
                                 "error": f"worker died twice: {death_cause(codes)}"})
            suspects = []
            if queue:
                broken, codes = _submit(pool, queue, campaign, out, record)
                running = {path.name for path in (out / RUNNING).glob("*")} if broken else set()
                for path in (out / RUNNING).glob("*"):
                    path.unlink(missing_ok=True)
                # without markers (a worker that died between runs) every lost run is a suspect:
                # alone, each either finishes or is found out, so the loop always ends
                suspects = [run for run in broken if run.run_id in running] or broken
                queue = [run for run in broken if run not in suspects]
                if broken and not isinstance(pool, RestartablePool):  # an engine we cannot restart
                    for run in broken:
                        record(run, {"status": "failed", "seconds": math.nan,
                                     "error": f"worker died: {death_cause(codes)}"})
                    return


def _submit(pool: Executor, runs: list[RunSpec], campaign: CampaignSpec, out: Path, record) -> tuple[list, list]:
    """Run ``runs`` on the pool, recording each outcome; (runs lost to a dead worker, exit codes)."""
    futures = {pool.submit(execute_run, run, str(out), campaign.keep_trades, campaign.agents_kept): run
               for run in runs}
    broken = []
    try:
        for fut in as_completed(futures):
            run = futures[fut]
            try:
                rec = fut.result()
            except BrokenProcessPool:
                broken.append(run)
                continue
            except Exception as exc:  # noqa: BLE001 - recorded per run, the others go on
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": math.nan}
            record(run, rec)
    except KeyboardInterrupt:
        for fut in futures:
            fut.cancel()
        raise
    codes = pool.restart() if broken and isinstance(pool, RestartablePool) else []
    return broken, codes
