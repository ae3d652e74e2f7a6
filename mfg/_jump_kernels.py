"""Compiled kernels of the finite-state (jump) mean-field games (private; see :mod:`mfg.jump`).

A player on the integer states 0..S-1 controls, for each jump kind i (a shift s_i), the
premium δ it asks for the jump; the jump then comes with intensity Λ_i(δ) = a_i(t, q) ℓ_i(δ)
and pays δ. The intensity shape enters only through r(δ) = -Λ'/Λ:

* ``EXPONENTIAL`` ℓ(δ) = e^{-k δ}: r = k;
* ``LOGISTIC`` ℓ(δ) = 1 / (1 + e^{k (δ - c)}): r = k / (1 + e^{-k (δ - c)}).
* ``LATTICE``: δ takes one of finitely many values δ_l (quotes on a tick lattice) with
  intensities a_i(t, q) λ_i(t, l) given by the model at every time; the sup is a maximum
  over the lattice and over not posting at all (Λ = 0, H = 0), so H >= 0 as in the smooth
  shapes, where a premium δ -> ∞ gives H -> 0.

With risk parameter ξ >= 0 (Guéant 2017: ξ = γ for a CARA maker, 0 for a risk-neutral one)
the Hamiltonian of a jump whose value cost is p = θ(q) - θ(q + s) is

    H(p) = sup_δ Λ(δ) (1 - e^{-ξ (δ - p)}) / ξ      (Λ(δ) (δ - p) at ξ = 0),

maximised where δ - p = L(r(δ)), L(r) = log(1 + ξ/r)/ξ (1/r at ξ = 0); there
H = Λ(δ*) / (ξ + r(δ*)). For a log-concave ℓ (r non-decreasing) the root is unique.

Sweeps are RK4 with the coefficients linear in time over each step: the backward HJB
dθ/dτ = -ψ(q) + Σ_i H_i(θ(q) - θ(q + s_i)) and the forward equation of the law (its
generator's columns sum to zero, so the mass is kept to round-off).
"""

import math

import numpy as np
from numba import njit

EXPONENTIAL = 0
LOGISTIC = 1
LATTICE = 2


@njit(cache=True)
def _decay_rate(shape, k, center, delta):
    """r(δ) = -Λ'/Λ and its derivative."""
    if shape == EXPONENTIAL:
        return k, 0.0
    x = k * (delta - center)
    if x >= 0.0:
        e = math.exp(-x)
        s = 1.0 / (1.0 + e)
    else:
        e = math.exp(x)
        s = e / (1.0 + e)
    return k * s, k * k * s * (1.0 - s)


@njit(cache=True)
def _premium(r, xi):
    """L(r): the optimal δ - p when the intensity decays at rate r."""
    if xi == 0.0:
        return 1.0 / r
    return math.log1p(xi / r) / xi


@njit(cache=True)
def _log_shape(shape, k, center, delta):
    """log ℓ(δ), stable for large |δ|."""
    if shape == EXPONENTIAL:
        return -k * delta
    x = k * (delta - center)
    if x > 0.0:
        return -x - math.log1p(math.exp(-x))
    return -math.log1p(math.exp(x))


@njit(cache=True)
def best_quote(shape, k, center, xi, scale, p):
    """(δ*, Λ(δ*), H(p)) for one jump: the optimal premium, its intensity, the Hamiltonian."""
    if shape == EXPONENTIAL:
        delta = p + _premium(k, xi)
    else:
        # h(δ) = δ - p - L(r(δ)) is increasing; h(lo) <= 0 <= h(hi)
        lo = p + _premium(k, xi)
        r_lo, _ = _decay_rate(shape, k, center, lo)
        hi = p + _premium(max(r_lo, 1e-300), xi)
        delta = lo
        for _ in range(200):
            r, dr = _decay_rate(shape, k, center, delta)
            h = delta - p - _premium(r, xi)
            if h < 0.0:
                lo = delta
            else:
                hi = delta
            step = h / (1.0 + dr / (r * (r + xi)))
            nxt = delta - step
            if not (lo < nxt < hi):
                nxt = 0.5 * (lo + hi)
            if abs(nxt - delta) <= 1e-14 * (1.0 + abs(delta)):
                delta = nxt
                break
            delta = nxt
    r, _ = _decay_rate(shape, k, center, delta)
    rate = scale * math.exp(_log_shape(shape, k, center, delta))
    return delta, rate, rate / (xi + r)


@njit(cache=True)
def best_lattice_quote(quotes, intensity, xi, scale, p):
    """(δ*, Λ(δ*), H(p)) over the lattice quotes (NaN-padded) and not posting (NaN, 0, 0)."""
    best_delta = np.nan
    best_rate = 0.0
    best_h = 0.0
    for m in range(quotes.shape[0]):
        delta = quotes[m]
        if not math.isfinite(delta):
            continue
        rate = scale * intensity[m]
        x = delta - p
        gain = x if xi == 0.0 else -math.expm1(-xi * x) / xi
        h = rate * gain
        if h > best_h:
            best_delta, best_rate, best_h = delta, rate, h
    return best_delta, best_rate, best_h


@njit(cache=True)
def _hjb_rhs(theta, shifts, shapes, decay, center, xi, exp_factor, scale, penalty, lattice, lattice_rates, out):
    """dθ/dτ = -ψ + Σ_i H_i(θ(q) - θ(q + s_i)) over the jumps that stay on the grid."""
    S = theta.shape[0]
    for q in range(S):
        acc = -penalty[q]
        for i in range(shifts.shape[0]):
            target = q + shifts[i]
            if 0 <= target < S:
                p = theta[q] - theta[target]
                if shapes[i] == EXPONENTIAL:  # H = a e^{-k p} e^{-k L(k)} / (ξ + k), the hot path
                    acc += scale[i, q] * math.exp(-decay[i] * p) * exp_factor[i]
                elif shapes[i] == LATTICE:
                    acc += best_lattice_quote(lattice[i], lattice_rates[i], xi, scale[i, q], p)[2]
                else:
                    acc += best_quote(shapes[i], decay[i], center[i], xi, scale[i, q], p)[2]
        out[q] = acc


@njit(cache=True)
def hjb_backward(t, shifts, shapes, decay, center, xi, scale, penalty, lattice, lattice_rates, terminal, theta):
    """Fill θ (N+1, S) backward from θ(T) = terminal; scale (K, N+1, S) and penalty
    (N+1, S) are the terms at the grid times, lattice (K, L) the lattice quotes (NaN-padded;
    L = 0 without lattice jumps) and lattice_rates (K, N+1, L) their intensities per unit
    scale. Returns -1, or the step where θ stopped being finite."""
    n = t.shape[0] - 1
    S = theta.shape[1]
    K = shifts.shape[0]
    k1, k2, k3, k4, w = np.empty(S), np.empty(S), np.empty(S), np.empty(S), np.empty(S)
    scale_mid = np.empty((K, S))
    penalty_mid = np.empty(S)
    lattice_mid = np.empty((K, lattice.shape[1]))
    exp_factor = np.empty(K)
    for i in range(K):
        exp_factor[i] = math.exp(-decay[i] * _premium(decay[i], xi)) / (xi + decay[i])
    theta[n] = terminal
    for j in range(n, 0, -1):
        h = t[j] - t[j - 1]
        scale_mid[:] = 0.5 * (scale[:, j] + scale[:, j - 1])
        penalty_mid[:] = 0.5 * (penalty[j] + penalty[j - 1])
        lattice_mid[:] = 0.5 * (lattice_rates[:, j] + lattice_rates[:, j - 1])
        _hjb_rhs(theta[j], shifts, shapes, decay, center, xi, exp_factor, scale[:, j], penalty[j], lattice,
                 lattice_rates[:, j], k1)
        w[:] = theta[j] + 0.5 * h * k1
        _hjb_rhs(w, shifts, shapes, decay, center, xi, exp_factor, scale_mid, penalty_mid, lattice, lattice_mid, k2)
        w[:] = theta[j] + 0.5 * h * k2
        _hjb_rhs(w, shifts, shapes, decay, center, xi, exp_factor, scale_mid, penalty_mid, lattice, lattice_mid, k3)
        w[:] = theta[j] + h * k3
        _hjb_rhs(w, shifts, shapes, decay, center, xi, exp_factor, scale[:, j - 1], penalty[j - 1], lattice,
                 lattice_rates[:, j - 1], k4)
        for q in range(S):
            theta[j - 1, q] = theta[j, q] + h / 6.0 * (k1[q] + 2.0 * k2[q] + 2.0 * k3[q] + k4[q])
            if not math.isfinite(theta[j - 1, q]):
                return j - 1
    return -1


@njit(cache=True)
def controls(shifts, shapes, decay, center, xi, scale, lattice, lattice_rates, theta, quotes, rates):
    """The optimal premia and their intensities at every node: quotes, rates (K, N+1, S);
    NaN and 0 where the jump would leave the grid (or a lattice jump is not posted)."""
    K = shifts.shape[0]
    n1, S = theta.shape
    for i in range(K):
        for j in range(n1):
            for q in range(S):
                target = q + shifts[i]
                if 0 <= target < S and shapes[i] == LATTICE:
                    d, rate, _ = best_lattice_quote(lattice[i], lattice_rates[i, j], xi, scale[i, j, q],
                                                    theta[j, q] - theta[j, target])
                    quotes[i, j, q] = d
                    rates[i, j, q] = rate
                elif 0 <= target < S:
                    d, rate, _ = best_quote(shapes[i], decay[i], center[i], xi, scale[i, j, q],
                                            theta[j, q] - theta[j, target])
                    quotes[i, j, q] = d
                    rates[i, j, q] = rate
                else:
                    quotes[i, j, q] = np.nan
                    rates[i, j, q] = 0.0


@njit(cache=True)
def _law_rhs(p, shifts, rates, out):
    S = p.shape[0]
    out[:] = 0.0
    for i in range(shifts.shape[0]):
        for q in range(S):
            target = q + shifts[i]
            if 0 <= target < S:  # a jump off the grid is never posted (its rate is 0)
                flow = rates[i, q] * p[q]
                out[q] -= flow
                out[target] += flow


@njit(cache=True)
def law_forward(t, shifts, rates, m):
    """Fill m (N+1, S) forward from m[0] under the jump intensities rates (K, N+1, S)."""
    n = t.shape[0] - 1
    K, _, S = rates.shape
    k1, k2, k3, k4, w = np.empty(S), np.empty(S), np.empty(S), np.empty(S), np.empty(S)
    mid = np.empty((K, S))
    for j in range(n):
        h = t[j + 1] - t[j]
        mid[:] = 0.5 * (rates[:, j] + rates[:, j + 1])
        _law_rhs(m[j], shifts, rates[:, j], k1)
        w[:] = m[j] + 0.5 * h * k1
        _law_rhs(w, shifts, mid, k2)
        w[:] = m[j] + 0.5 * h * k2
        _law_rhs(w, shifts, mid, k3)
        w[:] = m[j] + h * k3
        _law_rhs(w, shifts, rates[:, j + 1], k4)
        for q in range(S):
            m[j + 1, q] = m[j, q] + h / 6.0 * (k1[q] + 2.0 * k2[q] + 2.0 * k3[q] + k4[q])


@njit(cache=True)
def _policy_rhs(theta, shifts, xi, quotes, rates, penalty, out):
    """dθ/dτ = -ψ + Σ_i Λ_i (1 - e^{-ξ(δ_i - p)})/ξ for fixed quotes δ_i and intensities Λ_i."""
    S = theta.shape[0]
    for q in range(S):
        acc = -penalty[q]
        for i in range(shifts.shape[0]):
            target = q + shifts[i]
            rate = rates[i, q]
            if 0 <= target < S and rate > 0.0:
                x = quotes[i, q] - (theta[q] - theta[target])
                acc += rate * (x if xi == 0.0 else -math.expm1(-xi * x) / xi)
        out[q] = acc


@njit(cache=True)
def policy_backward(t, shifts, xi, quotes, rates, penalty, terminal, theta):
    """The value θ (N+1, S) of fixed quotes and intensities (K, N+1, S; a rate of 0 is a jump
    not posted), backward from θ(T) = terminal, by the RK4 of :func:`hjb_backward` with the
    quotes and rates linear over each step. Returns -1, or the step where θ stopped being finite."""
    n = t.shape[0] - 1
    S = theta.shape[1]
    K = shifts.shape[0]
    k1, k2, k3, k4, w = np.empty(S), np.empty(S), np.empty(S), np.empty(S), np.empty(S)
    quotes_mid, rates_mid = np.empty((K, S)), np.empty((K, S))
    penalty_mid = np.empty(S)
    theta[n] = terminal
    for j in range(n, 0, -1):
        h = t[j] - t[j - 1]
        for i in range(K):
            for q in range(S):
                a, b = quotes[i, j, q], quotes[i, j - 1, q]
                # a side posted at one end of the step only: the posted quote over the step
                quotes_mid[i, q] = 0.5 * (a + b) if math.isfinite(a) and math.isfinite(b) else (
                    a if math.isfinite(a) else b)
                rates_mid[i, q] = 0.5 * (rates[i, j, q] + rates[i, j - 1, q])
        penalty_mid[:] = 0.5 * (penalty[j] + penalty[j - 1])
        _policy_rhs(theta[j], shifts, xi, quotes[:, j], rates[:, j], penalty[j], k1)
        w[:] = theta[j] + 0.5 * h * k1
        _policy_rhs(w, shifts, xi, quotes_mid, rates_mid, penalty_mid, k2)
        w[:] = theta[j] + 0.5 * h * k2
        _policy_rhs(w, shifts, xi, quotes_mid, rates_mid, penalty_mid, k3)
        w[:] = theta[j] + h * k3
        _policy_rhs(w, shifts, xi, quotes[:, j - 1], rates[:, j - 1], penalty[j - 1], k4)
        for q in range(S):
            theta[j - 1, q] = theta[j, q] + h / 6.0 * (k1[q] + 2.0 * k2[q] + 2.0 * k3[q] + k4[q])
            if not math.isfinite(theta[j - 1, q]):
                return j - 1
    return -1
