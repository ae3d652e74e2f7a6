"""N-player Nash equilibria: against full N×N integrations, and the 1/N gap to the MFG."""

import numpy as np
import pytest
from scipy.integrate import solve_bvp, solve_ivp

from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture as GM
from mfg.nash import NASH_GAP_COLUMNS, closed_loop, nash_gap_columns, nash_gaps, open_loop

MODEL = LQCrowding.single(k=1.0, kappa=2.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2), sigma=0.3)


def full_closed_loop_feedback(model: LQCrowding, n: int, times):
    """Player 0's feedback row from the unreduced N×N Riccati system (no symmetry used)."""
    k, kappa, phi, A = model.k, model.kappa, model.types[0].phi, model.types[0].A
    eye, one = np.eye(n), np.ones(n)

    def rhs(t, y):
        Es = y.reshape(n, n, n)
        U = np.stack([(-Es[i][i] + kappa * eye[i] / n) / (2 * k) for i in range(n)])
        out = np.empty_like(Es)
        for i in range(n):
            X = kappa / n * np.outer(eye[i], one) @ U - U.T @ Es[i]
            out[i] = X + X.T - 2 * phi * np.outer(eye[i], eye[i]) - 2 * k * np.outer(U[i], U[i])
        return out.ravel()

    yT = np.stack([2 * A * np.outer(eye[i], eye[i]) for i in range(n)]).ravel()
    sol = solve_ivp(rhs, (model.T, 0.0), yT, rtol=1e-11, atol=1e-12, dense_output=True)
    return [(-sol.sol(t).reshape(n, n, n)[0][0] + kappa * eye[0] / n) / (2 * k) for t in times]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_closed_loop_reduction_matches_full_system(n):
    cl = closed_loop(MODEL, n, n_steps=1000)
    idx = [0, 400, 999]
    for i, row in zip(idx, full_closed_loop_feedback(MODEL, n, cl.t[idx])):
        expected = np.full(n, cl.w[i])
        expected[0] += cl.u[i]
        np.testing.assert_allclose(row, expected, rtol=1e-7, atol=1e-9)


def pontryagin_open_loop(model: LQCrowding, q0: np.ndarray, times):
    """Open-loop Nash by the maximum principle for each player: the 2N-dimensional
    forward–backward system solved directly with ``solve_bvp`` (no reduction, no Riccati).

    Player i maximises ∫ (Q_i κ/N Σ_j ν_j - k ν_i² - φ Q_i²) dt - A Q_i(T)², the others'
    rates taken as given: ν_i = (p_i + κ Q_i/N)/(2k), p_i' = -κ/N Σ_j ν_j + 2φ Q_i,
    Q_i(0) = q0_i, p_i(T) = -2A Q_i(T).
    """
    k, kappa, phi, A, T = model.k, model.kappa, model.types[0].phi, model.types[0].A, model.T
    n = q0.size

    def rates(y):
        return (y[n:] + kappa * y[:n] / n) / (2 * k)

    def f(t, y):
        nu = rates(y)
        return np.vstack([nu, -kappa / n * nu.sum(axis=0) + 2 * phi * y[:n]])

    mesh = np.linspace(0.0, T, 101)
    guess = np.vstack([q0[:, None] * (1 - mesh / T), np.zeros((n, mesh.size))])
    sol = solve_bvp(f, lambda ya, yb: np.concatenate([ya[:n] - q0, yb[n:] + 2 * A * yb[:n]]), mesh, guess,
                    tol=1e-10, max_nodes=10**6)
    assert sol.success, sol.message
    y = sol.sol(times)
    return y[:n], rates(y)


@pytest.mark.parametrize("n, kappa", [(2, 1.0), (3, 2.0), (5, 6.0)])
def test_open_loop_against_a_direct_n_player_solve(n, kappa):
    model = LQCrowding.single(k=1.0, kappa=kappa, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2))
    q0 = np.linspace(1.4, 0.2, n)  # unequal starts: the deviations carry the own-impact term
    t = np.linspace(0.0, 1.0, 21)
    inventory, rate = pontryagin_open_loop(model, q0, t)
    game = open_loop(model, n)
    got_inventory, got_rate = game.paths(t, q0)
    np.testing.assert_allclose(got_inventory, inventory, atol=1e-7)
    np.testing.assert_allclose(got_rate, rate, atol=1e-6)
    # the own gain read off the direct solve: (ν_0 - ν̄)/(Q_0 - Q̄)
    own = (rate[0] - rate.mean(axis=0)) / (inventory[0] - inventory.mean(axis=0))
    np.testing.assert_allclose(game.own_gain(t), own, rtol=1e-6)
    # control(t, q) along the path of a crowd started at the m0 mean
    np.testing.assert_allclose(game.control(t, game.mean_inventory(t) + 0.1) - game.mean_rate(t),
                               0.1 * game.own_gain(t), atol=1e-12)


def test_open_loop_own_gain_is_not_the_shifted_mfg_gain():
    """The bug this replaces: the shifted MFG's gain -1.2476 at t=0 (N=2, κ=1) vs -1.1283."""
    model = LQCrowding.single(k=1.0, kappa=1.0, phi=1.0, A=10.0, T=1.0, m0=GM.normal(1.0, 0.2))
    assert open_loop(model, 2).own_gain(0.0) == pytest.approx(-1.12826, abs=1e-5)


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_gaps_to_mfg_fall_like_one_over_n(kind):
    ns = np.array([2, 5, 10, 30, 100, 300, 1000])
    gaps = [nash_gaps(MODEL, int(n), kind, n_steps=800) for n in ns]
    for name in ("own_gain", "mean_rate", "value"):
        values = np.array([getattr(g, name) for g in gaps])
        slope = np.polyfit(np.log(ns[2:]), np.log(values[2:]), 1)[0]
        assert slope == pytest.approx(-1.0, abs=0.05), name
        assert values[-1] < 2e-2, name


def test_the_gaps_tell_closed_from_open_loop():
    for n in (3, 30):
        closed, open_ = nash_gaps(MODEL, n, "closed", 800), nash_gaps(MODEL, n, "open", 800)
        assert abs(closed.own_gain - open_.own_gain) > 0.05 * open_.own_gain
        assert abs(closed.value - open_.value) > 0.05 * open_.value
    assert set(nash_gap_columns(MODEL, 10, 400)) == set(NASH_GAP_COLUMNS)


def test_closed_and_open_loop_differ_but_agree_in_the_limit():
    t = np.linspace(0.0, 1.0, 801)
    cl, ol = closed_loop(MODEL, 3, 800), open_loop(MODEL, 3)
    E = ol.mean_inventory(t)
    # closed-loop players react to the others' inventories; open-loop ones do not
    assert np.max(np.abs(cl.w)) > 1e-3
    assert np.max(np.abs(cl.control(slice(None), E, 3 * E) - ol.control(t, E))) > 1e-4


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_players"):
        closed_loop(MODEL, 1)
    with pytest.raises(ValueError, match="one preference type, c = 0, rho = 0"):
        open_loop(LQCrowding.single(1.0, 1.0, 1.0, 1.0, 1.0, GM.normal(0, 1), c=0.5), 3)
    with pytest.raises(ValueError, match="no open-loop equilibrium"):
        open_loop(LQCrowding.single(1.0, 50.0, 1.0, 1.0, 1.0, GM.normal(0, 1)), 2)
