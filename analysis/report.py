"""`mfgsim report OUTDIR`: the convergence table and the figures of a campaign.

The model and spec of a campaign's runs are rebuilt from the manifest's ``params`` by the
application that wrote them: the functions that need them take its ``build_run``
(``mfgsim.build.build_run``), so that this floor does not import the one above it.

Which metrics are fitted depends on the campaign's kind:

* particles: W1 (expected slope -1/2), KS, the mean-inventory error, |cost gap|;
* market: the same, plus the bias model W1 = b + C N^-r (the book's model error b);
* nash: the closed- and open-loop gaps of the own gain, the mean rate and the value
  (expected slope -1; see :class:`mfg.nash.NashGaps`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from .convergence import fit_power_law, fit_with_bias
from .readers import manifest, scan
from mfg.nash import NASH_GAP_COLUMNS

METRICS = {
    "particles": [("w1_mean", -0.5), ("ks_max", -0.5), ("mean_inventory_error", -0.5), ("abs_cost_gap", -0.5)],
    # KS in the book has no reference slope: it stops at the lattice floor (see lattice_ks_floor)
    "market": [("w1_mean", -0.5), ("ks_max", None), ("mean_inventory_error", -0.5)],
    "nash": [(column, -1.0) for column in NASH_GAP_COLUMNS],
}


# (resolved config, source) -> {"model": ..., "spec": ...}: how a campaign's runs are rebuilt
RunBuilder = Callable[[dict, str], dict]


@dataclass(frozen=True)
class Report:
    """A campaign's convergence table and the figures written.

    Attributes
    ----------
    kind : str
        The campaign's kind (particles, market, nash).
    table : polars.DataFrame
        One row per fitted metric: N range, runs, slope with its interval, the reference
        slope, the bias fit where one applies, a note and a floor.
    figures : tuple of pathlib.Path
        The figure files written (empty when figures were not asked for).
    """

    kind: str
    table: pl.DataFrame  # one row per fitted metric
    figures: tuple[Path, ...]


def convergence_table(outdir: str | Path, build_run: RunBuilder) -> tuple[str, pl.DataFrame, pl.DataFrame, dict]:
    """Fit every metric of the campaign's kind against N.

    Parameters
    ----------
    outdir : str or Path
        A campaign's output folder.
    build_run : callable
        Rebuilds a run's objects from its manifest ``params`` (see the module docstring).

    Returns
    -------
    tuple
        (kind, the per-run summary joined with N and seed, the fitted table,
        {metric: (PowerFit, BiasFit or None)}).
    """
    man = manifest(outdir)
    done = man.filter(pl.col("status") == "done")
    if done.is_empty():
        raise ValueError(f"{outdir}: no finished runs to report on")
    kinds = done["kind"].unique().to_list()
    if len(kinds) != 1:
        raise ValueError(f"{outdir}: mixed kinds {kinds}")
    kind = kinds[0]
    summary = (scan(outdir, "summary").collect()
               .join(done.select("run_id"), on="run_id", how="semi")
               .with_columns(abs_cost_gap=pl.col("cost_gap").abs()))
    rows, fits = [], {}
    notes, floors = {}, {}
    if kind == "market":
        floors["ks_max"], lots = lattice_ks_floor(outdir, build_run)
        notes["ks_max"] = (f"floor ~{floors['ks_max']:.3f}: inventories live on a 1/L lattice (L={lots}) and "
                           "m(t, .) is continuous, so KS stays near half the largest lattice-cell mass of m")
    for metric, reference in METRICS[kind]:
        values = summary[metric].to_numpy()
        if not np.isfinite(values).any():
            continue
        fit = fit_power_law(summary["N"].to_numpy(), values)
        row = {"metric": metric, "N_min": min(fit.n_values), "N_max": max(fit.n_values),
               "runs": int(np.isfinite(values).sum()), "slope": fit.slope, "slope_lo": fit.slope_ci[0],
               "slope_hi": fit.slope_ci[1], "reference_slope": reference,
               "bias": None, "bias_lo": None, "bias_hi": None, "rate": None, "note": notes.get(metric, ""),
               "floor": floors.get(metric)}
        bias = None
        if kind == "market" and metric == "w1_mean" and len(fit.n_values) >= 3:
            bias = fit_with_bias(summary["N"].to_numpy(), values)
            row.update(bias=bias.bias, bias_lo=bias.bias_ci[0], bias_hi=bias.bias_ci[1], rate=bias.rate)
        rows.append(row)
        fits[metric] = (fit, bias)
    return kind, summary, pl.DataFrame(rows), fits


def format_table(table: pl.DataFrame) -> str:
    """The convergence table as fixed-width text, one line per metric (notes below it).

    Parameters
    ----------
    table : polars.DataFrame
        As in :attr:`Report.table`.

    Returns
    -------
    str
    """
    lines = [f"{'metric':<22}{'N':>14}{'runs':>6}  {'slope [95% CI]':<28}{'ref':>6}  bias b [95% CI], rate r"]
    for r in table.iter_rows(named=True):
        slope = f"{r['slope']:+.3f} [{r['slope_lo']:+.3f}, {r['slope_hi']:+.3f}]"
        bias = (f"{r['bias']:.4f} [{r['bias_lo']:.4f}, {r['bias_hi']:.4f}], r={r['rate']:.2f}"
                if r["bias"] is not None else "")
        ref = f"{r['reference_slope']:>6.2f}" if r["reference_slope"] is not None else f"{'-':>6}"
        lines.append(f"{r['metric']:<22}{r['N_min']:>6}..{r['N_max']:<6}{r['runs']:>6}  {slope:<28}{ref}  {bias}")
        if r["note"]:
            lines.append(f"{'':<22}  note: {r['note']}")
    return "\n".join(lines)


def _largest_run(outdir: Path, build_run: RunBuilder) -> tuple[int, int, dict]:
    """(N, first seed, objects) of the campaign's largest finished N."""
    man = manifest(outdir).filter(pl.col("status") == "done")
    n_max = int(man["N"].max())
    largest = man.filter(pl.col("N") == n_max).sort("seed")
    return n_max, int(largest["seed"][0]), build_run(json.loads(largest["params"][0]), str(outdir))


def lattice_ks_floor(outdir: str | Path, build_run: RunBuilder) -> tuple[float, int]:
    """The KS floor of a book campaign.

    Inventories are multiples of 1/L, so the empirical CDF jumps by the mass of a lattice
    cell at each lattice point while the law's CDF is continuous; however large N, KS stays
    near half the largest jump. The floor is half the largest cell mass
    ``F(x + 1/2L) - F(x - 1/2L)`` of m(t, .) over lattice points x and recorded times t (an
    estimate: the empirical jumps scatter around it).

    Parameters
    ----------
    outdir : str or os.PathLike
        A book campaign's output folder.
    build_run : callable
        Rebuilds a run's objects from its manifest ``params``.

    Returns
    -------
    (floor, lots_per_unit) : tuple of (float, int)
    """
    _, _, objects = _largest_run(Path(outdir), build_run)
    spec, model = objects["spec"], objects["model"]
    lots = spec.crowd.lots_per_unit
    largest = 0.0
    for t in np.arange(0, spec.n_steps + 1, spec.record_every) * spec.dt:
        law = model.law(float(t))
        reach = 6 * np.sqrt(law.variance) + 1.0 / lots
        points = np.arange(np.floor((law.mean - reach) * lots), np.ceil((law.mean + reach) * lots) + 1) / lots
        largest = max(largest, float(np.max(law.cdf(points + 0.5 / lots) - law.cdf(points - 0.5 / lots))))
    return largest / 2, lots


def report(outdir: str | Path, build_run: RunBuilder, figures: bool = True) -> Report:
    """Fit the convergence table of a campaign and write its figures to OUTDIR/figures.

    Parameters
    ----------
    outdir : str or Path
        A campaign's output folder.
    build_run : callable
        Rebuilds a run's objects from its manifest ``params`` (see the module docstring).
    figures : bool
        Write the figures (PNG and PDF); False fits the table only.

    Returns
    -------
    Report
    """
    from .figures import (plot_convergence, plot_density_heatmaps, plot_inventory_paths, plot_law_vs_histogram,
                          plot_market_table, save_figure)

    outdir = Path(outdir)
    kind, summary, table, fits = convergence_table(outdir, build_run)
    written: list[Path] = []
    if not figures:
        return Report(kind, table, ())
    fig_dir = outdir / "figures"
    for row in table.iter_rows(named=True):
        metric = row["metric"]
        fit, bias = fits[metric]
        fig = plot_convergence(summary["N"].to_numpy(), summary[metric].to_numpy(), fit, metric=metric,
                               reference_slope=row["reference_slope"], bias_fit=bias,
                               floor=row["floor"])
        written += save_figure(fig, fig_dir / f"convergence_{metric}")
    if kind == "nash":
        return Report(kind, table, tuple(written))
    n_max, first_seed, objects = _largest_run(outdir, build_run)
    model = objects["model"]
    mfg = scan(outdir, "mfg").filter(pl.col("N") == n_max).collect().sort("seed", "t")
    paths = np.stack([g["mean_inventory"].to_numpy() for _, g in mfg.group_by("seed", maintain_order=True)])
    t = mfg.filter(pl.col("seed") == first_seed)["t"].to_numpy()
    written += save_figure(plot_inventory_paths(t, paths, model.mean_inventory(t),
                                                source=f"N={n_max}, {paths.shape[0]} seeds"),
                           fig_dir / "inventory_paths")
    agents = (scan(outdir, "agents").filter((pl.col("N") == n_max) & (pl.col("seed") == first_seed)).collect()
              if (outdir / "agents").is_dir() else pl.DataFrame())
    if agents.height:
        shown = agents["agent"].n_unique()
        source = f"N={n_max}, seed {first_seed}" + (f", {shown} of {n_max} agents" if shown < n_max else "")
        lattice = 1.0 / objects["spec"].crowd.lots_per_unit if kind == "market" else None
        samples = [agents.filter(pl.col("t") == s)["inventory"].to_numpy() for s in t]
        laws = [model.law(float(s)) for s in t]
        three = [0, len(t) // 2, len(t) - 1]
        written += save_figure(plot_law_vs_histogram([t[i] for i in three], [samples[i] for i in three],
                                                     [laws[i] for i in three], lattice=lattice, source=source),
                               fig_dir / "law_vs_histogram")
        written += save_figure(plot_density_heatmaps(t, samples, laws, lattice=lattice, source=source),
                               fig_dir / "density_heatmaps")
    if kind == "market":
        market = scan(outdir, "market").filter((pl.col("N") == n_max) & (pl.col("seed") == first_seed)).collect()
        written += save_figure(plot_market_table(market.sort("t"), source=f"N={n_max}, seed {first_seed}"),
                               fig_dir / "market")
    return Report(kind, table, tuple(written))
