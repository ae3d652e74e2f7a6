"""`mfgsim learn` for market makers (``population = "makers"``): makers who only see the book
learn to quote, on the tick lattice, model-based or model-free.

The market is a makers loop's (``runs/makers_loop.toml``: N makers quoting whole ticks
against market-order flow that grows with them). No maker is given the MFG.

``learner = "model"`` (fictitious play on the book's own primitives)
    Before each round the makers hold two beliefs, estimated from the rounds so far: the
    fill table Λ(π_l; δ̄) of :func:`analysis.primitives.fill_table` (every round's fills
    pooled, :func:`analysis.primitives.pool_fill_tables`, as :mod:`mfgsim.studies.makers_loop`
    measures it) and the population's mean
    posted quote δ̄(t) per side (the rounds' observations averaged with fictitious play's
    weights 1/(r + 1), or a fixed weight). Each maker best-responds: one backward sweep of
    the lattice game against δ̄ (:func:`mfg.jump.best_response`). Before the first round
    they believe in the configured exponential intensity and the myopic quote. A share
    ``deviators`` best-responds to the population the makers' policy produces instead:
    their P&L over the conformers' is the exploitability measured in the book.

``learner = "bandit"`` (model-free)
    Each maker keeps exponential weights over the lattice levels and, on each run of a round,
    quotes one level on both sides (a run of the round is a "day"; every maker draws its
    level afresh for each). After the round it updates the weights of the levels it played
    by its own risk-adjusted P&L, importance-weighted (EXP3, Auer et al. 2002): a bandit on
    its realised P&L per tick level, with no model of the fills.

Per round, one row: the makers' mean posted spread in the book (conformers; 95% interval
over seeds), the spread of the lattice MFG solved on the fill table measured from the
rounds so far, the P&L per maker against that MFG's, and for the model-based learners the
distance of their policy's mean quote from the MFG's and the exploitability.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from analysis.primitives import PrimitiveError, pool_fill_tables
from mfg.jump import SolvedPopulation, best_response
from mfg.market_making import makers_equilibrium
from simulator.agents import MIXED_ITERATIONS, quotes_on_steps
from simulator.market import run_market

from ..config import check_memory
from .makers import posted_quotes
from .makers_loop import measure, spec_at, table_intensity

LEARNERS = ("model", "bandit")


@dataclass(frozen=True)
class MakersLearningPlan:
    """A parsed makers' learning file.

    Parameters
    ----------
    name, source : str
    market : dict
        The ``[market]`` table (makers ``"mfg_tick"`` with a lattice: the prior's intensity).
    n_makers : int
    rounds : int
    seeds : int
        Runs per round (fresh seeds every round).
    learner : str
        ``"model"`` or ``"bandit"``.
    averaging : str or float
        As in :class:`mfgsim.studies.learning.LearningSettings`.
    deviators : float
        Share of makers best-responding to the population (model-based learners).
    mean_bins : int
        Bins of δ̄ in the fill table.
    step_size : float
        The bandit's learning rate, per unit of P&L scaled by the round's mean |P&L|.
    exploration : float
        The bandit's uniform exploration share, in [0, 0.99].
    scaling : tuple of int
        More N to learn at afresh, for the learned spread against N (may be empty).
    """

    name: str
    source: str
    market: dict
    n_makers: int
    rounds: int
    seeds: int
    learner: str
    averaging: str | float
    deviators: float
    mean_bins: int
    step_size: float
    exploration: float
    scaling: tuple[int, ...] = ()

    def weight(self, r: int) -> float:
        """The weight of round ``r``'s observation in the belief (round 0 replaces the prior)."""
        if r == 0:
            return 1.0
        return 1.0 / (r + 1) if self.averaging == "fictitious" else float(self.averaging)


def load(root, sec, name: str, averaging, rounds: int, seeds: int, deviators: float) -> MakersLearningPlan:
    """Read the makers' part of a learning file (called by :func:`mfgsim.studies.learning.load`).

    Parameters
    ----------
    root, sec : mfgsim.config.Section
        The file's top level and its ``[learning]`` table (the shared keys already read).
    name : str
    averaging, rounds, seeds, deviators
        The shared keys.

    Returns
    -------
    MakersLearningPlan

    Raises
    ------
    ConfigError
    """
    plan = MakersLearningPlan(
        name, root.source, copy.deepcopy(root.get("market")), sec.integer("n_makers", lo=2, hi=100_000), rounds,
        seeds, sec.choice("learner", LEARNERS, "model"), averaging, deviators,
        sec.integer("mean_bins", 3, lo=1, hi=50), sec.number("step_size", 0.05, lo=0.0, lo_open=True),
        sec.number("exploration", 0.05, lo=0.0, hi=0.99))
    scaling = sec.get("scaling", [])
    if (not isinstance(scaling, list) or not all(isinstance(x, int) and not isinstance(x, bool) and 2 <= x <= 100_000
                                                  for x in scaling) or scaling != sorted(set(scaling))):
        raise sec.error("scaling", scaling, "expected increasing integers in [2, 100000] (more N to learn at)")
    plan = dataclasses.replace(plan, scaling=tuple(scaling))
    sec.done()
    if not isinstance(plan.market, dict) or not isinstance(plan.market.get("makers"), dict):
        raise root.error("market", plan.market, "learning makers needs [market] with [market.makers]")
    makers = root.table("market").table("makers")
    if makers.get("model", None) != "mfg_tick":
        raise makers.error("model", makers.get("model", None), "learning makers quote on the tick lattice: "
                                                              "model = 'mfg_tick' (its intensity is the prior)")
    for key in ("premia", "table_means", "table_rates"):
        if key in makers.data:
            raise makers.error(key, makers.data[key], "the learners measure it", "remove it")
    root.done()
    if plan.learner == "model" and plan.n_makers * plan.deviators < 1:
        raise sec.error("deviators", plan.deviators, f"gives no deviating maker of n_makers={plan.n_makers}",
                        "raise deviators or n_makers")
    spec = spec_at(plan, max((plan.n_makers, *plan.scaling)), None)  # validates the market
    check_memory((plan.seeds + 1) * spec.memory_estimate(), root.source,
                 f"learning.n_makers={spec.makers.count} over learning.seeds={plan.seeds}",
                 "lower n_makers (or scaling), seeds, market.makers.max_inventory or the steps (T/dt)",
                 per="per round")
    return plan


def _observe(args) -> dict:
    """One run of table makers: the fill data of each side, each maker's P&L, the mean posted quotes."""
    spec, seed = args
    run = run_market(spec, seed)
    makers = spec.makers
    quotes = posted_quotes(spec, run)
    size = makers.quote_size
    inv = run.accounts_inventory[:, 1:1 + makers.count] / size
    cash = run.accounts_cash[:, 1:1 + makers.count]
    pnl = (cash[-1] - cash[0]) / size + inv[-1] * run.market["mid"][-1]
    # what the makers' game charges: the inventory risk γσ²q²/2 over time
    risk = 0.5 * makers.risk_aversion * makers.volatility**2 * (inv[:-1] ** 2).sum(axis=0) * spec.dt
    out = {"pnl": pnl, "score": pnl - risk, "groups": spec.makers.groups}
    means = []
    for side, filled in (("bid", "bought"), ("ask", "sold")):
        level, posted = quotes[side], quotes[f"{side}_posted"]
        with warnings.catch_warnings():  # a step where no maker posts this side has no mean: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(posted, axis=1)
            out[f"{side}_spread"] = np.nanmean(posted, axis=0)  # per maker
        means.append(mean)
        ok = ~np.isnan(level)
        wide = np.broadcast_to(mean[:, None], posted.shape)
        out[side] = np.stack([level[ok], wide[ok], quotes[filled][ok].astype(np.float64), posted[ok]])
    out["mean_quote"] = np.stack(means)  # (2, steps)
    return out


def lattice_mfg(makers, T: float, steps: int, sub: int):
    """The lattice MFG of ``makers`` (their measured table) on ``steps * sub`` steps.

    Anderson to 1e-8 ticks when the equilibrium is pure; when that cycles (the makers,
    alike at t = 0, split between two levels), the mixed equilibrium of fictitious play
    (:func:`mfg.market_making.makers_equilibrium`, as many best responses as the book's makers use).

    Returns
    -------
    mfg.market_making.MarketMakingSolution or mfg.market_making.MixedEquilibrium
        Either has ``t``, ``mean_bid``, ``mean_ask``, ``spread()`` and ``expected_pnl()``.
    """
    return makers_equilibrium(makers.lattice_game(T), steps * sub, tol=1e-8, iterations=MIXED_ITERATIONS)


def _on_nodes(per_step: np.ndarray, sub: int) -> np.ndarray:
    """(2, steps) per run step -> (2, steps * sub + 1) on the game's time nodes (NaN steps filled)."""
    filled = np.array([np.where(np.isnan(row), np.nanmean(row), row) for row in per_step])
    return np.concatenate([np.repeat(filled, sub, axis=1), filled[:, -1:]], axis=1)


def _table_makers(base_spec, tables: list[tuple[np.ndarray, np.ndarray]], groups):
    makers = dataclasses.replace(base_spec.makers, model="table", lattice=(), premia=(), table_means=(),
                                 table_rates=(), bid_table=np.stack([b for b, _ in tables]),
                                 ask_table=np.stack([a for _, a in tables]), groups=tuple(int(g) for g in groups))
    return dataclasses.replace(base_spec, makers=makers)


def _interval(values: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    boot = rng.choice(values, (n_boot, values.size)).mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def run(plan: MakersLearningPlan, pool, keep) -> tuple[list[dict], bool]:
    """Play the rounds at ``n_makers``, then afresh at every N of ``scaling``; ``keep`` is
    called with each round's row.

    Parameters
    ----------
    plan : MakersLearningPlan
    pool : concurrent.futures.Executor
    keep : callable

    Returns
    -------
    (rows, diverged) : tuple of (list of dict, bool)

    Raises
    ------
    mfgsim.studies.learning.LearningError
        When the rounds' fills cannot identify the fill table.
    """
    rows = []
    for n in (plan.n_makers, *plan.scaling):
        rows += _learn(plan, pool, keep, n)
    return rows, False


def by_n(rows: list[dict]) -> list[dict]:
    """The learned spread at each N: the mean of the last quarter of its rounds with a 95%
    interval over those rounds (each on fresh seeds), beside the lattice MFG's.

    Parameters
    ----------
    rows : list of dict
        Rounds of :func:`run`.

    Returns
    -------
    list of dict
        ``n_makers``, ``learner``, ``spread``, ``spread_lo``, ``spread_hi``, ``mfg_spread``,
        ``pnl_gap_rel``, ``rounds`` (pooled), one per N in order.
    """
    out = []
    for n in dict.fromkeys(r["n_makers"] for r in rows):
        mine = [r for r in rows if r["n_makers"] == n]
        last = mine[-max(1, len(mine) // 4):]
        spread = np.array([r["spread"] for r in last])
        half = 1.96 * spread.std(ddof=1) / math.sqrt(spread.size) if spread.size > 1 else math.nan
        out.append({"n_makers": n, "learner": mine[0]["learner"], "spread": float(spread.mean()),
                    "spread_lo": float(spread.mean() - half), "spread_hi": float(spread.mean() + half),
                    "mfg_spread": float(last[-1]["mfg_spread"]),
                    "pnl_gap_rel": float(np.mean([r["pnl_gap_rel"] for r in last])), "rounds": len(last)})
    return out


def _learn(plan: MakersLearningPlan, pool, keep, n: int) -> list[dict]:
    """The rounds of ``n`` makers."""
    from .learning import LearningError

    prior = spec_at(plan, n, None)
    steps, T = prior.n_steps, prior.T
    lattice = np.asarray(prior.makers.lattice)
    # the makers' game on what they believe, and its MFG (solved on the sub-steps its fill rates
    # need): before the first round, the configured one
    learned = prior
    mf, sub = prior.makers.mean_field(T, steps)
    rng = np.random.default_rng(20_261_130)
    weights = np.full((n, lattice.size), 1.0 / lattice.size)
    pooled, belief = None, None  # the rounds' fills as one table (their raw data would not fit)
    rows = []
    for r in range(plan.rounds):
        started = time.perf_counter()
        seeds = [200_003 * (r + 1) + i for i in range(plan.seeds)]
        row = {"round": r, "population": "makers", "learner": plan.learner, "n_makers": n, "seeds": len(seeds),
               "weight": plan.weight(r)}
        if plan.learner == "model":
            game = learned.makers.lattice_game(T)
            coupling = game.initial_coupling(mf.t) if belief is None else _on_nodes(belief, sub)
            policy = best_response(game, mf.t, coupling)
            produced = game.coupling_from(SolvedPopulation(policy.m, policy.quotes, policy.rates), mf.t)
            deviation = best_response(game, mf.t, produced)
            premia, lat = learned.makers.premia, learned.makers.lattice
            tables = [quotes_on_steps(sol.quotes[0], sol.quotes[1], steps, sub, premia, lat)
                      for sol in (policy, deviation)]
            n_dev = max(1, int(round(plan.deviators * n)))
            groups = np.r_[np.ones(n_dev, dtype=np.int64), np.zeros(n - n_dev, dtype=np.int64)]
            jobs = [(_table_makers(prior, tables, groups), seed) for seed in seeds]
            row["quote_error"] = float(np.max(np.abs(produced - np.stack([mf.mean_bid, mf.mean_ask]))))
        else:
            explore = (1 - plan.exploration) * weights + plan.exploration / lattice.size
            draws = [np.array([rng.choice(lattice.size, p=p) for p in explore]) for _ in seeds]
            flat = [(np.full((steps, 2 * prior.makers.max_inventory + 1), level),) * 2 for level in lattice]
            jobs = [(_table_makers(prior, flat, groups), seed) for groups, seed in zip(draws, seeds)]
        runs = list(pool.map(_observe, jobs))
        observed = np.nanmean([o["mean_quote"] for o in runs], axis=0)
        belief = observed if belief is None else belief + plan.weight(r) * (observed - belief)
        try:
            fills = measure(runs, prior.dt, plan.mean_bins, None if pooled is None else pooled.mean_edges)
            pooled = fills if pooled is None else pool_fill_tables([pooled, fills])
            table = {key: value for key, value in table_intensity(pooled).items() if key != "dropped"}
        except PrimitiveError as exc:
            raise LearningError(f"{plan.source}: after round {r}: {exc}") from None
        learned = spec_at(plan, n, table)
        mf = lattice_mfg(learned.makers, T, steps, sub)  # on the book's own table: next round's belief
        conform = [np.asarray(o["groups"]) == 0 if plan.learner == "model" else np.ones(n, bool) for o in runs]
        spread = np.array([np.nanmean(o["bid_spread"][c] + o["ask_spread"][c]) for o, c in zip(runs, conform)])
        pnl = np.array([o["pnl"][c].mean() for o, c in zip(runs, conform)])
        row.update(spread=float(spread.mean()), mfg_spread=float(np.mean(mf.spread())),
                   pnl=float(pnl.mean()), mfg_pnl=mf.expected_pnl(), levels=len(table["lattice"]))
        row["spread_lo"], row["spread_hi"] = _interval(spread, r)
        row["pnl_gap_rel"] = row["pnl"] / row["mfg_pnl"] - 1
        if plan.learner == "model":
            gain = np.array([o["score"][~c].mean() - o["score"][c].mean() for o, c in zip(runs, conform)])
            row["exploitability"] = float(gain.mean())
            row["exploitability_lo"], row["exploitability_hi"] = _interval(gain, r)
        else:
            row.update(quote_error=math.nan, exploitability=math.nan, exploitability_lo=math.nan,
                       exploitability_hi=math.nan)
            weights = _bandit_step(weights, explore, draws, [o["score"] for o in runs], plan.step_size)
            row["level_weights"] = weights.mean(axis=0).tolist()
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        keep(row)
    return rows


def _bandit_step(weights, played_with, draws, scores, step_size: float) -> np.ndarray:
    """EXP3: each maker's weights times exp(η ĝ), ĝ its score of the level it played over the
    probability it played it with (0 for the others), scores in units of the round's mean |score|."""
    scale = max(float(np.mean(np.abs(np.concatenate(scores)))), 1e-300)
    estimate = np.zeros_like(weights)
    rows = np.arange(weights.shape[0])
    for levels, score in zip(draws, scores):
        estimate[rows, levels] += score / scale / played_with[rows, levels] / len(draws)
    logits = np.log(weights) + step_size * estimate
    logits -= logits.max(axis=1, keepdims=True)
    new = np.exp(logits)
    return new / new.sum(axis=1, keepdims=True)
