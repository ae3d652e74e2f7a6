"""Finite-state (jump) MFG solver: accuracy against a closed form, the outer iterations side
by side, and the compiled sweep against scipy on the same HJB.

1. Risk-neutral makers (``mfg.market_making.RiskNeutralMakers``: ξ = 0, intensity A e^{-kδ},
   running penalty φq², terminal ℓq²): θ = log ω / k with ω solving a linear system, so
   its ``closed_form_value`` is exact. Errors at n_t = 100..800 and the observed order.
2. The competing-makers equilibrium (``runs/solve_market_makers.toml``'s model, Q = 10,
   n_t = 2000) by Anderson, Newton–Krylov and Picard: median seconds, sweeps, and ratios.
3. One best response of (1) by the compiled sweeps (n_t = 1600: θ, the quotes and the law
   on the grid) and θ alone by scipy ``solve_ivp`` (adaptive RK45 with the same closed-form
   Hamiltonian in numpy, rtol 1e-10), at about the same error: seconds, errors, the ratio.
4. A logistic intensity (no closed-form sup): the compiled sweep (the sup by a safeguarded
   Newton solve) against scipy with every sup found by a bounded scalar search.

    python benchmarks/jump_solver.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

from _common import emit

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from mfg.jump import Jump, best_response, solve_jumps  # noqa: E402
from mfg.market_making import MarketMakingMFG, RiskNeutralMakers, solve_market_making  # noqa: E402



def scipy_value(model: RiskNeutralMakers, t, rtol):
    """θ on t by scipy's adaptive RK45, the Hamiltonian A e^{-kp} e^{-1}/k in numpy."""
    q = model.states.astype(float)
    c = model.A * math.exp(-1.0) / model.k

    def rhs(_, theta):  # dθ/dτ
        out = -model.phi * q**2
        out[:-1] += c * np.exp(-model.k * (theta[:-1] - theta[1:]))
        out[1:] += c * np.exp(-model.k * (theta[1:] - theta[:-1]))
        return out

    sol = solve_ivp(rhs, (0.0, model.T), model.terminal_value(), t_eval=model.T - t[::-1], rtol=rtol,
                    atol=rtol * 1e-2)
    return sol.y[:, ::-1].T


@dataclass(frozen=True)
class LogisticMaker(RiskNeutralMakers):
    """The same penalties, but CARA (ξ = 0.1) and a logistic fill probability
    A / (1 + e^{k(δ - c)})."""

    center: float = 1.0

    @property
    def risk_aversion(self):
        return 0.1

    @property
    def jumps(self):
        return (Jump(+1, self.k, "logistic", self.center), Jump(-1, self.k, "logistic", self.center))

    def scipy_value_at_0(self):
        """θ(0, ·)."""
        from scipy.optimize import minimize_scalar

        q, g = self.states.astype(float), self.risk_aversion

        def ham(p):
            def value(d):
                return self.A / (1 + math.exp(self.k * (d - self.center))) * (1 - math.exp(-g * (d - p))) / g
            return -minimize_scalar(lambda d: -value(d), bounds=(p, p + 40.0), method="bounded",
                                    options={"xatol": 1e-12}).fun

        def rhs(_, theta):
            out = -self.phi * q**2
            for i in range(q.size):
                if i < q.size - 1:
                    out[i] += ham(theta[i] - theta[i + 1])
                if i > 0:
                    out[i] += ham(theta[i] - theta[i - 1])
            return out

        sol = solve_ivp(rhs, (0.0, self.T), self.terminal_value(), t_eval=[self.T], rtol=1e-9, atol=1e-11)
        return sol.y[:, -1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    model = RiskNeutralMakers(A=50.0, k=1.2, phi=0.3, ell=0.05, max_inventory=6, T=1.0)
    solve_jumps(model, 100)  # compile / load the cache
    errors = []
    for n_t in (100, 200, 400, 800):
        sol = solve_jumps(model, n_t)
        errors.append(float(np.max(np.abs(sol.value - model.closed_form_value(sol.t)))))
    emit("closed_form_error", errors[-1], "ticks", n_t=800, errors=[float(f"{e:.3g}") for e in errors])
    emit("observed_order", math.log2(errors[-2] / errors[-1]), "ratio", expected=4)

    mm = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=0.5, max_inventory=10, T=1.0)
    seconds = {}
    for method in ("anderson", "newton", "picard"):
        solve_market_making(mm, n_t=2000, method=method)
        times, sol = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sol = solve_market_making(mm, n_t=2000, method=method)
            times.append(time.perf_counter() - t0)
        seconds[method] = statistics.median(times)
        emit("equilibrium_seconds", seconds[method], "s", method=method, outer_steps=len(sol.residuals),
             sweeps=sol.jump_solution.evaluations, residual=float(f"{sol.residuals[-1]:.3g}"),
             spread_at_0=round(float(sol.spread()[0]), 6), median_of=args.repeats)
    for method in ("newton", "picard"):
        emit("seconds_ratio", seconds[method] / seconds["anderson"], "ratio", method=f"{method}/anderson")

    t = np.linspace(0.0, model.T, 1601)  # n_t = 1600: about scipy's accuracy at rtol 1e-10
    exact = model.closed_form_value(t)
    compiled, plain = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sol = best_response(model, t, np.zeros(1))
        compiled.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = scipy_value(model, t, 1e-10)
        plain.append(time.perf_counter() - t0)
    emit("compiled_seconds", statistics.median(compiled), "s", n_t=1600,
         error=float(f"{np.max(np.abs(sol.value - exact)):.3g}"))
    emit("scipy_rk45_seconds", statistics.median(plain), "s", rtol=1e-10,
         error=float(f"{np.max(np.abs(ref - exact)):.3g}"))
    emit("speedup_vs_scipy", statistics.median(plain) / statistics.median(compiled), "ratio")

    # a logistic intensity has no closed-form sup: the kernel's safeguarded Newton solve
    # against scipy with every sup found by a bounded scalar search (one run: it is slow)
    logistic = LogisticMaker(A=40.0, k=1.5, phi=0.3, ell=0.05, max_inventory=3, T=1.0)
    t = np.linspace(0.0, logistic.T, 401)
    best_response(logistic, t, np.zeros(1))
    t0 = time.perf_counter()
    sol = best_response(logistic, t, np.zeros(1))
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = logistic.scipy_value_at_0()
    slow = time.perf_counter() - t0
    emit("logistic_compiled_seconds", fast, "s", n_t=400, difference=float(f"{np.max(np.abs(sol.value[0] - ref)):.3g}"))
    emit("logistic_scipy_numerical_sup_seconds", slow, "s", rtol=1e-9)
    emit("logistic_speedup_vs_scipy", slow / fast, "ratio")


if __name__ == "__main__":
    main()
