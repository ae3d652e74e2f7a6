"""Learning the equilibrium: best response, fictitious play and online mirror descent, with
the exploitability of every iterate, on the LQ trade-crowding game (exactly, below), on the
finite-difference games (:func:`fd_learning`, :func:`fd_mirror_descent`: exact on the grid)
and on the jump games of market makers (:func:`jump_learning`, :func:`jump_mirror_descent`).

The game on a time grid
-----------------------
:class:`LQLearningGame` puts :class:`mfg.closed_form.LQCrowding` (transient impact and
preference types included) on ``n_t`` steps of length dt. A policy is each type's mean
trading rate, constant over each step: ``nu`` of shape (J, n_t), shares per time. Only the
means are learned: the dispersion part of the equilibrium feedback,
``-h2/(2k) (q - E)``, does not depend on the population (see :mod:`mfg.closed_form`), so a
learner that knows its own costs has it from the start, and it adds nothing to any gain
difference. The population a policy produces is the crowd's rate ``mu = sum_j w_j nu_j``.

Facing a crowd ``mu``, the price moves by ``dS_n = sum_i (Y_i(t_{n+1}) - Y_i(t_n))`` over step
n, with ``Y_i' = kappa_i mu - rho_i Y_i`` integrated exactly for ``mu`` constant on the step.
A type-j agent whose mean inventory is ``E_0 = E0_j``, ``E_{n+1} = E_n + nu_n dt``, gains

    J_j(nu; mu) = sum_n [ (E_n + E_{n+1})/2 dS_n - dt phi_j (E_n^2 + E_{n+1}^2)/2
                          - dt (k nu_n^2 + c mu_n nu_n) ] - A_j E_N^2,

the mean part of ``E[X_T + Q_T S_T - A Q_T^2 - phi ∫ Q^2 dt]`` by the trapezoidal rule. It is
a strictly concave quadratic in ``nu``: the best response is one linear solve, and the
**exploitability** of a policy,

    sum_j w_j [ max_nu' J_j(nu'; mu(nu)) - J_j(nu_j; mu(nu)) ]     (price x shares per agent),

is exact. It is zero only at the equilibrium, which :meth:`LQLearningGame.equilibrium`
solves directly; as dt -> 0 it tends to the closed form's mean rates (tested).

The learners
------------
* best response (Picard), plain (``damping=1``) or damped: ``nu <- (1-a) nu + a BR(mu(nu))``;
* fictitious play: the same with ``a_i = 1/(i+1)`` (the average of all best responses so
  far; for this game, whose dynamics are linear, averaging the policies averages the
  populations they produce), or any schedule ``a_i``;
* online mirror descent (Pérolat et al. 2021) with the Euclidean mirror map: the dual
  variable sums the gradients of each player's gain against the population of the moment,
  ``y <- y + eta grad J(nu; mu(nu))``, and the policy is ``nu_0 + y``.

The best-response map is affine, ``BR(mu(nu)) = B nu + b``. Picard converges when the
spectral radius of B is below one; its eigenvalues are nearly imaginary here (a crowd that
sells faster at time s makes a player hold more before s and less after), and their
modulus grows like kappa / k, so plain best response diverges once kappa passes a
threshold (:meth:`LQLearningGame.picard_radius`). Fictitious play only needs
``Re(lambda) < 1``: its steps ``1/(i+1)`` shrink until they contract, and its error then
falls like ``i^-Re(1 - lambda)``, so its exploitability (quadratic in the error) like
``i^-2`` here, faster than the ``O(1/t)`` of fictitious play in general MFGs (Perrin et al.
2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from . import validation as check
from .closed_form import LQCrowding

METHODS = ("best_response", "fictitious_play", "mirror_descent")


class _Operators(NamedTuple):
    """The grid game's matrices: each player's gain is b_j(mu)·nu - nu·H_j·nu/2 + const."""

    price_moves: np.ndarray  # (n_t, n_t): dS = price_moves @ mu
    hessians: np.ndarray  # (J, n_t, n_t): H_j
    factors: np.ndarray  # (J, n_t, n_t): Cholesky factors of H_j
    constants: np.ndarray  # (J, n_t): b_j(0)
    crowd: np.ndarray  # (n_t, n_t): b_j(mu) - b_j(0) = crowd @ mu


@dataclass(frozen=True)
class LearningHistory:
    """What a learner did, iteration by iteration.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    exploitability : numpy.ndarray of float64
        Of the policy at each iterate, from the starting policy on (price x shares per agent).
    distance : numpy.ndarray of float64
        Sup over time of |mu_i - mu*|, the crowd's rate against the equilibrium's (shares
        per time); the FD and jump learners say what theirs is.
    policy : numpy.ndarray of float64
        The last policy, (J, n_t) mean rates per type and step (shares per time); for the FD
        and jump learners, the last coupling.
    diverged : bool
        True when the learner stopped because its exploitability left any bound (it
        exceeded 1e12 times the starting one, or stopped being finite).
    settings : dict
        The learner's parameters (damping, schedule name, step).
    """

    method: str
    exploitability: np.ndarray
    distance: np.ndarray
    policy: np.ndarray
    diverged: bool
    settings: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        """Learning steps taken."""
        return int(self.exploitability.size - 1)

    def slope(self, start: int = 10, stop: int | None = None) -> tuple[float, float]:
        """Least-squares slope of log exploitability against log iteration, with its standard error.

        Parameters
        ----------
        start, stop : int
            The iterations fitted, ``start .. stop`` (default: to the last).

        Returns
        -------
        (float, float)
            The slope and its standard error (from the residuals of the fit).
        """
        stop = self.iterations if stop is None else stop
        return loglog_slope(np.arange(start, stop + 1), self.exploitability[start:stop + 1], "exploitability")


def loglog_slope(x, y, what: str = "values") -> tuple[float, float]:
    """Least-squares slope of log y against log x over the points with x, y > 0, and its standard error.

    Parameters
    ----------
    x, y : array_like
        Iterations (or rounds) and what decays along them.
    what : str
        Names y in the error message.

    Returns
    -------
    (float, float)
        The slope and its standard error (from the residuals of the fit).

    Raises
    ------
    ValueError
        With fewer than 3 positive points.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if lx.size < 3:
        raise ValueError(f"the slope needs at least 3 points with positive {what}; got {lx.size}")
    X = np.column_stack([np.ones_like(lx), lx])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    s2 = float(resid @ resid) / max(lx.size - 2, 1)
    return float(coef[1]), math.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])


@dataclass(frozen=True)
class LQLearningGame:
    """The LQ crowding game on a time grid, for learners (see the module docstring).

    Parameters
    ----------
    model : LQCrowding
        The game: impacts k, kappa, c and the transient terms, the preference types.
    n_t : int
        Time steps, >= 2.
    """

    model: LQCrowding
    n_t: int = 200

    def __post_init__(self):
        check.require(isinstance(self.model, LQCrowding), "model", type(self.model).__name__,
                      "must be an mfg.closed_form.LQCrowding")
        check.integer("n_t", self.n_t, lo=2, hi=20_000)

    # ---- the grid's linear algebra -------------------------------------------------------
    @property
    def dt(self) -> float:
        """Step length (time units)."""
        return self.model.T / self.n_t

    @property
    def t(self) -> np.ndarray:
        """Step midpoints, where a policy's rates sit (time units)."""
        return (np.arange(self.n_t) + 0.5) * self.dt

    @cached_property
    def _operators(self):
        n, dt, model = self.n_t, self.dt, self.model
        # E = E0 + L nu at the nodes 0..n
        L = np.tril(np.ones((n + 1, n)), -1) * dt
        left, right = L[:-1], L[1:]
        mid = 0.5 * (left + right)
        # price moves over each step from the crowd's rates: dS = G mu (exact per step)
        G = np.zeros((n, n))
        steps = np.arange(n)
        for kappa, rho in model.impact_terms:
            if kappa == 0.0:
                continue
            if rho == 0.0:
                G[steps, steps] += kappa * dt
                continue
            decay = math.exp(-rho * dt)
            gain = kappa * (1.0 - decay) / rho  # Y after one step of unit mu from Y = 0
            # Y_{m+1} = decay Y_m + gain mu_m, so Y_{m} = sum_{l<m} decay^(m-1-l) gain mu_l
            lags = steps[:, None] - steps[None, :]
            Y = np.where(lags >= 0, gain * decay ** np.maximum(lags, 0), 0.0)  # Y_{m+1} in row m
            previous = np.vstack([np.zeros((1, n)), Y[:-1]])
            G += Y - previous
        hessians, factors, constants = [], [], []
        for p in model.types:
            H = dt * p.phi * (left.T @ left + right.T @ right) + 2 * dt * model.k * np.eye(n) \
                + 2 * p.A * np.outer(L[n], L[n])
            E0 = p.m0.mean
            # linear part of the gain not from the crowd: -dt phi E0 (left + right)^T 1 - 2 A E0 L_n
            constants.append(-dt * p.phi * E0 * (left + right).T @ np.ones(n) - 2 * p.A * E0 * L[n])
            hessians.append(H)
            factors.append(np.linalg.cholesky(H))
        # the crowd's part of the linear term: (mid^T G - dt c I) mu
        crowd = mid.T @ G - dt * model.c * np.eye(n)
        return _Operators(G, np.array(hessians), np.array(factors), np.array(constants), crowd)

    def population(self, policy: np.ndarray) -> np.ndarray:
        """The crowd's rate mu = sum_j w_j nu_j that a policy produces.

        Parameters
        ----------
        policy : numpy.ndarray of float64, shape (J, n_t)
            Mean rates per type and step (shares per time).

        Returns
        -------
        numpy.ndarray of float64, shape (n_t,)
            Shares per time.
        """
        return self.model.weights @ self._policy(policy)

    def _policy(self, policy) -> np.ndarray:
        policy = np.asarray(policy, dtype=np.float64)
        shape = (len(self.model.types), self.n_t)
        if policy.shape != shape or not np.all(np.isfinite(policy)):
            raise check.InvalidValue("policy", f"array of shape {policy.shape}", f"finite, of shape {shape} "
                                     "(types x steps)")
        return policy

    def price_moves(self, mu: np.ndarray) -> np.ndarray:
        """Price move over each step caused by the crowd's rates (price units).

        Parameters
        ----------
        mu : numpy.ndarray of float64, shape (n_t,)
            The crowd's rate per step (shares per time).

        Returns
        -------
        numpy.ndarray of float64, shape (n_t,)
        """
        return self._operators.price_moves @ np.asarray(mu, dtype=np.float64)

    def gains(self, policy: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Each type's gain J_j(nu_j; mu), computed along the inventory path (no matrices).

        Parameters
        ----------
        policy : numpy.ndarray of float64, shape (J, n_t)
            Mean rates (shares per time).
        mu : numpy.ndarray of float64, shape (n_t,)
            The crowd's rate the players face (shares per time).

        Returns
        -------
        numpy.ndarray of float64, shape (J,)
            Price x shares per agent.
        """
        policy, dt, model = self._policy(policy), self.dt, self.model
        mu = np.asarray(mu, dtype=np.float64)
        dS = self.price_moves(mu)
        out = np.empty(len(model.types))
        for j, p in enumerate(model.types):
            E = p.m0.mean + np.concatenate([[0.0], np.cumsum(policy[j]) * dt])
            out[j] = (np.sum(0.5 * (E[:-1] + E[1:]) * dS) - dt * p.phi * np.sum(0.5 * (E[:-1] ** 2 + E[1:] ** 2))
                      - dt * np.sum(model.k * policy[j] ** 2 + model.c * mu * policy[j]) - p.A * E[-1] ** 2)
        return out

    def best_response(self, mu: np.ndarray) -> np.ndarray:
        """Every type's best response to the crowd's rates (one linear solve per type).

        Parameters
        ----------
        mu : numpy.ndarray of float64, shape (n_t,)
            Shares per time.

        Returns
        -------
        numpy.ndarray of float64, shape (J, n_t)
            Mean rates (shares per time).
        """
        ops = self._operators
        linear = self._linear(mu)
        out = np.empty_like(linear)
        for j, C in enumerate(ops.factors):
            out[j] = np.linalg.solve(C.T, np.linalg.solve(C, linear[j]))
        return out

    def gradient(self, policy: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The gradient of each type's gain in its own rates, against ``mu``, per unit of dt.

        dJ/dν_n is O(dt) (price × time); divided by dt it is a price per share that does not
        vanish as the grid is refined, so a step size means the same on every grid.

        Parameters
        ----------
        policy : numpy.ndarray of float64, shape (J, n_t)
        mu : numpy.ndarray of float64, shape (n_t,)

        Returns
        -------
        numpy.ndarray of float64, shape (J, n_t)
        """
        policy = self._policy(policy)
        return (self._linear(mu) - np.einsum("jab,jb->ja", self._operators.hessians, policy)) / self.dt

    def _linear(self, mu) -> np.ndarray:
        """Each type's linear term b_j(mu) of its gain, constant_j + crowd @ mu: (J, n_t)."""
        ops = self._operators
        return ops.constants + (ops.crowd @ np.asarray(mu, dtype=np.float64))[None, :]

    def exploitability(self, policy: np.ndarray) -> float:
        """What a best response gains over ``policy`` against the crowd ``policy`` makes.

        Parameters
        ----------
        policy : numpy.ndarray of float64, shape (J, n_t)

        Returns
        -------
        float
            sum_j w_j [J_j(BR; mu) - J_j(nu_j; mu)] >= 0 (price x shares per agent).
        """
        mu = self.population(policy)
        return float(self.model.weights @ (self.gains(self.best_response(mu), mu) - self.gains(policy, mu)))

    @cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """BR(mu(nu)) = B nu + b on the stacked policy (J n_t,)."""
        J, n = len(self.model.types), self.n_t
        zero = self.best_response(np.zeros(n))
        B = np.zeros((J * n, J * n))
        for i in range(n):
            unit = np.zeros(n)
            unit[i] = 1.0
            column = (self.best_response(unit) - zero).ravel()  # response to the crowd's rate at step i
            for j, w in enumerate(self.model.weights):
                B[:, j * n + i] = w * column
        return B, zero.ravel()

    def equilibrium(self) -> np.ndarray:
        """The policy that is its own best response, by a direct solve of (I - B) nu = b.

        Returns
        -------
        numpy.ndarray of float64, shape (J, n_t)
            Mean rates (shares per time).
        """
        B, b = self._affine
        return np.linalg.solve(np.eye(B.shape[0]) - B, b).reshape(len(self.model.types), self.n_t)

    def picard_radius(self) -> float:
        """Spectral radius of the best-response map: plain best response converges iff it is below 1.

        Returns
        -------
        float
        """
        return float(np.max(np.abs(np.linalg.eigvals(self._affine[0]))))

    def start(self) -> np.ndarray:
        """The default starting policy: each type trades its initial inventory down at a constant
        rate (TWAP), as a learner that knows nothing of the crowd would.

        Returns
        -------
        numpy.ndarray of float64, shape (J, n_t)
        """
        return np.array([np.full(self.n_t, -p.m0.mean / self.model.T) for p in self.model.types])


def _ran_away(exploitability: list[float]) -> bool:
    """Whether a learner diverged: its last exploitability is not finite, or 10¹² times its first."""
    e = exploitability[-1]
    return not math.isfinite(e) or e > 1e12 * max(exploitability[0], 1e-300)


def _distance(coupling: np.ndarray, target: np.ndarray | None) -> float:
    """sup |coupling - target|, NaN without a target."""
    return math.nan if target is None else float(np.max(np.abs(coupling - target)))


def _learn(game: LQLearningGame, iterations: int, start, method: str, step: Callable[[np.ndarray, int], np.ndarray],
           settings: dict) -> LearningHistory:
    """Run ``policy <- step(policy, i)``, recording exploitability and distance to the equilibrium."""
    check.integer("iterations", iterations, lo=1, hi=10_000_000)
    policy = game.start() if start is None else game._policy(start)
    target = game.population(game.equilibrium())
    exploitability = [game.exploitability(policy)]
    distance = [_distance(game.population(policy), target)]
    diverged = False
    for i in range(iterations):
        policy = step(policy, i)
        e = game.exploitability(policy) if np.all(np.isfinite(policy)) else math.inf
        exploitability.append(e)
        distance.append(_distance(game.population(policy), target) if math.isfinite(e) else math.inf)
        if _ran_away(exploitability):
            diverged = True
            break
    return LearningHistory(method, np.array(exploitability), np.array(distance), policy, diverged, settings)


def best_response_learning(game: LQLearningGame, iterations: int, *, damping: float = 1.0,
                           start: np.ndarray | None = None) -> LearningHistory:
    """Best-response iteration: ``nu <- (1 - a) nu + a BR(mu(nu))`` with a fixed ``a``.

    Parameters
    ----------
    game : LQLearningGame
    iterations : int
        Learning steps, >= 1.
    damping : float
        a in (0, 1]: 1 is plain best response (Picard).
    start : numpy.ndarray of float64, shape (J, n_t), optional
        The first policy (default :meth:`LQLearningGame.start`).

    Returns
    -------
    LearningHistory
    """
    a = check.number("damping", damping, lo=0.0, hi=1.0, lo_open=True)

    def step(policy, i):
        return (1 - a) * policy + a * game.best_response(game.population(policy))

    return _learn(game, iterations, start, "best_response", step, {"damping": a})


def fictitious_play(game: LQLearningGame, iterations: int, *, schedule: Callable[[int], float] | None = None,
                    start: np.ndarray | None = None) -> LearningHistory:
    """Fictitious play: ``nu <- (1 - a_i) nu + a_i BR(mu(nu))``, by default ``a_i = 1/(i+1)``.

    With ``a_i = 1/(i+1)`` the policy after i steps is the average of the best responses so
    far (the starting policy weighs like one of them); so is the crowd, for this game.

    Parameters
    ----------
    game : LQLearningGame
    iterations : int
        Learning steps, >= 1.
    schedule : callable, optional
        i -> a_i in (0, 1] (i = 1, 2, ...); default ``1/(i+1)``.
    start : numpy.ndarray of float64, shape (J, n_t), optional

    Returns
    -------
    LearningHistory
    """
    weights = schedule or (lambda i: 1.0 / (i + 1))

    def step(policy, i):
        a = weights(i + 1)
        if not (isinstance(a, float | int) and 0 < a <= 1):
            raise check.InvalidValue(f"schedule({i + 1})", a, "a weight in (0, 1]")
        return (1 - a) * policy + a * game.best_response(game.population(policy))

    name = "1/(i+1)" if schedule is None else getattr(schedule, "__name__", "custom")
    return _learn(game, iterations, start, "fictitious_play", step, {"schedule": name})


def mirror_descent(game: LQLearningGame, iterations: int, *, step_size: float,
                   start: np.ndarray | None = None) -> LearningHistory:
    """Online mirror descent with the Euclidean mirror map (dual averaging of the gradients).

    ``y <- y + eta grad J(nu; mu(nu))`` and ``nu = nu_0 + y``: each player climbs its own gain
    against the population of the moment.

    Parameters
    ----------
    game : LQLearningGame
    iterations : int
        Learning steps, >= 1.
    step_size : float
        eta > 0 (rate per unit of gradient per step). Stable below 2 / (the largest eigenvalue
        of the gain's Hessian per dt), about 1/k on fine grids.
    start : numpy.ndarray of float64, shape (J, n_t), optional

    Returns
    -------
    LearningHistory
    """
    eta = check.number("step_size", step_size, lo=0.0, lo_open=True)
    first = game.start() if start is None else game._policy(start)
    dual = np.zeros_like(first)

    def step(policy, i):
        nonlocal dual
        dual = dual + eta * game.gradient(policy, game.population(policy))
        return first + dual

    return _learn(game, iterations, first, "mirror_descent", step, {"step_size": eta})


def _mixing(method: str, damping: float, schedule) -> tuple[Callable[[int], float], dict]:
    """The share a_i of the players a learner moves onto the best response at step i, and its settings."""
    check.choice("method", method, ("fictitious_play", "best_response"))
    a = check.number("damping", damping, lo=0.0, hi=1.0, lo_open=True)
    weights = schedule or (lambda i: 1.0 / (i + 1))

    def share(i: int) -> float:
        step = weights(i) if method == "fictitious_play" else a
        if not (isinstance(step, float | int) and 0 < step <= 1):
            raise check.InvalidValue(f"schedule({i})", step, "a weight in (0, 1]")
        return step

    name = "1/(i+1)" if schedule is None else getattr(schedule, "__name__", "custom")
    return share, ({"damping": a} if method == "best_response" else {"schedule": name})


def _fd_target(model, grid):
    """The FD equilibrium's coupling, the learners' yardstick (None where Anderson fails;
    the learners may still converge there)."""
    from . import fd

    try:
        return fd.solve(model, grid, tol=1e-10).coupling
    except fd.MFGConvergenceError:
        return None


def _fd_gap(model, grid, population):
    """(exploitability, best response) of an FD population; (inf, None) when a best response
    runs off the grid, as policies that run away make it."""
    from . import fd

    try:
        return fd.exploitability(model, grid, population)
    except ValueError:
        return math.inf, None


def _fd_run(model, grid, iterations: int, population, advance) -> tuple[list, list, object, bool]:
    """Record each FD population's exploitability and distance to the equilibrium, moving it
    on by ``advance(i, population, best_response)`` until ``iterations`` steps are done or
    the exploitability runs away. Returns (exploitability, distance, last population, diverged)."""
    target = _fd_target(model, grid)
    exploitability, distance = [], []
    for i in range(iterations + 1):
        e, br = _fd_gap(model, grid, population)
        exploitability.append(e)
        distance.append(_distance(population.coupling, target))
        if _ran_away(exploitability):
            return exploitability, distance, population, True
        if i < iterations:
            population = advance(i, population, br)
    return exploitability, distance, population, False


def _jump_gap(model, t, coupling, quotes=None, probabilities=None) -> tuple[float, np.ndarray | None, object]:
    """(exploitability, θ, population) of fixed quotes, or of a mixed lattice policy's
    ``probabilities``, against ``coupling``: the best response's mean value over the policy's
    (the population only for a mixed policy). (inf, None, None) when the intensities became
    too fast for the time grid (a step too long)."""
    from .jump import best_response, lattice_policy, policy_value

    m0 = np.asarray(model.initial_law(), dtype=np.float64)
    try:
        if probabilities is None:
            theta, population = policy_value(model, t, coupling, quotes), None
        else:
            theta, population = lattice_policy(model, t, coupling, probabilities)
        return float(m0 @ best_response(model, t, coupling).value[0]) - float(m0 @ theta[0]), theta, population
    except ValueError:
        return math.inf, None, None


def _jump_run(iterations: int, coupling: np.ndarray, measure, advance) -> tuple[list, list, np.ndarray, bool]:
    """Record each jump policy's exploitability, ``measure(coupling)`` -> (e, θ, population),
    and move the coupling to ``advance(coupling, θ, population)`` until ``iterations`` steps
    are done or a step makes the intensities too fast (e infinite). ``distance`` is each
    step's sup |move|. Returns (exploitability, distance, last coupling, diverged)."""
    exploitability, distance = [], [math.nan]
    for i in range(iterations + 1):
        e, theta, population = measure(coupling)
        exploitability.append(e)
        if not math.isfinite(e):
            return exploitability, distance, coupling, True
        if i < iterations:
            produced = advance(coupling, theta, population)
            distance.append(float(np.max(np.abs(produced - coupling))))
            coupling = produced
    return exploitability, distance, coupling, False


def fd_learning(model, grid, iterations: int, *, method: str = "fictitious_play", damping: float = 1.0,
                schedule: Callable[[int], float] | None = None) -> LearningHistory:
    """Best response or fictitious play on a finite-difference MFG, with its exact exploitability.

    The players start from the best response to the model's initial coupling (for
    :class:`mfg.fd.LQCrowdingModel`, to no crowd: a lone trader's policy). Each step
    best-responds (:func:`mfg.fd.best_response`) to the coupling the current population
    makes and moves a share ``a`` of the players onto that response: the population is a
    mixture of best responses (:class:`mfg.fd.Policy`), fictitious play's average with
    ``a_i = 1/(i+1)``. The exploitability of every iterate (:func:`mfg.fd.exploitability`,
    price × shares per player) is exact on the grid: the expected cost of the mixture
    against the coupling it makes, minus the best response's.

    Parameters
    ----------
    model : mfg.fd.MFGModel
        With a coupling linear in the population (mean rates, a density), as both FD models'.
    grid : mfg.fd.Grid
    iterations : int
        Learning steps, >= 1.
    method : str
        ``"fictitious_play"`` (``schedule``, default ``1/(i+1)``) or ``"best_response"`` (a
        fixed ``damping``; 1 is plain best response).
    damping : float
        a in (0, 1] of ``"best_response"``.
    schedule : callable, optional
        i -> a_i in (0, 1] of ``"fictitious_play"``.

    Returns
    -------
    LearningHistory
        ``distance``: sup |coupling - the equilibrium's| (the equilibrium solved by
        :func:`mfg.fd.solve`; NaN where that solve does not converge); ``policy``: the last
        population's coupling; ``diverged`` when the exploitability leaves every bound or a
        best response runs off the grid.
    """
    from . import fd

    check.integer("iterations", iterations, lo=1, hi=10_000_000)
    share, settings = _mixing(method, damping, schedule)
    start = fd.best_response(model, grid, model.initial_coupling(grid))

    def advance(i, population, br):
        return population.mixed(fd.policy(model, grid, br.bplus, br.bminus), share(i + 1))

    exploitability, distance, population, diverged = _fd_run(
        model, grid, iterations, fd.policy(model, grid, start.bplus, start.bminus), advance)
    return LearningHistory(method, np.array(exploitability), np.array(distance), population.coupling, diverged,
                           settings)


def jump_learning(model, n_t: int, iterations: int, *, method: str = "fictitious_play", damping: float = 1.0,
                  schedule: Callable[[int], float] | None = None, start: np.ndarray | None = None) -> LearningHistory:
    """Best response or fictitious play on a jump game (market makers), with its exploitability.

    The population is a mixture of fixed-quote policies: the first is the best response to
    the starting coupling, each step adds the best response to the coupling of the
    moment with a share ``a`` (fictitious play: ``a_i = 1/(i+1)``), and the coupling moves
    the same share towards the one that response's players make. The exploitability of
    every iterate (:func:`mfg.jump.exploitability`) is the best response's value over the
    mixture's, each policy valued by a backward sweep of its quotes against the coupling
    (value units per player): on a lattice, where the equilibrium may be mixed, it still
    tends to zero.

    Parameters
    ----------
    model : mfg.jump.JumpMFGModel
    n_t : int
        Time steps on [0, T].
    iterations : int
        Learning steps, >= 1 (each values every policy of the mixture: the cost grows like
        iterations²).
    method, damping, schedule
        As in :func:`fd_learning`.
    start : numpy.ndarray of float64, optional
        The coupling the first policy answers (default ``model.initial_coupling``; for
        makers, the myopic quote): what the players believe before they have seen anyone.

    Returns
    -------
    LearningHistory
        ``distance``: sup |coupling_i - coupling_{i-1}|, the last move of the coupling;
        ``policy``: the last coupling.
    """
    from .jump import SolvedPopulation, best_response, exploitability as jump_exploitability, time_grid

    check.integer("iterations", iterations, lo=1, hi=100_000)
    share, settings = _mixing(method, damping, schedule)
    t = time_grid(model.T, n_t)

    def respond(coupling):
        br = best_response(model, t, coupling)
        return br.quotes, np.asarray(model.coupling_from(SolvedPopulation(br.m, br.quotes, br.rates), t))

    quotes, coupling = respond(np.asarray(model.initial_coupling(t) if start is None else start, dtype=np.float64))
    policies, shares = [quotes], [1.0]
    exploitability, distance = [], [math.nan]
    diverged = False
    for i in range(iterations + 1):
        e = jump_exploitability(model, t, coupling, policies, shares)
        exploitability.append(e)
        if not math.isfinite(e):
            diverged = True
            break
        if i == iterations:
            break
        step = share(i + 1)
        quotes, produced = respond(coupling)
        shares = [(1 - step) * w for w in shares] + [step]
        policies.append(quotes)
        moved = step * (produced - coupling)
        coupling = coupling + moved
        distance.append(float(np.max(np.abs(moved))))
    return LearningHistory(method, np.array(exploitability), np.array(distance), coupling, diverged, settings)


def fd_mirror_descent(model, grid, iterations: int, *, step_size: float) -> LearningHistory:
    """Online mirror descent on a finite-difference MFG, with its exact exploitability.

    A policy is the scheme's pair of upwind velocities, b⁺ >= 0 (buying, towards the next
    node) and b⁻ <= 0 (selling), starting from the best response to the model's initial
    coupling. Every step values the current policy against the coupling its population
    makes (:func:`mfg.fd.policy_value`) and adds to each velocity's dual variable, node by
    node, the gradient of the player's instantaneous gain in it: -(D⁺u + s) - kα(b⁺)^(α-1) - a
    for b⁺, and -(D⁻u + s) + kα|b⁻|^(α-1) + a for b⁻; each velocity is its dual variable
    projected on its sign (the Euclidean mirror map on a half-line; Pérolat et al. 2021 with
    the rate as the action). Its fixed point is the upwind HJB's best response to its own
    population: the equilibrium.

    Parameters
    ----------
    model : mfg.fd.MFGModel
    grid : mfg.fd.Grid
    iterations : int
        Learning steps, >= 1.
    step_size : float
        η > 0 (shares per time per unit of price per share; 1/(2k) for α = 2 is a Newton
        step of the rate).

    Returns
    -------
    LearningHistory
        As :func:`fd_learning`'s; ``diverged`` when the exploitability leaves every bound or
        a best response runs off the grid.
    """
    from . import fd

    check.integer("iterations", iterations, lo=1, hi=10_000_000)
    eta = check.number("step_size", step_size, lo=0.0, lo_open=True)
    start = fd.best_response(model, grid, model.initial_coupling(grid))
    up, down = start.bplus.copy(), start.bminus.copy()  # the dual variables
    k, alpha, a = model.k, float(model.cost_exponent), float(model.spread_cost)

    def velocities():
        bplus, bminus = np.maximum(up, 0.0), np.minimum(down, 0.0)
        bplus[..., -1] = 0.0  # no flow off the grid
        bminus[..., 0] = 0.0
        return bplus, bminus

    current = velocities()

    def advance(i, population, br):
        nonlocal up, down, current
        bplus, bminus = current
        u = fd.policy_value(model, grid, bplus, bminus, population.coupling)
        shift = model.hamiltonian_terms(population.coupling, grid).shift  # (J, N)
        s = np.concatenate([shift, shift[:, -1:]], axis=1)[:, :, None]
        forward = np.diff(u, axis=2, append=u[..., -1:]) / grid.dx + s
        backward = np.diff(u, axis=2, prepend=u[..., :1]) / grid.dx + s
        up = up + eta * (-forward - alpha * k * bplus ** (alpha - 1.0) - a)
        down = down + eta * (-backward + alpha * k * np.abs(bminus) ** (alpha - 1.0) + a)
        # a dual variable far past its bound only delays the velocity's return: keep it at the bound
        up, down = np.maximum(up, -eta * a), np.minimum(down, eta * a)
        current = velocities()
        return fd.policy(model, grid, *current)

    exploitability, distance, population, diverged = _fd_run(
        model, grid, iterations, fd.policy(model, grid, *current), advance)
    return LearningHistory("mirror_descent", np.array(exploitability), np.array(distance), population.coupling,
                           diverged, {"step_size": eta})


def jump_mirror_descent(model, n_t: int, iterations: int, *, step_size: float,
                        start: np.ndarray | None = None) -> LearningHistory:
    """Online mirror descent on a jump game, with its exploitability.

    On a lattice the policy is mixed: per node, a probability for each lattice quote and for
    not posting, updated by exponential weights on the quotes' Q-values against the current
    coupling, Q_l = Λ_l (1 - e^{-ξ(δ_l - p)})/ξ and 0 for not posting (the entropy mirror map
    of Pérolat et al. 2021), starting from the uniform mixture; :func:`mfg.jump.lattice_policy`
    values and moves it.

    With smooth shapes the policy is the quote δ_i(t, q) itself per jump and node, starting
    from the best response to the starting coupling. Every step values the policy against the coupling of the moment
    (:func:`mfg.jump.policy_value`) and moves each quote along the gradient of its
    Hamiltonian term per unit intensity, -r(δ)(1 - e^{-ξ(δ - p)})/ξ + e^{-ξ(δ - p)} (r = -ℓ'/ℓ,
    p = θ(q) - θ(q + s); zero at the best quote): δ <- δ + η g, the Euclidean mirror map on
    the quotes, preconditioned by the intensity. The coupling then becomes the one the new
    quotes' population makes against it (:func:`mfg.jump.policy_population`).

    Parameters
    ----------
    model : mfg.jump.JumpMFGModel
        With every jump smooth (exponential, logistic), or every jump on a lattice (whose
        coupling reads the posting probabilities: the makers' games).
    n_t : int
    iterations : int
    step_size : float
        η > 0: units of δ squared for smooth quotes; per unit of Q (value per time) for the
        lattice's exponential weights.
    start : numpy.ndarray of float64, optional
        As in :func:`jump_learning`.

    Returns
    -------
    LearningHistory
        As :func:`jump_learning`'s; ``diverged`` when a step made the intensities too fast
        for the time grid (a step size too long).
    """
    from .jump import SolvedPopulation, best_response, policy_population, time_grid

    check.integer("iterations", iterations, lo=1, hi=100_000)
    eta = check.number("step_size", step_size, lo=0.0, lo_open=True)
    jumps = model.jumps
    shapes = [j.shape for j in jumps]
    if all(shape == "lattice" for shape in shapes):
        return _lattice_mirror_descent(model, n_t, iterations, eta, start)
    check.require("lattice" not in shapes, "model.jumps", shapes,
                  "every jump smooth (exponential, logistic) or every jump on a lattice")
    t = time_grid(model.T, n_t)
    coupling = np.asarray(model.initial_coupling(t) if start is None else start, dtype=np.float64)
    br = best_response(model, t, coupling)
    quotes = br.quotes.copy()
    coupling = np.asarray(model.coupling_from(SolvedPopulation(br.m, br.quotes, br.rates), t))
    xi = float(model.risk_aversion)
    states = len(model.states)

    def advance(coupling, theta, _):
        for k, jump in enumerate(jumps):
            target = np.clip(np.arange(states) + jump.shift, 0, states - 1)
            x = quotes[k] - (theta - theta[:, target])
            if jump.shape == "exponential":
                r = np.full_like(x, jump.decay)
            else:
                r = jump.decay / (1.0 + np.exp(-jump.decay * (quotes[k] - jump.center)))
            gain = np.exp(-xi * x)
            gradient = (-r * x + 1.0) if xi == 0.0 else (-r * -np.expm1(-xi * x) / xi + gain)
            quotes[k] = quotes[k] + eta * gradient  # NaN (not posted) stays NaN
        return np.asarray(model.coupling_from(policy_population(model, t, coupling, quotes), t))

    exploitability, distance, coupling, diverged = _jump_run(
        iterations, coupling, lambda c: _jump_gap(model, t, c, quotes=quotes), advance)
    return LearningHistory("mirror_descent", np.array(exploitability), np.array(distance), coupling, diverged,
                           {"step_size": eta})


def _lattice_mirror_descent(model, n_t: int, iterations: int, eta: float, start) -> LearningHistory:
    """Exponential weights over each node's lattice quotes and not posting (see :func:`jump_mirror_descent`)."""
    from .jump import time_grid

    t = time_grid(model.T, n_t)
    jumps = model.jumps
    states = len(model.states)
    width = max(len(j.quotes) for j in jumps)
    quotes = np.full((len(jumps), width), np.nan)
    for k, jump in enumerate(jumps):
        quotes[k, :len(jump.quotes)] = jump.quotes
    # quotes a jump may not post: a shorter lattice's padding, and any jump that leaves the states
    allowed = np.ones((len(jumps), t.size, states, width + 1), dtype=bool)
    allowed[..., :width] &= np.isfinite(quotes)[:, None, None, :]
    for k, jump in enumerate(jumps):
        inside = (np.arange(states) + jump.shift >= 0) & (np.arange(states) + jump.shift < states)
        allowed[k, :, ~inside, :width] = False
    logits = np.zeros(allowed.shape)
    coupling = np.asarray(model.initial_coupling(t) if start is None else start, dtype=np.float64)
    xi = float(model.risk_aversion)

    def measure(coupling):
        weights = np.where(allowed, np.exp(logits - np.where(allowed, logits, -np.inf).max(axis=3, keepdims=True)),
                           0.0)
        return _jump_gap(model, t, coupling, probabilities=weights / weights.sum(axis=3, keepdims=True))

    def advance(coupling, theta, population):
        terms = model.terms(coupling, t)
        for k, jump in enumerate(jumps):
            target = np.clip(np.arange(states) + jump.shift, 0, states - 1)
            p = (theta - theta[:, target])[:, :, None]
            rates = terms.scale[k][:, :, None] * np.nan_to_num(np.asarray(terms.lattice)[k])[:, None, :width]
            x = np.nan_to_num(quotes[k])[None, None, :] - p
            q_values = rates * (x if xi == 0.0 else -np.expm1(-xi * x) / xi)
            logits[k, :, :, :width] += eta * q_values
        return np.asarray(model.coupling_from(population, t))

    exploitability, distance, coupling, diverged = _jump_run(iterations, coupling, measure, advance)
    return LearningHistory("mirror_descent", np.array(exploitability), np.array(distance), coupling, diverged,
                           {"step_size": eta})
