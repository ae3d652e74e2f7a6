"""The ``mfgsim`` command line.

    mfgsim demo                   small experiments (a) and (c) end to end
    mfgsim run CAMPAIGN.toml      run a campaign (resumable) -> Parquet shards
    mfgsim report OUTDIR          convergence table and figures
    mfgsim calibrate CONFIG.toml  impact from the book -> MFG -> book, to a fixed point
    mfgsim learn CONFIG.toml      agents who only see the book learn its mean-field equilibrium
    mfgsim impact CONFIG.toml     meta-order impact laws: square root, decay
    mfgsim realism OUTDIR         stylized facts of a book campaign against the literature
    mfgsim makers CONFIG.toml     experiment (d): N market makers in the book against their MFG
    mfgsim solve CONFIG.toml      solve a mean-field game, write Parquet and a figure
    mfgsim --version
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from analysis.figures import plot_market_making, plot_realism, plot_solution, save_figure
from analysis.readers import manifest
from analysis.realism import memory_estimate as realism_memory_estimate
from analysis.realism import realism_table
from analysis.report import format_table
from mfg.fd import LQCrowdingModel, MFGConvergenceError, solve
from mfg.io import atomic_write
from mfg.market_making import solve_market_making

from .campaign import CampaignOutput, run_campaign
from .config import ConfigError, check_memory, parse_solve_config, read_toml
from .demo import demo_campaigns
from .engines import EngineError, WorkerDied
from .io import OutputError, check_writable
from .specs import load_campaign
from .studies import calibration, impact, learning, makers


def _version() -> str:
    try:
        return version("mfgsim")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``mfgsim`` argument parser with all its subcommands.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="mfgsim",
        description="Agent-based limit-order-book simulator that checks mean-field-game limits.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mfgsim {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    solve = sub.add_parser(
        "solve", help="solve a mean-field game given in TOML",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Solve a mean-field game with the finite-difference HJB-FP solver and write\n"
            "  OUT/solution.parquet  long table: type, t, x, m, V (cost to go), control\n"
            "  OUT/solution.pdf/png  density, control and mean inventory\n"
            "OUT is [output].dir, or runs/out/<config name>. For the LQ crowding model the\n"
            "closed form is solved too and the errors are printed.\n\n"
            "example: mfgsim solve runs/solve_lq_crowding.toml"),
    )
    solve.add_argument("config", help="TOML file with [model], [grid], optional [solver] and [output]")
    solve.add_argument("--out", help="output folder (overrides [output].dir)")
    solve.set_defaults(func=_cmd_solve)

    run = sub.add_parser(
        "run", help="run a campaign (a sweep of simulations) given in TOML, or a study/calibration file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run every unfinished run of a campaign and write Parquet shards to\n"
            "  OUT/<campaign>/<table>/N=<n>/seed=<s>/<run_id>.parquet  (tables: agents, market,\n"
            "  trades, mfg, summary) and OUT/<campaign>/manifest.parquet.\n"
            "Runs whose summary shard exists are skipped: rerun the same command to resume a\n"
            "campaign that was interrupted (Ctrl-C keeps the finished runs). One process writes a\n"
            "campaign folder at a time. The agents table keeps [campaign] agents_kept agents per\n"
            "run (default 1000). Read the output with `mfgsim report` or Polars:\n"
            "  pl.scan_parquet('runs/out/NAME/summary/**/*.parquet', hive_partitioning=True)\n\n"
            "examples:\n"
            "  mfgsim run runs/experiment_a_particles.toml --workers 2\n"
            "  mfgsim run runs/experiment_c_book.toml --dask local\n"
            "Study, calibration and learning files (experiment (d), impact, closed loop, learn_*) run\n"
            "as `mfgsim makers`, `mfgsim impact`, `mfgsim calibrate` or `mfgsim learn` would:\n"
            "  mfgsim run runs/experiment_d_makers.toml"),
    )
    run.add_argument("campaign", help="campaign, study, calibration or learning TOML file (see runs/)")
    _engine_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="convergence table and figures of a campaign's output folder",
                         description="Fit the finite-N vs mean-field metrics against N (log-log, bootstrap "
                                     "intervals over seeds; b + C N^-r for the book) and write the figures "
                                     "to OUTDIR/figures.")
    rep.add_argument("outdir", help="a campaign output folder, e.g. runs/out/experiment_a_particles")
    rep.add_argument("--no-figures", action="store_true", help="print the table only")
    rep.set_defaults(func=_cmd_report)

    _config_command(
        sub, "calibrate", _cmd_calibrate, "calibration TOML file (see runs/closed_loop.toml)",
        "close the loop: impact measured from the book -> MFG -> book, to a fixed point",
        "Start from the model's (kappa, k, c, rho); run the book with the crowd on that model's MFG\n"
        "feedback over several seeds; estimate the parameters the config names from the book; take\n"
        "a damped step towards the estimates; repeat until they change by less than tol. Writes\n"
        "OUT/<name>/calibration.parquet (one row per iteration, written as each ends),\n"
        "meta_orders.parquet and figures. With model = \"measured\" the book's own primitives are fed\n"
        "back instead (held_out.parquet, scaling*.parquet); with population = \"makers\" its fill\n"
        "table (fill_tables.parquet, scaling.parquet). Exit code 1 when a point does not converge or\n"
        "a headline estimate is NaN.\n\n"
        "example: mfgsim calibrate runs/closed_loop.toml")
    _config_command(
        sub, "learn", _cmd_learn, "learning TOML file (see runs/learn_executors.toml)",
        "agents who only see the book learn its mean-field equilibrium, round by round",
        "Rounds of trading in the book. After each round the learners update what they believe\n"
        "from the rounds so far -- the crowd's mean trading rate (fictitious play's average) and the\n"
        "market's primitives (propagator, temporary cost) -- and best-respond to it by an HJB solve.\n"
        "No agent is given the MFG. Per round: the learned policy against the MFG solved on the\n"
        "learners' own primitives, and the exploitability measured in the book (deviators who\n"
        "best-respond to the population, their gain with a 95% interval). Writes\n"
        "OUT/<name>/learning.parquet (one row per round, written as each ends) and the figure\n"
        "learning. Exit code 1 when the learning diverges (the rounds so far are kept).\n"
        "With population = \"makers\" the makers learn their quotes on the tick lattice: from the\n"
        "book's fill table and the population's mean quote (learner = \"model\"), or by bandits on\n"
        "their own P&L per tick level (learner = \"bandit\"); see runs/learn_makers.toml.\n\n"
        "example: mfgsim learn runs/learn_executors.toml")
    _config_command(
        sub, "impact", _cmd_impact, "study TOML file (see runs/impact_square_root.toml)",
        "meta-order impact laws of one or more books: square-root exponent and decay",
        "For each book of the study, TWAP meta-orders of each size are executed over [0, T]\n"
        "and the market runs on; peak impact is fitted against the participation Q/V on\n"
        "log-log axes (bootstrap interval over seeds) and the relaxation after the end as\n"
        "f + (1 - f) exp(-rho t). Writes OUT/<name>/impact_sizes.parquet, impact_laws.parquet\n"
        "and the figures impact_law and impact_decay.\n\n"
        "example: mfgsim impact runs/impact_square_root.toml")

    real = sub.add_parser(
        "realism", help="stylized facts of a book campaign's market against the literature's ranges",
        description="Spread, return kurtosis over 1/10/100 records, trade-sign memory, volatility clustering, "
                    "signature plot, depth profile and price response of the runs at one N (default: the "
                    "largest), pooled over seeds, each beside the range reported for real markets "
                    "(sources in analysis.realism). Keep trades (keep_trades = true) for the sign memory; "
                    "without them each record's net flow sign stands in. Writes OUTDIR/figures/realism.")
    real.add_argument("outdir", help="a market campaign's output folder")
    real.add_argument("--N", type=int, default=None, help="the N whose runs to pool (default: the largest)")
    real.set_defaults(func=_cmd_realism)

    _config_command(
        sub, "makers", _cmd_makers, "study TOML file (see runs/experiment_d_makers.toml)",
        "experiment (d): N market makers in the book against their mean-field game",
        "N makers quote the market-making MFG's equilibrium quotes in a book whose flow scales\n"
        "with N (the makers' fill intensity first fitted to the book with fit_intensity, and\n"
        "their competition with fit_competition); their inventory law (W1), mean quote, spread\n"
        "and P&L are compared with the MFG's and fitted against N, and the book's fill\n"
        "sensitivity to a maker's relative quote is measured against the model's k + eps.\n"
        "Writes OUT/<name>/makers_runs.parquet, makers_fits.parquet and figures.\n\n"
        "example: mfgsim makers runs/experiment_d_makers.toml")

    demo = sub.add_parser("demo", help="small versions of experiments (a) particles and (c) the book, end to end",
                          description="Runs two small campaigns on the local process pool (under half a "
                                      "minute on 2 cores once the kernels are compiled), prints their convergence "
                                      "tables and where the figures are.")
    demo.add_argument("--out", default="runs/out/demo", help="output root (default runs/out/demo)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _config_command(sub, name: str, func, config_help: str, help_line: str, description: str) -> None:
    """A command that reads one TOML file and runs on an engine (pool or Dask)."""
    parser = sub.add_parser(name, help=help_line, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help=config_help)
    _engine_arguments(parser)
    parser.set_defaults(func=func)


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/out", help="output root (default runs/out)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the local pool, or of the local Dask cluster with --dask local "
                             "(default: all cores)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run on Dask distributed: a scheduler address (its workers run; no --workers), "
                             "or 'local' for a local cluster")


def _cmd_run(args) -> int:
    data = read_toml(args.campaign).data
    if "campaign" not in data and "grid" in data:
        print(f"mfgsim run: {args.campaign} is a mean-field solve file; run `mfgsim solve {args.campaign}`",
              file=sys.stderr)
        return 2
    routed = study_command(data)
    if routed is not None:  # a study or calibration file: run it as its own command would
        name, func = routed
        print(f"{args.campaign}: a {name} file; running `mfgsim {name}`")
        args.config = args.campaign
        return func(args)
    campaign = load_campaign(args.campaign)
    out = run_campaign(campaign, args.out, workers=args.workers, dask=args.dask, progress=not args.quiet).folder
    return _print_status(out)


def study_command(data: dict):
    """The study command of a file that is not a campaign, from its top-level tables.

    Parameters
    ----------
    data : dict
        The file's parsed TOML.

    Returns
    -------
    tuple of (str, callable) or None
        (command, function); None for a campaign (the campaign loader reports what a
        campaign lacks).
    """
    if "campaign" in data:
        return None
    if "calibration" in data:
        return "calibrate", _cmd_calibrate
    if "learning" in data:
        return "learn", _cmd_learn
    study = data.get("study")
    if isinstance(study, dict):
        if "n_makers" in study:
            return "makers", _cmd_makers
        if "sizes" in study:
            return "impact", _cmd_impact
    return None


def _print_status(out) -> int:
    man = manifest(out)
    failed = man.filter(man["status"] == "failed")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
    print(f"{out}: {man.height - failed.height} runs done, {failed.height} failed; {shown} on disk")
    for row in failed.head(5).iter_rows(named=True):
        print(f"  failed N={row['N']} seed={row['seed']}: {row['error']}")
    return 1 if failed.height else 0


def _cmd_report(args) -> int:
    rep = CampaignOutput(Path(args.outdir)).report(figures=not args.no_figures)
    print(f"{args.outdir} ({rep.kind})")
    print(format_table(rep.table))
    for path in rep.figures:
        print(f"wrote {path}")
    return 0


def _study(module, args):
    """Load a study file, refuse an output folder that cannot be written before any run,
    run it on the engine the arguments name and write it: (result, folder)."""
    study = module.load(args.config)
    check_writable(Path(args.out) / study.name, "study output folder")
    result = module.run(study, workers=args.workers, dask=args.dask)
    return result, module.write(result, args.out)


def _cmd_calibrate(args) -> int:
    plan = calibration.load(args.config)
    out = check_writable(Path(args.out) / plan.name, "study output folder")
    # every iteration goes to disk as it is made: a loop that dies keeps what it did
    result = calibration.run(plan, workers=args.workers, dask=args.dask, checkpoint=out)
    out = calibration.write(result, args.out)
    print(calibration.summary_text(result))
    print(f"wrote {out / 'calibration.parquet'} and figures in {out}")
    status = _headline("calibrate", calibration.missing_estimates(result))
    return 0 if result.converged and status == 0 else 1


def _cmd_learn(args) -> int:
    plan = learning.load(args.config)
    out = check_writable(Path(args.out) / plan.name, "study output folder")
    # every round goes to disk as it ends: a run that diverges or dies keeps what it learned
    result = learning.run(plan, workers=args.workers, dask=args.dask, checkpoint=out)
    out = learning.write(result, args.out)
    print(learning.summary_text(result))
    print(f"wrote {out / 'learning.parquet'} and the figure learning in {out}")
    if result.diverged:
        print(f"mfgsim learn: the learning diverged at round {result.rows[-1]['round']} (policy error "
              f"{result.rows[-1]['policy_error']:.3g} > learning.max_policy_error); lower learning.averaging "
              "or use \"fictitious\"", file=sys.stderr)
        return 1
    return 0


def _cmd_impact(args) -> int:
    result, out = _study(impact, args)
    print(impact.format_laws(result.laws))
    print(f"wrote {out / 'impact_sizes.parquet'}, {out / 'impact_laws.parquet'} and figures in {out}")
    return _headline("impact", [f"the impact exponent of book {r['book']} could not be computed ({r['note'] or 'NaN'})"
                                "; raise the seeds or widen the sizes" for r in result.laws
                                if not math.isfinite(r["impact_exponent"])])


def _cmd_realism(args) -> int:
    check_memory(realism_memory_estimate(args.outdir, args.N), str(args.outdir),
                 f"the market, trades and depth tables at N={args.N or 'the largest N'}",
                 "choose a smaller N (--N), or keep fewer records or trades in the campaign")
    facts, table = realism_table(args.outdir, args.N)
    print(f"{'fact':<46}{'run':>10}   {'literature':<16}{'':<8}source")
    for r in table.iter_rows(named=True):
        verdict = "inside " if r["inside"] else "OUTSIDE" if r["available"] else "n/a    "
        bounds = f"[{r['low']:g}, {r['high']:g}]"
        print(f"{r['fact']:<46}{r['value']:>10.3g}   {bounds:<16}{verdict} {r['source']}")
    if not table["available"].all():
        print("n/a: the runs are too short or recorded too sparsely (use record_every = 1 and a few "
              "thousand records per run, as runs/realism_book.toml does)")
    for path in save_figure(plot_realism(facts), Path(args.outdir) / "figures" / "realism"):
        print(f"wrote {path}")
    one_sided = facts["one_sided_share"]
    if one_sided > 0:
        print(f"the book had an empty side at {100 * one_sided:.2g}% of the records (no spread there, and a stale "
              "mid): these are not the statistics of a two-sided market beyond 1%. Deepen the book: raise "
              "market.noise.limit_rate, market.latent.deposit_rate or market.makers.count, or lower the market "
              "orders (market.noise.market_rate, market.meta_traders.child_rate)", file=sys.stderr)
    return 1 if one_sided > 0.01 else 0


def _cmd_makers(args) -> int:
    result, out = _study(makers, args)
    fits, runs = result.fits, result.runs
    print(f"{'metric':<20}{'slope [95% CI]':<28}{'at max N':>10}  bias b, rate r")
    for f in fits:
        bias = f"b={f['bias']:.4g}, r={f['rate']:.2f}" if f["bias"] is not None else ""
        print(f"{f['metric']:<20}{f['slope']:+.3f} [{f['slope_lo']:+.3f}, {f['slope_hi']:+.3f}]    "
              f"{f['value_at_max_N']:>10.4g}  {bias}")
    largest = runs.filter(runs["N"] == runs["N"].max())
    print(f"at N={int(largest['N'][0])}: spread {largest['spread'].mean():.3f} ticks (MFG "
          f"{largest['mf_spread'].mean():.3f}), P&L per maker {largest['pnl'].mean():.3f} (MFG "
          f"{largest['mf_pnl'].mean():.3f}) ticks per quote unit")
    f = fits[0]
    if len(f["fill_intensity_path"]) > 1:
        print("fill intensity A fitted to the book: " + " -> ".join(f"{a:.4g}" for a in f["fill_intensity_path"]))
        if f["competition_path"][-1] != f["competition_path"][0]:
            print("competition eps fitted to the book: " + " -> ".join(f"{e:.4g}" for e in f["competition_path"]))
    print(f"fill sensitivity to the quote relative to the others' (per tick): book {f['book_sensitivity']:.3f} "
          f"+- {f['book_sensitivity_se']:.3f}, model k + eps = {f['model_sensitivity']:.3f}")
    print(f"wrote {out / 'makers_runs.parquet'}, {out / 'makers_fits.parquet'} and figures in {out}")
    missing = [f"the makers' {f['metric']} against N could not be fitted (slope {f['slope']}); raise the seeds or "
               "the range of N" for f in fits if not math.isfinite(f["slope"])]
    if not math.isfinite(f["book_sensitivity"]):
        missing.append("the book's fill sensitivity could not be fitted (the makers' quotes did not vary or nobody "
                       "was filled); raise the seeds or the flow (market.noise.market_rate)")
    return _headline("makers", missing)


def _headline(command: str, missing: list[str]) -> int:
    """Exit 1, one line each on stderr, when a study's headline figures could not be computed
    (its outputs are written: the numbers that exist are kept)."""
    for line in missing:
        print(f"mfgsim {command}: {line}", file=sys.stderr)
    return 1 if missing else 0


def _cmd_demo(args) -> int:
    status = 0
    for campaign in demo_campaigns(args.out):
        output = run_campaign(campaign, args.out, workers=args.workers)
        status |= _print_status(output.folder)
        print(format_table(output.report().table))
        print(f"figures: {output.folder / 'figures'}\n")
    return status


def _cmd_solve(args) -> int:
    cfg = parse_solve_config(args.config)
    out = check_writable(Path(args.out) if args.out else cfg.out_dir)
    if cfg.n_t is not None:
        return _solve_market_making(cfg, out)
    try:
        sol = solve(cfg.model, cfg.grid, method=cfg.method, damping=cfg.damping, tol=cfg.tol, max_iter=cfg.max_iter,
                    order=cfg.order)
    except (MFGConvergenceError, ValueError) as exc:
        print(f"mfgsim solve: {exc}", file=sys.stderr)
        return 1
    # the closed form solves the quadratic cost only
    reference = (cfg.model.closed_form if isinstance(cfg.model, LQCrowdingModel) and cfg.model.cost_exponent == 2.0
                 else None)
    parquet = sol.write_parquet(out / "solution.parquet")
    figures = save_figure(plot_solution(sol, reference), out / "solution")
    print(f"converged: {len(sol.residuals)} {sol.method} iterations, {sol.evaluations} HJB-FP sweeps, fixed-point "
          f"residual {sol.residuals[-1]:.2e}, {sol.seconds:.2f} s; mass error {np.max(np.abs(sol.mass() - 1)):.1e}")
    if reference is not None:
        t = cfg.grid.t
        err_E = np.max(np.abs(sol.mean_inventory() - reference.mean_inventory(t)))
        err_mu = np.max(np.abs(sol.mean_rate - reference.mean_rate(t[:-1])))
        scale = np.max(np.abs(reference.mean_rate(t[:-1])))
        print(f"vs closed form (exact LQ solution, at the grid times): max |E_fd - E| = {err_E:.3e} "
              f"(mean inventory); max |mu_fd - mu| = {err_mu:.3e} shares/time over the {cfg.grid.n_t} steps, "
              f"{err_mu / scale:.2%} of max |mu|; "
              + ("first-order scheme: errors halve with the grid" if cfg.order == 1
                 else "second order (Richardson): errors fall 4x when the grid halves"))
    print(f"wrote {parquet}")
    for f in figures:
        print(f"wrote {f}")
    return 0


def _solve_market_making(cfg, out) -> int:
    try:
        sol = solve_market_making(cfg.model, n_t=cfg.n_t, tol=cfg.tol, max_iter=cfg.max_iter, damping=cfg.damping,
                                  method=cfg.method)
    except (RuntimeError, ValueError) as exc:
        print(f"mfgsim solve: {exc}", file=sys.stderr)
        return 1
    parquet = atomic_write(out / "solution.parquet", sol.to_polars().write_parquet)
    figures = save_figure(plot_market_making(sol), out / "solution")
    Q = cfg.model.max_inventory
    print(f"converged: {len(sol.residuals)} {cfg.method} iterations, {sol.jump_solution.evaluations} HJB-law sweeps, "
          f"{sol.jump_solution.seconds:.3f} s, residual {sol.residuals[-1]:.2e} "
          f"(mean quotes, ticks); mean spread at t=0 {sol.spread()[0]:.4f} ticks, quotes at q=0: "
          f"bid {sol.bid[0, Q]:.4f}, ask {sol.ask[0, Q]:.4f}; mean inventory at T {sol.mean_inventory()[-1]:+.2e}")
    print(f"wrote {parquet}")
    for f in figures:
        print(f"wrote {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Every expected failure is one line on stderr and exit code 2 (1: a computation that did
    not converge or runs that failed; 130: interrupted).

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error(f"--workers={args.workers} must be >= 1")
    if os.environ.get("MFGSIM_TRACEBACK"):  # for debugging mfgsim itself: full tracebacks
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mfgsim {args.command}: interrupted; finished work is kept (rerun the same command to resume)",
              file=sys.stderr)
        return 130
    except (ConfigError, OutputError, EngineError, WorkerDied, ValueError, FileNotFoundError) as exc:
        print(f"mfgsim {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: say so in one line, not a traceback
        print(f"mfgsim {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
