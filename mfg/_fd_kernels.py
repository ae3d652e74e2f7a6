"""Compiled kernels of the finite-difference MFG solver (private).

Scheme (Achdou–Capuzzo-Dolcetta) on a uniform grid x_0 .. x_{I-1} (spacing dx) and times
t_n = n dt, n = 0 .. N, for the Hamiltonians of a trading cost a|ν| + k|ν|^α (1 < α <= 2,
a >= 0 a cost per share such as the half-spread):

    H(x, p) = sup_ν [-(p + s_n) ν - a |ν| - k |ν|^α] - F_n(x)   (cost form: -u_t - σ²/2 u_xx + H = 0)
            = (α - 1) k |ν*|^α - F_n(x),  |ν*| = ((|p + s_n| - a)⁺ / (α k))^{1/(α-1)}
    F_n(x) = base(x) + slope_n x + dense_n(x)      (dense may be empty: shape (0, I))

α = 2 with a = 0 is the quadratic case, H = (p + s)²/(4k). With a > 0 nobody trades where
|p + s| <= a (the no-trade zone) and H is zero there; H stays convex, C¹ and minimal at 0.
Every term below is written with the
velocities ν* (= -H'(p)), so the monotone scheme, its Newton Jacobian and the FP adjoint
hold for every α:

* numerical Hamiltonian (monotone, Godunov/upwind):
  H_num = H((D⁺u + s)⁻) + H((D⁻u + s)⁺) - F, with a⁻ = min(a, 0), a⁺ = max(a, 0);
* HJB implicit backward: (u^n - u^{n+1})/dt - σ²/2 Δ u^n + H_num(x, Du^n) = 0, solved by
  Newton (tridiagonal M-matrix Jacobian I/dt - G(u));
* the upwind velocities b⁺ = ν*((D⁺u + s)⁻) >= 0, b⁻ = ν*((D⁻u + s)⁺) <= 0 give the
  generator G(u) (rows sum to zero, off-diagonals >= 0); the control is ν = b⁺ + b⁻;
* FP implicit forward as the adjoint: (I - dt G_n^T) m^{n+1} = m^n. Column sums of
  I - dt G^T are one, so mass is conserved to round-off, and the M-matrix keeps m >= 0.

Boundaries: reflecting for the diffusion (ghost value equal to the boundary value) and a
state constraint for the drift (no outward velocity at x_0 and x_{I-1}); both are the
rows of G, so the HJB and the FP see the same boundary.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _thomas(lower, diag, upper, rhs, out, work):
    """Solve a tridiagonal system (lower[i] multiplies x[i-1], upper[i] multiplies x[i+1])."""
    n = diag.shape[0]
    work[0] = upper[0] / diag[0]
    out[0] = rhs[0] / diag[0]
    for i in range(1, n):
        denom = diag[i] - lower[i] * work[i - 1]
        work[i] = upper[i] / denom
        out[i] = (rhs[i] - lower[i] * out[i - 1]) / denom
    for i in range(n - 2, -1, -1):
        out[i] -= work[i] * out[i + 1]


@njit(cache=True)
def _speed(a, k, alpha, fixed):
    """|ν*| for the momentum a: ((|a| - fixed)⁺ / (α k))^{1/(α-1)} ((|a| - fixed)⁺/(2k) when α = 2)."""
    excess = abs(a) - fixed
    if excess <= 0.0:
        return 0.0
    if alpha == 2.0:
        return excess / (2.0 * k)
    return (excess / (alpha * k)) ** (1.0 / (alpha - 1.0))


@njit(cache=True)
def _velocities(u, dx, k, alpha, fixed, shift, bplus, bminus):
    """Upwind velocities from u; state constraint at both ends."""
    n = u.shape[0]
    for i in range(n):
        if i < n - 1:
            a = (u[i + 1] - u[i]) / dx + shift
            bplus[i] = _speed(a, k, alpha, fixed) if a < 0.0 else 0.0
        else:
            bplus[i] = 0.0
        if i > 0:
            a = (u[i] - u[i - 1]) / dx + shift
            bminus[i] = -_speed(a, k, alpha, fixed) if a > 0.0 else 0.0
        else:
            bminus[i] = 0.0


@njit(cache=True)
def hjb_backward(x, dt, sigma, k, alpha, fixed, shift, base, slope, dense, terminal, u, bplus, bminus, tol, max_newton,
                 last_residual, warm):
    """Solve the HJB backward in place.

    shift (N,), base (I,), slope (N,), dense (N, I) or (0, I), terminal (I,); writes
    u (N+1, I), bplus/bminus (N+1, I) (row N: velocities of the terminal cost). Returns
    the total number of Newton iterations, or -(n+1) if Newton failed at step n; then
    ``last_residual[0]`` holds its last scaled residual (NaN if u overflowed).

    Newton starts each step from a guess: with ``warm``, u must hold the previous sweep
    (another coupling, same grid), and the guess is that sweep's value at the step moved by
    the change just found at the next step; near the fixed point one Newton step then
    suffices. Otherwise the guess extrapolates the two later steps linearly in time.

    Newton stops when ``dt·max|residual| <= tol·(1 + max|u^{n+1}|)``: the residual of a
    step is a change of u, and u carries round-off relative to its size (an absolute
    test cannot pass once |u| is in the hundreds).
    """
    n_steps = shift.shape[0]
    n_x = x.shape[0]
    dx = x[1] - x[0]
    has_dense = dense.shape[0] > 0
    diff = 0.5 * sigma * sigma / (dx * dx)
    lower = np.empty(n_x)
    diag = np.empty(n_x)
    upper = np.empty(n_x)
    resid = np.empty(n_x)
    delta = np.empty(n_x)
    work = np.empty(n_x)
    pot = np.empty(n_x)
    old_next = terminal.copy()
    u[n_steps] = terminal
    _velocities(u[n_steps], dx, k, alpha, fixed, shift[n_steps - 1], bplus[n_steps], bminus[n_steps])
    total = 0
    for n in range(n_steps - 1, -1, -1):
        s = shift[n]
        un = u[n]
        if warm:
            # the previous sweep's value at this step, moved by how much the next step changed
            for i in range(n_x):
                old = un[i]
                un[i] += u[n + 1, i] - old_next[i]
                old_next[i] = old
        elif n + 2 <= n_steps:  # linear extrapolation in time: fewer Newton iterations
            for i in range(n_x):
                un[i] = 2.0 * u[n + 1, i] - u[n + 2, i]
        else:
            un[:] = u[n + 1]
        scale = 1.0
        for i in range(n_x):
            scale = max(scale, 1.0 + abs(u[n + 1, i]))
            pot[i] = base[i] + slope[n] * x[i]
            if has_dense:
                pot[i] += dense[n, i]
        converged = False
        err = 0.0
        for it in range(max_newton):
            # one pass: the upwind velocities at un (as _velocities, written out because a
            # call per node made the solve 1.5x slower), the residual and the Newton Jacobian
            err = 0.0
            for i in range(n_x):
                bp = 0.0
                bm = 0.0
                up = 0.0
                lo = 0.0
                lap = 0.0
                if i < n_x - 1:
                    a = (un[i + 1] - un[i]) / dx + s
                    if a < 0.0:
                        bp = _speed(a, k, alpha, fixed)
                    up = diff + bp / dx
                    lap += diff * (un[i + 1] - un[i])
                if i > 0:
                    a = (un[i] - un[i - 1]) / dx + s
                    if a > 0.0:
                        bm = -_speed(a, k, alpha, fixed)
                    lo = diff - bm / dx
                    lap += diff * (un[i - 1] - un[i])
                bplus[n, i] = bp
                bminus[n, i] = bm
                # H_num = (α-1) k (|b⁺|^α + |b⁻|^α) - F (k (b⁺² + b⁻²) when α = 2)
                if alpha == 2.0:
                    h_num = k * (bp * bp + bm * bm) - pot[i]
                else:
                    h_num = (alpha - 1.0) * k * (abs(bp) ** alpha + abs(bm) ** alpha) - pot[i]
                r = (un[i] - u[n + 1, i]) / dt - lap + h_num
                resid[i] = -r
                if abs(r) > err:
                    err = abs(r)
                upper[i] = -up
                lower[i] = -lo
                diag[i] = 1.0 / dt + up + lo
            if not np.isfinite(err):
                break
            if err * dt <= tol * scale:  # bplus/bminus hold the velocities of this un
                converged = True
                total += it
                break
            _thomas(lower, diag, upper, resid, delta, work)
            for i in range(n_x):
                un[i] += delta[i]
        if not converged:
            last_residual[0] = err * dt / scale
            return -(n + 1)
    return total


@njit(cache=True)
def fp_forward(dx, dt, sigma, bplus, bminus, m0, m, rate):
    """Solve the FP forward in place: m (N+1, I) densities; rate[n] = Σ dx m^{n+1} ν^n."""
    n_steps = m.shape[0] - 1
    n_x = m.shape[1]
    diff = 0.5 * sigma * sigma / (dx * dx)
    lower = np.empty(n_x)
    diag = np.empty(n_x)
    upper = np.empty(n_x)
    work = np.empty(n_x)
    m[0] = m0
    for n in range(n_steps):
        # (I - dt G^T): column j of G^T is row j of G
        for i in range(n_x):
            up = diff + bplus[n, i] / dx if i < n_x - 1 else 0.0  # G[i, i+1]
            lo = diff - bminus[n, i] / dx if i > 0 else 0.0  # G[i, i-1]
            diag[i] = 1.0 + dt * (up + lo)
            # G^T[i, i-1] = G[i-1, i]; G^T[i, i+1] = G[i+1, i]
            lower[i] = -dt * (diff + bplus[n, i - 1] / dx) if i > 0 else 0.0
            upper[i] = -dt * (diff - bminus[n, i + 1] / dx) if i < n_x - 1 else 0.0
        _thomas(lower, diag, upper, m[n], m[n + 1], work)
        acc = 0.0
        for i in range(n_x):
            acc += m[n + 1, i] * (bplus[n, i] + bminus[n, i])
        rate[n] = acc * dx


@njit(cache=True)
def policy_backward(x, dt, sigma, k, alpha, fixed, shift, base, slope, dense, terminal, bplus, bminus, u):
    """The cost-to-go u (N+1, I) of fixed upwind velocities bplus >= 0, bminus <= 0 (N+1, I):
    (I - dt G_n) u^n = u^{n+1} + dt [k(|b⁺|^α + |b⁻|^α) + fixed (|b⁺| + |b⁻|) + s_n (b⁺ + b⁻) + F_n],
    G_n the generator :func:`fp_forward` transposes, so the FP sweep is this one's adjoint."""
    n_steps = shift.shape[0]
    n_x = x.shape[0]
    dx = x[1] - x[0]
    diff = 0.5 * sigma * sigma / (dx * dx)
    has_dense = dense.shape[0] > 0
    lower = np.empty(n_x)
    diag = np.empty(n_x)
    upper = np.empty(n_x)
    rhs = np.empty(n_x)
    work = np.empty(n_x)
    u[n_steps] = terminal
    for n in range(n_steps - 1, -1, -1):
        for i in range(n_x):
            bp = bplus[n, i]
            bm = bminus[n, i]
            up = diff + bp / dx if i < n_x - 1 else 0.0
            lo = diff - bm / dx if i > 0 else 0.0
            diag[i] = 1.0 + dt * (up + lo)
            upper[i] = -dt * up
            lower[i] = -dt * lo
            pot = base[i] + slope[n] * x[i]
            if has_dense:
                pot += dense[n, i]
            cost = k * (bp**alpha + (-bm) ** alpha) + fixed * (bp - bm) + shift[n] * (bp + bm) + pot
            rhs[i] = u[n + 1, i] + dt * cost
        _thomas(lower, diag, upper, rhs, u[n], work)
