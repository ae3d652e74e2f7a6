"""Engines: where runs execute, behind one ``concurrent.futures`` interface.

The embedded default is a ``spawn`` process pool; ``dask="local"`` or a scheduler address
runs the same work on Dask distributed. Kernels are compiled once in the driver
(:func:`warm_kernels`) and loaded from the numba cache in every worker before work fans out.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np

from mfg.closed_form import LQCrowding
from mfg.fd import Grid, LQCrowdingModel, solve
from mfg.laws import GaussianMixture
from mfg.market_making import MarketMakingMFG, solve_market_making
from simulator.agents import ExecutionCrowd
from simulator.market import (MarketRun, MarketSpec, ParticleSpec, WarmStartUnavailable, feedback_rates, run_market,
                              run_particles, warm_up)


def warm_kernels() -> None:
    """Compile, or load from the numba cache, every kernel a run uses (tiny inputs).

    Returns
    -------
    None
    """
    solve_market_making(MarketMakingMFG(0.05, 2.0, 1.0, 0.8, 0.5, 2, 1.0), n_t=20)
    model = LQCrowding.single(1.0, 1.0, 1.0, 1.0, 1.0, GaussianMixture.normal(1.0, 0.1))
    crowd = ExecutionCrowd(2, model)
    run_particles(ParticleSpec(T=1.0, dt=0.1, crowd=crowd, record_every=1), seed=0)
    run_market(MarketSpec(T=1.0, dt=0.1, crowd=crowd, record_every=1, warmup_steps=1), seed=0)
    solve(LQCrowdingModel(model), Grid(-1.0, 3.0, 21, 1.0, 4))  # the FD sweeps of "mfg_fd"
    feedback_rates(np.zeros((1, 2, 2)), 0.0, 1.0, 1.0, 0.5, 0.5, 0)  # a loop's evaluation reads its table


class SeedRuns:
    """Book runs of one market at fixed seeds, for a loop that changes only the crowd's strategy.

    The crowd trades from step 0, after the warm-up, so each seed's warm-up runs once, on
    the first call (:func:`simulator.market.warm_up`); later runs start from it and give the
    same bytes as runs from scratch. Where numba's generator cannot be saved, every run
    starts from scratch.

    Parameters
    ----------
    pool : concurrent.futures.Executor
    seeds : sequence of int
    """

    def __init__(self, pool: Executor, seeds):
        self.pool, self.seeds, self._warm = pool, list(seeds), None

    def submit(self, spec: MarketSpec) -> list[Future]:
        """Start one run of ``spec`` per seed (the market must be the first call's; the strategy may change).

        Parameters
        ----------
        spec : MarketSpec

        Returns
        -------
        list of concurrent.futures.Future
            Their results are the runs, in the order of the seeds.
        """
        n = len(self.seeds)
        if self._warm is None:
            try:
                self._warm = list(self.pool.map(warm_up, [spec] * n, self.seeds))
            except WarmStartUnavailable:
                self._warm = [None] * n
        return [self.pool.submit(run_market, spec, seed, warm) for seed, warm in zip(self.seeds, self._warm)]

    def __call__(self, spec: MarketSpec) -> list[MarketRun]:
        """The runs :meth:`submit` starts, waited for (MarketRun, in the order of the seeds)."""
        return [future.result() for future in self.submit(spec)]


class EngineError(RuntimeError):
    """The engine could not be started (Dask missing or its scheduler unreachable).

    Parameters
    ----------
    message : str
    """


def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the driver, which cancels what has not started and
    lets running runs finish (their shards are written atomically either way)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_kernels()


@contextmanager
def make_engine(workers: int | None = None, dask: str | None = None):
    """A concurrent.futures Executor: a spawn process pool, or Dask.

    Parameters
    ----------
    workers : int, optional
        Processes of the pool, or of the local Dask cluster (default: all cores). Refused
        with a scheduler address: that cluster's own workers run.
    dask : str, optional
        ``"local"`` for a local Dask cluster, or a scheduler address; None for the pool.

    Yields
    ------
    concurrent.futures.Executor
        Warmed: every worker has compiled (or loaded) the kernels.

    Raises
    ------
    EngineError
        Dask missing, or its scheduler unreachable.
    """
    if dask is not None:
        try:  # deferred: Dask is an optional extra, and slow to import
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
    pool = RestartablePool(workers or os.cpu_count() or 1)
    try:
        yield pool
    finally:
        pool.shutdown()


class WorkerDied(RuntimeError):
    """A piece of work killed its worker process twice (a signal, the out-of-memory killer)."""


def death_cause(codes: list[int]) -> str:
    """How a worker ended, in words: ``signal 9 (out of memory?)``.

    Parameters
    ----------
    codes : list of int
        Exit codes of the dead workers (negative: the signal), as :meth:`RestartablePool.restart` says.

    Returns
    -------
    str
    """
    if not codes:
        return "the worker process ended abruptly (killed, or out of memory?)"
    # the pool itself ends its other workers with SIGTERM once one has died: not the cause
    code = next((c for c in codes if c != -15), codes[0])
    if code < 0:
        return f"signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    return f"exit code {code}"


class RestartablePool(Executor):
    """A spawn process pool that can be started afresh after one of its workers died.

    When a worker dies (a signal, the out-of-memory killer) the stdlib pool is broken: every
    pending future fails with ``BrokenProcessPool``. :meth:`restart` reports how the dead
    workers ended and replaces the pool, so that the driver can retry what was in flight.

    Parameters
    ----------
    workers : int
        Processes of the pool.
    """

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._pool = self._start()
        self._processes: dict = {}  # every worker seen, kept past a break (the pool forgets them)

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"), initializer=_worker_init)

    def submit(self, fn, /, *args, **kwargs):
        """Submit to the current pool (see :class:`concurrent.futures.Executor`).

        Returns
        -------
        concurrent.futures.Future
        """
        future = self._pool.submit(fn, *args, **kwargs)
        self._processes.update(getattr(self._pool, "_processes", None) or {})  # the stdlib's, started on submit
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like :meth:`concurrent.futures.Executor.map`, surviving a dead worker.

        The items lost with a broken pool are retried once, each alone on a fresh pool; an
        item that kills its worker again raises :class:`WorkerDied`.

        Returns
        -------
        iterator
            The results, in the items' order.
        """
        items = list(zip(*iterables))
        futures = [self.submit(fn, *item) for item in items]
        results, lost = {}, []
        for i, fut in enumerate(futures):
            try:
                results[i] = fut.result(timeout)
            except BrokenProcessPool:
                lost.append(i)
        if lost:
            self.restart()
            for i in lost:  # alone: if the pool breaks now, this item broke it
                try:
                    results[i] = self.submit(fn, *items[i]).result(timeout)
                except BrokenProcessPool:
                    raise WorkerDied(f"a worker died twice running {getattr(fn, '__name__', fn)} on item {i} of "
                                     f"{len(items)}: {death_cause(self.restart())}") from None
        return iter([results[i] for i in range(len(items))])

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the current pool down (see :class:`concurrent.futures.Executor`)."""
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def restart(self) -> list[int]:
        """Replace a broken pool by a fresh one.

        Returns
        -------
        list of int
            The exit codes of the workers that died (negative: the signal), as far as the
            stdlib pool says.
        """
        self._processes.update(getattr(self._pool, "_processes", None) or {})  # those spawned after submit
        # the pool's own thread reaps the dead worker concurrently: wait a moment for its code
        deadline = time.monotonic() + 2.0
        while True:
            codes = [p.exitcode for p in self._processes.values() if p.exitcode not in (None, 0)]
            if codes or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self._processes = {}
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()
        return codes
