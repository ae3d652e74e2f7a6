"""`mfgsim impact CONFIG.toml`: meta-order impact laws of one or more books.

For every book of the study (a noise flow, optionally a latent order book), a crowd of
``agents`` TWAP sellers trades meta-orders of each size over [0, T] and stops; the market
then runs ``post_steps`` more steps. Over ``seeds`` runs per size the study measures

* the peak impact I(Q) at the end of the execution (ticks, in the direction of trading)
  against the participation Q/V (V: the rest of the market's volume over the execution),
  fitted as I ∝ (Q/V)^δ with a bootstrap interval over seeds (the square-root law: δ = 1/2),
  and the local exponent between each size and the next (``local_slope``);
* the relaxation after the end, I(t)/I_peak = f + (1 - f) e^{-ρt}, pooled over sizes
  (ρ: the book's resilience, 1/ρ its decay time), and the permanent fraction, the impact
  a long relaxation after the end over the peak.

Outputs under ``OUT/<name>/``: ``impact_sizes.parquet`` (one row per book and size),
``impact_laws.parquet`` (one row per book), and the figures ``impact_law`` (I(Q) on
log–log axes with a √Q guide) and ``impact_decay`` (I(t)/I_peak with the fitted curve).
See ``runs/impact_square_root.toml``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import polars as pl

from analysis.figures import plot_impact_decay, plot_impact_law, save_figure
from analysis.impact import impact_law, relaxation
from mfg.closed_form import LQCrowding
from mfg.io import atomic_write
from mfg.laws import GaussianMixture
from simulator.agents import ExecutionCrowd, MarketMakers, MetaOrderTraders, NoiseFlow
from simulator.book import MAX_TICKS
from simulator.market import MarketSpec, run_market

from ..build import latent_populations
from ..config import ConfigError, Section, check_memory, output_name, read_toml
from ..engines import make_engine, warm_kernels
from ..io import check_writable, output_lock


@dataclass(frozen=True)
class Book:
    """One market to study.

    Parameters
    ----------
    name : str
    market : dict
        Its resolved ``[market]`` table.
    """

    name: str
    market: dict


@dataclass(frozen=True)
class ImpactStudy:
    """A parsed study: what to trade, on which books, and how often.

    Parameters
    ----------
    name : str
        The output folder's name.
    source : str
        The file.
    sizes : tuple of float
        Meta-order size per agent (model units, ``lots_per_unit`` lots each).
    seeds : tuple of int
    agents : int
        Agents trading together.
    lots_per_unit : int
    horizon : float
        Execution time (time units).
    post_steps : int
        Steps recorded after the end.
    books : tuple of Book
    """

    name: str
    source: str
    sizes: tuple[float, ...]  # per agent, model units (lots_per_unit lots each)
    seeds: tuple[int, ...]
    agents: int
    lots_per_unit: int
    horizon: float
    post_steps: int
    books: tuple[Book, ...]


@dataclass(frozen=True)
class ImpactResult:
    """What :func:`run` measured.

    Parameters
    ----------
    study : ImpactStudy
    sizes : list of dict
        One row per book and size.
    laws : list of dict
        One law row per book.
    fits : dict
        Per book, (ImpactLaw or None, Relaxation).
    """

    study: ImpactStudy
    sizes: list[dict]
    laws: list[dict]
    fits: dict


def load(path: str | Path) -> ImpactStudy:
    """Read and validate an impact study (``runs/impact_square_root.toml``), building every book's market.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ImpactStudy

    Raises
    ------
    ConfigError
        Naming the file, the key path and the value.
    """
    root = read_toml(path)
    study = root.table("study")
    name = output_name(study, path)
    sizes = study.numbers("sizes")
    if len(sizes) < 3 or any(s <= 0 for s in sizes) or list(sizes) != sorted(set(sizes)):
        raise study.error("sizes", list(sizes), "expected at least 3 increasing sizes > 0 (model units per agent)")
    seeds = study.integer("seeds", 32, lo=2, hi=100_000)
    agents = study.integer("agents", 10, lo=1, hi=1_000_000)
    lots = study.integer("lots_per_unit", 100, lo=1, hi=1_000_000)
    horizon = study.number("T", 1.0, lo=0.0, lo_open=True)
    post = study.integer("post_steps", 400, lo=4, hi=10**8)
    study.done()
    base = root.get("market", {})
    if not isinstance(base, dict):
        raise ConfigError(f"{root.source}: [market] must be a table")
    books = []
    for sec in root.tables("books"):
        book_name = sec.get("name")
        if not isinstance(book_name, str) or not book_name:
            raise sec.error("name", book_name, "expected a non-empty name")
        market = copy.deepcopy(base)
        for key in ("noise", "latent", "makers", "meta_traders"):
            if key in sec.data:
                value, default = sec.get(key), market.get(key, {})
                # several latent populations (a list) replace the default's; one table updates it
                market[key] = value if isinstance(value, list) or isinstance(default, list) else \
                    {**default, **sec.table(key).data}
        sec.done()
        books.append(Book(book_name, market))
    root.done()
    if len({b.name for b in books}) != len(books):
        raise ConfigError(f"{root.source}: book names must be distinct")
    out = ImpactStudy(name, root.source, tuple(sizes), tuple(range(seeds)), agents, lots, horizon, post, tuple(books))
    for book in out.books:
        for size in (sizes[0], sizes[-1]):
            spec = _spec(out, book, size)  # validates the book's market at both ends of the sweep
        # a worker holds one run; the driver keeps each run's path (steps + post_steps)
        paths = 8 * len(out.sizes) * len(out.seeds) * (spec.n_steps + spec.post_steps + 1)
        check_memory(spec.memory_estimate() + paths, root.source, f"books.{book.name} with study.agents={agents}",
                     "lower study.agents, the steps (T/dt, study.post_steps) or the seeds", per="per run")
    return out


def _spec(study: ImpactStudy, book: Book, size: float):
    """The MarketSpec of one meta-order: ``agents`` TWAP sellers of ``size`` each."""
    sec = Section(copy.deepcopy(book.market), f"books.{book.name}.market", study.source)
    with sec.located():
        noise = sec.table("noise", {}).dataclass(NoiseFlow)
        latent = latent_populations(sec)
        makers = sec.table("makers").dataclass(MarketMakers) if "makers" in sec.data else None
        meta = sec.table("meta_traders").dataclass(MetaOrderTraders) if "meta_traders" in sec.data else None
        model = LQCrowding.single(1.0, 0.0, 0.0, 0.0, study.horizon, GaussianMixture.normal(size, 0.0))
        crowd = ExecutionCrowd(study.agents, model, "twap", lots_per_unit=study.lots_per_unit)
        spec = MarketSpec(T=study.horizon, dt=sec.number("dt", lo=0.0, lo_open=True),
                          n_ticks=sec.integer("n_ticks", 65536, lo=16, hi=MAX_TICKS),
                          initial_mid=sec.integer("initial_mid", 32768, lo=0, hi=MAX_TICKS),
                          noise=noise, makers=makers if makers is not None and makers.count else None, latent=latent,
                          crowd=crowd, meta_traders=meta,
                          warmup_steps=sec.integer("warmup_steps", 1500, lo=0, hi=10**8),
                          scale_liquidity=sec.boolean("scale_liquidity", True),
                          post_steps=study.post_steps, record_every=1, max_trades_kept=0)
        sec.done()
    return spec


def _one_run(args):
    """(impact path in the direction of trading, the rest of the market's volume over the
    execution, lots the crowd sold) of one seeded meta-order."""
    spec, seed = args
    run = run_market(spec, seed)
    n = spec.n_steps
    mid = run.market["mid"]
    crowd = run.market["crowd_flow"][1:n + 1]
    volume = run.market["volume"][1:n + 1] - np.abs(crowd)
    return -(mid - mid[0]), float(volume.sum()), float(-crowd.sum())


def measure(study: ImpactStudy, pool) -> ImpactResult:
    """Run every book, size and seed on an executor and fit the laws.

    Parameters
    ----------
    study : ImpactStudy
    pool : concurrent.futures.Executor

    Returns
    -------
    ImpactResult
    """
    size_rows, law_rows, fits = [], [], {}
    for book in study.books:
        specs = [_spec(study, book, size) for size in study.sizes]
        jobs = [(spec, seed) for spec in specs for seed in study.seeds]
        results = list(pool.map(_one_run, jobs))
        n_seeds, n_exec = len(study.seeds), specs[0].n_steps
        paths = np.stack([r[0] for r in results]).reshape(len(specs), n_seeds, -1)
        volume = np.array([r[1] for r in results]).reshape(len(specs), n_seeds)
        sold = np.array([r[2] for r in results]).reshape(len(specs), n_seeds)
        Q = np.array([size * study.agents * study.lots_per_unit for size in study.sizes])
        participation = Q / volume.mean(axis=1)
        peaks = paths[:, :, n_exec]
        try:
            law, note = impact_law(Q, participation, peaks), ""
        except ValueError as exc:  # e.g. impacts lost in the noise: say so, keep the rest
            law, note = None, str(exc)
        mean_paths = paths.mean(axis=1)
        late = max(4, study.post_steps // 10)
        fraction = mean_paths[:, -late:].mean(axis=1) / mean_paths[:, n_exec]
        # pooled relaxation: every run's path in units of its size's mean peak
        normalised = (paths / mean_paths[:, None, n_exec:n_exec + 1]).reshape(len(specs) * n_seeds, -1)
        relax = relaxation(normalised, np.ones(normalised.shape[0]), n_exec, specs[0].dt)
        fits[book.name] = (law, relax)
        nan = float("nan")
        # the law's local exponent between each size and the next (NaN where a mean peak is not positive)
        with np.errstate(divide="ignore", invalid="ignore"):
            local = np.diff(np.log(peaks.mean(axis=1))) / np.diff(np.log(participation))
        local = np.append(np.where(np.isfinite(local), local, nan), nan)
        for i, size in enumerate(study.sizes):
            size_rows.append({"book": book.name, "size": float(size), "Q": float(Q[i]),
                              "participation": float(participation[i]), "filled": float(sold[i].mean() / Q[i]),
                              "peak": float(peaks[i].mean()), "peak_se": float(peaks[i].std(ddof=1) / np.sqrt(n_seeds)),
                              "local_slope": float(local[i]),
                              "permanent_fraction": float(fraction[i]), "path": mean_paths[i].tolist()})
        law_rows.append({"book": book.name, "impact_exponent": law.exponent if law else nan,
                         "exponent_lo": law.exponent_ci[0] if law else nan,
                         "exponent_hi": law.exponent_ci[1] if law else nan, "prefactor": law.prefactor if law else nan,
                         "participation_min": float(participation.min()),
                         "participation_max": float(participation.max()),
                         "decades": float(np.log10(participation.max() / participation.min())),
                         "local_slopes": [float(x) for x in local[:-1]],
                         "permanent_fraction": float(np.median(fraction)), "rho": relax.rho, "rho_se": relax.rho_se,
                         "decay_time": relax.decay_time, "fitted_permanent_fraction": relax.permanent_fraction,
                         "seeds": n_seeds, "note": note})
    return ImpactResult(study, size_rows, law_rows, fits)


def run(study: ImpactStudy, workers: int | None = None, dask: str | None = None) -> ImpactResult:
    """Run the study on an engine and fit its laws.

    Parameters
    ----------
    study : ImpactStudy
    workers, dask
        As in :func:`mfgsim.engines.make_engine`.

    Returns
    -------
    ImpactResult
    """
    warm_kernels()
    with make_engine(workers, dask) as pool:
        return measure(study, pool)


def write(result: ImpactResult, out_root: str | Path) -> Path:
    """Write ``impact_sizes.parquet``, ``impact_laws.parquet`` and the figures under ``out_root / <study name>``.

    Parameters
    ----------
    result : ImpactResult
    out_root : str or os.PathLike

    Returns
    -------
    pathlib.Path
        The study's folder.
    """
    out = check_writable(Path(out_root) / result.study.name, "study output folder")
    with output_lock(out):
        atomic_write(out / "impact_sizes.parquet", pl.DataFrame(result.sizes).write_parquet)
        atomic_write(out / "impact_laws.parquet", pl.DataFrame(result.laws).write_parquet)
        save_figure(plot_impact_law({name: law for name, (law, _) in result.fits.items() if law is not None}),
                    out / "impact_law")
        save_figure(plot_impact_decay({name: relax for name, (_, relax) in result.fits.items()}), out / "impact_decay")
    return out


def format_laws(rows: list[dict]) -> str:
    """The law rows as a text table.

    Exponent with its interval, Q/V range, permanent fraction, decay time, and the local
    exponents between neighbouring sizes.

    Parameters
    ----------
    rows : list of dict

    Returns
    -------
    str
    """
    lines = [f"{'book':<20}{'exponent [95% CI]':<26}{'Q/V range':<20}{'permanent':>10}{'decay time':>12}"]
    for r in rows:
        lines.append(f"{r['book']:<20}{r['impact_exponent']:.3f} [{r['exponent_lo']:.3f}, {r['exponent_hi']:.3f}]"
                     f"    {r['participation_min']:.3f}..{r['participation_max']:.2f} ({r['decades']:.1f} dec)"
                     f"{r['permanent_fraction']:>8.2f}  {r['decay_time']:>8.3g} ± "
                     f"{r['decay_time'] * r['rho_se'] / r['rho']:.2g}")
        if r["note"]:
            lines.append(f"{'':<20}no power-law fit: {r['note']}")
        lines.append(f"{'':<20}local exponents between neighbouring sizes: "
                     + ", ".join(f"{x:.2f}" for x in r["local_slopes"]))
    return "\n".join(lines)

