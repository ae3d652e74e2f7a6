"""Bad inputs and hostile surroundings: one clear line, a nonzero exit, nothing half-written."""

import dataclasses
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mfgsim import load_campaign, run_campaign
from mfgsim.cli import main
from mfgsim.config import ConfigError, read_toml
from mfg.io import atomic_write
from mfgsim.io import OutputError, check_writable, output_lock
from simulator.market import warm_up
from conftest import MARKET, NASH, PARTICLES, ROOT, write


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ---- config files that cannot be read ------------------------------------------------------
def test_directory_binary_and_unreadable_config_files(tmp_path, capsys, monkeypatch):
    code, err = run_cli(capsys, "run", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "is a directory")
    binary = tmp_path / "blob.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    code, err = run_cli(capsys, "solve", str(binary))
    assert code == 2
    assert_one_line(err, "not a text file")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError, match="cannot be read .permission denied."):
        read_toml(tmp_path / "secret.toml")
    assert not (tmp_path / "out").exists()


# ---- output folders that cannot be written -------------------------------------------------
def test_out_pointing_at_a_file_and_a_campaign_folder_that_is_a_file(tmp_path, capsys):
    path = write(tmp_path, NASH, "tiny_nash")
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    code, err = run_cli(capsys, "run", str(path), "--out", str(a_file), "--quiet")
    assert code == 2
    assert_one_line(err, "lies under", "which is a file")
    root = tmp_path / "out"
    root.mkdir()
    (root / "tiny_nash").write_text("x")
    code, err = run_cli(capsys, "run", str(path), "--out", str(root), "--quiet")
    assert code == 2
    assert_one_line(err, "tiny_nash is a file")
    assert a_file.read_text() == "x" and (root / "tiny_nash").read_text() == "x"


def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path, monkeypatch):
    # root ignores permission bits, so ask os.access directly what a normal user would get
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="cannot be written.*not writable"):
        check_writable(tmp_path / "out" / "campaign")
    with pytest.raises(OutputError, match="not writable"):
        run_campaign(write(tmp_path, NASH, "tiny_nash"), tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_dask_scheduler_is_one_line_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("distributed")
    path = write(tmp_path, NASH, "tiny_nash")
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "out"), "--dask", "tcp://127.0.0.1:1",
                        "--quiet")
    assert code == 2
    assert_one_line(err, "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'")
    assert not (tmp_path / "out").exists()


def test_workers_with_a_scheduler_address_is_refused(tmp_path, capsys):
    pytest.importorskip("distributed")
    path = write(tmp_path, NASH, "tiny_nash")
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "out"), "--dask", "tcp://127.0.0.1:1",
                        "--workers", "2", "--quiet")
    assert code == 2
    assert_one_line(err, "--workers=2 does not apply")


# ---- sizes refused up front ---------------------------------------------------------------
def test_huge_seed_counts_and_crowds_are_refused_up_front(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, PARTICLES.replace("seeds = 2", "seeds = 1000000000000"),
                                                 "p")), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "campaign.seeds")
    huge = PARTICLES.replace('grid = { "crowd.n_agents" = [5, 20, 80] }',
                             'grid = { "crowd.n_agents" = [5, 100000000] }')
    code, err = run_cli(capsys, "run", str(write(tmp_path, huge, "p")), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "crowd.n_agents=100000000 needs about", "GiB per run")
    beyond = huge.replace("100000000", "1000000000000")
    code, err = run_cli(capsys, "run", str(write(tmp_path, beyond, "p")), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "crowd.n_agents=1000000000000 is not allowed", "in [1, 1000000000]")
    assert not (tmp_path / "out").exists()


MEASURE = """
import sys
from analysis.compare import compare_run
from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture
from simulator.agents import ExecutionCrowd
from simulator.market import MarketSpec, ParticleSpec, run_market, run_particles

model = LQCrowding.single(1.0, 2.0, 1.0, 10.0, 1.0, GaussianMixture.normal(1.0, 0.2), sigma=float(sys.argv[2]))
n = int(sys.argv[3])
if sys.argv[1] == "particles":
    spec, run = ParticleSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(n, model), record_every=10), run_particles
else:
    spec, run = MarketSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(n, model), record_every=10), run_market
small = ParticleSpec(T=1.0, dt=0.1, crowd=ExecutionCrowd(2, model), record_every=1)
compare_run(run_particles(small, seed=1), model)  # load the kernels: their memory is not the run's
compare_run(run_market(MarketSpec(T=1.0, dt=0.1, crowd=ExecutionCrowd(2, model), record_every=1), seed=1), model)


def peak():  # VmHWM, the high-water mark of this process's memory (ru_maxrss survives exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


before = peak()
compare_run(run(spec, seed=1), model)
print(peak() - before, spec.memory_estimate())
"""


@pytest.mark.parametrize("kind, sigma, n", [("particles", 0.3, 300_000), ("market", 0.0, 20_000)])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_memory_estimates_bound_a_measured_run(kind, sigma, n):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", MEASURE, kind, str(sigma), str(n)], env=env, capture_output=True,
                            text=True, timeout=300, check=True)
    grown, estimate = map(int, result.stdout.split())
    assert grown > 0.2 * estimate  # the run dominates the peak: the comparison means something
    assert grown < estimate


MEASURE_SOLVERS = """
import os, sys, tempfile
from mfg.closed_form import LQCrowding
from mfg.fd import Grid, LQCrowdingModel, memory_estimate as fd_memory, solve
from mfg.jump import memory_estimate as jump_memory
from mfg.laws import GaussianMixture
from mfg.market_making import MarketMakingMFG, solve_market_making
from simulator.agents import MarketMakers, NoiseFlow
from simulator.market import MarketSpec, run_market

model = LQCrowding.single(1.0, 2.0, 1.0, 10.0, 1.0, GaussianMixture.normal(1.0, 0.2), sigma=0.3)
# load the kernels and the Parquet writer first: their memory is not the work's
out = os.path.join(tempfile.mkdtemp(), "solution.parquet")
solve(LQCrowdingModel(model), Grid(-1.5, 2.5, 21, 1.0, 5)).write_parquet(out)
solve_market_making(MarketMakingMFG(0.05, 2.0, 10.0, 0.8, 0.5, 2, 1.0), n_t=200).to_polars().write_parquet(out)
makers = MarketMakers(count=2, model="mfg", max_inventory=2, fill_intensity=5.0)
run_market(MarketSpec(T=1.0, dt=0.1, makers=makers, record_every=1, warmup_steps=1), seed=0)


def peak():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


kind, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before = peak()
if kind == "fd":
    grid, fd_model = Grid(-1.5, 2.5, a, 1.0, b), LQCrowdingModel(model)
    solve(fd_model, grid).write_parquet(out)
    estimate = fd_memory(fd_model, grid)
elif kind == "jump":
    mm = MarketMakingMFG(0.05, 2.0, 10.0, 0.8, 0.5, a, 1.0)
    solve_market_making(mm, n_t=b).to_polars().write_parquet(out)
    estimate = jump_memory(mm, b)
else:
    makers = MarketMakers(count=4, model="mfg", max_inventory=a, fill_intensity=20.0, quote_size=1)
    if kind == "mixed":  # a lattice game with no pure equilibrium: fictitious play, quotes drawn in groups
        makers = MarketMakers(count=300, model="mfg_tick", lattice=(1.0, 2.0), table_means=(1.0, 2.0),
                              table_rates=((10.0, 20.0), (6.0, 8.0)), max_inventory=a, fill_intensity=20.0,
                              quote_size=1)
    noise = NoiseFlow(limit_rate=0.0, market_rate=40.0, cancel_rate=0.0, max_size=1)
    spec = MarketSpec(T=1.0, dt=1.0 / b, makers=makers, noise=noise, scale_with="makers", record_every=1,
                      warmup_steps=0, max_trades_kept=0)
    run_market(spec, seed=1)
    estimate = spec.memory_estimate()
print(peak() - before, estimate)
"""


@pytest.mark.parametrize("kind, a, b", [("fd", 801, 800), ("jump", 100, 5000), ("makers", 40, 4000),
                                         ("mixed", 3, 500)])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_memory_estimates_bound_the_solvers_and_makers(kind, a, b):
    """The estimates `mfgsim solve` and the makers' studies check are upper bounds on the
    measured peak (an FD solve and its Parquet file, a jump solve, a book of MFG makers, a
    book of makers playing a mixed lattice equilibrium)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", MEASURE_SOLVERS, kind, str(a), str(b)], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    grown, estimate = map(int, result.stdout.split())
    assert 0.2 * estimate < grown < estimate


def test_solve_and_makers_refuse_work_that_will_not_fit(tmp_path, capsys):
    """The sizes of the issue: a 10^6 x 10^6 FD grid, makers with 100000 quotes of inventory."""
    solve_file = (ROOT / "runs" / "solve_lq_crowding.toml").read_text()
    big = re.sub(r"n_x = \d+", "n_x = 1000000", re.sub(r"n_t = \d+", "n_t = 1000000", solve_file))
    path = tmp_path / "big_solve.toml"
    path.write_text(big)
    code, err = run_cli(capsys, "solve", str(path))
    assert code == 2
    assert_one_line(err, "grid.n_x=1000000 x grid.n_t=1000000 needs about", "lower grid.n_x or grid.n_t")
    makers_file = (ROOT / "runs" / "experiment_d_makers.toml").read_text()
    path = tmp_path / "big_makers.toml"
    path.write_text(makers_file.replace("max_inventory = 10", "max_inventory = 100000"))
    code, err = run_cli(capsys, "makers", str(path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "market.makers.max_inventory=100000 needs about", "GiB per run")
    assert not (tmp_path / "out").exists()


# ---- Ctrl-C --------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_a_rerun_resumes(tmp_path):
    text = PARTICLES.replace('[5, 20, 80]', '[5, 20, 80, 320, 1280]').replace("seeds = 2", "seeds = 3")
    text = text.replace("dt = 0.02", "dt = 0.002")
    path = write(tmp_path, text, "tiny_particles")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "mfgsim.cli", "run", str(path), "--workers", "1", "--quiet", "--out",
           str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    summary_dir = tmp_path / "out" / "tiny_particles" / "summary"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(summary_dir.rglob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole group on Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert_one_line(err, "interrupted", "rerun the same command to resume")
    assert not list((tmp_path / "out").rglob("*.tmp"))
    done = len(list(summary_dir.rglob("*.parquet")))
    result = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "out")], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list(summary_dir.rglob("*.parquet"))) == 15
    assert done < 15


# ---- permissions, locks, resume ------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "f.parquet", pl.DataFrame({"a": [1]}).write_parquet)
        out = run_campaign(write(tmp_path, NASH, "tiny_nash"), tmp_path / "out", workers=1, progress=False).folder
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    shards = list(out.rglob("*.parquet"))
    assert shards and all(stat.S_IMODE(p.stat().st_mode) == mode for p in shards)


@pytest.mark.parametrize("where", ["close", "write", "replace"])
def test_an_interrupted_atomic_write_leaves_no_file(tmp_path, monkeypatch, where):
    # Ctrl-C is raised at the first bytecode after a system call returns: right after the
    # temporary file is created, in the middle of the write, or at the rename
    import mfg.io

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where in ("close", "replace"):
        monkeypatch.setattr(mfg.io.os, where, interrupt)
    frame = pl.DataFrame({"a": [1]})
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "f.parquet", interrupt if where == "write" else frame.write_parquet)
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())


def test_a_second_process_on_the_same_output_folder_is_refused(tmp_path, capsys):
    path = write(tmp_path, NASH, "tiny_nash")
    with output_lock(tmp_path / "out" / "tiny_nash"):
        code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert code == 2
    assert_one_line(err, "in use by another mfgsim process", f"pid {os.getpid()}")
    assert not (tmp_path / "out" / "tiny_nash" / "manifest.parquet").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0  # the lock went with it


def test_a_resumed_campaign_says_how_many_runs_were_done(tmp_path, capsys):
    path = write(tmp_path, NASH, "tiny_nash")
    run_campaign(path, tmp_path / "out", workers=1, progress=False)
    run_campaign(path, tmp_path / "out", workers=1, progress=True)
    assert "tiny_nash: 3 of 3 runs already done" in capsys.readouterr().out


# ---- messages that name the real cause -----------------------------------------------------
def test_messages_name_the_right_key(tmp_path):
    with pytest.raises(ConfigError, match="crowd.lots_per_unit=10000000000 is not allowed"):
        load_campaign(write(tmp_path, MARKET.replace("lots_per_unit = 20", "lots_per_unit = 10000000000"), "m"))
    big = MARKET.replace("lots_per_unit = 20", "lots_per_unit = 100000")
    with pytest.raises(ConfigError, match="lower crowd.lots_per_unit"):
        load_campaign(write(tmp_path, big, "m"))
    with pytest.raises(ConfigError, match="known keys: campaign, crowd, market, model, sweep"):
        load_campaign(write(tmp_path, MARKET + "\n[extras]\nx = 1\n", "m"))
    with pytest.raises(ConfigError, match=r"market\.makers\.risk_aversion"):
        load_campaign(write(tmp_path, MARKET + "[market.makers]\nrisk_aversion = -1.0\n", "m"))
    with pytest.raises(ConfigError, match=r"market\.meta_traders\.tail_exponent=1\.0 is not allowed; must be > 1"):
        load_campaign(write(tmp_path, MARKET + "[market.meta_traders]\ntail_exponent = 1.0\n", "m"))
    with pytest.raises(ConfigError, match=r"market\.meta_traders\.participation\[1\]"):
        load_campaign(write(tmp_path, MARKET + "[market.meta_traders]\nparticipation = [0.2, 1.5]\n", "m"))
    assert load_campaign(write(tmp_path, MARKET + "[market.meta_traders]\ncount = 3\nchild_rate = 20.0\n", "m"))
    fd = PARTICLES.replace("[crowd]\nn_agents = 5", '[crowd]\nn_agents = 5\nstrategy = "mfg_fd"')
    with pytest.raises(ConfigError, match=r"\[crowd.fd_grid\] table with x_min, x_max, n_x and n_t"):
        load_campaign(write(tmp_path, fd, "p"))
    # the base value of a swept key is overridden, but what the user wrote is still checked
    with pytest.raises(ConfigError, match="crowd.n_agents='five' is not allowed"):
        load_campaign(write(tmp_path, PARTICLES.replace("n_agents = 5", 'n_agents = "five"'), "p"))


# ---- Dask ----------------------------------------------------------------------------------
def test_local_dask_workers_keep_glibcs_adaptive_malloc(capsys, monkeypatch):
    """Dask's default MALLOC_TRIM_THRESHOLD_=65536 made local-cluster campaigns 2.4x slower
    than the process pool (benchmarks/campaign_scaling.py); our local cluster unsets it, and
    a cluster started elsewhere with it set gets a warning."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from mfgsim.engines import make_engine

    # a nanny writes its variables into this process's environment: undo that afterwards
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with make_engine(workers=1, dask="local") as engine:
        assert engine.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_").result() is None
    assert "MALLOC_TRIM_THRESHOLD_" not in capsys.readouterr().err
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with make_engine(dask=cluster.scheduler_address):
            pass
    assert "run with MALLOC_TRIM_THRESHOLD_=65536" in capsys.readouterr().err


# ---- footprint and layout --------------------------------------------------------------------
def test_the_agents_table_keeps_a_sample_of_agents(tmp_path):
    out = run_campaign(write(tmp_path, PARTICLES.replace("record_every = 5", "record_every = 5\nagents_kept = 3"),
                             "tiny_particles"), tmp_path / "out", workers=1, progress=False).folder
    from analysis.readers import scan

    agents = scan(out, "agents").collect()
    assert agents["agent"].max() == 2
    assert agents.filter(pl.col("N") == 80).group_by("run_id").agg(pl.col("agent").n_unique())["agent"].to_list() \
        == [3, 3]
    mfg = scan(out, "mfg").collect()  # the metrics still use all 80 agents: W1 is small, not that of 3 draws
    assert mfg.filter(pl.col("N") == 80)["w1"].mean() < mfg.filter(pl.col("N") == 5)["w1"].mean()


def test_validation_errors_survive_pickling():
    """Worker processes send exceptions back pickled; one that cannot be rebuilt breaks the pool."""
    import pickle

    from mfg.validation import InvalidType, InvalidValue

    for err in (InvalidValue("n", 0, "must be >= 1", "raise it"), InvalidType("price", 1.5, "must be an integer")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.field == err.field


# ---- a worker that dies -------------------------------------------------------------------
KILLER = """
import os
import signal
from pathlib import Path


def _install():
    import mfgsim.campaign as campaign

    real = campaign._execute
    victim, once = os.environ["MFGSIM_TEST_VICTIM"], Path(os.environ["MFGSIM_TEST_ONCE"])

    def dying(run, *args):
        if run.n_agents == int(victim) and run.seed == 0:
            if os.environ.get("MFGSIM_TEST_ALWAYS") or not once.exists():
                once.touch()
                os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
        return real(run, *args)

    campaign._execute = dying


if os.environ.get("MFGSIM_TEST_VICTIM"):
    _install()
"""


@pytest.mark.parametrize("always", [False, True])
def test_a_dying_worker_costs_at_most_its_own_run(tmp_path, always):
    """A worker killed mid-run (SIGKILL, as the out-of-memory killer does) breaks the stdlib
    pool: the driver starts a fresh one and retries the runs in flight; a run that kills its
    worker again is recorded as failed with the cause, every other run finishes, and the exit
    code says whether anything failed. (sitecustomize installs the fault in the spawned workers.)"""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILLER)
    path = write(tmp_path, PARTICLES, "tiny_particles")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}", MFGSIM_TEST_VICTIM="20",
               MFGSIM_TEST_ONCE=str(tmp_path / "killed"))
    if always:
        env["MFGSIM_TEST_ALWAYS"] = "1"
    result = subprocess.run([sys.executable, "-m", "mfgsim.cli", "run", str(path), "--workers", "2", "--quiet",
                             "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "killed").exists()  # the fault did strike
    runs = pl.read_parquet(tmp_path / "out" / "tiny_particles" / "manifest.parquet")
    failed = runs.filter(pl.col("status") == "failed")
    if always:
        assert result.returncode == 1
        assert failed.height == 1 and failed["N"][0] == 20 and failed["seed"][0] == 0
        assert failed["error"][0] == "worker died twice: signal 9 (out of memory?)"
        assert (runs["status"] == "done").sum() == runs.height - 1
    else:
        assert result.returncode == 0, result.stderr
        assert (runs["status"] == "done").all()
    assert not (tmp_path / "out" / "tiny_particles" / ".running").exists()


def _suicide(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def _suicide_once(x, flag):
    if x == 3 and not Path(flag).exists():
        Path(flag).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_study_pool_survives_a_dead_worker_and_names_one_that_dies_twice(tmp_path):
    """The studies map their runs on the pool: the items lost with a dead worker are retried
    alone; an item that kills its worker twice stops the study with one clear error."""
    from mfgsim.engines import WorkerDied, make_engine

    flag = str(tmp_path / "once")
    with make_engine(2) as pool:
        assert list(pool.map(_suicide_once, range(6), [flag] * 6)) == [x * x for x in range(6)]
        with pytest.raises(WorkerDied, match=r"a worker died twice running _suicide on item 3 of 6: signal 9"):
            list(pool.map(_suicide, range(6)))


def test_seed_runs_warm_up_once_and_fall_back_to_runs_from_scratch(monkeypatch):
    """A loop's runs at fixed seeds start from warm-ups made on the first call (under another
    strategy here) and are the runs from scratch; where numba's generator cannot be saved,
    they run from scratch."""
    from concurrent.futures import ThreadPoolExecutor

    from mfg.closed_form import LQCrowding
    from mfg.laws import GaussianMixture
    from mfgsim import engines
    from simulator.agents import ExecutionCrowd, LatentLiquidity, MarketMakers
    from simulator.market import MarketSpec, WarmStartUnavailable, run_market

    model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GaussianMixture.normal(1.0, 0.2))
    spec = MarketSpec(T=1.0, dt=0.01, crowd=ExecutionCrowd(10, model, "mfg"), makers=MarketMakers(count=2),
                      latent=LatentLiquidity(deposit_rate=2.0, cancel_rate=0.1, band=50), warmup_steps=200,
                      record_every=10)
    twap = dataclasses.replace(spec, crowd=dataclasses.replace(spec.crowd, strategy="twap"))
    seeds = [3, 4]
    plain = [run_market(spec, seed) for seed in seeds]
    warmed = []

    def counting_warm_up(market, seed):
        warmed.append(seed)
        return warm_up(market, seed)

    def refuse(market, seed):
        raise WarmStartUnavailable("numba's random state does not have the layout simulator._generator copies")

    with ThreadPoolExecutor(2) as pool:
        monkeypatch.setattr(engines, "warm_up", counting_warm_up)
        loop = engines.SeedRuns(pool, seeds)
        loop(twap)
        warm = loop(spec)
        monkeypatch.setattr(engines, "warm_up", refuse)
        cold = engines.SeedRuns(pool, seeds)(spec)
    assert sorted(warmed) == seeds  # once per seed, on the first call
    for a, b, c in zip(plain, warm, cold):
        for run in (b, c):
            np.testing.assert_array_equal(a.market["mid"], run.market["mid"])
            np.testing.assert_array_equal(a.accounts_cash, run.accounts_cash)
