"""The loop on the book's own primitives: book -> primitives -> MFG -> strategies -> book.

``model = "measured"`` in a ``[calibration]`` table (``runs/closed_loop_measured.toml``)
replaces the LQ parameters (κ, k, c, ρ) of :mod:`mfgsim.studies.calibration` by what the
book itself shows (:mod:`analysis.primitives`):

* the propagator Y = ∫ G(t - s) sign(μ_s)|μ_s|^δ ds, G(τ) = G_∞ + Σ κ_i e^{-ρ_i τ}, fitted
  jointly to the crowd's mean price path of the iteration and to the meta-order paths of
  ``[meta_orders]`` (TWAP sells of several sizes with their relaxation; run once, since a
  TWAP does not depend on the model). The book's response is concave (δ ≈ 0.6–0.7 on the
  latent book: the square-root law), which no linear kernel (δ = 1) reconciles across
  the crowd and meta-orders of several sizes. With ``permanent_exponent = "fitted"`` the
  permanent part acts on sign(μ)|μ|^δ∞ with δ∞ of its own: one exponent gives every
  meta-order of one duration the same plateau/peak ratio, while the book's lasting impact
  grows with size faster than its transient one;
* the temporary cost a + k|ν|^(α-1) + c μ sign ν per unit, from every fill of the crowd
  against its pre-trade mid: the half-spread a and the crowd's term c are fed back; the
  own-rate slippage k|ν|^α is measured and reported (``hat_k``, ``hat_alpha``) but not
  fed back. Under mean-field scaling one agent's orders are a lot or two against a depth
  that grows with N, so the book's own-rate slope is not identified (its bootstrap
  interval holds zero), and an MFG with k -> 0 has no interior optimum: k and α stay the
  agents' configured speed friction.

The agents trade on the finite-difference MFG of those primitives (``strategy = "mfg_fd"``:
the propagator as one impact state per exponential fed by f(μ) = sign(μ)|μ|^δ, the
permanent one by sign(μ)|μ|^δ∞, the cost
a|ν| + k|ν|^α with its no-trade zone, the crowd term c μ). Each iteration runs the book, measures the primitives
with bootstrap errors over its seeds and moves a damped step towards them; it stops when
they move by less than ``tol`` (relative) or when every component is within two standard
errors of the current one (the book cannot tell them apart), from the third iteration on
(the first measurement is of the configured LQ model's path, the second of a path the
primitives made). The number of exponentials is chosen by BIC on the first measurement
(or ``n_exponentials``) and then kept.

Every iteration's primitives, the measured ones with their errors, and the outcomes of
the model the agents traded on (``cost_gap_rel``, ``price_error_rel``) are rows of
``calibration.parquet``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from analysis.compare import outcome_gaps, realised_gains
from analysis.impact import execution_cells
from analysis.primitives import (MAX_EXPONENTIALS, ImpactCurve, Propagator, TemporaryCost, fit_propagator,
                                 fit_temporary_cost, held_out_error, impact_curve)
from mfg.fd import MFGSolution, solve
from simulator.market import feedback_rates, run_market

from ..build import build_run, market_objects
from ..engines import SeedRuns

COST_NAMES = ("k", "alpha", "spread", "crowd")


@dataclass(frozen=True)
class Primitives:
    """The market's primitives the MFG is built on.

    Parameters
    ----------
    propagator : analysis.primitives.Propagator
    temporary : analysis.primitives.TemporaryCost
    """

    propagator: Propagator
    temporary: TemporaryCost

    @property
    def n_exponentials(self) -> int:
        """Number of decaying terms of the kernel."""
        return len(self.propagator.rates)

    def vector(self) -> np.ndarray:
        """The components fed back, which a damped step moves: G_∞, κ_i, log ρ_i, δ, δ∞, a, c.

        δ∞ is δ when the kernel has no permanent exponent of its own.

        Returns
        -------
        numpy.ndarray of float64
        """
        p, c = self.propagator, self.temporary
        return np.array([p.permanent, *p.amplitudes, *np.log(p.rates), p.exponent, p.lasting_exponent, c.spread,
                         c.crowd])

    def errors(self) -> np.ndarray:
        """Standard errors of :meth:`vector` (NaN where not bootstrapped).

        Returns
        -------
        numpy.ndarray of float64
        """
        p, c = self.propagator, self.temporary
        K = self.n_exponentials
        amps = p.amplitudes_se or (math.nan,) * K
        rates = (np.array(p.rates_se) / np.array(p.rates)) if p.rates_se else np.full(K, math.nan)
        lasting_se = p.exponent_se if p.permanent_exponent is None else p.permanent_exponent_se
        return np.array([p.permanent_se, *amps, *rates, p.exponent_se, lasting_se, c.spread_se, c.crowd_se])

    def scales(self) -> np.ndarray:
        """What counts as a relative change of each component of :meth:`vector`.

        Returns
        -------
        numpy.ndarray of float64
        """
        v = self.vector()
        K = self.n_exponentials
        kernel = 0.05 * max(v[0] + v[1:1 + K].sum(), 1e-12)  # 5% of G(0)
        return np.concatenate([np.maximum(np.abs(v[:1 + K]), kernel), np.ones(K),
                               np.maximum(np.abs(v[1 + 2 * K:]), [1.0, 1.0, 1e-4, 0.05])])

    def stepped(self, target: Primitives, damping: float) -> Primitives:
        """The primitives a damped step ``damping`` of the way towards ``target`` (same K).

        Parameters
        ----------
        target : Primitives
        damping : float
            In (0, 1].

        Returns
        -------
        Primitives
        """
        v = self.vector() + damping * (target.vector() - self.vector())
        K = self.n_exponentials
        exponent, lasting, spread, crowd = v[1 + 2 * K:]
        own = target.propagator.permanent_exponent is not None
        kernel = Propagator(max(v[0], 0.0), tuple(float(a) for a in np.maximum(v[1:1 + K], 0.0)),
                            tuple(float(r) for r in np.exp(v[1 + K:1 + 2 * K])), float(max(exponent, 0.05)),
                            permanent_exponent=float(max(lasting, 0.05)) if own else None)
        return Primitives(kernel, dataclasses.replace(target.temporary, spread=spread, crowd=crowd)).admissible()

    def admissible(self) -> Primitives:
        """These primitives with the cost terms an MFG takes: a half-spread and a crowd term >= 0.

        A fit may put either slightly below zero when the book cannot tell it from zero.

        Returns
        -------
        Primitives
        """
        c = self.temporary
        return Primitives(self.propagator, dataclasses.replace(c, spread=max(c.spread, 0.0), crowd=max(c.crowd, 0.0)))

    def columns(self, prefix: str = "") -> dict:
        """Flat columns for a Parquet row (up to three exponentials; NaN beyond K).

        Parameters
        ----------
        prefix : str
            Put before every name (``"hat_"`` for the measured primitives).

        Returns
        -------
        dict
        """
        p, c = self.propagator, self.temporary
        own = p.permanent_exponent is not None
        out = {f"{prefix}permanent": p.permanent, f"{prefix}permanent_se": p.permanent_se,
               f"{prefix}exponent": p.exponent, f"{prefix}exponent_se": p.exponent_se,
               f"{prefix}permanent_exponent": p.permanent_exponent if own else math.nan,
               f"{prefix}permanent_exponent_se": p.permanent_exponent_se if own else math.nan}
        for i in range(MAX_EXPONENTIALS):
            present = i < len(p.rates)
            out[f"{prefix}amplitude_{i + 1}"] = p.amplitudes[i] if present else math.nan
            out[f"{prefix}rate_{i + 1}"] = p.rates[i] if present else math.nan
            out[f"{prefix}amplitude_{i + 1}_se"] = p.amplitudes_se[i] if present and p.amplitudes_se else math.nan
            out[f"{prefix}rate_{i + 1}_se"] = p.rates_se[i] if present and p.rates_se else math.nan
        for name in COST_NAMES:
            out[f"{prefix}{name}"] = getattr(c, name)
            out[f"{prefix}{name}_se"] = getattr(c, f"{name}_se")
        return {k: float(v) for k, v in out.items()}

    @classmethod
    def from_columns(cls, row: dict, prefix: str = "") -> Primitives:
        """The primitives of a row written by :meth:`columns` (a calibration.parquet row, say).

        Parameters
        ----------
        row : dict
        prefix : str
            ``"hat_"`` for the measured primitives, ``""`` for those the agents traded on.

        Returns
        -------
        Primitives
        """
        def get(name):
            return float(row[f"{prefix}{name}"])

        present = [i for i in range(1, MAX_EXPONENTIALS + 1) if math.isfinite(get(f"rate_{i}"))]
        # NaN, or no column in a file written before the kernel could have one: no δ∞ of its own
        lasting = float(row.get(f"{prefix}permanent_exponent", math.nan))
        propagator = Propagator(get("permanent"), tuple(get(f"amplitude_{i}") for i in present),
                                tuple(get(f"rate_{i}") for i in present), get("exponent"), get("permanent_se"),
                                tuple(get(f"amplitude_{i}_se") for i in present),
                                tuple(get(f"rate_{i}_se") for i in present), get("exponent_se"),
                                permanent_exponent=lasting if math.isfinite(lasting) else None,
                                permanent_exponent_se=float(row.get(f"{prefix}permanent_exponent_se", math.nan)))
        costs = {name: get(name) for name in COST_NAMES} | {f"{name}_se": get(f"{name}_se") for name in COST_NAMES}
        return cls(propagator, TemporaryCost(**costs, n_cells=0, r2=math.nan))

    def configured(self, cfg: dict) -> dict:
        """A copy of a resolved config whose agents trade on the MFG of these primitives.

        The kernel, the half-spread and the crowd term come from the primitives; k and the
        cost exponent stay the configured ones (see the module docstring).

        Parameters
        ----------
        cfg : dict
            A resolved market config with a ``[crowd.fd_grid]``.

        Returns
        -------
        dict
        """
        out = copy.deepcopy(cfg)
        terms = self.propagator.model_terms()
        out["model"].update(kappa=terms["kappa"], rho=terms["rho"], transient=[list(t) for t in terms["transient"]],
                            c=float(self.temporary.crowd))
        out["crowd"].update(strategy="mfg_fd", spread_cost=float(self.temporary.spread),
                            impact_exponent=terms["impact_exponent"])
        out["crowd"].pop("permanent_impact_exponent", None)
        if terms["permanent_exponent"] is not None:
            out["crowd"]["permanent_impact_exponent"] = terms["permanent_exponent"]
        return out


def meta_order_curves(cfg: dict, sizes, seeds, post_steps: int, source: str, pool) -> list[ImpactCurve]:
    """Price paths of crowd meta-orders (TWAP sells of each size per agent) and their relaxation.

    Each agent's size is drawn with the crowd's relative dispersion (the first type's m0),
    so that the agents' lots arrive spread over the steps as the crowd's do.

    Parameters
    ----------
    cfg : dict
        A resolved market config.
    sizes : sequence of float
        Per-agent meta-order sizes (model units).
    seeds : sequence of int
    post_steps : int
        Steps recorded after the orders end.
    source : str
        The file, for messages.
    pool : concurrent.futures.Executor

    Returns
    -------
    list of ImpactCurve
        Named ``"meta <size>"``.
    """
    curves = []
    m0 = cfg["model"]["types"][0]["m0"]
    # the crowd's relative dispersion of inventories: with identical inventories every agent
    # crosses a whole lot in the same step, and the book sees bursts every few steps
    # instead of the crowd's steady flow (a quarter of the impact at the same mean rate)
    spread = float(m0["stds"][0]) / abs(float(m0["means"][0])) if float(m0["means"][0]) else 0.0
    for size in sizes:
        sized = copy.deepcopy(cfg)
        sized["model"]["types"] = [{**sized["model"]["types"][0],
                                    "m0": {"means": [float(size)], "stds": [spread * float(size)]}, "weight": 1.0}]
        sized["crowd"] = {key: value for key, value in sized["crowd"].items()
                          if key not in ("fd_grid", "cost_exponent", "spread_cost", "impact_exponent",
                                         "permanent_impact_exponent")}
        sized["crowd"].update(strategy="twap", stop_at_target=True)
        spec = dataclasses.replace(build_run(sized, source)["spec"], post_steps=post_steps, record_every=1,
                                   max_trades_kept=0)
        # only each run's mid and crowd flow are kept, not its tables: hundreds of seeds fit
        paths = [{"mid": r.market["mid"], "crowd_flow": r.market["crowd_flow"]}
                 for r in pool.map(run_market, [spec] * len(seeds), seeds)]
        crowd = spec.crowd
        curves.append(impact_curve(f"meta {size:g}", paths, crowd.n_agents, crowd.lots_per_unit, spec.tick_size,
                                   spec.dt))
    return curves


def lasting_mode(permanent_exponent: str) -> str | None:
    """:func:`analysis.primitives.fit_propagator`'s ``permanent_exponent`` for a file's
    ``permanent_exponent`` ("shared" or "fitted")."""
    return None if permanent_exponent == "fitted" else "shared"


def crowd_shares(n_meta: int, crowd_share: float) -> list[float]:
    """Weight shares of the crowd's path and of ``n_meta`` meta-order paths in the kernel fit.

    Parameters
    ----------
    n_meta : int
        Meta-order curves (after the crowd's).
    crowd_share : float
        The crowd's share, in (0, 1]; the meta-orders share the rest equally.

    Returns
    -------
    list of float
    """
    return [crowd_share] + [(1.0 - crowd_share) / max(n_meta, 1)] * n_meta


def measure(runs, spec, meta_curves, n_exponentials: int | None, horizon: int, n_boot: int,
            seed: int = 0, crowd_share: float = 0.5, pool: Executor | None = None,
            permanent_exponent: str = "shared",
            on_point: Callable[[Primitives], None] | None = None) -> Primitives:
    """The primitives of a set of book runs of the crowd, with bootstrap errors over seeds.

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Recorded at every step, with the crowd's executions.
    spec : simulator.market.MarketSpec
    meta_curves : sequence of ImpactCurve
        Fitted jointly with the crowd's path.
    n_exponentials : int or None
        Decaying terms of the kernel (None: chosen by BIC).
    horizon : int
        Steps per block when pooling executions.
    n_boot : int
        Bootstrap resamples.
    seed : int
    crowd_share : float
        The crowd's path's share of the fit's weight (the meta-orders share the rest): the
        crowd's own price is what the MFG predicts, the meta-orders pin the kernel's shape.
    pool : concurrent.futures.Executor, optional
        Where the cost fit and the kernel's bootstrap refits run, beside the kernel's point
        fit here (None: all here; the same result).
    permanent_exponent : {"shared", "fitted"}
        Whether the kernel's permanent part has its own exponent δ∞.
    on_point : callable, optional
        Called with the primitives once the kernel's bootstrap refits are queued (the kernel
        without its errors, the cost with them), so that work needing only their values
        starts beside the refits.

    Returns
    -------
    Primitives
    """
    crowd = spec.crowd
    markets = [r.market for r in runs]
    cells = execution_cells([r.executions for r in runs], markets, crowd.n_agents, crowd.lots_per_unit,
                            spec.tick_size, spec.dt, horizon)
    # k is reported, not fed back (see the module docstring): a non-positive slope is a result
    fit_cost = functools.partial(fit_temporary_cost, cells, n_boot=n_boot, seed=seed, require_slippage=False)
    temporary = pool.submit(fit_cost) if pool is not None else None  # beside the kernel's point fit
    path = impact_curve("crowd", markets, crowd.n_agents, crowd.lots_per_unit, spec.tick_size, spec.dt, spec.n_steps)
    cost = functools.cache(fit_cost if temporary is None else temporary.result)
    propagator = fit_propagator([path, *meta_curves], n_exponentials, n_boot=n_boot, seed=seed, exponent=None,
                                shares=crowd_shares(len(meta_curves), crowd_share),
                                mapper=map if pool is None else pool.map,
                                permanent_exponent=lasting_mode(permanent_exponent),
                                on_point=None if on_point is None else lambda kernel: on_point(Primitives(kernel,
                                                                                                          cost())))
    return Primitives(propagator, cost())


class MeanField(NamedTuple):
    """What the MFG the crowd trades on predicts (:func:`mean_field`).

    Attributes
    ----------
    value_at_start : callable
        h(0, q0) as a function of (q0, type) (model units).
    times, impact : numpy.ndarray of float64
        The model's impact path (model price units) at its times.
    rate : callable
        The feedback ν(t, q, type) (units per time, arrays broadcast).
    solution : mfg.fd.MFGSolution or None
        The FD solution (None for the closed form).
    """

    value_at_start: Callable
    times: np.ndarray
    impact: np.ndarray
    rate: Callable
    solution: MFGSolution | None


def mean_field(model, crowd) -> MeanField:
    """The MFG the crowd trades on and what it predicts, solved once.

    Parameters
    ----------
    model : mfg.closed_form.LQCrowding
    crowd : simulator.agents.ExecutionCrowd

    Returns
    -------
    MeanField
        From the FD solution for ``"mfg_fd"``, from the closed form otherwise.
    """
    if crowd.strategy != "mfg_fd":
        t = np.linspace(0.0, model.T, 501)

        def closed_value(q0, types):
            q0, types = np.asarray(q0, dtype=np.float64), np.asarray(types)
            out = np.empty(q0.shape)
            for j in range(len(model.types)):  # the value is a quadratic in q: one call per type
                mask = types == j
                out[mask] = model.value(0.0, q0[mask], j)
            return out

        def closed_rate(times, q, types):
            out = np.empty(np.broadcast(times, q).shape)
            for j in range(len(model.types)):
                mask = np.broadcast_to(types == j, out.shape)
                out[mask] = np.broadcast_to(model.control(times, q, j), out.shape)[mask]
            return out

        return MeanField(closed_value, t, model.price_impact(t), closed_rate, None)
    fd_model = crowd.fd_model()
    sol = solve(fd_model, crowd.fd_grid)
    grid = sol.grid
    x = grid.x

    def fd_value(q0, types):  # the FD value is a cost u = -h
        q0, types = np.asarray(q0, dtype=np.float64), np.asarray(types, dtype=np.int64)
        value = np.empty(q0.shape)
        for j in np.unique(types):
            value[types == j] = -np.interp(q0[types == j], x, sol.value[j, 0])
        return value

    return MeanField(fd_value, grid.t, fd_model.impact_path(sol.mean_rate, grid), feedback_rate(grid, sol.control),
                     sol)


def feedback_rate(grid, control: np.ndarray) -> Callable:
    """A feedback table read as the agents read it: bilinear in (t, x) on the solver's grid.

    Parameters
    ----------
    grid : mfg.fd.Grid
    control : numpy.ndarray of float64, shape (J, n_t + 1, n_x)
        ν(t, x) by type (units per time).

    Returns
    -------
    callable
        ν(t, q, type), arrays broadcast (:func:`simulator.market.feedback_rates`).
    """
    return functools.partial(feedback_rates, control, grid.x_min, grid.dx, grid.dt)


def speed_penalty(run, model, crowd, rate) -> np.ndarray:
    """Each agent's speed friction k∫|ν|^α dt along its recorded path, ν the rate its strategy asked for.

    The MFG charges k|ν|^α as the agents' preference (the book's own-rate slippage is not
    identified; see the module docstring), so the realised gain compared with its value
    pays it too, on the rate the feedback asked for rather than on the lot-rounded fills.

    Parameters
    ----------
    run : simulator.market.MarketRun
    model : mfg.closed_form.LQCrowding
    crowd : simulator.agents.ExecutionCrowd
    rate : callable
        ν(t, q, type), as :func:`mean_field` returns it.

    Returns
    -------
    numpy.ndarray of float64
        Model value units, one entry per agent.
    """
    t = np.asarray(run.market["t"], dtype=np.float64)
    inside = t <= model.T * (1 + 1e-12)
    n_rec = t.size
    inv = np.asarray(run.agents["inventory"]).reshape(n_rec, -1)[inside]
    types = np.asarray(run.agents["type"]).reshape(n_rec, -1)[0]
    nu = rate(t[inside][:, None], inv, types[None, :])
    return np.trapezoid(model.k * np.abs(nu) ** crowd.cost_exponent, t[inside], axis=0)


def evaluate(runs, model, spec, n_boot: int = 1000, seed: int = 0, mf: MeanField | None = None) -> dict:
    """``cost_gap_rel`` and ``price_error_rel`` of the runs against the MFG their agents traded on.

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
    model : mfg.closed_form.LQCrowding
    spec : simulator.market.MarketSpec
    n_boot : int
    seed : int
    mf : MeanField, optional
        :func:`mean_field` of the model and crowd, when the caller has it already.

    Returns
    -------
    dict
        As :func:`analysis.compare.outcome_gaps`, the realised gains charged the agents'
        speed friction (:func:`speed_penalty`).
    """
    mf = mean_field(model, spec.crowd) if mf is None else mf
    return outcome_gaps(runs, model, mf.value_at_start, mf.times, mf.impact, n_boot=n_boot, seed=seed,
                        extra_penalty=lambda run: speed_penalty(run, model, spec.crowd, mf.rate))


DECOMPOSITION = ("spread", "temporary", "permanent_impact", "transient_impact", "unexplained_impact",
                 "inventory_penalty", "speed_friction", "total")


def cost_decomposition(runs, model, spec) -> dict:
    """What execution cost the agents, book against model, term by term (per agent, model value units).

    * ``spread``: book, Σ |fill| × the half-spread at the order's step; model, a ∫ E|ν| dt;
    * ``temporary``: book, the rest of the shortfall against the pre-trade mid (the depth
      the step's orders walked, the crowd's included); model, the crowd term c ∫ μ² dt;
    * ``permanent_impact`` / ``transient_impact``: -∫ E(t) dY_i(t) over the kernel's
      permanent part and its exponentials; in the book, the kernel applied to the book's
      own mean flow, what it leaves of the book's impact cost being ``unexplained_impact``
      (the book's impact cost is its execution cost less the shortfall and the penalties);
    * ``inventory_penalty``: φ∫Q² + A Q_T²; ``speed_friction``: k∫|ν|^α (the agents' preference);
    * ``total``: the execution cost, -(gain - q0 S0) with the penalties, which the model's
      terms add up to (its value, up to the grid's error).

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Recorded at every step, with every crowd execution.
    model : mfg.closed_form.LQCrowding
    spec : simulator.market.MarketSpec
        Its crowd trades on ``"mfg_fd"``.

    Returns
    -------
    dict
        ``book`` and ``model``: {term: float} over :data:`DECOMPOSITION`.
    """
    crowd = spec.crowd
    mf = mean_field(model, crowd)
    sol = mf.solution
    g = sol.grid
    w = np.asarray(model.weights)[:, None, None]
    m, nu = sol.m[:, 1:], sol.control[:, :-1]  # the implicit FP moves m^{n+1} with step n's control
    E = sol.mean_inventory()
    E_step = 0.5 * (E[1:] + E[:-1])
    phi = np.array([p.phi for p in model.types])
    A = np.array([p.A for p in model.types])
    second = (sol.m * g.x**2).sum(axis=2) * g.dx  # E[Q²] per type and time
    fd_model = crowd.fd_model()
    terms = [(rho, -(E_step * np.diff(path)).sum()) for rho, path in fd_model.term_paths(sol.mean_rate, g.dt)]
    model_side = {
        "spread": crowd.spread_cost * float((w * np.abs(nu) * m).sum() * g.dx * g.dt),
        "temporary": model.c * float(np.sum(sol.mean_rate**2) * g.dt),
        "permanent_impact": float(sum(t for rho, t in terms if rho == 0)),
        "transient_impact": float(sum(t for rho, t in terms if rho > 0)),
        "unexplained_impact": 0.0,
        "inventory_penalty": float(model.weights @ (phi * np.trapezoid(second, g.t, axis=1) + A * second[:, -1])),
        "speed_friction": model.k * float((w * np.abs(nu) ** crowd.cost_exponent * m).sum() * g.dx * g.dt),
    }
    model_side["total"] = sum(model_side.values())
    book = {key: [] for key in DECOMPOSITION}
    for run in runs:
        n = crowd.n_agents
        market, ex = run.market, run.executions
        half_spread = 0.5 * (np.asarray(market["best_ask"], float) - np.asarray(market["best_bid"], float))
        step, filled = np.asarray(ex["step"]), np.asarray(ex["filled"], dtype=np.float64)
        spread = float(np.sum(np.abs(filled) * half_spread[step]) * spec.tick_size / n)
        shortfall = float(np.sum(ex["shortfall"]) * spec.tick_size / n)
        g_run = realised_gains(run, model)
        t = np.asarray(market["t"], dtype=np.float64)
        inside = t <= model.T * (1 + 1e-12)
        inv = np.asarray(run.agents["inventory"]).reshape(t.size, -1)[inside]
        penalty = float(np.mean(g_run["penalty"]))
        friction = float(np.mean(speed_penalty(run, model, crowd, mf.rate)))
        total = -float(np.mean(g_run["gain"] - g_run["start_value"])) + friction
        impact = total - shortfall - penalty - friction
        book_rate = np.asarray(market["crowd_flow"], float)[1: spec.n_steps + 1] / (n * crowd.lots_per_unit * spec.dt)
        mean_inv = inv.mean(axis=1)[: spec.n_steps]
        parts = [(rho, -(mean_inv * np.diff(path)).sum()) for rho, path in fd_model.term_paths(book_rate, spec.dt)]
        permanent = float(sum(x for rho, x in parts if rho == 0))
        transient = float(sum(x for rho, x in parts if rho > 0))
        for key, v in (("spread", spread), ("temporary", shortfall - spread), ("permanent_impact", permanent),
                       ("transient_impact", transient), ("unexplained_impact", impact - permanent - transient),
                       ("inventory_penalty", penalty), ("speed_friction", friction), ("total", total)):
            book[key].append(v)
    return {"book": {key: float(np.mean(v)) if v else math.nan for key, v in book.items()}, "model": model_side}


def flat_outcome(outcome: dict) -> dict:
    """An :func:`analysis.compare.outcome_gaps` dict as Parquet columns (the halves as two columns).

    Parameters
    ----------
    outcome : dict

    Returns
    -------
    dict
    """
    halves = outcome["price_error_rel_halves"]
    return {**{k: v for k, v in outcome.items() if k != "price_error_rel_halves"},
            "price_error_rel_half_a": halves[0], "price_error_rel_half_b": halves[1]}


def calibrate_point(cfg: dict, plan, pool, point: int = 0, progress=None, start: Primitives | None = None,
                    hold_out: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Iterate one sweep point's primitives to their fixed point.

    Parameters
    ----------
    cfg : dict
        The point's resolved config.
    plan : mfgsim.studies.calibration.CalibrationPlan
        Its settings and ``[meta_orders]``.
    pool : concurrent.futures.Executor
    point : int
        The point's index (in the rows).
    progress : callable, optional
        Called with each row as it is made.
    start : Primitives, optional
        Trade on these from the first iteration (another N's fixed point), not on the
        configured LQ model; the loop may then stop as soon as the book agrees with them.
    hold_out : bool
        Refit the kernel without each meta-order size (``held_out``; empty when False).

    Returns
    -------
    (rows, held_out, last) : tuple of (list of dict, list of dict, dict)
        One row per iteration: the primitives the agents traded on, the measured ones
        (``hat_`` columns, with standard errors), the distance, the outcomes; one row per
        meta-order size: its peak and plateau (observed on ``held_out_seeds`` when the file
        gives them, with ``observed_seeds`` saying how many) predicted by the kernel fitted, at
        the last iteration, without it, the errors with ``n_boot`` bootstrap intervals
        (:func:`analysis.primitives.held_out_error`); and the last
        iteration's ``curves`` and measured ``propagator`` (for the figure).
    """
    s, meta = plan.settings, plan.meta_orders
    meta_curves = meta_order_curves(cfg, meta.sizes, meta.seeds, meta.post_steps, plan.source, pool)
    theta: Primitives | None = start
    n_exponentials = s.n_exponentials if start is None else start.n_exponentials
    book_runs = SeedRuns(pool, s.seeds)  # the same seeds every iteration: each warms up once
    started = time.perf_counter()  # an iteration's seconds run from the previous one's row (the first: the warm-ups)
    model, spec = market_objects(cfg if theta is None else theta.configured(cfg), plan.source)
    pending = book_runs.submit(spec)
    rows = []
    for it in range(s.max_iter + 1):
        runs = [future.result() for future in pending]
        ahead: dict = {}

        def run_ahead(point: Primitives, theta=theta, last=it == s.max_iter):
            # the next iteration's runs start on the point estimates, beside the kernel's
            # bootstrap; they are cancelled if the errors then say the loop has converged
            if not last:
                ahead["theta"] = point if theta is None else theta.stepped(point, s.damping)
                ahead["objects"] = market_objects(ahead["theta"].configured(cfg), plan.source)
                ahead["pending"] = book_runs.submit(ahead["objects"][1])

        hat = measure(runs, spec, meta_curves, n_exponentials, s.horizon, s.n_boot, seed=it,
                      crowd_share=s.crowd_share, pool=pool, permanent_exponent=s.permanent_exponent,
                      on_point=run_ahead)
        n_exponentials = hat.n_exponentials
        if theta is None:  # the start is the configured LQ model: the first measurement replaces it
            distance, within_noise = math.inf, False
        else:
            gap = np.abs(hat.vector() - theta.vector())
            distance = float(np.max(gap / theta.scales()))
            within_noise = bool(np.all(gap <= 2 * hat.errors()))
        # the first primitives come from the configured model's path: stop only once the
        # agents have traded on primitives measured from trading on primitives
        converged = it >= (0 if start is not None else 2) and (distance < s.tol or within_noise)
        if not converged and it < s.max_iter:
            stepped = hat if theta is None else theta.stepped(hat, s.damping)
            # the runs started ahead traded on the same values (only the kernel's errors were missing)
            assert np.array_equal(ahead["theta"].vector(), stepped.vector(), equal_nan=True)
            (next_model, next_spec), pending = ahead["objects"], ahead["pending"]
        else:
            for future in ahead.get("pending", ()):
                future.cancel()
        outcome = evaluate(runs, model, spec, n_boot=200, seed=it)
        rows.append({"point": point, "sweep": plan.labels[point], "iteration": it, "model": "measured",
                     "seconds": time.perf_counter() - started,
                     "started_from": "configured" if theta is None else "primitives",
                     **(theta.columns() if theta is not None else _nan_columns(hat)), **hat.columns("hat_"),
                     "distance": distance, "within_noise": within_noise, "converged": False,
                     **flat_outcome(outcome)})
        started = time.perf_counter()
        if progress is not None:
            progress(rows[-1])
        if converged:
            rows[-1]["converged"] = True
            break
        if it < s.max_iter:
            theta, model, spec = stepped, next_model, next_spec
    crowd = spec.crowd
    path = impact_curve("crowd", [r.market for r in runs], crowd.n_agents, crowd.lots_per_unit, spec.tick_size,
                        spec.dt, spec.n_steps)
    held_out = []
    observed = meta_curves
    if hold_out and meta.held_out_seeds:  # the small sizes' plateaus need more seeds than the fit
        observed = meta_order_curves(cfg, meta.sizes, meta.held_out_seeds, meta.post_steps, plan.source, pool)
    for curve, seen in zip(meta_curves, observed) if hold_out else ():
        errors = held_out_error([path, *meta_curves], curve.name, n_exponentials, exponent=None,
                                shares=crowd_shares(len(meta_curves) - 1, s.crowd_share), observed=seen,
                                permanent_exponent=lasting_mode(s.permanent_exponent), n_boot=s.n_boot,
                                mapper=pool.map)
        held_out.append({"point": point, "held_out": curve.name, "observed_seeds": seen.seeds,
                         **{k: float(v) for k, v in errors.items() if k != "propagator"}})
    return rows, held_out, {"curves": [path, *meta_curves], "propagator": hat.propagator}


def scaling(cfg: dict, plan, primitives: Primitives | None, pool, progress=None) -> tuple[list[dict], list[dict]]:
    """The agents on the MFG of fixed primitives at every N of ``scaling``, liquidity scaled, fresh seeds.

    With ``scaling_recalibrate``, each N other than the loop's own also gets its own fixed
    point (the loop run again at that N, meta-orders included, starting from ``primitives``),
    evaluated on the same fresh seeds: the "carried" rows say whether the book's primitives
    at one N serve at another, the "own" rows whether the MFG of each N's own primitives
    matches the book at that N. At the loop's N the own fixed point is the carried one.

    Parameters
    ----------
    cfg : dict
        The sweep point's resolved config.
    plan : mfgsim.studies.calibration.CalibrationPlan
        Its ``scaling``, ``scaling_seeds`` and ``scaling_recalibrate``.
    primitives : Primitives or None
        The fixed point (None: the configured model).
    pool : concurrent.futures.Executor
    progress : callable, optional
        Called with N and each row of an N's own loop as it is made.

    Returns
    -------
    (runs, by_n) : tuple of list of dict
        One row per fixed point, N and seed (that run's cost_gap_rel and price_error_rel);
        and one row per fixed point and N with the seeds pooled (:func:`evaluate`, with
        intervals), the primitives traded on and the iterations of the N's own loop.
    """
    s = plan.settings
    base = cfg if primitives is None else primitives.configured(cfg)
    own_n = int(cfg["crowd"]["n_agents"])
    run_rows, by_n = [], []
    for n in s.scaling:
        config = copy.deepcopy(base)
        config["crowd"]["n_agents"] = int(n)
        fixed_points = [("carried", primitives, config, 0, True)]
        if s.scaling_recalibrate and primitives is not None and n != own_n:
            at_n = copy.deepcopy(cfg)
            at_n["crowd"]["n_agents"] = int(n)
            say = None if progress is None else (lambda row, n=n: progress(n, row))
            rows, _, _ = calibrate_point(at_n, plan, pool, progress=say, start=primitives, hold_out=False)
            own = Primitives.from_columns(rows[-1])
            fixed_points.append(("own", own, own.configured(at_n), len(rows), bool(rows[-1]["converged"])))
        elif s.scaling_recalibrate:
            fixed_points.append(("own", primitives, config, 0, True))
        evaluated = None
        book_runs = SeedRuns(pool, s.scaling_seeds)  # both fixed points trade in the same market: one warm-up
        for label, traded_on, config_n, iterations, converged in fixed_points:
            carried_again = label == "own" and (traded_on is primitives or np.array_equal(traded_on.vector(),
                                                                                           primitives.vector()))
            if not carried_again:  # the carried point again would give the same runs
                evaluated = _evaluate_at(config_n, plan, book_runs)
            runs_n, pooled = evaluated
            run_rows += [{"fixed_point": label, "N": int(n), **r} for r in runs_n]
            columns = traded_on.columns() if traded_on is not None else {}
            by_n.append({"fixed_point": label, "N": int(n), "iterations": iterations, "converged": converged,
                         **flat_outcome(pooled), **columns})
    return run_rows, by_n


def _evaluate_at(config: dict, plan, book_runs: SeedRuns) -> tuple[list[dict], dict]:
    """One fixed point's outcomes on the scaling seeds (``book_runs``): per seed, and pooled with intervals."""
    model, spec = market_objects(config, plan.source)
    runs = book_runs(spec)
    mf = mean_field(model, spec.crowd)
    per_seed = []
    for seed, run in zip(book_runs.seeds, runs):
        one = evaluate([run], model, spec, n_boot=0, mf=mf)
        per_seed.append({"seed": int(seed), "cost_gap_rel": one["cost_gap_rel"],
                         "price_error_rel": one["price_error_rel"]})
    return per_seed, evaluate(runs, model, spec, mf=mf)


def _nan_columns(template: Primitives) -> dict:
    """The primitives columns of an iteration that traded on the configured model, not on primitives."""
    return {key: math.nan for key in template.columns()}
