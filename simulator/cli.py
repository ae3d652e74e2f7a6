"""The ``mfgsim`` command line.

    mfgsim solve CONFIG.toml      solve a mean-field game, write Parquet and a figure
    mfgsim --version
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("mfgsim")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def _cmd_solve(args) -> int:
    from pathlib import Path

    import numpy as np

    from mfg.fd import LQCrowdingModel, MFGConvergenceError, solve

    from .config import ConfigError, parse_solve_config

    try:
        cfg = parse_solve_config(args.config)
    except (ConfigError, ValueError) as exc:
        print(f"mfgsim solve: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else cfg.out_dir
    try:
        sol = solve(cfg.model, cfg.grid, method=cfg.method, damping=cfg.damping, tol=cfg.tol, max_iter=cfg.max_iter)
    except (MFGConvergenceError, ValueError) as exc:
        print(f"mfgsim solve: {exc}", file=sys.stderr)
        return 1
    from analysis.figures import plot_solution, save_figure

    reference = cfg.model.closed_form if isinstance(cfg.model, LQCrowdingModel) else None
    parquet = sol.write_parquet(out / "solution.parquet")
    figures = save_figure(plot_solution(sol, reference), out / "solution")
    print(f"converged: {sol.iterations} iterations ({sol.method}), residual {sol.residuals[-1]:.2e}, "
          f"{sol.seconds:.2f} s; mass error {np.max(np.abs(sol.mass() - 1)):.1e}")
    if reference is not None:
        t = cfg.grid.t
        print(f"vs closed form: max |E error| {np.max(np.abs(sol.mean_inventory() - reference.mean_inventory(t))):.3e}, "
              f"max |mu error| {np.max(np.abs(sol.mean_rate - reference.mean_rate(t[:-1]))):.3e}")
    print(f"wrote {parquet}")
    for f in figures:
        print(f"wrote {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
