"""The outer fixed-point iteration shared by the mean-field solvers (private).

A solver hands over Φ, the map coupling -> (backward HJB, forward law) -> next coupling, as
a callable with an ``evaluations`` counter; :func:`iterate` finds Φ(c) = c by damped Picard,
fictitious play, Anderson acceleration or Jacobian-free Newton–Krylov, and raises
:class:`MFGConvergenceError` with the residual history when it does not converge.
"""

from __future__ import annotations

import math

import numpy as np

from . import validation as check

METHODS = ("anderson", "newton", "picard", "fictitious")


class MFGConvergenceError(RuntimeError):
    """The fixed point did not converge; ``residuals`` holds the history."""

    def __init__(self, message: str, residuals: list[float]):
        super().__init__(f"{message}; residual history (sup norm): "
                         + ", ".join(f"{r:.3g}" for r in residuals[:8])
                         + (" ... " + ", ".join(f"{r:.3g}" for r in residuals[-4:]) if len(residuals) > 8 else ""))
        self.residuals = residuals
        self.message = message

    def __reduce__(self):
        # a worker process sends the exception back pickled; the default would call
        # __init__ with the formatted text alone and break the pool
        return (type(self), (self.message, self.residuals))


def check_options(method, damping, tol, max_iter, anderson_depth) -> None:
    """Refuse bad outer-iteration options with the field, the value and what is allowed."""
    check.choice("method", method, METHODS)
    check.number("damping", damping, lo=0.0, hi=1.0, lo_open=True)
    check.number("tol", tol, lo=0.0, lo_open=True)
    check.integer("max_iter", max_iter, lo=1, hi=10**6)
    check.integer("anderson_depth", anderson_depth, lo=0, hi=100)


def iterate(phi, c: np.ndarray, *, method: str, damping: float, tol: float, max_iter: int,
            anderson_depth: int) -> tuple[np.ndarray, list[float]]:
    """Solve Φ(c) = c from ``c``; returns the coupling and the residual history (sup norm
    of Φ(c) - c, one entry per outer step). ``phi.evaluations`` counts the work."""
    residuals: list[float] = []

    def record(r: float) -> None:
        residuals.append(r)
        if not math.isfinite(r) or (len(residuals) > 3 and r > 1e6 * max(residuals[0], 1e-300)):
            raise MFGConvergenceError(f"{method} iteration diverged", residuals)

    c = np.asarray(c, dtype=np.float64)
    if method == "newton":
        return _newton_krylov(phi, c, tol, max_iter, record, residuals), residuals
    xs, gs = [], []
    for it in range(max_iter):
        g = phi(c) - c
        r = float(np.max(np.abs(g)))
        record(r)
        if r <= tol:
            return c, residuals
        if method == "anderson" and anderson_depth > 0:
            xs.append(c.ravel().copy())
            gs.append(g.ravel().copy())
            xs, gs = xs[-(anderson_depth + 1):], gs[-(anderson_depth + 1):]
            c = _anderson_step(xs, gs, damping).reshape(c.shape)
        else:
            theta = damping if method != "fictitious" else 1.0 / (it + 2)
            c = c + theta * g
    raise MFGConvergenceError(f"{method} did not reach tol={tol:g} in {max_iter} iterations", residuals)


def _anderson_step(xs, gs, damping):
    x, g = xs[-1], gs[-1]
    if len(xs) == 1:
        return x + damping * g
    dX = np.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], axis=1)
    dG = np.stack([gs[i + 1] - gs[i] for i in range(len(gs) - 1)], axis=1)
    gamma, *_ = np.linalg.lstsq(dG, g, rcond=None)
    return x + damping * g - (dX + damping * dG) @ gamma


def _gmres(matvec, b: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Plain GMRES (modified Gram–Schmidt, no restart) from x0 = 0."""
    beta = np.linalg.norm(b)
    if beta == 0.0:
        return np.zeros_like(b)
    Q = [b / beta]
    H = np.zeros((max_iter + 1, max_iter))
    for j in range(max_iter):
        w = matvec(Q[j])
        for i in range(j + 1):
            H[i, j] = np.dot(Q[i], w)
            w = w - H[i, j] * Q[i]
        H[j + 1, j] = np.linalg.norm(w)
        e1 = np.zeros(j + 2)
        e1[0] = beta
        y, *_ = np.linalg.lstsq(H[: j + 2, : j + 1], e1, rcond=None)
        if np.linalg.norm(H[: j + 2, : j + 1] @ y - e1) <= tol * beta or H[j + 1, j] < 1e-14 * beta:
            break
        Q.append(w / H[j + 1, j])
    return np.stack(Q[: len(y)], axis=1) @ y


def _newton_krylov(phi, c, tol, max_evals, record, residuals):
    """Newton on R(c) = Φ(c) - c; Jacobian-vector products by finite differences of Φ."""
    shape = c.shape

    def residual(v):
        return (phi(v.reshape(shape)) - v.reshape(shape)).ravel()

    x = c.ravel().copy()
    r = residual(x)
    record(float(np.max(np.abs(r))))
    while residuals[-1] > tol:
        if phi.evaluations >= max_evals:
            raise MFGConvergenceError(f"newton did not reach tol={tol:g} in {max_evals} evaluations", residuals)
        eps = 1e-7 * max(1.0, float(np.linalg.norm(x)))

        def jv(v, x=x, base=r, eps=eps):
            n = np.linalg.norm(v)
            return (residual(x + eps * v / n) - base) * (n / eps)

        # Φ is close to affine for MFGs of controls: aim the linear solve at the final
        # tolerance rather than at a fixed forcing term.
        forcing = min(1e-2, 0.1 * tol / max(residuals[-1], 1e-300))
        x = x + _gmres(jv, -r, tol=forcing, max_iter=min(80, max(5, max_evals - phi.evaluations)))
        r = residual(x)
        record(float(np.max(np.abs(r))))
    return x.reshape(shape)
