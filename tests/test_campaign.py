"""Campaigns end to end: CLI, storage layout, resume after SIGKILL, engines, bad files."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from analysis.readers import manifest, scan
from mfgsim import load_campaign, run_campaign
from mfgsim.cli import main
from mfgsim.config import ConfigError

from conftest import MARKET, NASH, PARTICLES, ROOT, assert_same_outputs, write

@pytest.mark.parametrize("text, name, tables", [
    (PARTICLES, "tiny_particles", {"agents", "market", "mfg", "summary"}),
    (MARKET, "tiny_market", {"agents", "market", "trades", "depth", "mfg", "summary"}),
    (NASH, "tiny_nash", {"summary"}),
])
def test_cli_run_and_report(tmp_path, capsys, text, name, tables):
    path = write(tmp_path, text, name)
    out_root = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out_root), "--workers", "1", "--quiet"]) == 0
    out = out_root / name
    assert {p.name for p in out.iterdir() if p.is_dir()} == tables
    man = manifest(out)
    assert man["status"].to_list() == ["done"] * man.height
    assert man.height == len(load_campaign(path).runs)
    # a user's plain scan works: integer hive keys, fixed schema
    summary = pl.scan_parquet(str(out / "summary" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert summary.schema["N"] == pl.Int64 and summary.schema["seed"] == pl.Int64
    assert sorted(summary["N"].unique().to_list()) == sorted(man["N"].unique().to_list())
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "slope" in printed and "wrote" in printed
    assert (out / "figures").is_dir()
    if name == "tiny_market":  # KS in the book: no -1/2 reference, its lattice floor instead
        assert "ks_max" in printed and "note: floor ~" in printed and "1/L lattice (L=20)" in printed


def test_shard_layout_and_schema(tmp_path):
    out = run_campaign(write(tmp_path, PARTICLES, "tiny_particles"), tmp_path / "out", workers=1, progress=False).folder
    shards = sorted((out / "agents").rglob("*.parquet"))
    assert len(shards) == 6
    assert all(p.parent.name.startswith("seed=") and p.parent.parent.name.startswith("N=") for p in shards)
    agents = scan(out, "agents").collect()
    assert agents.filter(pl.col("N") == 20).group_by("run_id", "step").len()["len"].unique().to_list() == [20]
    mfg = scan(out, "mfg").collect()
    assert mfg["w1"].min() > 0 and mfg["mf_mean_inventory"][0] == pytest.approx(1.0)


def test_resume_skips_finished_runs(tmp_path):
    path = write(tmp_path, PARTICLES, "tiny_particles")
    out = run_campaign(path, tmp_path / "out", workers=1, progress=False).folder
    victim = sorted((out / "summary").rglob("*.parquet"))[0]
    victim.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "summary").rglob("*.parquet")}
    time.sleep(0.05)
    run_campaign(path, tmp_path / "out", workers=1, progress=False)
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == s for p, s in stamps.items())  # the others were not redone


def test_sigkill_then_resume_gives_the_same_shards(tmp_path):
    text = PARTICLES.replace('[5, 20, 80]', '[5, 20, 80, 320, 1280]').replace("seeds = 2", "seeds = 3")
    text = text.replace("dt = 0.02", "dt = 0.002")
    path = write(tmp_path, text, "tiny_particles")
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "mfgsim.cli", "run", str(path), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd + ["--out", str(killed_root)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary_dir = killed_root / "tiny_particles" / "summary"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(summary_dir.rglob("*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-campaign
    proc.wait()
    done_before = len(list(summary_dir.rglob("*.parquet")))
    assert 3 <= done_before < 15, "the kill should land mid-campaign"
    run_campaign(path, killed_root, workers=1, progress=False)
    run_campaign(path, clean_root, workers=1, progress=False)
    assert_same_outputs(killed_root / "tiny_particles", clean_root / "tiny_particles")
    assert manifest(killed_root / "tiny_particles")["status"].to_list() == ["done"] * 15
    assert not list((killed_root / "tiny_particles").rglob("*.tmp"))


def test_one_two_workers_and_dask_give_identical_shards(tmp_path):
    pytest.importorskip("distributed")
    path = write(tmp_path, MARKET, "tiny_market")
    outs = []
    for label, kwargs in (("one", {"workers": 1}), ("two", {"workers": 2}), ("dask", {"workers": 2, "dask": "local"})):
        outs.append(run_campaign(path, tmp_path / label, progress=False, **kwargs).folder)
    assert_same_outputs(outs[0], outs[1])
    assert_same_outputs(outs[0], outs[2])


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path):
    text = PARTICLES.replace('[crowd]\nn_agents = 5', '[crowd]\nn_agents = 5\nstrategy = "mfg_fd"\n'
                                                      '[crowd.fd_grid]\nx_min = -1.5\nx_max = 2.5\nn_x = 60\nn_t = 25')
    text = text.replace('grid = { "crowd.n_agents" = [5, 20, 80] }', 'zip = { "crowd.fd_grid.x_min" = [-1.5, 0.9] }')
    out = run_campaign(write(tmp_path, text, "tiny_particles"), tmp_path / "out", workers=1, progress=False).folder
    man = manifest(out).sort("status")
    assert man["status"].to_list() == ["done", "done", "failed", "failed"]
    assert "widen the grid" in man.filter(pl.col("status") == "failed")["error"][0]


BAD = [
    ("[campaign\nkind = 1", "not valid TOML"),
    (PARTICLES.replace('kind = "particles"', 'kind = "particle"'), "campaign.kind"),
    (PARTICLES.replace("seeds = 2", "seeds = 0"), "campaign.seeds"),
    (PARTICLES.replace("seeds = 2", "sedes = 2"), "did you mean 'seeds'"),
    (PARTICLES.replace("dt = 0.02", "dt = 0.3"), r"particles\.dt=0\.3 is not allowed; must divide T=1\.0"),
    (PARTICLES.replace("kappa = 2.0", "kappa = -2.0"), "model.kappa"),
    (PARTICLES.replace("[crowd]\nn_agents = 5", "[crowd]\nn_agents = 5\nstrategy = \"vwap\""), "crowd.strategy"),
    (PARTICLES.replace('"crowd.n_agents" = [5, 20, 80]', '"crowd.n_agents" = [5, 0]'), "n_agents"),
    (PARTICLES.replace('"crowd.n_agents"', '"crowd.n_agent"'), "did you mean 'n_agents'"),
    (PARTICLES.replace('grid = {', 'zip = { "crowd.n_agents" = [1, 2], "particles.dt" = [0.02] }\ngrid = {'),
     "equal lengths"),
    (PARTICLES.replace('grid = { "crowd.n_agents" = [5, 20, 80] }', 'grid = { "crowd.n_agents" = [5, 5] }'),
     "duplicate runs"),
    (MARKET.replace("limit_rate = 40.0", "limt_rate = 40.0"), "did you mean 'limit_rate'"),
    (MARKET.replace("stop_at_target = false", 'stop_at_target = "no"'), "crowd.stop_at_target"),
    (MARKET.replace("limit_rate = 40.0", "limit_rate = -4.0"), r"market\.noise\.limit_rate"),
    (MARKET.replace("dt = 0.02", "dt = 0.02\nn_ticks = 40\ninitial_mid = 20"), "price grid too small"),
    (NASH.replace('"crowd.n_agents" = [2, 4, 8]', '"crowd.n_agents" = [1, 4]'), "crowd.n_agents"),
    (PARTICLES.replace("A = 10.0", "A = 1e5"), r"dt=0.02 is too large .* use dt <= 1e-05"),
    (PARTICLES.replace("A = 10.0", "A = 1e300"), "dt=0.02 is too large"),
    (MARKET.replace("A = 10.0", "A = 1e5"), "dt=0.02 is too large"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_malformed_campaign_files_fail_clearly_and_write_nothing(tmp_path, capsys, text, message):
    path = write(tmp_path, text, "bad")
    with pytest.raises(ConfigError, match=message):
        load_campaign(path)
    out_root = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out_root), "--quiet"]) == 2
    assert str(path) in capsys.readouterr().err
    assert not out_root.exists()


def test_python_api_with_an_existing_executor(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        out = run_campaign(write(tmp_path, NASH, "tiny_nash"), tmp_path / "out", engine=pool, progress=False).folder
    gaps = scan(out, "summary").collect().sort("N")
    for column in ("own_gain_gap_closed", "own_gain_gap_open", "value_gap_closed"):
        assert np.all(np.diff(gaps[column].to_numpy()) < 0)
    assert not np.allclose(gaps["own_gain_gap_closed"], gaps["own_gain_gap_open"], rtol=1e-3)


def test_an_output_folder_of_another_schema_version_is_refused(tmp_path, capsys):
    path = write(tmp_path, NASH, "tiny_nash")
    out = run_campaign(path, tmp_path / "out", workers=1, progress=False).folder
    man = pl.read_parquet(out / "manifest.parquet").with_columns(schema_version=pl.lit(0, dtype=pl.Int64))
    man.write_parquet(out / "manifest.parquet")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "schema version" in capsys.readouterr().err
    with pytest.raises(ValueError, match="schema version"):
        scan(out, "summary")


def test_adding_seeds_keeps_the_finished_runs(tmp_path):
    few = load_campaign(write(tmp_path, PARTICLES, "tiny_particles"))
    more = load_campaign(write(tmp_path, PARTICLES.replace("seeds = 2", "seeds = 3"), "tiny_particles"))
    assert {r.run_id for r in few.runs} < {r.run_id for r in more.runs}


def test_a_run_with_a_non_finite_summary_is_not_done(tmp_path, monkeypatch):
    import mfgsim.campaign

    real = mfgsim.campaign.compare_run

    def broken(result, model):
        rows, summary = real(result, model)
        return rows, {**summary, "cost_gap": float("nan")}

    monkeypatch.setattr(mfgsim.campaign, "compare_run", broken)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        out = run_campaign(write(tmp_path, PARTICLES, "tiny_particles"), tmp_path / "out", engine=pool,
                           progress=False).folder
    man = manifest(out)
    assert set(man["status"]) == {"failed"}
    assert "cost_gap=nan" in man["error"][0] and "not recorded as done" in man["error"][0]
    assert not list((out / "summary").rglob("*.parquet"))


def test_demo_campaigns_load_and_the_book_is_the_realistic_market(tmp_path):
    from mfgsim.build import build_run
    from mfgsim.demo import demo_campaigns

    particles, book = demo_campaigns(tmp_path)
    assert (particles.kind, book.kind) == ("particles", "market")
    assert len(particles.runs) == 60 and len(book.runs) == 30
    demo = build_run(json.loads(book.runs[0].config), "demo")["spec"]
    realistic = load_campaign(ROOT / "runs" / "realism_market.toml")
    market = build_run(json.loads(realistic.runs[0].config), "realism_market")["spec"]
    for part in ("noise", "makers", "latent", "meta_traders"):  # the populations of runs/realism_market.toml
        assert getattr(demo, part) == getattr(market, part), part
