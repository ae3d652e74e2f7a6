"""The general finite-state (jump) MFG solver: new models as one class each, checked against
routes that do not use its equations (a matrix exponential of a linearised system, scipy
with the sup found numerically, the generator's exponential)."""

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.optimize import minimize_scalar

from mfg import _jump_kernels as K
from mfg._fixed_point import MFGConvergenceError
from mfg.jump import Jump, JumpMFGModel, JumpTerms, best_response, solve_jumps
from mfg.market_making import MarketMakingMFG, RiskNeutralMakers, solve_market_making


BASE_RN = dict(A=50.0, k=1.2, phi=0.3, ell=0.1, max_inventory=4, T=1.0)


def risk_neutral_makers(**changes):
    return RiskNeutralMakers(**{**BASE_RN, **changes})


def test_risk_neutral_makers_against_the_linearised_closed_form():
    """With ξ = 0 and e^{-kδ}, ω = e^{kθ} solves the linear dω/dτ = (-kφ q² + (A/e)(shift up +
    shift down)) ω, ω(0) = e^{-kℓq²}: a matrix exponential, not the solver's equations."""
    model = risk_neutral_makers()
    q = model.states.astype(float)
    M = np.diag(-model.k * model.phi * q**2) + model.A / math.e * (np.eye(q.size, k=1) + np.eye(q.size, k=-1))
    errors = []
    for n_t in (200, 400):
        sol = solve_jumps(model, n_t)
        tau = model.T - sol.t
        omega = np.stack([expm(M * s) @ np.exp(-model.k * model.ell * q**2) for s in tau])
        theta = np.log(omega) / model.k
        bid = theta[:, :-1] - theta[:, 1:] + 1 / model.k
        errors.append(max(np.max(np.abs(sol.value - theta)), np.max(np.abs(sol.quotes[0, :, :-1] - bid))))
        np.testing.assert_allclose(model.closed_form_value(sol.t), theta, atol=1e-10)
    assert errors[1] < 1e-6 and errors[0] / errors[1] > 12  # RK4: fourth order
    assert np.isnan(sol.quotes[0, :, -1]).all() and (sol.rates[1, :, 0] == 0).all()
    np.testing.assert_allclose(sol.m.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("xi", [0.0, 0.05, 0.7])
@pytest.mark.parametrize("p", [-3.0, 0.0, 0.4, 2.5])
def test_the_logistic_sup_is_the_numerical_maximum(xi, p):
    k, c, a = 1.5, 0.8, 30.0

    def objective(d):
        rate = a / (1 + math.exp(k * (d - c)))
        return rate * ((d - p) if xi == 0 else (1 - math.exp(-xi * (d - p))) / xi)

    res = minimize_scalar(lambda d: -objective(d), bounds=(p, p + 30), method="bounded", options={"xatol": 1e-12})
    delta, rate, ham = K.best_quote(K.LOGISTIC, k, c, xi, a, p)
    assert delta == pytest.approx(res.x, abs=1e-6)
    assert ham == pytest.approx(-res.fun, rel=1e-10)
    assert rate == pytest.approx(a / (1 + math.exp(k * (delta - c))), rel=1e-12)


@dataclass(frozen=True)
class LogisticMakers(JumpMFGModel):
    """Competing CARA makers whose fill probability is logistic in the quote and shifts with
    the crowd's mean quote: Λ = A e^{ε δ̄} / (1 + e^{k (δ - c)})."""

    A: float = 40.0
    k: float = 1.5
    c: float = 1.0
    eps: float = 0.6
    gamma: float = 0.1
    sigma: float = 1.5
    Q: int = 3
    T: float = 1.0

    @property
    def risk_aversion(self):
        return self.gamma

    @property
    def states(self):
        return np.arange(-self.Q, self.Q + 1)

    @property
    def jumps(self):
        return (Jump(+1, self.k, "logistic", self.c), Jump(-1, self.k, "logistic", self.c))

    def initial_law(self):
        m = np.zeros(2 * self.Q + 1)
        m[self.Q - 1: self.Q + 1] = 0.5  # half flat, half short one
        return m

    def initial_coupling(self, t):
        return np.ones((2, t.size))

    def terms(self, mean_quotes, t):
        scale = self.A * np.exp(self.eps * mean_quotes)
        S = self.states.size
        return JumpTerms(np.repeat(scale[:, :, None], S, axis=2),
                         np.tile(0.5 * self.gamma * self.sigma**2 * self.states**2.0, (t.size, 1)))

    def coupling_from(self, population, t):
        posted = ~np.isnan(population.quotes)
        weights = population.m[None] * posted
        return (weights * np.nan_to_num(population.quotes)).sum(axis=2) / weights.sum(axis=2)


def test_logistic_makers_against_a_direct_hjb_solve():
    """The best response to moving competitors, against scipy integrating the CARA HJB with
    every sup found numerically (bounded scalar search)."""
    model = LogisticMakers()
    t = np.linspace(0.0, 1.0, 401)
    mean = np.stack([1.2 + 0.4 * np.sin(3 * t), 0.9 + 0.2 * np.cos(2 * t)])
    sol = best_response(model, t, mean)
    q = model.states
    g, eps = model.gamma, model.eps

    def best(side, tt, jump):
        m = np.interp(tt, t, mean[side])

        def value(d):
            return model.A * math.exp(eps * m) / (1 + math.exp(model.k * (d - model.c))) * (
                1 - math.exp(-g * (d + jump))) / g

        res = minimize_scalar(lambda d: -value(d), bounds=(-jump, -jump + 40.0), method="bounded",
                              options={"xatol": 1e-12})
        return res.x, -res.fun

    def rhs(tt, theta):
        out = 0.5 * g * model.sigma**2 * q**2.0
        for i in range(q.size):
            if i < q.size - 1:
                out[i] -= best(0, tt, theta[i + 1] - theta[i])[1]
            if i > 0:
                out[i] -= best(1, tt, theta[i - 1] - theta[i])[1]
        return out

    pick = np.array([0, 120, 300])
    ref = solve_ivp(rhs, (1.0, 0.0), np.zeros(q.size), t_eval=t[pick][::-1], rtol=1e-10, atol=1e-11)
    theta = ref.y[:, ::-1].T
    np.testing.assert_allclose(sol.value[pick], theta, atol=2e-6)  # values ~70: RK4 at dt x rate ~ 0.2
    bids = np.array([[best(0, tt, th[i + 1] - th[i])[0] for i in range(q.size - 1)] for tt, th in zip(t[pick], theta)])
    np.testing.assert_allclose(sol.quotes[0][pick, :-1], bids, atol=1e-6)


def test_logistic_equilibrium_newton_and_anderson_agree():
    model = LogisticMakers()
    a = solve_jumps(model, 400, method="anderson", tol=1e-11)
    n = solve_jumps(model, 400, method="newton", tol=1e-11)
    np.testing.assert_allclose(a.coupling, n.coupling, atol=1e-9)
    np.testing.assert_allclose(a.m, n.m, atol=1e-9)
    assert a.residuals[-1] <= 1e-11 and n.residuals[-1] <= 1e-11
    np.testing.assert_allclose(a.m.sum(axis=1), 1.0, atol=1e-12)
    assert a.m.min() > -1e-12
    # the coupling is a fixed point: the mean of what the law's players post
    posted = ~np.isnan(a.quotes[0])
    np.testing.assert_allclose(a.coupling[0], (a.m * np.nan_to_num(a.quotes[0])).sum(1) / (a.m * posted).sum(1))


def test_market_makers_newton_matches_anderson():
    model = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=0.5, max_inventory=5, T=1.0)
    a = solve_market_making(model, n_t=400)
    n = solve_market_making(model, n_t=400, method="newton")
    np.testing.assert_allclose(a.mean_bid, n.mean_bid, atol=1e-9)
    assert n.jump_solution.method == "newton" and len(n.residuals) < len(a.residuals)


def test_the_law_sweep_against_the_generators_exponential():
    """Constant rates with shifts +1 and -2: m(T) = expm(G T) m(0)."""
    S, n = 7, 400
    rng = np.random.default_rng(3)
    shifts = np.array([1, -2], dtype=np.int64)
    rates = np.zeros((2, n + 1, S))
    rates[0, :, :-1] = rng.uniform(0.5, 3.0, S - 1)
    rates[1, :, 2:] = rng.uniform(0.5, 3.0, S - 2)
    G = np.zeros((S, S))
    for i, s in enumerate(shifts):
        for q in range(S):
            if 0 <= q + s < S:
                G[q + s, q] += rates[i, 0, q]
                G[q, q] -= rates[i, 0, q]
    m = np.zeros((n + 1, S))
    m[0, 3] = 1.0
    t = np.linspace(0.0, 1.0, n + 1)
    K.law_forward(t, shifts, rates, m)
    np.testing.assert_allclose(m[-1], expm(G) @ m[0], atol=1e-11)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-13)


def test_bad_jump_models_are_refused():
    with pytest.raises(ValueError, match="shift=0"):
        Jump(0, 1.0)
    with pytest.raises(ValueError, match="shape='gaussian'"):
        Jump(1, 1.0, "gaussian")
    with pytest.raises(ValueError, match="decay=-1"):
        Jump(1, -1.0)

    @dataclass(frozen=True)
    class Broken(RiskNeutralMakers):
        bad: str = "scale"

        def terms(self, coupling, t):
            good = super().terms(coupling, t)
            if self.bad == "scale":
                return JumpTerms(good.scale[:, :-1], good.penalty)
            if self.bad == "negative":
                return JumpTerms(-good.scale, good.penalty)
            return JumpTerms(good.scale, good.penalty * np.nan)

    with pytest.raises(ValueError, match=r"terms\(\).scale has shape"):
        solve_jumps(Broken(**BASE_RN), 50)
    with pytest.raises(ValueError, match="must be >= 0"):
        solve_jumps(Broken(**BASE_RN, bad="negative"), 50)
    with pytest.raises(ValueError, match="penalty is not finite"):
        solve_jumps(Broken(**BASE_RN, bad="nan"), 50)
    with pytest.raises(ValueError, match="n_t=5"):
        solve_jumps(risk_neutral_makers(), 5)
    with pytest.raises(ValueError, match="method='bisection'"):
        solve_jumps(risk_neutral_makers(), 50, method="bisection")
    with pytest.raises(ValueError, match="n_t=10 too small"):
        solve_jumps(risk_neutral_makers(A=5e3), 10)


def test_a_fixed_point_that_fails_reports_its_residuals():
    model = MarketMakingMFG(gamma=0.05, sigma=2.0, A=100.0, k=0.8, competition=0.5, max_inventory=5, T=1.0)
    with pytest.raises(MFGConvergenceError, match="residual history") as info:
        solve_jumps(model, 400, method="picard", max_iter=3)
    assert len(info.value.residuals) == 3
