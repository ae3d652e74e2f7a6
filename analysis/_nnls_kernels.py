"""Compiled kernels of the propagator fit (private).

The propagator fit (:mod:`analysis.primitives`) solves min |X b - y|² over b >= 0 tens of
thousands of times with at most four columns; from the normal equations every support can be
tried (2^p - 1 small systems), which is exact and, compiled, about a microsecond. Each new
decay rate it tries needs its column of X over all the curves: one call builds it.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _solve_subset(xtx, xty, cols, n, out):
    """Solve xtx[cols, cols] b = xty[cols] (n unknowns) by Gaussian elimination with partial
    pivoting; False when the system is singular."""
    a = np.empty((n, n + 1))
    for i in range(n):
        for j in range(n):
            a[i, j] = xtx[cols[i], cols[j]]
        a[i, n] = xty[cols[i]]
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(a[i, i]))
    for c in range(n):
        pivot = c
        for r in range(c + 1, n):
            if abs(a[r, c]) > abs(a[pivot, c]):
                pivot = r
        if abs(a[pivot, c]) <= 1e-14 * max(scale, 1e-300):
            return False
        if pivot != c:
            for j in range(n + 1):
                tmp = a[c, j]
                a[c, j] = a[pivot, j]
                a[pivot, j] = tmp
        for r in range(c + 1, n):
            f = a[r, c] / a[c, c]
            for j in range(c, n + 1):
                a[r, j] -= f * a[c, j]
    for i in range(n - 1, -1, -1):
        s = a[i, n]
        for j in range(i + 1, n):
            s -= a[i, j] * out[j]
        out[i] = s / a[i, i]
    return True


@njit(cache=True)
def nnls_normal(xtx, xty, yty):
    """min over b >= 0 of yty - 2 b·xty + b·xtx·b, by trying every support.

    Returns (b, the minimum, floored at 0).
    """
    p = xty.shape[0]
    best = np.zeros(p)
    best_sse = yty
    cols = np.empty(p, dtype=np.int64)
    sub = np.empty(p)
    for mask in range(2**p - 1, 0, -1):  # the full support first: usually it is feasible
        n = 0
        for j in range(p):
            if (mask >> j) & 1:
                cols[n] = j
                n += 1
        if not _solve_subset(xtx, xty, cols, n, sub):
            continue
        feasible = True
        for i in range(n):
            if sub[i] < 0.0:
                feasible = False
                break
        if not feasible:
            continue
        # at the subset's solution xtx b = xty on the support, so sse = yty - b·xty
        sse = yty
        for i in range(n):
            sse -= sub[i] * xty[cols[i]]
        if sse < best_sse:
            best_sse = sse
            best[:] = 0.0
            for i in range(n):
                best[cols[i]] = sub[i]
        if mask == 2**p - 1:
            break  # the unconstrained solution is feasible: it is the minimum
    return best, max(best_sse, 0.0)


@njit(cache=True)
def weighted_column(flow, starts, decay, gain, sqrt_w, out):
    """The weighted impact path of a unit exponential over several curves, concatenated.

    Curve i's flow is ``flow[starts[i] - i : starts[i + 1] - i - 1]`` (one value per step) and
    its path ``out[starts[i] : starts[i + 1]]`` (one value per step edge, from 0): the exact
    update G_{n+1} = decay_i G_n + gain_i f_n of :func:`mfg.closed_form.decaying_impact`,
    times the weight ``sqrt_w`` of each point.
    """
    for i in range(starts.size - 1):
        acc = 0.0
        first = starts[i]
        out[first] = 0.0
        for n in range(starts[i + 1] - first - 1):
            acc = acc * decay[i] + gain[i] * flow[first - i + n]
            out[first + n + 1] = acc * sqrt_w[first + n + 1]
