"""`mfgsim learn CONFIG.toml`: agents who only see the market learn its mean-field equilibrium.

This module holds the execution crowd (``population = "executors"``, below) and reads
every learning file; market makers (``population = "makers"``, model-based or bandits on
the tick lattice) are :mod:`mfgsim.studies.makers_learning`.

No agent is given the MFG solution. The crowd plays rounds ("days") in the book. Before each
round the learners hold two beliefs, both estimated from the rounds so far:

* **the crowd's mean trading rate** μ̄(t): the average, with fictitious play's weights
  1/(r + 1), of the crowd's net flow each round showed (``averaging = "fictitious"``), or an
  exponential average with a fixed weight (a number in (0, 1]; 1 is plain best response);
* **the market's primitives**, as :mod:`mfgsim.studies.measured` measures them
  (:mod:`analysis.primitives`): a propagator G = G_∞ + Σ κ_i e^{-ρ_i τ} acting on
  sign(μ)|μ|^δ, fitted jointly to every round's crowd path (each round the same share:
  the fictitious-play average of the data) and to the meta-orders of ``[meta_orders]``
  (run once, before the first round; optional), and the temporary cost a|ν| + c μ ν from
  every fill of every round. k and the cost exponent stay the agents' own speed friction.

Each agent then plays its **best response** to μ̄ on those primitives: one HJB solve
(:func:`mfg.fd.best_response`), a feedback table ν(t, q) it reads in the book
(``strategy = "feedback"``). Before the first round the learners believe in no crowd
(μ̄ = 0) and in the configured model's impact: they trade as a lone Almgren–Chriss-like
trader would.

Each round also measures, with fresh seeds:

* ``policy_error``: the policy learned after the round (its population rate in the
  learners' model) against the MFG solved on the learners' own estimated primitives, sup
  over t, relative to sup |μ*|;
* ``inventory_error``: the conforming agents' mean inventory in the book against the MFG's,
  sup over t, relative to sup |E*| (inventories: whole lots make the book's rate lumpy);
* ``exploitability``: a share ``deviators`` of the agents plays the best response to the
  population the policy produces (in the learners' model); their realised gain minus the
  conformers', adjusted for the initial inventory (least squares on 1, q0, q0² and the
  deviator indicator, pooled over the round's seeds), with a bootstrap interval over seeds
  (model value units per agent; ``exploitability_rel``: over the MFG's expected execution
  cost);
* ``mean_gain`` and ``mfg_value``: the conformers' realised gain beyond marking the start
  inventory at the start mid, charged their speed friction, and the MFG's expected value.

A round whose ``policy_error`` exceeds ``max_policy_error`` (after the second round), or
whose policy is not finite, stops the run: every round so far is on disk
(``learning.parquet``, rewritten after each round) and the exit code is 1.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from analysis.compare import realised_gains
from analysis.figures import (plot_exploitability, plot_learned_spread_by_n, plot_learning, plot_makers_learning,
                              save_figure)
from analysis.impact import ExecutionCells, execution_cells
from analysis.primitives import PrimitiveError, fit_propagator, fit_temporary_cost, impact_curve
from mfg.closed_form import LQCrowding
from mfg.fd import LQCrowdingModel, best_response, solve
from mfg.io import atomic_write
from mfg.learning import fd_learning, fd_mirror_descent
from simulator.agents import ExecutionCrowd
from simulator.market import run_market

from ..build import market_objects
from ..config import ConfigError, check_memory, output_name, read_toml
from ..engines import make_engine, warm_kernels
from ..io import check_writable, output_lock
from ..specs import resolve_point
from . import makers_learning
from .calibration import MetaOrderSettings, meta_order_settings
from .measured import Primitives, crowd_shares, feedback_rate, meta_order_curves, speed_penalty

POPULATIONS = ("executors", "makers")


class LearningError(ValueError):
    """The learners cannot go on: what they estimate is not identified, or the learning diverged."""


@dataclass(frozen=True)
class LearningSettings:
    """The ``[learning]`` table.

    Parameters
    ----------
    rounds : int
        Rounds of trading ("days").
    seeds : int
        Book runs per round (fresh seeds every round).
    averaging : str or float
        ``"fictitious"`` (weights 1/(r + 1)) or a fixed weight in (0, 1] of the last round.
    deviators : float
        Share of agents that play the best response to the population, in (0, 0.5].
    horizon : int
        Steps per block when pooling executions for the temporary cost.
    n_exponentials : int or None
        Decaying terms of the kernel (None: by BIC on the first round, then kept).
    crowd_share : float
        The rounds' crowd paths' share of the kernel fit (the meta-orders share the rest).
    max_policy_error : float
        Above this ``policy_error`` (after the second round) the learning has diverged.
    """

    rounds: int
    seeds: int
    averaging: str | float
    deviators: float
    horizon: int
    n_exponentials: int | None
    crowd_share: float
    max_policy_error: float

    def weight(self, r: int) -> float:
        """The weight of round ``r``'s observation in the belief (round 0 replaces the prior).

        Parameters
        ----------
        r : int

        Returns
        -------
        float
        """
        if r == 0:
            return 1.0
        return 1.0 / (r + 1) if self.averaging == "fictitious" else float(self.averaging)


@dataclass(frozen=True)
class LearningPlan:
    """A parsed learning file.

    Parameters
    ----------
    name : str
    source : str
    settings : LearningSettings
    config : dict
        The resolved market config (``[crowd.fd_grid]`` included).
    meta_orders : MetaOrderSettings or None
    """

    name: str
    source: str
    settings: LearningSettings
    config: dict
    meta_orders: MetaOrderSettings | None


@dataclass(frozen=True)
class LearningResult:
    """What :func:`run` did.

    Parameters
    ----------
    plan : LearningPlan
    rows : list of dict
        One row per round (see :func:`run`).
    diverged : bool
    """

    plan: LearningPlan
    rows: list[dict]
    diverged: bool

    def settled(self, n_boot: int = 2000, seed: int = 0) -> dict:
        """The exploitability once learning has settled: the mean of the last half of the
        rounds' estimates (each on fresh seeds), with a 95% bootstrap interval over those rounds.

        A round's own interval resamples its few seeds and is too narrow; the rounds are
        independent repetitions once the policy stops moving.

        Parameters
        ----------
        n_boot : int
        seed : int

        Returns
        -------
        dict
            ``exploitability``, ``exploitability_lo``, ``exploitability_hi``,
            ``exploitability_rel`` (over the last MFG value's magnitude, or the makers' MFG P&L) and
            ``rounds`` (the first
            and last round pooled).
        """
        last = self.rows[len(self.rows) // 2:]
        values = np.array([r["exploitability"] for r in last])
        rng = np.random.default_rng(seed)
        boot = rng.choice(values, (n_boot, values.size)).mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        mean = float(values.mean())
        return {"exploitability": mean, "exploitability_lo": float(lo), "exploitability_hi": float(hi),
                "exploitability_rel": mean / max(abs(last[-1].get("mfg_value", last[-1].get("mfg_pnl"))), 1e-300),
                "rounds": [int(last[0]["round"]), int(last[-1]["round"])]}


def load(path: str | Path) -> LearningPlan:
    """Read and validate a learning file (``runs/learn_executors.toml``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    LearningPlan

    Raises
    ------
    ConfigError
        Naming the file, the key path and the value; also when the rounds could not
        identify what the learners estimate (fewer than one lot per agent, too few deviators).
    """
    root = read_toml(path)
    sec = root.table("learning")
    name = output_name(sec, path)
    population = sec.choice("population", POPULATIONS, "executors")
    averaging = sec.get("averaging", "fictitious")
    if averaging != "fictitious" and not (isinstance(averaging, (int, float)) and not isinstance(averaging, bool)
                                          and 0.0 < averaging <= 1.0):
        raise sec.error("averaging", averaging, "expected \"fictitious\" (weights 1/(r+1)) or a weight in (0, 1] "
                                                "of the last round (1: plain best response)")
    averaging = averaging if averaging == "fictitious" else float(averaging)
    rounds = sec.integer("rounds", 20, lo=2, hi=10_000)
    seeds = sec.integer("seeds", 4, lo=2, hi=100_000)
    deviators = sec.number("deviators", 0.05, lo=0.0, hi=0.5, lo_open=True)
    if population == "makers":
        return makers_learning.load(root, sec, name, averaging, rounds, seeds, deviators)
    n_exponentials = sec.get("n_exponentials", None)
    if n_exponentials is not None:
        n_exponentials = sec.integer("n_exponentials", lo=0, hi=3)
    settings = LearningSettings(
        rounds=rounds, seeds=seeds, averaging=averaging, deviators=deviators,
        horizon=sec.integer("horizon", 10, lo=2, hi=10**6), n_exponentials=n_exponentials,
        crowd_share=sec.number("crowd_share", 0.8, lo=0.0, hi=1.0, lo_open=True),
        max_policy_error=sec.number("max_policy_error", 2.0, lo=0.0, lo_open=True))
    sec.done()
    meta = meta_order_settings(root)
    if meta is not None and meta.held_out_seeds:
        raise root.table("meta_orders").error("held_out_seeds", len(meta.held_out_seeds),
                                              "not used by learning (no size is held out of its fits)", "remove it")
    crowd = root.data.get("crowd", {})
    if "fd_grid" not in crowd:
        raise root.table("crowd").error("fd_grid", None, "the learners best-respond on an FD grid: give a "
                                                         "[crowd.fd_grid] table (x_min, x_max, n_x, n_t)")
    base = {k: v for k, v in root.data.items() if k not in ("learning", "meta_orders")}
    base["campaign"] = {"kind": "market", "record_every": 1}
    config = resolve_point(base, {}, root.source)
    model, spec = market_objects(config, root.source)  # every value checked
    if len(model.types) != 1:
        raise ConfigError(f"{root.source}: model.types: learning takes one preference type (the deviators are "
                          f"the second); got {len(model.types)}")
    n = spec.n_agents
    if n * settings.deviators < 5:
        raise sec.error("deviators", settings.deviators, f"gives {n * settings.deviators:.3g} deviators of "
                                                         f"crowd.n_agents={n}; at least 5 are needed to measure "
                                                         "the exploitability", "raise deviators or N")
    lots = abs(model.types[0].m0.mean) * spec.crowd.lots_per_unit
    if lots < 1.0:
        raise root.table("crowd").error("lots_per_unit", spec.crowd.lots_per_unit,
                                        f"gives {lots:.3g} lots per agent: the crowd would hardly trade, and the "
                                        "learners could not estimate its rate or the impact",
                                        "raise crowd.lots_per_unit or the inventories of m0")
    check_memory((settings.seeds + 1) * spec.memory_estimate(), root.source,
                 f"crowd.n_agents={n} over learning.seeds={settings.seeds}",
                 "lower crowd.n_agents, learning.seeds or the steps (T/dt)", per="per round")
    return LearningPlan(name, root.source, settings, config, meta)


# ---- the learners -------------------------------------------------------------------------
def learner_model(config: dict, primitives: Primitives | None, source: str) -> tuple[LQCrowding, LQCrowdingModel]:
    """The model the learners best-respond in: the configured one, or on their primitives.

    Parameters
    ----------
    config : dict
        The resolved market config.
    primitives : Primitives or None
        None before the first round: the configured model's impact.
    source : str

    Returns
    -------
    (LQCrowding, mfg.fd.LQCrowdingModel)
    """
    cfg = config if primitives is None else primitives.configured(config)
    model, spec = market_objects(cfg, source)
    crowd = spec.crowd
    return model, crowd.fd_model()


def on_grid(rates: np.ndarray, dt: float, grid) -> np.ndarray:
    """A rate path on the book's steps carried to the solver's steps (the inventory it moves is kept).

    Parameters
    ----------
    rates : numpy.ndarray of float64, shape (n,)
        Units per time on each book step of ``dt``.
    dt : float
    grid : mfg.fd.Grid

    Returns
    -------
    numpy.ndarray of float64, shape (grid.n_t,)
    """
    moved = np.concatenate([[0.0], np.cumsum(rates) * dt])
    at = np.interp(grid.t, np.arange(rates.size + 1) * dt, moved)
    return np.diff(at) / grid.dt


def round_spec(base_spec, model: LQCrowding, grid, policy: np.ndarray, deviation: np.ndarray, share: float):
    """The book of one round: conformers on ``policy``, a share ``share`` of deviators on ``deviation``.

    The deviators are a second preference type with the same costs and initial law.

    Parameters
    ----------
    base_spec : simulator.market.MarketSpec
    model : LQCrowding
        One preference type.
    grid : mfg.fd.Grid
    policy, deviation : numpy.ndarray of float64, shape (n_t + 1, n_x)
    share : float

    Returns
    -------
    simulator.market.MarketSpec
    """
    p = model.types[0]
    types = (dataclasses.replace(p, weight=1.0 - share), dataclasses.replace(p, weight=share))
    two = dataclasses.replace(model, types=types)
    crowd = base_spec.crowd
    learners = ExecutionCrowd(crowd.n_agents, two, "feedback", lots_per_unit=crowd.lots_per_unit,
                              order_type=crowd.order_type, ioc_ticks=crowd.ioc_ticks,
                              stop_at_target=crowd.stop_at_target, fd_grid=grid, cost_exponent=crowd.cost_exponent,
                              feedback=np.stack([policy, deviation]))
    return dataclasses.replace(base_spec, crowd=learners)


def deviation_gain(runs, grid, policy, deviation, n_boot: int = 400, seed: int = 0) -> dict:
    """The deviators' realised gain over the conformers' at the same initial inventory, over seeds.

    Gains are beyond marking the start inventory at the start mid and are charged the
    agents' speed friction k|ν|^α along the rate their table asked for.

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Of :func:`round_spec`: type 0 conforms, type 1 deviates.
    grid : mfg.fd.Grid
    policy, deviation : numpy.ndarray of float64, shape (n_t + 1, n_x)
    n_boot : int
    seed : int

    Returns
    -------
    dict
        ``exploitability`` (value units per agent) with ``exploitability_lo``/``_hi`` (95%,
        seeds resampled), ``mean_gain`` (the conformers' mean), ``deviators`` (count).
    """
    rate = feedback_rate(grid, np.stack([policy, deviation]))
    per_run = []
    for run in runs:
        two = run.spec.crowd.model  # the conformers' type and the deviators'
        g = realised_gains(run, two)
        net = g["gain"] - g["start_value"] - speed_penalty(run, two, run.spec.crowd, rate)
        per_run.append((net, g["q0"], np.asarray(g["type"]) == 1))

    def fit(idx):
        net = np.concatenate([per_run[i][0] for i in idx])
        q0 = np.concatenate([per_run[i][1] for i in idx])
        dev = np.concatenate([per_run[i][2] for i in idx]).astype(np.float64)
        X = np.column_stack([np.ones_like(q0), q0, q0 * q0, dev])
        return float(np.linalg.lstsq(X, net, rcond=None)[0][3])

    everything = np.arange(len(runs))
    estimate = fit(everything)
    rng = np.random.default_rng(seed)
    boot = np.array([fit(rng.choice(everything, everything.size)) for _ in range(n_boot)])
    lo, hi = np.percentile(boot, [2.5, 97.5]) if n_boot else (math.nan, math.nan)
    conform = np.concatenate([r[0][~r[2]] for r in per_run])
    return {"exploitability": estimate, "exploitability_lo": float(lo), "exploitability_hi": float(hi),
            "mean_gain": float(conform.mean()), "deviators": int(sum(r[2].sum() for r in per_run))}


def conformers_inventory(runs, grid) -> np.ndarray:
    """The conforming agents' mean inventory in the book at the solver's times.

    Inventories rather than rates: an agent trades whole lots, a lot every few steps, so the
    book's rate on one solver step is lumpy while the inventory it adds up to is not.

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Type 0 conforms.
    grid : mfg.fd.Grid

    Returns
    -------
    numpy.ndarray of float64, shape (grid.n_t + 1,)
        Model units.
    """
    paths = []
    for run in runs:
        n_rec = np.asarray(run.market["t"]).size
        inv = np.asarray(run.agents["inventory"], dtype=np.float64).reshape(n_rec, -1)
        conform = np.asarray(run.agents["type"]).reshape(n_rec, -1)[0] == 0
        paths.append(inv[:, conform].mean(axis=1))
    return np.interp(grid.t, np.asarray(runs[0].market["t"], dtype=np.float64), np.mean(paths, axis=0))


def _pooled(cells: list[ExecutionCells]) -> ExecutionCells:
    """Every round's execution cells, the runs numbered apart."""
    offset, runs = 0, []
    for c in cells:
        runs.append(c.run + offset)
        offset += int(c.run.max()) + 1 if c.run.size else 0
    return ExecutionCells(*(np.concatenate([getattr(c, f) for c in cells]) for f in ("cost", "rate", "crowd")),
                          np.concatenate(runs))


def _sup_rel(path: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(path - reference)) / max(np.max(np.abs(reference)), 1e-300))


def run(plan: LearningPlan, workers: int | None = None, dask: str | None = None, verbose: bool = True,
        checkpoint: str | Path | None = None) -> LearningResult:
    """Play the rounds.

    Parameters
    ----------
    plan : LearningPlan
    workers, dask
        As in :func:`mfgsim.engines.make_engine`.
    verbose : bool
        Print one line per round.
    checkpoint : str or os.PathLike, optional
        A folder where ``learning.parquet`` is rewritten (atomically) after every round.

    Returns
    -------
    LearningResult
        One row per round: ``round``, ``population``, ``n_agents``, ``seeds``, ``weight``
        (of the round in the belief), ``policy_error``, ``inventory_error``,
        ``exploitability`` (with ``_lo``, ``_hi``, ``_rel``), ``mean_gain``, ``mfg_value``,
        ``cost_gap_rel`` ((mean_gain - mfg_value) / |mfg_value|), ``belief_change``, the
        primitives the learners estimated after the round (the columns of
        :meth:`Primitives.columns`), ``policy_rate`` and ``mfg_rate`` (lists on the solver's
        steps), ``seconds``.

    Raises
    ------
    LearningError
        When a round's data cannot identify a primitive (the message names it and what to
        raise); the rounds so far are on disk.
    """
    rows: list[dict] = []

    def checkpointed(row):
        rows.append(row)
        if checkpoint is not None:
            with output_lock(checkpoint):
                atomic_write(Path(checkpoint) / "learning.parquet", pl.DataFrame(rows).write_parquet)

    if isinstance(plan, makers_learning.MakersLearningPlan):
        def say(row):
            checkpointed(row)
            if verbose:
                print(f"round {row['round']}: spread {row['spread']:.3f} [{row['spread_lo']:.3f}, "
                      f"{row['spread_hi']:.3f}] (MFG {row['mfg_spread']:.3f}), pnl_gap_rel {row['pnl_gap_rel']:+.3f}, "
                      f"quote error {row['quote_error']:.3g}, exploitability {row['exploitability']:+.3g}, "
                      f"{row['seconds']:.1f} s", flush=True)

        warm_kernels()
        with make_engine(workers, dask) as pool:
            _, diverged = makers_learning.run(plan, pool, say)
        return LearningResult(plan, rows, diverged)
    s, cfg, source = plan.settings, plan.config, plan.source

    def keep(row):
        checkpointed(row)
        if verbose:
            print(f"round {row['round']}: policy error {row['policy_error']:.4f} (book inventory "
                  f"{row['inventory_error']:.4f}), exploitability {row['exploitability']:+.4g} "
                  f"[{row['exploitability_lo']:+.3g}, {row['exploitability_hi']:+.3g}], "
                  f"delta {row['hat_exponent']:.3g}, {row['seconds']:.1f} s", flush=True)

    warm_kernels()
    base_model, base_spec = market_objects(cfg, source)
    grid = base_spec.crowd.fd_grid
    diverged = False
    with make_engine(workers, dask) as pool:
        meta_curves = []
        if plan.meta_orders is not None:
            m = plan.meta_orders
            meta_curves = meta_order_curves(cfg, m.sizes, m.seeds, m.post_steps, source, pool)
        primitives, n_exponentials = None, s.n_exponentials
        belief = np.zeros(grid.n_t)
        _, fd_model = learner_model(cfg, None, source)
        policy = best_response(fd_model, grid, belief)
        curves, cells = [], []
        for r in range(s.rounds):
            started = time.perf_counter()
            deviation = best_response(fd_model, grid, policy.mean_rate).control[0]
            spec = round_spec(base_spec, base_model, grid, policy.control[0], deviation, s.deviators)
            seeds = [100_003 * (r + 1) + i for i in range(s.seeds)]
            runs = list(pool.map(run_market, [spec] * len(seeds), seeds))
            crowd = spec.crowd
            markets = [run.market for run in runs]
            curve = impact_curve(f"round {r}", markets, crowd.n_agents, crowd.lots_per_unit, spec.tick_size,
                                 spec.dt, spec.n_steps)
            curves.append(curve)
            cells.append(execution_cells([run.executions for run in runs], markets, crowd.n_agents,
                                         crowd.lots_per_unit, spec.tick_size, spec.dt, s.horizon))
            weight = s.weight(r)
            observed = on_grid(curve.mean_rates, spec.dt, grid)
            previous = belief
            belief = belief + weight * (observed - belief)
            played = deviation_gain(runs, grid, policy.control[0], deviation, seed=r)
            held = conformers_inventory(runs, grid)
            try:
                propagator = fit_propagator([*curves, *meta_curves], n_exponentials, n_boot=0, seed=r,
                                            exponent=None, shares=_shares(len(curves), len(meta_curves), s))
                temporary = fit_temporary_cost(_pooled(cells), n_boot=0, seed=r, require_slippage=False)
            except PrimitiveError as exc:
                raise LearningError(f"{source}: after round {r}: {exc}") from None
            primitives = Primitives(propagator, temporary).admissible()
            n_exponentials = primitives.n_exponentials
            model, fd_model = learner_model(cfg, primitives, source)
            equilibrium = solve(fd_model, grid)
            policy = best_response(fd_model, grid, belief)
            value = float((-equilibrium.value[0, 0] * grid.cell_masses(model.types[0].m0)).sum() * grid.dx)
            cost = max(abs(value), 1e-300)
            row = {"round": r, "population": "executors", "n_agents": crowd.n_agents, "seeds": len(seeds),
                   "weight": weight, "policy_error": _sup_rel(policy.mean_rate, equilibrium.mean_rate),
                   "inventory_error": _sup_rel(held, equilibrium.mean_inventory()), **played,
                   "exploitability_rel": played["exploitability"] / cost, "mfg_value": value,
                   "cost_gap_rel": (played["mean_gain"] - value) / cost,
                   "belief_change": _sup_rel(belief, previous) if r else math.nan,
                   **primitives.columns("hat_"), "policy_rate": policy.mean_rate.tolist(),
                   "mfg_rate": equilibrium.mean_rate.tolist(), "seconds": time.perf_counter() - started}
            keep(row)
            finite = bool(np.all(np.isfinite(policy.control)))
            if not finite or (r >= 2 and row["policy_error"] > s.max_policy_error):
                diverged = True
                break
    return LearningResult(plan, rows, diverged)


def _shares(n_rounds: int, n_meta: int, s: LearningSettings) -> list[float]:
    """Each round's crowd path weighs the same (the fictitious-play average of the data)."""
    if not n_meta:
        return [1.0 / n_rounds] * n_rounds
    crowd, *meta = crowd_shares(n_meta, s.crowd_share)
    return [crowd / n_rounds] * n_rounds + meta


def write(result: LearningResult, out_root: str | Path) -> Path:
    """Write ``learning.parquet`` and the figure ``learning`` under ``out_root / <name>``; for
    executors also the figure ``exploitability`` (:func:`model_learners`), for makers with
    ``scaling`` also ``learning_by_n.parquet`` and the figure ``learned_spread_by_n``.

    Parameters
    ----------
    result : LearningResult
    out_root : str or os.PathLike

    Returns
    -------
    pathlib.Path
        The folder.
    """
    out = check_writable(Path(out_root) / result.plan.name, "study output folder")
    table = pl.DataFrame(result.rows)
    with output_lock(out):
        atomic_write(out / "learning.parquet", table.write_parquet)
        if isinstance(result.plan, makers_learning.MakersLearningPlan):
            figure = plot_makers_learning(table.filter(pl.col("n_makers") == result.plan.n_makers))
            if result.plan.scaling:
                summary = pl.DataFrame(makers_learning.by_n(result.rows))
                atomic_write(out / "learning_by_n.parquet", summary.write_parquet)
                save_figure(plot_learned_spread_by_n(summary), out / "learned_spread_by_n")
        else:
            grid = market_objects(result.plan.config, result.plan.source)[1].crowd.fd_grid
            figure = plot_learning(table, (np.arange(grid.n_t) + 0.5) * grid.dt)
            save_figure(plot_exploitability(model_learners(result)), out / "exploitability")
        save_figure(figure, out / "learning")
    return out


def model_learners(result: LearningResult, iterations: int = 200) -> dict:
    """The solvers' learners on the learners' last model: what fictitious play and mirror
    descent do on the FD MFG of the primitives the book taught them.

    Parameters
    ----------
    result : LearningResult
        Of the executors.
    iterations : int
        Fictitious play's steps (mirror descent takes a quarter).

    Returns
    -------
    dict of str to mfg.learning.LearningHistory
    """
    plan = result.plan
    primitives = Primitives.from_columns(result.rows[-1], "hat_").admissible()
    _, fd_model = learner_model(plan.config, primitives, plan.source)
    grid = market_objects(plan.config, plan.source)[1].crowd.fd_grid
    return {"fictitious play": fd_learning(fd_model, grid, iterations),
            "mirror descent": fd_mirror_descent(fd_model, grid, iterations // 4, step_size=0.5 / fd_model.k)}


def summary_text(result: LearningResult) -> str:
    """The last round in words.

    Parameters
    ----------
    result : LearningResult

    Returns
    -------
    str
    """
    if not result.rows:
        return "no round finished"
    last = result.rows[-1]
    state = "DIVERGED" if result.diverged else "done"
    if isinstance(result.plan, makers_learning.MakersLearningPlan):
        text = (f"{state} after {last['round'] + 1} rounds ({last['learner']} learners, N = {last['n_makers']}): "
                f"mean spread {last['spread']:.3f} [{last['spread_lo']:.3f}, {last['spread_hi']:.3f}] ticks against "
                f"the lattice MFG's {last['mfg_spread']:.3f} on the book's own fill table; pnl_gap_rel "
                f"{last['pnl_gap_rel']:+.3f}")
        if result.plan.scaling:
            text += "\nlearned spread by N: " + ", ".join(
                f"{r['n_makers']}: {r['spread']:.3f} [{r['spread_lo']:.3f}, {r['spread_hi']:.3f}] (MFG "
                f"{r['mfg_spread']:.3f})" for r in makers_learning.by_n(result.rows))
        if last["learner"] == "model" and len(result.rows) >= 4:
            e = result.settled()
            text += (f"\nexploitability in the book over rounds {e['rounds'][0]}..{e['rounds'][1]}: "
                     f"{e['exploitability']:+.4g} [{e['exploitability_lo']:+.3g}, {e['exploitability_hi']:+.3g}] "
                     f"({e['exploitability_rel']:+.2%} of the MFG P&L)")
        return text
    text = (f"{state} after {last['round'] + 1} rounds (N = {last['n_agents']}): policy error "
            f"{last['policy_error']:.4f} against the MFG on the learners' primitives (the book's inventory "
            f"{last['inventory_error']:.4f}); cost gap {last['cost_gap_rel']:+.3f} of the MFG value "
            f"{last['mfg_value']:.4g}")
    if len(result.rows) >= 4:
        e = result.settled()
        text += (f"\nexploitability in the book over rounds {e['rounds'][0]}..{e['rounds'][1]}: "
                 f"{e['exploitability']:+.4g} [{e['exploitability_lo']:+.3g}, {e['exploitability_hi']:+.3g}] "
                 f"({e['exploitability_rel']:+.2%} of the MFG value)")
    return text

