"""Finite-state mean-field games with controlled jumps: discrete inventories and
Hamiltonians that are not quadratic (the exponential and logistic intensities of market
making).

The game
--------
A player's state is an integer q in ``model.states`` (for makers: inventory -Q..Q). For each
jump kind i (a shift s_i: +1 for a bid filled, -1 for an ask filled) it chooses at every
time the premium δ_i(t, q) it asks for the jump; the jump then arrives with intensity

    Λ_i(t, q, δ) = a_i(t, q) ℓ_i(δ),   ℓ = e^{-k δ} (``"exponential"``) or
    ℓ = 1 / (1 + e^{k (δ - c)}) (``"logistic"``), or, for quotes on a tick lattice
    (``"lattice"``), δ one of the jump's ``quotes`` δ_l with ℓ = λ_i(t, l) given by the model
    at every time (a measured fill table, say),

and pays δ. It pays a running penalty ψ(t, q) and receives θ_T(q) at T. With the risk
parameter ξ >= 0 (ξ = γ for a CARA maker after Guéant's change of variables, 0 for a
risk-neutral one) the value θ(t, q) solves

    ∂_t θ(q) - ψ(t, q) + Σ_i H_i(t, q, θ(q) - θ(q + s_i)) = 0,   θ(T) = θ_T,
    H(p) = sup_δ Λ(δ) (1 - e^{-ξ (δ - p)}) / ξ     (Λ(δ)(δ - p) at ξ = 0),

with no jump that would leave the grid (Guéant 2017, "Optimal market making"). The law
m(t, q) of the population solves the forward equation of the jump process under the
optimal intensities. The coupling is whatever the model makes of the solved population
(for competing makers: the population's mean quotes) and feeds back into a and ψ.

A new model is one class
------------------------
Subclass :class:`JumpMFGModel` and say

* who the players are: ``states`` (integers), ``initial_law()``, ``terminal_value()``, ``T``,
  ``risk_aversion`` ξ and ``jumps`` (a tuple of :class:`Jump`: shift, intensity shape, k, c);
* ``initial_coupling(t)``, the first guess of the coupling on the time grid;
* ``terms(coupling, t)`` -> :class:`JumpTerms`, the intensity scales a_i(t, q) and the running
  penalty ψ(t, q) that the coupling implies;
* ``coupling_from(population, t)``, the next coupling from the law m, the quotes δ_i and
  the intensities Λ_i of the solved population.

:func:`solve_jumps` owns the time grid, the compiled sweeps (:mod:`mfg._jump_kernels`: RK4
backward for θ, with the sup over δ in closed form for exponential intensities and by a
safeguarded Newton solve otherwise; RK4 forward for m, mass kept to round-off) and the outer
iteration (Anderson, Newton–Krylov, Picard or fictitious play, shared with :mod:`mfg.fd`).
See :class:`mfg.market_making.MarketMakingMFG` for a full example.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from . import _jump_kernels as K
from . import validation as check
from ._fixed_point import METHODS, MFGConvergenceError, check_options, iterate  # noqa: F401 (METHODS re-exported)

SHAPES = {"exponential": K.EXPONENTIAL, "logistic": K.LOGISTIC, "lattice": K.LATTICE}


@dataclass(frozen=True)
class Jump:
    """One jump kind of a controlled-jump game.

    Parameters
    ----------
    shift : int
        States moved by the jump (a nonzero integer; lots for makers).
    decay : float or None
        k > 0 of the intensity shape (per unit of the quote δ, e.g. per price unit); None for
        the lattice shape.
    shape : {"exponential", "logistic", "lattice"}
        The intensity shape ℓ(δ): e^{-k δ}, 1/(1 + e^{k (δ - center)}), or a finite set of
        quotes whose intensities the model gives at every time (``JumpTerms.lattice``).
    center : float
        c of the logistic shape (units of δ); ignored by the others.
    quotes : tuple of float
        The lattice shape's quotes δ_l, increasing (units of δ, e.g. ticks from the mid).
    """

    shift: int
    decay: float | None = None
    shape: str = "exponential"
    center: float = 0.0
    quotes: tuple[float, ...] = ()

    def __post_init__(self):
        check.require(check.is_integer(self.shift) and self.shift != 0, "shift", self.shift,
                      "must be a nonzero integer (the change of state)")
        check.choice("shape", self.shape, tuple(SHAPES))
        check.number("center", self.center)
        quotes = tuple(self.quotes)
        if self.shape == "lattice":
            check.require(self.decay is None, "decay", self.decay, "the lattice shape has no decay (leave it None)")
            check.require(len(quotes) >= 1, "quotes", quotes, "the lattice shape needs at least one quote")
            for i, d in enumerate(quotes):
                check.number(f"quotes[{i}]", d)
            check.require(all(b > a for a, b in zip(quotes, quotes[1:])), "quotes", quotes, "must be increasing")
            object.__setattr__(self, "quotes", tuple(float(d) for d in quotes))
        else:
            check.number("decay", self.decay, lo=0.0, lo_open=True)
            check.require(not quotes, "quotes", quotes, f"only the lattice shape takes quotes, not {self.shape!r}")


@dataclass(frozen=True)
class JumpTerms:
    """The coupling's effect on a player.

    Parameters
    ----------
    scale : numpy.ndarray of float64, shape (K, N+1, S)
        Intensity scales a_i(t_n, q) >= 0 (jumps per time).
    penalty : numpy.ndarray of float64, shape (N+1, S)
        Running penalty ψ(t_n, q) (value units per time).
    lattice : numpy.ndarray of float64, shape (K, N+1, L), optional
        For lattice jumps: the intensity of each lattice quote per unit scale at each time
        (jumps per time); L is the longest lattice, and rows of other jumps are ignored.
    """

    scale: np.ndarray
    penalty: np.ndarray
    lattice: np.ndarray | None = None


@dataclass(frozen=True)
class SolvedPopulation:
    """What ``coupling_from`` sees of a solved population.

    Parameters
    ----------
    m : numpy.ndarray of float64, shape (N+1, S)
        The law on the states (each row sums to one).
    quotes : numpy.ndarray of float64, shape (K, N+1, S)
        Optimal quotes δ_i (units of δ); NaN where the jump is not posted. For a mixed
        policy, the mean of the quotes posted.
    rates : numpy.ndarray of float64, shape (K, N+1, S)
        Intensities Λ_i (jumps per time); 0 where the jump is not posted.
    posting : numpy.ndarray of float64, shape (K, N+1, S), or None
        For a mixed policy, the probability that each jump is posted; None: posted where
        its quote is finite.
    """

    m: np.ndarray
    quotes: np.ndarray
    rates: np.ndarray
    posting: np.ndarray | None = None


class JumpMFGModel(ABC):
    """A finite-state mean-field game of controlled jumps (see the module docstring).

    Attributes
    ----------
    T : float
        Horizon (time units).
    risk_aversion : float
        ξ >= 0 of the exponential-utility transform (per value unit); 0 is risk neutral.
    states : numpy.ndarray of int64
        The consecutive integer states (S,).
    jumps : tuple of Jump
        The K jump kinds.
    """

    T: float
    risk_aversion: float

    @property
    @abstractmethod
    def states(self) -> np.ndarray:
        """The integer states (S,), consecutive."""

    @property
    @abstractmethod
    def jumps(self) -> tuple[Jump, ...]:
        """The jump kinds (K of them)."""

    @abstractmethod
    def initial_law(self) -> np.ndarray:
        """Law of the state at time 0.

        Returns
        -------
        numpy.ndarray of float64, shape (S,)
            Non-negative weights summing to one.
        """

    def terminal_value(self) -> np.ndarray:
        """Terminal value θ(T, ·); zero unless overridden (a terminal penalty is negative).

        Returns
        -------
        numpy.ndarray of float64, shape (S,)
            Value units.
        """
        return np.zeros(self.states.size)

    @abstractmethod
    def initial_coupling(self, t: np.ndarray) -> np.ndarray:
        """First guess of the coupling.

        Parameters
        ----------
        t : numpy.ndarray of float64, shape (N+1,)
            The time grid.

        Returns
        -------
        numpy.ndarray of float64
            The coupling, laid out as ``coupling_from`` returns it.
        """

    @abstractmethod
    def terms(self, coupling: np.ndarray, t: np.ndarray) -> JumpTerms:
        """The intensity scales and the running penalty given the coupling.

        Parameters
        ----------
        coupling : numpy.ndarray of float64
            The fixed-point variable.
        t : numpy.ndarray of float64, shape (N+1,)
            The time grid.

        Returns
        -------
        JumpTerms
        """

    @abstractmethod
    def coupling_from(self, population: SolvedPopulation, t: np.ndarray) -> np.ndarray:
        """The next coupling from the solved population.

        Parameters
        ----------
        population : SolvedPopulation
        t : numpy.ndarray of float64, shape (N+1,)
            The time grid.

        Returns
        -------
        numpy.ndarray of float64
            Shaped as ``initial_coupling``.
        """


@dataclass(frozen=True)
class JumpSolution:
    """The equilibrium of a jump game on a time grid.

    Parameters
    ----------
    model : JumpMFGModel
    t : numpy.ndarray of float64, shape (N+1,)
        Time grid.
    value : numpy.ndarray of float64, shape (N+1, S)
        Value θ (value units).
    quotes, rates : numpy.ndarray of float64, shape (K, N+1, S)
        Optimal quotes (units of δ; NaN where not posted) and their intensities (per time).
    m : numpy.ndarray of float64, shape (N+1, S)
        Law of the state.
    coupling : numpy.ndarray of float64
        The converged fixed-point variable.
    residuals : tuple of float
        Sup norm of Φ(c) - c per outer step.
    method : str
        The fixed-point method.
    evaluations : int
        Backward-and-forward sweeps.
    seconds : float
        Wall time (s).
    """

    model: JumpMFGModel
    t: np.ndarray
    value: np.ndarray
    quotes: np.ndarray
    rates: np.ndarray
    m: np.ndarray
    coupling: np.ndarray
    residuals: tuple[float, ...]
    method: str
    evaluations: int
    seconds: float

    def expected_jump_income(self) -> float:
        """What the jumps pay a player on average, E ∫_0^T Σ_i Λ_i δ_i dt (trapezoidal rule).

        For makers this is the spread captured.

        Returns
        -------
        float
            Units of δ × jumps (price × lots for makers).
        """
        flow = (self.m[None] * self.rates * np.nan_to_num(self.quotes)).sum(axis=(0, 2))
        return float(np.sum(0.5 * (flow[1:] + flow[:-1]) * np.diff(self.t)))


class _JumpSweeper:
    """Φ: coupling -> (θ backward, quotes, m forward) -> next coupling."""

    def __init__(self, model: JumpMFGModel, t: np.ndarray):
        self.model, self.t = model, t
        states = np.asarray(model.states)
        if states.ndim != 1 or states.size < 2 or np.any(np.diff(states) != 1):
            raise ValueError(f"model.states must be consecutive integers (at least 2); got {states!r}")
        jumps = model.jumps
        if not jumps:
            raise ValueError("model.jumps is empty; a jump game needs at least one jump kind")
        xi = model.risk_aversion
        if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
            raise ValueError(f"risk_aversion={xi!r} must be finite and >= 0")
        self.xi = float(xi)
        self.shifts = np.array([j.shift for j in jumps], dtype=np.int64)
        self.shapes = np.array([SHAPES[j.shape] for j in jumps], dtype=np.int64)
        # a lattice jump has no decay: 1.0 stands in (the kernels never read it for that shape)
        self.decay = np.array([1.0 if j.decay is None else j.decay for j in jumps], dtype=np.float64)
        self.center = np.array([j.center for j in jumps], dtype=np.float64)
        width = max(len(j.quotes) for j in jumps)
        self.lattice = np.full((len(jumps), width), np.nan)
        for i, j in enumerate(jumps):
            self.lattice[i, : len(j.quotes)] = j.quotes
        S, n1, Kn = states.size, t.size, len(jumps)
        self.m0 = _checked(np.asarray(model.initial_law(), dtype=np.float64), (S,), "initial_law()")
        if np.any(self.m0 < 0) or abs(self.m0.sum() - 1.0) > 1e-9:
            raise ValueError("initial_law() must be non-negative weights summing to 1")
        self.terminal = _checked(np.asarray(model.terminal_value(), dtype=np.float64), (S,), "terminal_value()")
        self.theta = np.empty((n1, S))
        self.quotes = np.empty((Kn, n1, S))
        self.rates = np.empty((Kn, n1, S))
        self.m = np.empty((n1, S))
        self.evaluations = 0

    def sweep(self, coupling: np.ndarray) -> SolvedPopulation:
        t, model = self.t, self.model
        terms = model.terms(coupling, t)
        S, n1, Kn = self.m.shape[1], t.size, self.shifts.size
        scale = _checked(np.asarray(terms.scale, dtype=np.float64), (Kn, n1, S), "terms().scale")
        penalty = _checked(np.asarray(terms.penalty, dtype=np.float64), (n1, S), "terms().penalty")
        if np.any(scale < 0):
            raise ValueError("terms().scale must be >= 0 (intensities)")
        width = self.lattice.shape[1]
        if width:
            if terms.lattice is None:
                raise ValueError("terms().lattice is missing: the model has lattice jumps, whose intensities it "
                                 "must give at every time")
            lattice_rates = _checked(np.asarray(terms.lattice, dtype=np.float64), (Kn, n1, width), "terms().lattice")
            if np.any(lattice_rates < 0):
                raise ValueError("terms().lattice must be >= 0 (intensities)")
        else:
            lattice_rates = np.zeros((Kn, n1, 0))
        failed = K.hjb_backward(t, self.shifts, self.shapes, self.decay, self.center, self.xi, scale, penalty,
                                self.lattice, lattice_rates, self.terminal, self.theta)
        if failed >= 0:
            raise ValueError(f"n_t={t.size - 1} too small for the jump intensities: the value θ stopped being "
                             f"finite at t={t[failed]:.4g} (or the model's terms overflow)")
        K.controls(self.shifts, self.shapes, self.decay, self.center, self.xi, scale, self.lattice, lattice_rates,
                   self.theta, self.quotes, self.rates)
        stiffness = float(np.max(self.rates.sum(axis=0))) * float(np.max(np.diff(t)))
        if not stiffness <= 0.5:
            raise ValueError(f"n_t={t.size - 1} too small for the jump intensities: dt x max rate = "
                             f"{stiffness:.3g} > 0.5")
        self.m[0] = self.m0
        K.law_forward(t, self.shifts, self.rates, self.m)
        self.evaluations += 1
        return SolvedPopulation(self.m, self.quotes, self.rates)

    def __call__(self, coupling: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.coupling_from(self.sweep(coupling), self.t), dtype=np.float64)


def _checked(a: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    if a.shape != shape:
        raise ValueError(f"{what} has shape {a.shape}; expected {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} is not finite everywhere")
    return np.ascontiguousarray(a)


def memory_estimate(model: JumpMFGModel, n_t: int, anderson_depth: int = 6) -> int:
    """Rough peak memory of :func:`solve_jumps` on ``n_t`` steps and of writing its solution.

    Per time and state: the value, the law, the quotes, rates and intensity scales of every
    jump, the solution's copies and its long table; per time and lattice quote, the lattice
    intensities; the fixed point's history of the coupling.

    Parameters
    ----------
    model : JumpMFGModel
    n_t : int
        Time steps.
    anderson_depth : int

    Returns
    -------
    int
        Bytes.
    """
    n1, S, K = n_t + 1, len(model.states), len(model.jumps)
    width = max(len(j.quotes) for j in model.jumps)
    return int(8 * (n1 * S * (6 * K + 10) + 2 * n1 * K * width + (2 * anderson_depth + 4) * K * n1))


def time_grid(T: float, n_t: int) -> np.ndarray:
    """The uniform time grid of ``n_t`` steps on [0, T].

    Parameters
    ----------
    T : float
        Horizon (time units).
    n_t : int
        Number of steps, >= 10.

    Returns
    -------
    numpy.ndarray of float64, shape (n_t + 1,)
    """
    return np.linspace(0.0, float(T), check.integer("n_t", n_t, lo=10, hi=10**8) + 1)


def best_response(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray) -> JumpSolution:
    """One player's optimal quotes, and the law they induce, against a given coupling.

    Parameters
    ----------
    model : JumpMFGModel
    t : numpy.ndarray of float64, shape (N+1,)
        Time grid.
    coupling : numpy.ndarray of float64
        The coupling the player faces, shaped as ``model.initial_coupling(t)``.

    Returns
    -------
    JumpSolution
        With no residuals and method ``"best response"``.
    """
    phi = _JumpSweeper(model, np.ascontiguousarray(t, dtype=np.float64))
    phi.sweep(np.asarray(coupling, dtype=np.float64))
    return _solution(model, phi, np.asarray(coupling), (), "best response", 0.0)


def quote_rates(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """The intensities of fixed quotes against a coupling.

    Each posted quote's intensity is the model's against ``coupling``: its scale times the
    shape's ℓ(δ), or the lattice rate of that quote; a NaN quote is not posted (rate 0).

    Parameters
    ----------
    model : JumpMFGModel
    t : numpy.ndarray of float64, shape (N+1,)
    coupling : numpy.ndarray of float64
        Shaped as ``model.initial_coupling(t)``.
    quotes : numpy.ndarray of float64, shape (K, N+1, S)
        δ_i(t, q) (units of δ; NaN: not posted). Lattice quotes must be on the lattice.

    Returns
    -------
    numpy.ndarray of float64, shape (K, N+1, S)
        Jumps per time.

    Raises
    ------
    ValueError
        For quotes of the wrong shape or a lattice quote off the lattice.
    """
    t = np.asarray(t, dtype=np.float64)
    terms = model.terms(np.asarray(coupling, dtype=np.float64), t)
    jumps = model.jumps
    S, n1, Kn = len(model.states), t.size, len(jumps)
    quotes = np.asarray(quotes, dtype=np.float64)
    if quotes.shape != (Kn, n1, S) or np.any(np.isinf(quotes)):
        raise ValueError(f"quotes has shape {quotes.shape} or infinite entries; expected finite or NaN, {(Kn, n1, S)}")
    scale = _checked(np.asarray(terms.scale, dtype=np.float64), (Kn, n1, S), "terms().scale")
    posted = np.isfinite(quotes)
    delta = np.where(posted, quotes, 0.0)
    rates = np.zeros((Kn, n1, S))
    for i, jump in enumerate(jumps):
        if jump.shape == "exponential":
            shape = np.exp(-jump.decay * delta[i])
        elif jump.shape == "logistic":
            shape = 1.0 / (1.0 + np.exp(jump.decay * (delta[i] - jump.center)))
        else:
            lattice = np.asarray(jump.quotes)
            index = np.clip(np.searchsorted(lattice, delta[i]), 0, lattice.size - 1)
            if np.any(posted[i] & (np.abs(lattice[index] - delta[i]) > 1e-9)):
                raise ValueError(f"quotes of jump {i} must be on its lattice {jump.quotes} (or NaN)")
            shape = np.take_along_axis(np.asarray(terms.lattice, dtype=np.float64)[i], index, axis=1)
        rates[i] = np.where(posted[i], scale[i] * shape, 0.0)
    return rates


def policy_value(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """The value of playing fixed quotes against a coupling (intensities as :func:`quote_rates`).

    With the quotes of :func:`best_response` this is its value up to the RK4's error, since
    the best response is optimal node by node.

    Parameters
    ----------
    model : JumpMFGModel
    t : numpy.ndarray of float64, shape (N+1,)
    coupling : numpy.ndarray of float64
    quotes : numpy.ndarray of float64, shape (K, N+1, S)

    Returns
    -------
    numpy.ndarray of float64, shape (N+1, S)
        θ (value units).

    Raises
    ------
    ValueError
        As :func:`quote_rates`, or when the value stops being finite.
    """
    phi = _JumpSweeper(model, np.ascontiguousarray(t, dtype=np.float64))
    rates = quote_rates(model, phi.t, coupling, quotes)
    penalty = _checked(np.asarray(model.terms(np.asarray(coupling, dtype=np.float64), phi.t).penalty,
                                  dtype=np.float64), phi.m.shape, "terms().penalty")
    return _swept_value(phi, quotes, rates, penalty)


def _swept_value(phi: _JumpSweeper, quotes: np.ndarray, rates: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """θ of fixed quotes and intensities by the backward sweep, or a one-line error."""
    theta = np.empty(phi.m.shape)
    failed = K.policy_backward(phi.t, phi.shifts, phi.xi, np.ascontiguousarray(quotes, dtype=np.float64),
                               np.ascontiguousarray(rates, dtype=np.float64), penalty, phi.terminal, theta)
    if failed >= 0:
        raise ValueError(f"the value of the quotes stopped being finite at t={phi.t[failed]:.4g}; take more steps")
    return theta


def policy_population(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray,
                      quotes: np.ndarray) -> SolvedPopulation:
    """The population that plays fixed quotes against a coupling: its law from the initial one.

    Parameters
    ----------
    model, t, coupling, quotes
        As in :func:`policy_value`.

    Returns
    -------
    SolvedPopulation
        Its law, the quotes and their intensities (``model.coupling_from`` reads it).
    """
    phi = _JumpSweeper(model, np.ascontiguousarray(t, dtype=np.float64))
    rates = quote_rates(model, phi.t, coupling, quotes)
    phi.m[0] = phi.m0
    K.law_forward(phi.t, phi.shifts, rates, phi.m)
    return SolvedPopulation(phi.m.copy(), np.asarray(quotes, dtype=np.float64), rates)


def lattice_policy(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray,
                   probabilities: np.ndarray) -> tuple[np.ndarray, SolvedPopulation]:
    """Value and population of a mixed policy on lattice jumps: at each node, each lattice
    quote (or not posting) with a probability.

    A mixture of quotes δ_l with intensities Λ_l pays Σ_l p_l Λ_l (1 - e^{-ξ(δ_l - p)})/ξ, which
    is what one quote pays at the intensity A = Σ_l p_l Λ_l and the certainty-equivalent
    quote -log(Σ_l p_l Λ_l e^{-ξ δ_l} / A)/ξ (the intensity-weighted mean at ξ = 0): the
    backward sweep of :func:`policy_value` values it exactly.

    Parameters
    ----------
    model : JumpMFGModel
        Every jump on a lattice.
    t : numpy.ndarray of float64, shape (N+1,)
    coupling : numpy.ndarray of float64
    probabilities : numpy.ndarray of float64, shape (K, N+1, S, L + 1)
        Per jump and node, the probability of each lattice quote (L: the longest lattice;
        a shorter one's extra entries must be 0) and, last, of not posting.

    Returns
    -------
    (theta, population) : tuple of (numpy.ndarray, SolvedPopulation)
        θ (N+1, S); the law under the mixture, its mean posted quotes, intensities and
        posting probabilities.
    """
    phi = _JumpSweeper(model, np.ascontiguousarray(t, dtype=np.float64))
    t = phi.t
    jumps = model.jumps
    if any(j.shape != "lattice" for j in jumps):
        raise ValueError("lattice_policy takes lattice jumps only; value smooth quotes with policy_value")
    S, n1, Kn, width = phi.m.shape[1], t.size, len(jumps), phi.lattice.shape[1]
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (Kn, n1, S, width + 1) or not np.all(probabilities >= 0) \
            or np.max(np.abs(probabilities.sum(axis=3) - 1.0)) > 1e-9:
        raise ValueError(f"probabilities must be shaped {(Kn, n1, S, width + 1)}, >= 0 and sum to 1 over the "
                         "quotes and not posting")
    terms = model.terms(np.asarray(coupling, dtype=np.float64), t)
    scale = _checked(np.asarray(terms.scale, dtype=np.float64), (Kn, n1, S), "terms().scale")
    lattice_rates = np.nan_to_num(np.asarray(terms.lattice, dtype=np.float64))  # (K, N+1, L)
    quotes = np.nan_to_num(phi.lattice)  # (K, L); padded entries carry probability 0
    rates = scale[..., None] * lattice_rates[:, :, None, :]  # (K, N+1, S, L)
    weight = probabilities[..., :width] * rates
    total = weight.sum(axis=3)
    if phi.xi == 0.0:
        effective = (weight * quotes[:, None, None, :]).sum(axis=3) / np.maximum(total, 1e-300)
    else:
        discounted = (weight * np.exp(-phi.xi * quotes)[:, None, None, :]).sum(axis=3)
        effective = -np.log(np.maximum(discounted, 1e-300) / np.maximum(total, 1e-300)) / phi.xi
    effective = np.where(total > 0, effective, np.nan)
    posting = probabilities[..., :width].sum(axis=3)
    mean_quote = np.where(posting > 0, (probabilities[..., :width] * quotes[:, None, None, :]).sum(axis=3)
                          / np.maximum(posting, 1e-300), np.nan)
    theta = _swept_value(phi, effective, total, _checked(np.asarray(terms.penalty, dtype=np.float64), (n1, S),
                                                          "terms().penalty"))
    phi.m[0] = phi.m0
    K.law_forward(t, phi.shifts, np.ascontiguousarray(total), phi.m)
    return theta, SolvedPopulation(phi.m.copy(), mean_quote, total, posting)


def exploitability(model: JumpMFGModel, t: np.ndarray, coupling: np.ndarray, policies, weights) -> float:
    """What a best response gains over a mixture of fixed-quote policies, against a coupling.

    V_BR - Σ_k w_k V_k, each value the initial law's mean of θ(0, ·): the players of the
    mixture each follow one policy, so this is their mean gain from deviating (value units).

    Parameters
    ----------
    model : JumpMFGModel
    t : numpy.ndarray of float64, shape (N+1,)
    coupling : numpy.ndarray of float64
    policies : sequence of numpy.ndarray, each (K, N+1, S)
        Quotes.
    weights : sequence of float
        The shares of the players on each, summing to one.

    Returns
    -------
    float
    """
    m0 = np.asarray(model.initial_law(), dtype=np.float64)
    best = float(m0 @ best_response(model, t, coupling).value[0])
    played = sum(w * float(m0 @ policy_value(model, t, coupling, quotes)[0]) for w, quotes in zip(weights, policies))
    return best - played


def solve_jumps(model: JumpMFGModel, n_t: int = 1000, *, method: str = "anderson", damping: float = 0.7,
                tol: float = 1e-10, max_iter: int = 200, anderson_depth: int = 6) -> JumpSolution:
    """The mean-field equilibrium on ``n_t`` steps of [0, T].

    Parameters
    ----------
    model : JumpMFGModel
    n_t : int
        Time steps, >= 10.
    method : str
        ``"anderson"`` (default), ``"newton"`` (Jacobian-free Newton–Krylov), ``"picard"``
        (damped) or ``"fictitious"``.
    damping : float
        Picard damping in (0, 1].
    tol : float
        Stop when the sup norm of Φ(c) - c is below this.
    max_iter : int
        Outer steps (Newton: sweeps).
    anderson_depth : int
        Past iterates Anderson mixes.

    Returns
    -------
    JumpSolution

    Raises
    ------
    MFGConvergenceError
        With the residual history, when the fixed point is not reached.
    ValueError
        When the model's terms are malformed or ``n_t`` is too small.
    """
    check_options(method, damping, tol, max_iter, anderson_depth)
    t = time_grid(model.T, n_t)
    start = time.perf_counter()
    phi = _JumpSweeper(model, t)
    coupling, residuals = iterate(phi, model.initial_coupling(t), method=method, damping=damping, tol=tol,
                                  max_iter=max_iter, anderson_depth=anderson_depth)
    evaluations = phi.evaluations
    phi.sweep(coupling)  # leave the sweeper at the converged coupling
    solution = _solution(model, phi, coupling, tuple(residuals), method, time.perf_counter() - start)
    return dataclasses.replace(solution, evaluations=evaluations)


def _solution(model, phi, coupling, residuals, method, seconds) -> JumpSolution:
    mass = phi.m.sum(axis=1)
    if np.max(np.abs(mass - 1.0)) > 1e-9:
        raise AssertionError(f"the law's mass drifted to {mass.min():.12g}..{mass.max():.12g}; the sweep is broken")
    if phi.m.min() < -1e-9:
        raise MFGConvergenceError(f"the law went negative ({phi.m.min():.3g}); take more time steps (n_t)",
                                  list(residuals))
    return JumpSolution(model, phi.t.copy(), phi.theta.copy(), phi.quotes.copy(), phi.rates.copy(), phi.m.copy(),
                        np.asarray(coupling, dtype=np.float64).copy(), residuals, method, phi.evaluations, seconds)
