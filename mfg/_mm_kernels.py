"""Compiled kernels of the market-making MFG (private; see :mod:`mfg.market_making`).

Both sweeps are RK4 on the inventory grid -Q..Q (2Q+1 states) with coefficients linear in
time over each step: the backward linear system for GLFT's v (renormalised every step:
the quotes depend on ratios of v only) and the forward equation of the inventory law
(its generator's columns sum to zero, so the mass is kept to round-off).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _quote_rhs(v, alpha_q2, eta_b, eta_a, out):
    """dv/dτ = -(α q² v - η^b v_{q+1} - η^a v_{q-1})."""
    n = v.shape[0]
    for i in range(n):
        acc = -alpha_q2[i] * v[i]
        if i < n - 1:
            acc += eta_b * v[i + 1]
        if i > 0:
            acc += eta_a * v[i - 1]
        out[i] = acc


@njit(cache=True)
def quote_sweep(t, alpha_q2, eta_b, eta_a, V):
    """Fill V (N+1, 2Q+1) backward from v(T) = 1; returns -1, or the step where v lost
    positivity (the step is too long for the system)."""
    n = t.shape[0] - 1
    m = V.shape[1]
    v = np.ones(m)
    k1, k2, k3, k4, w = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    V[n] = v
    for i in range(n, 0, -1):
        h = t[i] - t[i - 1]
        eb_mid = 0.5 * (eta_b[i] + eta_b[i - 1])
        ea_mid = 0.5 * (eta_a[i] + eta_a[i - 1])
        _quote_rhs(v, alpha_q2, eta_b[i], eta_a[i], k1)
        w[:] = v + 0.5 * h * k1
        _quote_rhs(w, alpha_q2, eb_mid, ea_mid, k2)
        w[:] = v + 0.5 * h * k2
        _quote_rhs(w, alpha_q2, eb_mid, ea_mid, k3)
        w[:] = v + h * k3
        _quote_rhs(w, alpha_q2, eta_b[i - 1], eta_a[i - 1], k4)
        top = 0.0
        for j in range(m):
            v[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])
            if not v[j] > 0.0:
                return i - 1
            top = max(top, v[j])
        for j in range(m):
            v[j] /= top
        V[i - 1] = v
    return -1


@njit(cache=True)
def _law_rhs(p, lb, la, out):
    n = p.shape[0]
    for i in range(n):
        acc = -(lb[i] + la[i]) * p[i]
        if i > 0:
            acc += lb[i - 1] * p[i - 1]  # a bid fill moves q up
        if i < n - 1:
            acc += la[i + 1] * p[i + 1]  # an ask fill moves q down
        out[i] = acc


@njit(cache=True)
def law_sweep(t, lam_b, lam_a, m):
    """Fill m (N+1, 2Q+1) forward from m[0] under fill intensities (N+1, 2Q+1)."""
    n = t.shape[0] - 1
    size = m.shape[1]
    k1, k2, k3, k4, w = np.empty(size), np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    lb_mid, la_mid = np.empty(size), np.empty(size)
    for i in range(n):
        h = t[i + 1] - t[i]
        lb_mid[:] = 0.5 * (lam_b[i] + lam_b[i + 1])
        la_mid[:] = 0.5 * (lam_a[i] + lam_a[i + 1])
        _law_rhs(m[i], lam_b[i], lam_a[i], k1)
        w[:] = m[i] + 0.5 * h * k1
        _law_rhs(w, lb_mid, la_mid, k2)
        w[:] = m[i] + 0.5 * h * k2
        _law_rhs(w, lb_mid, la_mid, k3)
        w[:] = m[i] + h * k3
        _law_rhs(w, lam_b[i + 1], lam_a[i + 1], k4)
        for j in range(size):
            m[i + 1, j] = m[i, j] + h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])
