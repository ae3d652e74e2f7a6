"""Closed forms against independent ODE/BVP integrations (scipy) and known limits."""

import math

import numpy as np
import pytest
from scipy.integrate import quad, solve_bvp, solve_ivp

from mfg.closed_form import AlmgrenChriss, LQCrowding, PreferenceType
from mfg.laws import GaussianMixture as GM

T = 1.0


@pytest.mark.parametrize("lam, Phi", [(2.0, 5.0), (2.0, math.inf), (0.0, 5.0), (0.0, math.inf), (0.5, 0.0)])
def test_almgren_chriss_against_riccati_and_cost(lam, Phi):
    ac = AlmgrenChriss(gamma=0.7, lam=lam, terminal_penalty=Phi, horizon=T)
    # h' = h²/γ - λ backward from h(T) = Φ (start just before T when Φ = ∞)
    t_end = T - 1e-6 if math.isinf(Phi) else T
    h_end = float(ac.h(t_end))
    sol = solve_ivp(lambda t, h: h**2 / ac.gamma - lam, (t_end, 0.0), [h_end], rtol=1e-12, atol=1e-12,
                    dense_output=True)
    t = np.linspace(0.0, 0.9, 10)
    np.testing.assert_allclose(ac.h(t), sol.sol(t)[0], rtol=1e-8)
    # trajectory solves q' = -h q / γ
    q0 = 2.0
    traj = solve_ivp(lambda s, q: -ac.h(s) * q / ac.gamma, (0.0, 0.9), [q0], rtol=1e-12, atol=1e-14, dense_output=True)
    np.testing.assert_allclose(ac.inventory(t, q0), traj.sol(t)[0], rtol=1e-8)
    # the cost of the optimal path is h(0) q0²
    running, _ = quad(lambda s: ac.gamma * ac.rate(s, q0) ** 2 + lam * ac.inventory(s, q0) ** 2, 0.0, T,
                      limit=200, epsabs=1e-12)
    terminal = 0.0 if math.isinf(Phi) else Phi * float(ac.inventory(T, q0)) ** 2
    assert running + terminal == pytest.approx(ac.cost(q0), rel=1e-7)


def test_almgren_chriss_limits():
    t = np.linspace(0.0, T, 7)
    big = AlmgrenChriss(0.5, 3.0, 1e12, T)
    forced = AlmgrenChriss(0.5, 3.0, math.inf, T)
    np.testing.assert_allclose(big.inventory(t, 1.0), forced.inventory(t, 1.0), atol=1e-9)
    np.testing.assert_allclose(forced.inventory(t, 1.0), np.sinh(math.sqrt(6) * (T - t)) / np.sinh(math.sqrt(6) * T))
    twap = AlmgrenChriss(0.5, 0.0, math.inf, T)
    np.testing.assert_allclose(twap.inventory(t, 1.0), 1.0 - t)
    lin = AlmgrenChriss(0.5, 0.0, 4.0, T)
    np.testing.assert_allclose(lin.inventory(t, 1.0), (0.5 + 4.0 * (T - t)) / (0.5 + 4.0 * T))
    with pytest.raises(ValueError, match="gamma"):
        AlmgrenChriss(0.0, 1.0)
    with pytest.raises(ValueError, match="lam"):
        AlmgrenChriss(1.0, -1.0)


def bvp_reference(model: LQCrowding, t):
    """Independent solution of the mean-field BVP with scipy.solve_bvp (E_j, E_j', Y),
    written from the equations as stated: (2k E_j'' + c μ' + κ μ - ρ Y - 2 φ_j E_j = 0,
    Y' = κ μ - ρ Y, Y(0) = 0)."""
    J = len(model.types)
    w = model.weights
    phi = np.array([p.phi for p in model.types])
    A = np.array([p.A for p in model.types])
    E0 = np.array([p.m0.mean for p in model.types])
    B = 2 * model.k * np.eye(J) + model.c * np.outer(np.ones(J), w)

    def f(s, y):
        E, dE, Y = y[:J], y[J:2 * J], y[2 * J]
        mu = w @ dE
        d2E = np.linalg.solve(B, 2 * phi[:, None] * E - model.kappa * mu[None, :] + model.rho * Y[None, :])
        return np.vstack([dE, d2E, model.kappa * mu - model.rho * Y])

    def bc(ya, yb):
        mu_T = w @ yb[J:2 * J]
        return np.concatenate([ya[:J] - E0, [ya[2 * J]],
                               model.k * yb[J:2 * J] + 0.5 * model.c * mu_T + A * yb[:J]])

    mesh = np.linspace(0.0, model.T, 400)
    y0 = np.vstack([np.outer(E0, 1 - mesh / model.T), np.outer(-E0, np.ones_like(mesh)), np.zeros((1, mesh.size))])
    sol = solve_bvp(f, bc, mesh, y0, tol=1e-10, max_nodes=200000)
    assert sol.success
    return sol.sol(t)


MODELS = {
    "single": LQCrowding.single(k=1.0, kappa=3.0, phi=1.0, A=10.0, T=T, m0=GM.normal(1.0, 0.2), sigma=0.3),
    "crowd_c": LQCrowding.single(k=0.5, kappa=2.0, phi=2.0, A=5.0, T=T, m0=GM.normal(-0.6, 0.1), sigma=0.2, c=0.8),
    "types": LQCrowding(
        k=1.0, kappa=4.0, T=T, sigma=0.25, c=0.3,
        types=(PreferenceType(1.0, 10.0, GM.normal(1.0, 0.2), weight=0.6),
               PreferenceType(5.0, 2.0, GM((0.5, 0.5), (-0.5, -1.5), (0.1, 0.3)), weight=0.4)),
    ),
    "transient": LQCrowding(
        k=1.0, kappa=6.0, T=T, sigma=0.25, c=0.3, rho=3.0,
        types=(PreferenceType(1.0, 10.0, GM.normal(1.0, 0.2), weight=0.7),
               PreferenceType(3.0, 4.0, GM.normal(-0.5, 0.1), weight=0.3)),
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_mean_field_mean_against_bvp(name):
    model = MODELS[name]
    t = np.linspace(0.0, T, 21)
    ref = bvp_reference(model, t)
    J = len(model.types)
    for j in range(J):
        np.testing.assert_allclose(model.mean_inventory(t, j), ref[j], atol=1e-7)
        np.testing.assert_allclose(model.type_rate(t, j), ref[J + j], atol=1e-6)
    np.testing.assert_allclose(model.mean_rate(t), model.weights @ ref[J:2 * J], atol=1e-6)
    np.testing.assert_allclose(model.price_impact(t), ref[2 * J], atol=1e-6)


def test_transient_impact_limits_and_speed():
    """ρ → 0 is the permanent-impact model (Y = κ(E - E0)); resilience slows the sellers:
    the trend they front-run is partly undone before T."""
    t = np.linspace(0.0, T, 11)
    base = dict(k=1.0, kappa=5.0, phi=1.0, A=10.0, T=T, m0=GM.normal(1.0, 0.2))
    permanent = LQCrowding.single(**base)
    np.testing.assert_allclose(permanent.price_impact(t), 5.0 * (permanent.mean_inventory(t) - 1.0), atol=1e-12)
    nearly = LQCrowding.single(**base, rho=1e-7)
    np.testing.assert_allclose(nearly.mean_inventory(t), permanent.mean_inventory(t), atol=1e-6)
    means = [LQCrowding.single(**base, rho=rho).mean_inventory(0.3) for rho in (0.0, 1.0, 5.0, 50.0)]
    assert np.all(np.diff(means) > 0)
    # very fast resilience: no trend to front-run, the crowd trades as Almgren–Chriss alone
    alone = AlmgrenChriss(gamma=1.0, lam=1.0, terminal_penalty=10.0, horizon=T).inventory(0.3, 1.0)
    assert LQCrowding.single(**base, rho=1e4).mean_inventory(0.3) == pytest.approx(alone, abs=2e-3)


@pytest.mark.parametrize("name", MODELS)
def test_riccati_coefficients_against_ode(name):
    """h2, h1, h0 solve their ODEs; h1 via h1' = (h1 - cμ) h2/(2k) - D from h1(T) = 0, with
    D = κμ - ρY the drift of the mid (κμ for permanent impact)."""
    model = MODELS[name]
    k, c, kappa, s2 = model.k, model.c, model.kappa, model.sigma**2
    for j, p in enumerate(model.types):
        def rhs(t, y, j=j, p=p):
            h2, h1, h0 = y
            mu = float(model.mean_rate(t))
            drift = kappa * mu - model.rho * float(model.price_impact(t))
            return [h2**2 / (2 * k) - 2 * p.phi,
                    (h1 - c * mu) * h2 / (2 * k) - drift,
                    s2 * h2 / 2 - (h1 - c * mu) ** 2 / (4 * k)]

        sol = solve_ivp(rhs, (T, 0.0), [2 * p.A, 0.0, 0.0], rtol=1e-11, atol=1e-12, dense_output=True)
        t = np.linspace(0.0, T, 11)
        ref = sol.sol(t)
        np.testing.assert_allclose(model.h2(t, j), ref[0], rtol=1e-8)
        np.testing.assert_allclose(model.h1(t, j), ref[1], atol=1e-6)
        np.testing.assert_allclose(model.h0(t, j), ref[2], atol=1e-6)


def test_inventory_law_against_moment_odes():
    """Mean and variance of each mixture component solve the linear moment ODEs."""
    model = MODELS["types"]
    k = model.k
    for j, p in enumerate(model.types):
        for i, (mean, std) in enumerate(zip(p.m0.means, p.m0.stds)):
            # component mean M: M' = E_j' - a (M - E_j); variance: V' = -2 a V + σ²
            def rhs(t, y, j=j):
                a = float(model.h2(t, j)) / (2 * k)
                E, dE = float(model.mean_inventory(t, j)), float(model.type_rate(t, j))
                return [dE - a * (y[0] - E), -2 * a * y[1] + model.sigma**2]

            sol = solve_ivp(rhs, (0.0, T), [mean, std**2], rtol=1e-11, atol=1e-13, dense_output=True)
            for t in (0.3, 0.7, 1.0):
                law = model.law(t, j)  # components keep the order of m0's
                assert law.means[i] == pytest.approx(sol.sol(t)[0], abs=1e-7)
                assert law.stds[i] ** 2 == pytest.approx(sol.sol(t)[1], abs=1e-8)


def test_control_is_the_mean_rate_on_average_and_mixed_buyers_sellers():
    m0 = GM((0.7, 0.3), (1.0, -0.5), (0.1, 0.1))  # sellers and buyers in one population
    model = LQCrowding.single(k=1.0, kappa=2.0, phi=1.0, A=10.0, T=T, m0=m0, sigma=0.2)
    assert m0.mean == pytest.approx(0.55)
    for t in (0.0, 0.4, 0.8):
        law = model.law(t)
        # E[ν*(t, Q_t)] = μ(t) because the feedback is affine in q
        expected = sum(w * model.control(t, m) for w, m in zip(law.weights, law.means))
        assert float(expected) == pytest.approx(float(model.mean_rate(t)), abs=1e-10)
    assert float(model.mean_rate(0.0)) < 0  # net sellers sell on average


def test_crowding_speeds_up_the_crowd():
    t = np.array([0.25, 0.5, 0.75])
    means = [LQCrowding.single(1.0, kappa, 1.0, 10.0, T, GM.normal(1.0, 0.2)).mean_inventory(t)
             for kappa in (0.0, 1.0, 5.0, 20.0)]
    assert np.all(np.diff(np.stack(means), axis=0) < 0)
    # the crowd temporary impact c slows the crowd down
    slow = LQCrowding.single(1.0, 5.0, 1.0, 10.0, T, GM.normal(1.0, 0.2), c=2.0).mean_inventory(t)
    assert np.all(slow > means[2])


def test_degenerate_linear_mean():
    model = LQCrowding.single(k=1.0, kappa=0.0, phi=0.0, A=10.0, T=T, m0=GM.normal(1.0, 0.0))
    t = np.linspace(0.0, T, 5)
    np.testing.assert_allclose(model.mean_inventory(t), 1.0 - 10.0 / 11.0 * t, atol=1e-10)


def test_bad_parameters():
    with pytest.raises(ValueError, match="k=0"):
        LQCrowding.single(k=0.0, kappa=1.0, phi=1.0, A=1.0, T=1.0, m0=GM.normal(0, 1))
    with pytest.raises(ValueError, match="weights"):
        GM((0.5, 0.4), (0, 1), (1, 1))
    with pytest.raises(ValueError, match="t must lie"):
        MODELS["single"].mean_inventory([1.5])
    with pytest.raises(ValueError, match="t=nan"):
        MODELS["single"].mean_inventory(float("nan"))
    with pytest.raises(ValueError, match="t must lie"):
        MODELS["single"].h2(-0.5)
    ac = AlmgrenChriss(gamma=1.0, lam=1.0, terminal_penalty=math.inf, horizon=1.0)
    for method in (ac.inventory, ac.rate):
        with pytest.raises(ValueError, match="t must lie in \\[0, T=1.0\\]"):
            method(1.5, 1.0)
        with pytest.raises(ValueError, match="t=nan"):
            method([0.5, float("nan")], 1.0)
