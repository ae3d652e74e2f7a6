"""A straightforward numpy/scipy.sparse version of the FD MFG scheme, for comparison only.

Same discretisation as :mod:`mfg._fd_kernels` (upwind Hamiltonian, implicit HJB solved by
Newton, FP as the adjoint), written the way one would write it first: vectorised numpy for
the residuals, ``scipy.sparse`` matrices and ``spsolve`` for every linear solve, and the
same Anderson-accelerated outer iteration as the library's default.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def generator(bplus, bminus, diff, dx):
    """Tridiagonal generator G (rows sum to zero) with reflecting/state-constraint ends."""
    up = diff + bplus / dx
    lo = diff - bminus / dx
    up[-1] = 0.0
    lo[0] = 0.0
    return sp.diags([lo[1:], -(up + lo), up[:-1]], [-1, 0, 1], format="csc")


def velocities(u, dx, k, s):
    dplus = np.append(np.diff(u) / dx, 0.0) + s
    dminus = np.insert(np.diff(u) / dx, 0, 0.0) + s
    bplus = -np.minimum(dplus, 0.0) / (2 * k)
    bminus = -np.maximum(dminus, 0.0) / (2 * k)
    bplus[-1] = 0.0
    bminus[0] = 0.0
    return bplus, bminus


def sweep(mu, x, dt, n_t, sigma, k, kappa, phi, c, A, m0, tol=1e-12, max_newton=50):
    """One evaluation of the fixed-point map: HJB backward, FP forward, new mean rate."""
    n_x = x.size
    dx = x[1] - x[0]
    diff = 0.5 * sigma**2 / dx**2
    eye = sp.identity(n_x, format="csc")
    u = A * x**2
    controls = []
    for n in range(n_t - 1, -1, -1):
        s = c * mu[n]
        potential = phi * x**2 - kappa * mu[n] * x
        un = u.copy()
        for _ in range(max_newton):
            bplus, bminus = velocities(un, dx, k, s)
            G = generator(bplus, bminus, diff, dx)
            lap = diff * (np.append(np.diff(un), 0.0) - np.insert(np.diff(un), 0, 0.0))
            resid = (un - u) / dt - lap + k * (bplus**2 + bminus**2) - potential
            if np.max(np.abs(resid)) * dt <= tol:
                break
            un = un + spla.spsolve((eye / dt - G).tocsc(), -resid)
        else:
            raise RuntimeError(f"Newton failed at step {n}")
        u = un
        controls.append((bplus, bminus))
    controls.reverse()
    m = m0.copy()
    rate = np.empty(n_t)
    for n, (bplus, bminus) in enumerate(controls):
        G = generator(bplus, bminus, diff, dx)
        m = spla.spsolve((eye - dt * G.T).tocsc(), m)
        rate[n] = np.sum(m * (bplus + bminus)) * dx
    return rate, m


def solve_plain(x, T, n_t, sigma, k, kappa, phi, c, A, m0, tol=1e-8, max_iter=500, depth=6, damping=0.5):
    """Anderson-accelerated fixed point on μ, as in :func:`mfg.fd.solve`; returns (μ, iterations)."""
    dt = T / n_t
    mu = np.zeros(n_t)
    xs, gs = [], []
    for it in range(1, max_iter + 1):
        g = sweep(mu, x, dt, n_t, sigma, k, kappa, phi, c, A, m0)[0] - mu
        if np.max(np.abs(g)) <= tol:
            return mu, it
        xs, gs = (xs + [mu.copy()])[-(depth + 1):], (gs + [g.copy()])[-(depth + 1):]
        if len(xs) == 1:
            mu = mu + damping * g
        else:
            dX = np.diff(np.stack(xs, axis=1), axis=1)
            dG = np.diff(np.stack(gs, axis=1), axis=1)
            gamma = np.linalg.lstsq(dG, g, rcond=None)[0]
            mu = mu + damping * g - (dX + damping * dG) @ gamma
    raise RuntimeError("plain solver did not converge")
