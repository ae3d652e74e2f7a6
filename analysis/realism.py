"""Stylized facts of a simulated market, against the ranges reported for real ones.

Every estimator takes plain arrays (so it is tested on synthetic series with known
answers), and :func:`realism_table` reads them off a campaign's Parquet tables (market,
trades when kept, depth). Each fact carries the range the literature reports and whether
the run falls inside it. Sources:

* spread: most of the time one or two ticks for liquid large-tick assets — Bouchaud,
  Bonart, Donier, Gould, *Trades, Quotes and Prices* (TQP, 2018), ch. 3;
* heavy-tailed returns whose excess kurtosis falls with the horizon (aggregational
  Gaussianity): Cont, *Empirical properties of asset returns* (Quant. Finance 2001);
  intraday excess kurtosis of a few to tens at the shortest lags, near 0 over long ones;
* long memory of trade signs, C(l) ~ l^-γ with γ ≈ 0.5 (0.3–0.7): Lillo & Farmer
  (Stud. Nonlinear Dyn. 2004), Bouchaud, Gefen, Potters, Wyart (Quant. Finance 2004);
* volatility clustering: the autocorrelation of |returns| stays positive over long lags,
  decaying like l^-β with β ≈ 0.2–0.4 (Cont 2001);
* signature plot: the variance of mid returns per unit time is nearly flat in the lag
  for liquid assets (TQP ch. 2; ratio of short- to long-lag values within about ±30%);
* depth profile: the mean volume grows away from the best quote to a maximum a few ticks
  behind it (Bouchaud, Mézard, Potters, Quant. Finance 2002; TQP ch. 4);
* impact: the response R(l) = E[ε_t (m_{t+l} - m_t)] to a trade sign grows and is
  concave (TQP ch. 11), and meta-order impact follows the square root (``mfgsim impact``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def excess_kurtosis(x) -> float:
    """Sample excess kurtosis E[(x - m)^4]/Var^2 - 3 (0 for a Gaussian, 6 for Student-t(5)).

    Parameters
    ----------
    x : array_like of float
        Non-finite values are dropped.

    Returns
    -------
    float
        NaN with fewer than 8 values or zero variance.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 8:
        return float("nan")
    d = x - x.mean()
    v = np.mean(d**2)
    return float(np.mean(d**4) / v**2 - 3.0) if v > 0 else float("nan")


def returns(mid, lag: int) -> np.ndarray:
    """Non-overlapping mid changes over ``lag`` records.

    Parameters
    ----------
    mid : array_like of float
        Mid path (ticks), one value per record.
    lag : int
        Records per return.

    Returns
    -------
    numpy.ndarray of float64
        Ticks.
    """
    mid = np.asarray(mid, dtype=np.float64)
    return np.diff(mid[::lag])


def autocorrelation(x, max_lag: int) -> np.ndarray:
    """Sample autocorrelation at lags 1..max_lag (biased estimator, the usual one).

    Parameters
    ----------
    x : array_like of float
    max_lag : int

    Returns
    -------
    numpy.ndarray of float64, shape (max_lag,)
        NaN when the series is too short or constant.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size <= max_lag + 1:
        return np.full(max_lag, np.nan)
    d = x - x.mean()
    var = np.dot(d, d)
    if var == 0:
        return np.full(max_lag, np.nan)
    return np.array([np.dot(d[:-lag], d[lag:]) / var for lag in range(1, max_lag + 1)])


def decay_exponent(lags, acf) -> tuple[float, float]:
    """Exponent γ of acf(l) ∝ l^-γ by least squares on log–log axes over the positive values.

    Parameters
    ----------
    lags : array_like of float
    acf : array_like of float
        Autocorrelation at ``lags``.

    Returns
    -------
    (gamma, standard_error) : tuple of float
        NaN when fewer than 4 lags have a positive acf.
    """
    slope, se = _loglog_slope(lags, acf, at_least=4)
    return -slope, se


def _loglog_slope(x, y, at_least: int) -> tuple[float, float]:
    """Least-squares slope of log y on log x over the finite positive y, and its standard
    error; NaN with fewer than ``at_least`` such points."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & (y > 0)
    if keep.sum() < at_least:
        return float("nan"), float("nan")
    X = np.stack([np.ones(keep.sum()), np.log(x[keep])], axis=1)
    logs = np.log(y[keep])
    coef, *_ = np.linalg.lstsq(X, logs, rcond=None)
    resid = logs - X @ coef
    cov = np.linalg.inv(X.T @ X) * np.dot(resid, resid) / max(keep.sum() - 2, 1)
    return float(coef[1]), float(np.sqrt(cov[1, 1]))


def signature(mid, lags) -> np.ndarray:
    """Signature plot Var(mid_{t+h} - mid_t)/h for each lag h (overlapping increments).

    Parameters
    ----------
    mid : array_like of float
        Mid path (ticks).
    lags : array_like of int

    Returns
    -------
    numpy.ndarray of float64
        Ticks² per record; NaN where the path is too short.
    """
    mid = np.asarray(mid, dtype=np.float64)
    return np.array([np.var(mid[h:] - mid[:-h]) / h if mid.size > h + 1 else np.nan for h in lags])


def hurst_exponent(mid, lags) -> tuple[float, float]:
    """Hurst exponent H of a price path from the scaling of its increments, Var(m_{t+h} - m_t) ∝ h^{2H}.

    0.5 is diffusive (uncorrelated returns); above, trending (superdiffusive); below,
    mean-reverting. Least squares on log–log axes over ``lags`` (overlapping increments).

    Parameters
    ----------
    mid : array_like of float
        Mid path (ticks), one value per record.
    lags : array_like of int
        Record lags h >= 1.

    Returns
    -------
    (H, standard_error) : tuple of float
        NaN when fewer than 3 lags have a positive variance.
    """
    lags = np.asarray(lags, dtype=np.int64)
    slope, se = _loglog_slope(lags, signature(mid, lags) * lags, at_least=3)
    return slope / 2, se / 2


def propagator(signs, price_changes, max_lag: int) -> np.ndarray:
    """The propagator G(l) of the transient impact model, from order signs and price changes.

    In the model (Bouchaud, Gefen, Potters, Wyart 2004) the price is m_t = Σ_{s<t} G(t-s) ε_s
    + noise, so a price change is r_t = Σ_{k>=0} g_k ε_{t-k} + noise with
    G(l) = Σ_{k<l} g_k. Multiplying by ε_{t-j} and averaging gives
    Σ_k g_k C(|j-k|) = S(j) = E[r_t ε_{t-j}], with C the signs' autocorrelation: g is one
    Toeplitz solve (TQP ch. 13), with lags up to ``max_lag``.

    Parameters
    ----------
    signs : array_like of float
        ε_t: +1, -1, or 0 where nothing traded, one per event (an order, or a record).
    price_changes : array_like of float
        r_t = m_{t+1} - m_t, aligned with ``signs`` (ticks).
    max_lag : int
        Lags L >= 1 of g; the series must be much longer.

    Returns
    -------
    numpy.ndarray of float64, shape (max_lag,)
        G(1), ..., G(L) (ticks per order).
    """
    eps = np.asarray(signs, dtype=np.float64)
    r = np.asarray(price_changes, dtype=np.float64)
    if eps.shape != r.shape or eps.size <= 10 * max_lag:
        raise ValueError(f"propagator: signs and price changes must be aligned and longer than 10 x max_lag "
                         f"= {10 * max_lag}; got {eps.size} and {r.size}")
    n = eps.size
    second = float(np.dot(eps, eps)) / n
    if second == 0.0:
        raise ValueError("propagator: every sign is zero (nothing traded)")
    cov = np.array([np.dot(eps[: n - k], eps[k:]) / n for k in range(max_lag)])  # E[ε_t ε_{t+k}]
    cross = np.array([np.dot(r[j:], eps[: n - j]) / n for j in range(max_lag)])  # E[r_t ε_{t-j}]
    lags = np.abs(np.arange(max_lag)[:, None] - np.arange(max_lag)[None, :])
    g = np.linalg.solve(cov[lags], cross)
    return np.cumsum(g)


def order_signs(trades) -> np.ndarray:
    """One sign per market (taker) order, in time order: the sign of its first fill.

    A market order that walks several levels leaves several trades of one sign; the memory
    of order flow (Lillo & Farmer 2004) is that of the orders.

    Parameters
    ----------
    trades : numpy.ndarray or mapping
        Structured array of ``simulator.book.TRADE_DTYPE`` in book order, or a mapping with
        its ``taker_order`` and ``side`` columns.

    Returns
    -------
    numpy.ndarray of float64
        +1 buys, -1 sells.
    """
    taker = np.asarray(trades["taker_order"])
    if taker.size == 0:
        return np.zeros(0)
    first = np.concatenate([[True], taker[1:] != taker[:-1]])
    return np.asarray(trades["side"], dtype=np.float64)[first]


def response(mid, signs, lags) -> np.ndarray:
    """Response function R(l) = E[ε_t (m_{t+l} - m_t)] over the records with a non-zero sign ε_t.

    Parameters
    ----------
    mid : array_like of float
        Mid path (ticks).
    signs : array_like of float
        ε_t, aligned with ``mid``.
    lags : array_like of int

    Returns
    -------
    numpy.ndarray of float64
        Ticks; NaN where undefined.
    """
    mid = np.asarray(mid, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.float64)
    out = []
    for lag in lags:
        if mid.size <= lag:
            out.append(np.nan)
            continue
        eps = signs[:-lag]
        keep = eps != 0
        out.append(float(np.mean(eps[keep] * (mid[lag:] - mid[:-lag])[keep])) if keep.any() else np.nan)
    return np.array(out)


@dataclass(frozen=True)
class Fact:
    """One stylized fact: the run's value, the literature's range and whether it is inside.

    Attributes
    ----------
    name : str
    value : float
        NaN when the runs could not measure it.
    low, high : float
        The literature's range, in the fact's units.
    source : str
        The reference for the range.
    """

    name: str
    value: float
    low: float
    high: float
    source: str

    @property
    def inside(self) -> bool:
        return bool(self.low <= self.value <= self.high)

    @property
    def available(self) -> bool:
        """False when the runs were too short (or recorded too sparsely) to measure it."""
        return bool(np.isfinite(self.value))


SIGN_LAGS = np.unique(np.geomspace(1, 200, 25).astype(int))
VOL_LAGS = np.unique(np.geomspace(1, 100, 20).astype(int))
SIGNATURE_LAGS = np.array([1, 2, 5, 10, 20, 50, 100])


def stylized_facts(mids: list[np.ndarray], spreads: np.ndarray, signs: list[np.ndarray],
                   flow_signs: list[np.ndarray], depth_profile=None) -> dict:
    """The facts of one or more runs (pooled), as arrays for figures and :class:`Fact` rows.

    Parameters
    ----------
    mids : list of numpy.ndarray
        Mid paths per run (ticks, one value per record).
    spreads : numpy.ndarray
        All recorded spreads (ticks).
    signs : list of numpy.ndarray
        Trade signs per run in time order (for their memory).
    flow_signs : list of numpy.ndarray
        The sign of each record's net taker flow, aligned with ``mids`` (for the response).
    depth_profile : numpy.ndarray of shape (2, levels), optional
        Mean lots behind the best bid / ask.

    Returns
    -------
    dict
        ``facts`` (list of :class:`Fact`) and the curves behind them (kurtosis, sign and
        |return| autocorrelations, signature, response, spreads, depth profile).
    """
    import warnings

    with warnings.catch_warnings():  # short runs give NaN facts, reported as unavailable
        warnings.simplefilter("ignore", RuntimeWarning)
        return _stylized_facts(mids, spreads, signs, flow_signs, depth_profile)


def _stylized_facts(mids, spreads, signs, flow_signs, depth_profile) -> dict:
    kurt = {lag: excess_kurtosis(np.concatenate([returns(m, lag) for m in mids])) for lag in (1, 10, 100)}
    sign_acf = np.nanmean([autocorrelation(s, int(SIGN_LAGS.max()))[SIGN_LAGS - 1] for s in signs], axis=0)
    gamma, gamma_se = decay_exponent(SIGN_LAGS, sign_acf)
    vol_acf = np.nanmean([autocorrelation(np.abs(np.diff(m)), int(VOL_LAGS.max()))[VOL_LAGS - 1] for m in mids],
                         axis=0)
    beta, _ = decay_exponent(VOL_LAGS, vol_acf)
    sig = np.nanmean([signature(m, SIGNATURE_LAGS) for m in mids], axis=0)
    resp_lags = np.array([1, 2, 5, 10, 20, 50])
    resp = np.nanmean([response(m, s, resp_lags) for m, s in zip(mids, flow_signs)], axis=0)
    # the response rises, then saturates: R(50)/R(1) a small factor above one
    resp_rise = float(resp[-1] / resp[0]) if resp[0] > 0 else float("nan")
    facts = [
        Fact("share of spreads of 1-2 ticks", float(np.mean(spreads <= 2)), 0.5, 1.0, "TQP ch. 3 (large-tick assets)"),
        Fact("excess kurtosis, 1-record returns", kurt[1], 1.0, 50.0, "Cont 2001"),
        Fact("excess kurtosis, 100-record returns", kurt[100], -0.5, 3.0, "Cont 2001: aggregational Gaussianity"),
        Fact("trade-sign ACF decay exponent γ", gamma, 0.3, 0.7, "Lillo & Farmer 2004; Bouchaud et al. 2004"),
        Fact("|return| ACF at lag 10 (clustering)", float(vol_acf[np.searchsorted(VOL_LAGS, 10)]), 0.05, 0.5,
             "Cont 2001"),
        Fact("signature ratio σ²(1)/σ²(100)", float(sig[0] / sig[-1]), 0.7, 1.3, "TQP ch. 2"),
        Fact("price response rise R(50)/R(1)", resp_rise, 1.2, 3.0,
             "TQP ch. 11: R(l) rises by a factor of about 1.5-2.5, then saturates"),
    ]
    if depth_profile is not None:
        peak_level = float(np.mean([np.argmax(depth_profile[0]), np.argmax(depth_profile[1])]))
        facts.append(Fact("depth profile: level of the maximum (ticks)", peak_level, 1.0, 6.0,
                          "Bouchaud, Mézard, Potters 2002"))
    return {"facts": facts, "kurtosis": kurt, "sign_lags": SIGN_LAGS, "sign_acf": sign_acf, "gamma_se": gamma_se,
            "vol_lags": VOL_LAGS, "vol_acf": vol_acf, "vol_beta": beta, "signature_lags": SIGNATURE_LAGS,
            "signature": sig, "response_lags": resp_lags, "response": resp, "spreads": spreads,
            "depth_profile": depth_profile}


def memory_estimate(outdir, n_agents: int | None = None) -> int:
    """Rough peak memory of :func:`realism_table`: the market, trades and depth rows it reads.

    Parameters
    ----------
    outdir : str or os.PathLike
        A market campaign's output folder.
    n_agents : int or None
        As in :func:`realism_table`.

    Returns
    -------
    int
        Bytes (each row's columns as 8 bytes, three copies: read, sorted, grouped).
    """
    import polars as pl

    from .readers import manifest, scan
    from .schemas import TABLES

    man = manifest(outdir).filter(pl.col("status") == "done")
    if man.is_empty():
        return 0
    n = int(man["N"].max()) if n_agents is None else int(n_agents)
    need = 0
    for table in ("market", "trades", "depth"):
        if (Path(outdir) / table).is_dir():
            rows = scan(outdir, table).filter(pl.col("N") == n).select(pl.len()).collect().item()
            need += 3 * 8 * rows * (len(TABLES[table]) + 2)
    return int(need)


def realism_table(outdir, n_agents: int | None = None):
    """The stylized facts of a market campaign's runs at one N, pooled over seeds.

    Parameters
    ----------
    outdir : str or os.PathLike
        A finished market (book) campaign's output folder.
    n_agents : int or None
        The N to read; None for the largest.

    Returns
    -------
    (facts, table) : tuple of (dict, polars.DataFrame)
        ``facts`` as :func:`stylized_facts` returns it, plus ``one_sided_share``, the share of
        records at which a side of the book was empty (no spread, a stale mid); ``table``
        one row per fact (fact, value, low, high, inside, available, source).
    """
    import polars as pl

    from .readers import manifest, scan

    man = manifest(outdir).filter(pl.col("status") == "done")
    if man.is_empty() or set(man["kind"]) != {"market"}:
        raise ValueError(f"{outdir}: the realism report needs a finished market (book) campaign")
    n = int(man["N"].max()) if n_agents is None else int(n_agents)
    market = scan(outdir, "market").filter(pl.col("N") == n).collect().sort("run_id", "step")
    if market.is_empty():
        raise ValueError(f"{outdir}: no market records at N={n}")
    mids, signs, flow = [], [], []
    trades = None
    if (Path(outdir) / "trades").is_dir():
        trades = scan(outdir, "trades").filter(pl.col("N") == n).collect().sort("run_id", "step", "seq")
    for run_id, g in market.group_by("run_id", maintain_order=True):
        mids.append(g["mid"].to_numpy())
        # a record's net flow is that of the interval ending at it, which moved the mid
        # from the previous record's: pair each mid with the flow that follows it
        following = np.sign(g["signed_volume"].to_numpy().astype(float))[1:]
        flow.append(np.concatenate([following, [0.0]]))
        run_trades = trades.filter(pl.col("run_id") == run_id[0]) if trades is not None else None
        if run_trades is not None and run_trades.height > 400:
            signs.append(order_signs({"taker_order": run_trades["taker_order"].to_numpy(),
                                      "side": run_trades["side"].to_numpy()}))
        else:  # no trades kept: the sign of each record's net taker flow stands in
            signs.append(flow[-1])
    spread = (market["best_ask"] - market["best_bid"]).fill_null(float("nan"))
    # a record with an empty side has no spread and a stale mid: say how often, never drop it silently
    one_sided = float(spread.is_nan().mean())
    spreads = spread.drop_nans().to_numpy()
    depth = None
    if (Path(outdir) / "depth").is_dir():
        d = scan(outdir, "depth").filter(pl.col("N") == n).collect()
        prof = d.group_by("side", "level").agg(pl.col("lots").mean()).sort("side", "level", descending=[True, False])
        depth = prof["lots"].to_numpy().reshape(2, -1)
    facts = stylized_facts(mids, spreads, signs, flow, depth)
    facts["one_sided_share"] = one_sided
    table = pl.DataFrame([{"fact": f.name, "value": f.value, "low": f.low, "high": f.high, "inside": f.inside,
                           "available": f.available, "source": f.source} for f in facts["facts"]])
    return facts, table
