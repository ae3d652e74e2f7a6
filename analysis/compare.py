"""One run against the mean field: the per-time ``mfg`` rows and the ``summary`` row.

The reference is the LQ crowding equilibrium of the campaign's model: its law of
inventories m(t, ·) (a Gaussian mixture, exact), its mean E(t) and its mean rate μ(t).
Rates are compared as averages over each recording interval,
``(E(t_r) - E(t_{r-1})) / Δ`` against the agents' realised rates over the same interval.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import kolmogorov_smirnov, wasserstein1


def compare_run(run, model, stride: int = 1) -> tuple[dict, dict]:
    """The finite-N run against the mean field, record by record and in summary.

    Records after the horizon (``post_steps``) are left out.

    Parameters
    ----------
    run : simulator.market.MarketRun
        A book or particle run of an execution crowd.
    model : mfg.closed_form.LQCrowding
        The mean field to compare with (inventories in model units).
    stride : int
        Keep every stride-th record (rates then average over the longer interval).

    Returns
    -------
    (rows, summary) : tuple of dict
        ``rows``: per kept record t, w1, ks, mean_inventory / mf_mean_inventory (model
        units), mean_rate / mf_mean_rate (units per time; NaN at t = 0), variance /
        mf_variance. ``summary``: w1_mean, w1_max, ks_max, mean_inventory_error,
        mean_rate_error, cost_gap (model value units), price_move (ticks or price units).
    """
    t_all = np.asarray(run.market["t"])
    n_all = t_all.size
    keep = np.flatnonzero(t_all <= model.T * (1 + 1e-12))[::stride]
    t = t_all[keep]
    n_rec = t.size
    inv = np.asarray(run.agents["inventory"]).reshape(n_all, -1)[keep]
    filled = np.asarray(run.agents["rate"]).reshape(n_all, -1)
    # average the recorded interval rates over each kept interval
    cum = np.concatenate([np.zeros((1, filled.shape[1])), np.cumsum(filled[1:], axis=0)])[keep]
    rate = np.full_like(inv, np.nan)
    rate[1:] = np.diff(cum, axis=0) / np.diff(keep)[:, None]
    E = model.mean_inventory(t)
    mf_rate = np.full(n_rec, np.nan)
    mf_rate[1:] = np.diff(E) / np.diff(t)
    laws = [model.law(float(s)) for s in t]
    w1 = np.array([wasserstein1(inv[r], laws[r]) for r in range(n_rec)])
    ks = np.array([kolmogorov_smirnov(inv[r], laws[r]) for r in range(n_rec)])
    mean_rate = rate.mean(axis=1)
    mean_rate[0] = np.nan  # no interval ends at t = 0
    rows = {
        "t": t, "w1": w1, "ks": ks,
        "mean_inventory": inv.mean(axis=1), "mf_mean_inventory": E,
        "mean_rate": mean_rate, "mf_mean_rate": mf_rate,
        "variance": inv.var(axis=1), "mf_variance": np.array([law.variance for law in laws]),
    }
    mid = np.asarray(run.market["mid"], dtype=np.float64)[keep]
    summary = {
        "w1_mean": float(w1.mean()), "w1_max": float(w1.max()), "ks_max": float(ks.max()),
        "mean_inventory_error": float(np.max(np.abs(rows["mean_inventory"] - E))),
        "mean_rate_error": float(np.nanmax(np.abs(mean_rate - mf_rate))) if n_rec > 1 else float("nan"),
        "cost_gap": cost_gap(run, model),
        "price_move": float(mid[-1] - mid[0]),
    }
    return rows, summary


def cost_gap(run, model) -> float:
    """Mean over agents of the realised gain minus the MFG value q0 S0 + h(0, q0).

    Gain of agent i: X_T + Q_T S_T - A_j Q_T² - φ_j ∫ Q² dt in model units. Particle system:
    S is the simulated price and ∫ Q² is accumulated every step. Book: S is the mid valued
    per unit of inventory (L lots × tick_size × mid ticks), X the cash, and ∫ Q² the
    trapezoid over the records. For the MFG strategy in a market that behaves as the model
    says, the gap is zero in expectation; in the book it also carries the costs the model
    leaves out (the spread) and any mismatch of κ, k, c.

    Parameters
    ----------
    run : simulator.market.MarketRun
    model : mfg.closed_form.LQCrowding

    Returns
    -------
    float
        Model value units (price × inventory units); positive when agents did better.
    """
    gains = realised_gains(run, model)
    h0 = np.empty_like(gains["q0"])
    for j in range(len(model.types)):
        mask = gains["type"] == j
        h0[mask] = model.value(0.0, gains["q0"][mask], j)
    return float(np.mean(gains["gain"] - (gains["start_value"] + h0)))


def realised_gains(run, model) -> dict:
    """Each agent's realised gain and the value of its start inventory at the start price.

    Gain of agent i: X_T + Q_T S_T - A_j Q_T² - φ_j ∫ Q² dt, in model units (see
    :func:`cost_gap` for how S and ∫ Q² are read from a book or particle run). An MFG
    value h(0, q0) is the expectation of the gain beyond ``start_value`` = q0 S0.

    Parameters
    ----------
    run : simulator.market.MarketRun
    model : mfg.closed_form.LQCrowding
        For the types' penalties φ_j and A_j and the horizon.

    Returns
    -------
    dict
        ``gain`` and ``start_value`` (model value units), ``q0`` (model units), ``type``
        (int) and ``penalty`` (A Q_T² + φ∫Q², the part of the gain that is not cash), one
        entry per agent.
    """
    t = np.asarray(run.market["t"], dtype=np.float64)
    inside = np.flatnonzero(t <= model.T * (1 + 1e-12))
    n_rec = t.size
    inv = np.asarray(run.agents["inventory"]).reshape(n_rec, -1)[inside]
    cash = np.asarray(run.agents["cash"]).reshape(n_rec, -1)[inside]
    types = np.asarray(run.agents["type"]).reshape(n_rec, -1)[0]
    price = np.asarray(run.market["mid"], dtype=np.float64)[inside]
    if run.penalty is not None:
        penalty = run.penalty
    else:
        price = price * run.spec.tick_size * run.spec.crowd.lots_per_unit
        penalty = np.trapezoid(inv**2, t[inside], axis=0)
    phi = np.array([p.phi for p in model.types])[types]
    A = np.array([p.A for p in model.types])[types]
    gain = cash[-1] + inv[-1] * price[-1] - A * inv[-1] ** 2 - phi * penalty
    return {"gain": gain, "start_value": inv[0] * price[0], "q0": inv[0], "type": types,
            "penalty": A * inv[-1] ** 2 + phi * penalty}


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    return float(np.quantile(draws, a)), float(np.quantile(draws, 1.0 - a))


def outcome_gaps(runs, model, value_at_start, impact_times, impact_path, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, extra_penalty=None) -> dict:
    """The book's costs and prices against a mean field's, relative, with intervals over seeds.

    * ``cost_gap_rel`` = (mean realised gain - MFG value) / |MFG expected execution cost|,
      gains and values beyond marking the start inventory at the start mid: the relative
      error of the model's predicted cost of execution;
    * ``price_error_rel`` = max over t of |mean book price move - model impact path| / max
      over t |model impact path|, with the same statistic on each half of the seeds as a
      noise gauge.

    Intervals resample the runs (seeds) with replacement: percentile intervals for the cost
    gap (a mean), the basic bootstrap interval for the price error (a maximum, biased up).

    Parameters
    ----------
    runs : sequence of simulator.market.MarketRun
        Runs of one market on different seeds.
    model : mfg.closed_form.LQCrowding
        For the types' penalties and the horizon.
    value_at_start : callable
        (q0, type) -> h(0, q0): the MFG's expected gain beyond q0 S0 of an agent starting
        at q0 (model units; arrays of one entry per agent).
    impact_times, impact_path : numpy.ndarray of float64
        The model's impact path (model price units) at its times.
    n_boot : int
        Bootstrap resamples (0: the intervals are NaN).
    level : float
        Interval coverage.
    seed : int
        Seed of the bootstrap.
    extra_penalty : callable, optional
        run -> per-agent penalty (model value units) the model's objective charges beyond
        φ∫Q² and A Q_T² (a speed friction k∫|ν|^α the agents pay as a preference, not in
        cash, say); subtracted from each realised gain.

    Returns
    -------
    dict
        cost_gap_rel, cost_gap_rel_lo, cost_gap_rel_hi, cost_gap (model value units per
        agent), execution_cost (|mean h(0, q0)|), price_error_rel with _lo, _hi (the basic
        interval, which corrects the upward bias of a maximum and may therefore lie below
        the estimate), price_error_rel_debiased (2 θ̂ - mean of the resamples),
        price_error_rel_halves (two values; NaN for one run), and seeds.
    """
    gaps, costs, moves = [], [], []
    t = None
    for run in runs:
        g = realised_gains(run, model)
        h0 = np.asarray(value_at_start(g["q0"], g["type"]), dtype=np.float64)
        gain = g["gain"] if extra_penalty is None else g["gain"] - np.asarray(extra_penalty(run), dtype=np.float64)
        gaps.append(float(np.mean(gain - (g["start_value"] + h0))))
        costs.append(float(np.mean(h0)))
        times = np.asarray(run.market["t"], dtype=np.float64)
        inside = times <= model.T * (1 + 1e-12)
        mid = np.asarray(run.market["mid"], dtype=np.float64)[inside]
        scale = 1.0 if run.penalty is not None else run.spec.tick_size * run.spec.crowd.lots_per_unit
        moves.append((mid - mid[0]) * scale)
        t = times[inside]
    gaps, costs, moves = np.array(gaps), np.array(costs), np.stack(moves)
    model_path = np.interp(t, np.asarray(impact_times, dtype=np.float64), np.asarray(impact_path, dtype=np.float64))
    reach = max(float(np.max(np.abs(model_path))), 1e-300)

    def cost_rel(rows):
        return float(gaps[rows].mean() / abs(costs[rows].mean()))

    def price_rel(rows):
        return float(np.max(np.abs(moves[rows].mean(axis=0) - model_path)) / reach)

    everyone = np.arange(len(gaps))
    price = price_rel(everyone)
    cost_lo = cost_hi = price_lo = price_hi = debiased = math.nan
    halves = [price_rel(everyone[0::2]), price_rel(everyone[1::2])] if len(gaps) >= 2 else [math.nan, math.nan]
    if n_boot:
        rng = np.random.default_rng(seed)
        draws = [rng.integers(len(gaps), size=len(gaps)) for _ in range(n_boot)]
        cost_lo, cost_hi = _interval(np.array([cost_rel(r) for r in draws]), level)
        # a max over t of |noisy mean - model| is biased up, and more so in a resample: the
        # basic (reverse-percentile) interval corrects for that where the percentile one would not
        boot = np.array([price_rel(r) for r in draws])
        q_lo, q_hi = _interval(boot, level)
        price_lo, price_hi = max(0.0, 2 * price - q_hi), 2 * price - q_lo
        debiased = max(0.0, 2 * price - float(boot.mean()))
    return {"cost_gap_rel": cost_rel(everyone), "cost_gap_rel_lo": cost_lo, "cost_gap_rel_hi": cost_hi,
            "cost_gap": float(gaps.mean()), "execution_cost": abs(float(costs.mean())),
            "price_error_rel": price, "price_error_rel_lo": price_lo, "price_error_rel_hi": price_hi,
            "price_error_rel_debiased": debiased, "price_error_rel_halves": halves, "seeds": len(gaps)}
