"""The scripting API (a campaign from a dict, its handle), the examples at tiny sizes, and
output names that must stay inside the output root."""

import json
import runpy
import sys
import tomllib

import polars as pl
import pytest

import mfgsim
from analysis.schemas import TABLES
from mfg.validation import InvalidValue, plain_name
from mfgsim.cli import main

from conftest import NASH, PARTICLES, ROOT, write


def test_a_campaign_from_a_dict_gives_the_same_runs_and_shards_as_its_file(tmp_path):
    data = tomllib.loads(PARTICLES)
    from_file = mfgsim.run_campaign(write(tmp_path, PARTICLES, "tiny_particles"), tmp_path / "file", workers=1,
                                    progress=False)
    from_dict = mfgsim.run_campaign(data, tmp_path / "dict", workers=1, progress=False)
    assert data == tomllib.loads(PARTICLES)  # the caller's dict is not changed
    assert from_dict.folder == tmp_path / "dict" / "tiny_particles"
    ids = [sorted(out.manifest()["run_id"]) for out in (from_file, from_dict)]
    assert ids[0] == ids[1] and len(ids[0]) == 6
    summary = from_dict.scan("summary")
    assert isinstance(summary, pl.LazyFrame)
    assert dict(summary.collect_schema()) == {**dict(TABLES["summary"]), "N": pl.Int64, "seed": pl.Int64}
    assert from_file.scan("summary").collect().sort("run_id").equals(
        summary.collect().sort("run_id"))
    table = from_dict.report(figures=False).table
    assert "w1_mean" in table["metric"].to_list() and from_dict.failed == 0


def test_a_dict_campaign_must_name_its_folder_and_is_checked_like_a_file():
    data = tomllib.loads(PARTICLES)
    del data["campaign"]["name"]
    with pytest.raises(mfgsim.ConfigError, match=r"<dict>: campaign.name is missing"):
        mfgsim.load_campaign(data)
    data["campaign"]["name"] = "x"
    data["crowd"]["n_agents"] = 0
    data.pop("sweep")
    with pytest.raises(mfgsim.ConfigError,
                       match=r"<dict>: crowd.n_agents=0 is not allowed; must be an integer in \[1, 1000000000\]"):
        mfgsim.load_campaign(data)


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", "a\\b", ".hidden", "", "nul\0"])
def test_names_that_would_escape_the_output_root_are_refused(tmp_path, capsys, name):
    """`name = ".."` once put the manifest in the parent of --out; now every command refuses it."""
    root = tmp_path / "root" / "out"
    path = tmp_path / "bad.toml"
    path.write_text(NASH.replace('name = "tiny_nash"', f"name = {json.dumps(name)}"))  # a TOML basic string
    assert main(["run", str(path), "--out", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "campaign.name=" in err and "is not allowed; expected one plain folder name" in err
    assert not (tmp_path / "root").exists()


def test_study_names_follow_the_same_rule(tmp_path, capsys):
    text = (ROOT / "runs" / "experiment_d_makers.toml").read_text().replace("[study]\n", '[study]\nname = ".."\n')
    path = write(tmp_path, text, "makers")
    assert main(["makers", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "study.name='..' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plain_name_accepts_ordinary_names():
    for name in ("experiment_a", "demo-book", "N=3", "run 1", "ünïcode"):
        assert plain_name("name", name) == name
    with pytest.raises(InvalidValue, match="name='..' is not allowed"):
        plain_name("name", "..")


EXAMPLES = ROOT / "examples"


# what each example prints when it has done its job
EXPECTED = {"sweep_from_python.py": "6 runs in", "read_outputs.py": "wrote",
            "populations_in_the_book.py": "shares and cash conserved in every run",
            "solve_and_compare.py": "log-log slope"}


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_runs_at_a_tiny_size(tmp_path, monkeypatch, capsys, script):
    """Each example runs as a user would run it (``python examples/X.py``), at its --tiny size."""
    monkeypatch.chdir(tmp_path)
    sweep = ["--tiny", "--out", str(tmp_path / "out"), "--workers", "1"]
    if script == "read_outputs.py":  # it reads what the sweep example writes
        runpy.run_path(str(EXAMPLES / "sweep_from_python.py"))["main"](sweep)
    argv = {"sweep_from_python.py": sweep, "read_outputs.py": [str(tmp_path / "out" / "example_sweep")]}
    monkeypatch.setattr(sys, "argv", [script, *argv.get(script, ["--tiny"])])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert EXPECTED[script] in capsys.readouterr().out
    if script == "read_outputs.py":
        assert (tmp_path / "out" / "example_sweep" / "example_w1.png").stat().st_size > 0


def test_the_readme_links_every_example():
    readme = (ROOT / "README.md").read_text()
    for path in EXAMPLES.glob("*.py"):
        assert f"examples/{path.name}" in readme, path.name
