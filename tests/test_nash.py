"""N-player Nash equilibria: against full N×N integrations, and the 1/N gap to the MFG."""

import numpy as np
import pytest
from scipy.integrate import solve_bvp, solve_ivp

from mfg.closed_form import LQCrowding
from mfg.laws import GaussianMixture as GM
from mfg.nash import closed_loop, control_gap, open_loop

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


def test_open_loop_against_its_bvp():
    """Open loop from its own equations (no parameter shift): ẽ Riccati, then the (b, E) BVP."""
    n = 4
    k, kappa, phi, A = MODEL.k, MODEL.kappa, MODEL.types[0].phi, MODEL.types[0].A
    e_sol = solve_ivp(lambda t, e: (kappa / n - e) ** 2 / (2 * k) - 2 * phi, (1.0, 0.0), [2 * A],
                      rtol=1e-12, atol=1e-12, dense_output=True)

    def f(t, y):
        b, E = y
        e = e_sol.sol(t)[0]
        mu = (b + (kappa / n - e) * E) / (2 * k)
        return np.vstack([-b * (kappa / n - e) / (2 * k) - kappa * (n - 1) / n * mu, mu])

    mesh = np.linspace(0.0, 1.0, 200)
    sol = solve_bvp(f, lambda ya, yb: np.array([yb[0], ya[1] - 1.0]), mesh,
                    np.vstack([np.zeros_like(mesh), 1 - mesh]), tol=1e-9, max_nodes=100000)
    assert sol.success
    t = np.linspace(0.0, 1.0, 11)
    game = open_loop(MODEL, n)
    np.testing.assert_allclose(game.mean_inventory(t), sol.sol(t)[1], atol=1e-7)
    q = 0.3
    e = e_sol.sol(t)[0]
    np.testing.assert_allclose(game.control(t, q), (sol.sol(t)[0] + (kappa / n - e) * q) / (2 * k), atol=1e-6)


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_gap_to_mfg_falls_like_one_over_n(kind):
    ns = np.array([2, 5, 10, 30, 100, 300, 1000])
    gaps = np.array([control_gap(MODEL, int(n), kind, n_steps=800) for n in ns])
    slope = np.polyfit(np.log(ns), np.log(gaps), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)
    assert gaps[-1] < 1e-2


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
    with pytest.raises(ValueError, match="one preference type and c = 0"):
        open_loop(LQCrowding.single(1.0, 1.0, 1.0, 1.0, 1.0, GM.normal(0, 1), c=0.5), 3)
    with pytest.raises(ValueError, match="no open-loop equilibrium"):
        open_loop(LQCrowding.single(1.0, 50.0, 1.0, 1.0, 1.0, GM.normal(0, 1)), 2)
