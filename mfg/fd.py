"""Finite-difference solver of the coupled HJB–FP system (Achdou–Capuzzo-Dolcetta).

A model is one object (:class:`MFGModel`): it says what the Hamiltonian is at each time
given the current coupling (the crowd's mean rate for an MFG of controls, or the density
for a local coupling), and how a solved population produces the next coupling. The solver
owns the grid, the compiled HJB and FP sweeps (:mod:`mfg._fd_kernels`) and the outer
fixed-point iteration.

The running cost is ``a |ν| + k |ν|^α + s_n ν + F_n(x)`` with dynamics ``dX = ν dt + σ dW``,
1 < α <= 2 (``MFGModel.cost_exponent``) and a >= 0 (``MFGModel.spread_cost``, a cost per
share such as the half-spread): the Hamiltonian is
``H(x, p) = (α-1) k |ν*|^α - F_n(x)``, ``|ν*| = ((|p + s_n| - a)⁺/(α k))^{1/(α-1)}``
(:func:`trading_hamiltonian`), which is ``(p + s_n)^2/(4k) - F_n`` for α = 2 and a = 0.
With a > 0 an agent whose marginal value |p + s_n| is within a of zero does not trade.
This covers the LQ crowding family (``s = c μ``,
``F = φ x² - κ μ x``, or the trend of a decaying impact), its version with a concave
per-share cost ``k|ν|^β`` (α = 1 + β: the square-root law's β = 1/2 makes α = 3/2), and
congestion models (``F = V(x) + a m^b``). The implicit scheme has no CFL limit; what is checked is that
every HJB Newton solve converges, that mass stays one, and that the density stays away
from the ends of the grid (more than 1e-6 of the mass within two cells of an end is an
error: widen the grid).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _fd_kernels as K
from . import validation as check
from ._fixed_point import METHODS, MFGConvergenceError, check_options, iterate  # noqa: F401 (re-exported)
from .closed_form import LQCrowding, decaying_impact, instantaneous_impact
from .io import atomic_write
from .laws import GaussianMixture


def trading_hamiltonian(q, k: float, alpha: float = 2.0, spread_cost: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The trading part of the Hamiltonian and its maximiser, in closed form.

    H(q) = sup_ν [-q ν - a|ν| - k|ν|^α] = (α - 1) k |ν*|^α with
    ν* = -sign(q) ((|q| - a)⁺/(α k))^{1/(α-1)}: zero in the no-trade zone |q| <= a.

    Parameters
    ----------
    q : array_like of float
        The momentum p + s (price per share): the marginal value of inventory plus the
        linear cost per share traded.
    k : float
        Cost coefficient > 0 (price per share per (share/time)^(α-1)).
    alpha : float
        α in (1, 2].
    spread_cost : float
        a >= 0 (price per share).

    Returns
    -------
    (H, rate) : tuple of numpy.ndarray of float64
        H (price per time) and the optimal rate ν* (shares per time), the shape of ``q``.
    """
    check.number("k", k, lo=0.0, lo_open=True)
    check.number("alpha", alpha, lo=1.0, hi=2.0, lo_open=True)
    check.number("spread_cost", spread_cost, lo=0.0)
    q = np.asarray(q, dtype=np.float64)
    speed = (np.maximum(np.abs(q) - spread_cost, 0.0) / (alpha * k)) ** (1.0 / (alpha - 1.0))
    return (alpha - 1.0) * k * speed**alpha, -np.sign(q) * speed


@dataclass(frozen=True)
class Grid:
    """Uniform state grid with ``n_x`` nodes on [x_min, x_max] and ``n_t`` time steps on [0, T].

    Parameters
    ----------
    x_min, x_max : float
        Ends of the state grid (shares), x_max > x_min.
    n_x : int
        Number of nodes, >= 5.
    T : float
        Horizon (time units), > 0.
    n_t : int
        Number of time steps, >= 1.
    """

    x_min: float
    x_max: float
    n_x: int
    T: float
    n_t: int

    def __post_init__(self):
        for name in ("x_min", "x_max"):
            check.number(f"grid.{name}", getattr(self, name))
        check.require(self.x_max > self.x_min, "grid.x_max", self.x_max, f"must exceed grid.x_min={self.x_min}")
        for name, least in (("n_x", 5), ("n_t", 1)):
            object.__setattr__(self, name, check.integer(f"grid.{name}", getattr(self, name), lo=least, hi=10**7))
        check.number("grid.T", self.T, lo=0.0, lo_open=True)

    @property
    def x(self) -> np.ndarray:
        return np.linspace(self.x_min, self.x_max, self.n_x)

    @property
    def t(self) -> np.ndarray:
        return np.linspace(0.0, self.T, self.n_t + 1)

    @property
    def dx(self) -> float:
        return (self.x_max - self.x_min) / (self.n_x - 1)

    @property
    def dt(self) -> float:
        return self.T / self.n_t

    def cell_masses(self, law: GaussianMixture) -> np.ndarray:
        """Density on the grid whose cell masses are the law's (the tails go to the end cells).

        Parameters
        ----------
        law : GaussianMixture
            A law of the state (shares).

        Returns
        -------
        numpy.ndarray of float64
            Density at the nodes (per share), shape (n_x,); it integrates to one with weight dx.
        """
        edges = np.concatenate([[-np.inf], 0.5 * (self.x[1:] + self.x[:-1]), [np.inf]])
        return np.diff(law.cdf(edges)) / self.dx


@dataclass(frozen=True)
class HamiltonianTerms:
    """The Hamiltonian of each type at each time step.

    H_j(t_n, x, p) = (α - 1) k |ν*|^α - F_j,n(x) with |ν*| = (|p + s_j,n|/(α k))^{1/(α-1)}, which is
    (p + shift[j, n])²/(4k) - F_j,n(x) for α = 2; the running-cost potential is
    F_j,n(x) = base[j](x) + slope[j, n] x + dense[j, n](x).

    Parameters
    ----------
    shift : numpy.ndarray of float64, shape (J, N)
        s_j,n, the cost per share traded on top of k|ν|^α (price per share).
    base : numpy.ndarray of float64, shape (J, I)
        Time-independent potential at the nodes (price per time).
    slope : numpy.ndarray of float64, shape (J, N)
        Coefficient of x in the potential (price per share per time).
    dense : numpy.ndarray of float64, shape (J, N, I), or None
        Density-dependent potential (price per time); None keeps an MFG of controls free of
        (N, I) arrays.
    """

    shift: np.ndarray
    base: np.ndarray
    slope: np.ndarray
    dense: np.ndarray | None = None


class MFGModel(ABC):
    """A mean-field game the FD solver can run: one class per model.

    A model says who the players are (``initial_densities``, ``terminal_costs``), what their
    running cost is given the coupling (``hamiltonian_terms``: the potential F and the shift s
    of the trading cost k|ν|^α + s ν + F), and how a solved population makes the next coupling
    (``coupling_from``): the crowd's mean rate for an MFG of controls, the density for a local
    coupling, anything computed from m and the rates.

    Attributes
    ----------
    n_types : int
        Number of player types J.
    k : float
        Temporary cost coefficient k > 0 (price per share per (share/time)^(α-1)).
    sigma : float
        Idiosyncratic inventory noise σ >= 0 (shares per square-root time).
    T : float
        Horizon (time units).
    cost_exponent : float
        α in (1, 2]: 2 is quadratic, α = 1 + β a concave per-share cost k|ν|^β.
    spread_cost : float
        a >= 0, a cost per share traded whatever the rate (the half-spread), making the
        trading cost a|ν| + k|ν|^α and a no-trade zone |p + s| <= a (price per share).
    coupling_per_node : bool
        The coupling has a value per time step and node (a density), not per time step
        only; it sizes the fixed point's memory (:func:`memory_estimate`).
    """

    n_types: int = 1
    k: float
    sigma: float
    T: float
    cost_exponent: float = 2.0
    spread_cost: float = 0.0
    coupling_per_node: bool = False  # the coupling is (N, I), a density, not (N,) rates

    @property
    def weights(self) -> np.ndarray:
        return np.ones(self.n_types) / self.n_types

    @abstractmethod
    def initial_densities(self, grid: Grid) -> np.ndarray:
        """Initial density of each type on the grid.

        Parameters
        ----------
        grid : Grid

        Returns
        -------
        numpy.ndarray of float64, shape (J, I)
            Densities at the nodes (per share), each integrating to one.
        """

    @abstractmethod
    def terminal_costs(self, grid: Grid) -> np.ndarray:
        """Terminal cost u(T, x) of each type.

        Parameters
        ----------
        grid : Grid

        Returns
        -------
        numpy.ndarray of float64, shape (J, I)
            Costs at the nodes (price × shares).
        """

    @abstractmethod
    def initial_coupling(self, grid: Grid) -> np.ndarray:
        """Starting guess of the fixed-point variable.

        Parameters
        ----------
        grid : Grid

        Returns
        -------
        numpy.ndarray of float64
            The coupling, laid out as the model's ``coupling_from`` returns it.
        """

    def refine_coupling(self, coupling: np.ndarray, grid: Grid) -> np.ndarray:
        """The coupling of ``grid`` carried to the grid refined twice in x and t.

        The fine solve of ``order=2`` starts from it, which saves it the coarse solve's first
        iterations. The default reads a coupling of one entry per time step, (N,) or (N, I) with I
        the grid's nodes: each step is repeated and the nodes are interpolated linearly. A model
        whose coupling is laid out otherwise overrides it.

        Parameters
        ----------
        coupling : numpy.ndarray of float64
            The coupling on ``grid``.
        grid : Grid
            The coarse grid.

        Returns
        -------
        numpy.ndarray of float64
            (2N,) or (2N, 2I - 1).
        """
        c = np.repeat(np.asarray(coupling, dtype=np.float64), 2, axis=0)
        if c.ndim == 2 and c.shape[1] == grid.n_x:
            fine = np.empty((c.shape[0], 2 * grid.n_x - 1))
            fine[:, ::2] = c
            fine[:, 1::2] = 0.5 * (c[:, 1:] + c[:, :-1])
            c = fine
        return c

    @abstractmethod
    def hamiltonian_terms(self, coupling: np.ndarray, grid: Grid) -> HamiltonianTerms:
        """The Hamiltonian of each type given the coupling.

        Parameters
        ----------
        coupling : numpy.ndarray of float64
            The fixed-point variable.
        grid : Grid

        Returns
        -------
        HamiltonianTerms
        """

    @abstractmethod
    def coupling_from(self, m: np.ndarray, rates: np.ndarray, grid: Grid) -> np.ndarray:
        """Next coupling from a solved population.

        Parameters
        ----------
        m : numpy.ndarray of float64, shape (J, N+1, I)
            Densities of the types (per share).
        rates : numpy.ndarray of float64, shape (J, N)
            Mean inventory rate of each type over each step (shares per time).
        grid : Grid

        Returns
        -------
        numpy.ndarray of float64
            The coupling, shaped as ``initial_coupling``.
        """


@dataclass(frozen=True)
class LQCrowdingModel(MFGModel):
    """The LQ crowding MFG (MFG of controls, coupling through μ) for the FD solver.

    Cost form of :class:`mfg.closed_form.LQCrowding`: running cost
    ``k ν² + c μ ν + φ_j x² - D x``, terminal cost ``A_j x²``; coupling μ (N,). The price trend
    D is ``κ μ`` (permanent impact) or, with resilience ρ > 0, the mean drift of
    ``dY = (κ μ - ρ Y) dt`` over each step, integrated exactly for μ constant on the step.

    Parameters
    ----------
    closed_form : LQCrowding
        The model's coefficients, types and horizon.
    cost_exponent : float
        α in (1, 2] of the trading cost a|ν| + k|ν|^α; the closed form is exact for 2 only.
    spread_cost : float
        a >= 0 of that cost (price per share); the closed form is exact for 0 only.
    impact_exponent : float
        δ > 0 of a nonlinear propagator: the impact is Y = Σ_i κ_i ∫ e^{-ρ_i (t-s)} f(μ_s) ds
        with f(μ) = sign(μ)|μ|^δ (:func:`mfg.closed_form.instantaneous_impact`); the agents
        take the crowd's price path as given, so only the trend changes. The closed form is
        exact for 1 only.
    permanent_exponent : float or None
        δ∞ > 0 of the permanent terms (ρ_i = 0), which then move by κ_i f∞(μ) with
        f∞(μ) = sign(μ)|μ|^δ∞: a lasting impact that grows with size otherwise than the
        transient one. None: δ.
    """

    closed_form: LQCrowding
    cost_exponent: float = 2.0
    spread_cost: float = 0.0
    impact_exponent: float = 1.0
    permanent_exponent: float | None = None

    def __post_init__(self):
        check.number("cost_exponent", self.cost_exponent, lo=1.0, hi=2.0, lo_open=True)
        check.number("spread_cost", self.spread_cost, lo=0.0)
        check.number("impact_exponent", self.impact_exponent, lo=0.0, lo_open=True)
        if self.permanent_exponent is not None:
            check.number("permanent_exponent", self.permanent_exponent, lo=0.0, lo_open=True)

    @property
    def n_types(self):
        return len(self.closed_form.types)

    @property
    def k(self):
        return self.closed_form.k

    @property
    def sigma(self):
        return self.closed_form.sigma

    @property
    def T(self):
        return self.closed_form.T

    @property
    def weights(self):
        return self.closed_form.weights

    def initial_densities(self, grid):
        """Implements `MFGModel.initial_densities`: the types' m0 as cell masses."""
        return np.stack([grid.cell_masses(p.m0) for p in self.closed_form.types])

    def terminal_costs(self, grid):
        """Implements `MFGModel.terminal_costs`: A_j x²."""
        return np.stack([p.A * grid.x**2 for p in self.closed_form.types])

    def initial_coupling(self, grid):
        """Implements `MFGModel.initial_coupling`: μ = 0 on every step."""
        return np.zeros(grid.n_t)

    def hamiltonian_terms(self, mu, grid):
        """Implements `MFGModel.hamiltonian_terms` for the step rates μ (N,): shift c μ, base φ_j x², slope -D."""
        cf, J = self.closed_form, self.n_types
        return HamiltonianTerms(
            shift=np.tile(cf.c * mu, (J, 1)),
            base=np.stack([p.phi * grid.x**2 for p in cf.types]),
            slope=np.tile(-np.diff(self.impact_path(mu, grid)) / grid.dt, (J, 1)),
        )

    def impact_path(self, mu: np.ndarray, grid: Grid) -> np.ndarray:
        """The crowd's impact Y = Σ_i Y_i at the grid times for the step rates μ.

        Y_i(0) = 0 and, over a step, ``Y_{n+1} = Y_n e^{-ρ dt} + κ f(μ_n) (1 - e^{-ρ dt})/ρ``
        for each term (κ, ρ) of the kernel (``Y_n + κ f∞(μ_n) dt`` at ρ = 0), f(μ) = μ unless
        ``impact_exponent`` says otherwise, f∞ = f unless ``permanent_exponent`` does.

        Parameters
        ----------
        mu : numpy.ndarray of float64, shape (N,)
            Population mean rate on each step (shares per time).
        grid : Grid

        Returns
        -------
        numpy.ndarray of float64, shape (N+1,)
            Y (price units).
        """
        return sum(path for _, path in self.term_paths(mu, grid.dt))

    def term_paths(self, mu: np.ndarray, dt: float) -> list[tuple[float, np.ndarray]]:
        """Each term's part Y_i of :meth:`impact_path`, with its decay rate.

        Parameters
        ----------
        mu : numpy.ndarray of float64, shape (N,)
            Mean rate on each step (shares per time): the model's or a book's.
        dt : float
            The step (time units).

        Returns
        -------
        list of (float, numpy.ndarray of float64 of shape (N+1,))
            (ρ_i, Y_i) per term of ``closed_form.impact_terms``; ρ_i = 0 for a permanent term.
        """
        flow = instantaneous_impact(mu, self.impact_exponent)
        lasting = flow if self.permanent_exponent is None else instantaneous_impact(mu, self.permanent_exponent)
        return [(rho, kappa * decaying_impact(lasting if rho == 0 else flow, dt, rho))
                for kappa, rho in self.closed_form.impact_terms]

    def coupling_from(self, m, rates, grid):
        """Implements `MFGModel.coupling_from`: μ, the weighted mean of the types' rates."""
        return self.weights @ rates


@dataclass(frozen=True)
class CrowdAversionModel(MFGModel):
    """Congestion: agents pay ``alpha m(t, x)^beta`` where the crowd is dense.

    Running cost ``k ν² + φ x² + α m^β``, terminal ``A x²``; coupling: the density m(t_n, ·),
    n = 1..N (local, non-linear in m for β != 1). No closed form.

    Parameters
    ----------
    k : float
        Temporary cost k > 0 (price per (share/time) per share).
    phi : float
        Running inventory penalty >= 0 (price per share² per time).
    A : float
        Terminal inventory penalty >= 0 (price per share²).
    alpha : float
        Congestion weight >= 0 (price per time per density^β).
    T : float
        Horizon > 0 (time units).
    m0 : GaussianMixture
        Initial law (shares).
    sigma : float
        Inventory noise >= 0 (shares per square-root time).
    beta : float
        Congestion exponent > 0.
    """

    k: float
    phi: float
    A: float
    alpha: float
    T: float
    m0: GaussianMixture
    sigma: float = 0.0
    beta: float = 1.0
    coupling_per_node = True

    def __post_init__(self):
        for name in ("k", "T", "beta"):
            check.number(name, getattr(self, name), lo=0.0, lo_open=True)
        for name in ("phi", "A", "alpha", "sigma"):
            check.number(name, getattr(self, name), lo=0.0)

    def initial_densities(self, grid):
        """Implements `MFGModel.initial_densities`: m0 as cell masses."""
        return grid.cell_masses(self.m0)[None, :]

    def terminal_costs(self, grid):
        """Implements `MFGModel.terminal_costs`: A x²."""
        return (self.A * grid.x**2)[None, :]

    def initial_coupling(self, grid):
        """Implements `MFGModel.initial_coupling`: m0 at every step."""
        return np.tile(grid.cell_masses(self.m0), (grid.n_t, 1))

    def hamiltonian_terms(self, density, grid):
        """Implements `MFGModel.hamiltonian_terms` for the density (N, I): base φ x², dense α m^β."""
        return HamiltonianTerms(
            shift=np.zeros((1, grid.n_t)),
            base=(self.phi * grid.x**2)[None, :],
            slope=np.zeros((1, grid.n_t)),
            dense=(self.alpha * np.maximum(density, 0.0) ** self.beta)[None],
        )

    def coupling_from(self, m, rates, grid):
        """Implements `MFGModel.coupling_from`: the density at times 1..N."""
        return m[0, 1:]


@dataclass(frozen=True)
class MFGSolution:
    """An FD solution on the grid; per-type arrays are (J, N+1, I).

    Parameters
    ----------
    grid : Grid
    weights : numpy.ndarray of float64, shape (J,)
        Type weights, summing to one.
    m : numpy.ndarray of float64
        Densities (per share).
    value : numpy.ndarray of float64
        Cost still to pay u(t, x) (price × shares; cost form).
    control : numpy.ndarray of float64
        Feedback rate ν(t, x) (shares per time).
    mean_rate : numpy.ndarray of float64, shape (N,)
        Population μ over each step (shares per time).
    coupling : numpy.ndarray of float64
        The converged fixed-point variable.
    residuals : tuple of float
        Sup norm of Φ(c) - c, one entry per outer iteration (a Picard/Anderson or a Newton step).
    method : str
        The fixed-point method.
    seconds : float
        Wall time of the solve (s).
    evaluations : int
        Evaluations of the fixed-point map Φ (one HJB and one FP sweep per type), the same
        unit of work for every method.
    bplus, bminus : numpy.ndarray of float64 or None
        The upwind velocities the control sums (>= 0 buying towards the next node, <= 0
        selling towards the previous one): the policy as the FP moves it (:func:`policy`).
        None for a Richardson-extrapolated solution.
    """

    grid: Grid
    weights: np.ndarray
    m: np.ndarray
    value: np.ndarray
    control: np.ndarray
    mean_rate: np.ndarray
    coupling: np.ndarray
    residuals: tuple[float, ...]
    method: str
    seconds: float
    evaluations: int
    bplus: np.ndarray | None = None
    bminus: np.ndarray | None = None

    @property
    def iterations(self) -> int:
        """Evaluations of the fixed-point map until convergence (comparable across methods)."""
        return self.evaluations

    @property
    def density(self) -> np.ndarray:
        """Population density (N+1, I)."""
        return np.tensordot(self.weights, self.m, axes=1)

    def mean_inventory(self) -> np.ndarray:
        """Population mean inventory at each time.

        Returns
        -------
        numpy.ndarray of float64, shape (N+1,)
            Shares.
        """
        return self.density @ self.grid.x * self.grid.dx

    def variance(self) -> np.ndarray:
        """Population inventory variance at each time.

        Returns
        -------
        numpy.ndarray of float64, shape (N+1,)
            Shares².
        """
        x, dx = self.grid.x, self.grid.dx
        mean = self.mean_inventory()
        return self.density @ x**2 * dx - mean**2

    def mass(self) -> np.ndarray:
        """Mass of each type's density at each time; one up to round-off.

        Returns
        -------
        numpy.ndarray of float64, shape (J, N+1)
        """
        return self.m.sum(axis=2) * self.grid.dx

    def to_polars(self):
        """Long table, one row per type, time and node.

        Returns
        -------
        polars.DataFrame
            Columns type (int64), t (time), x (shares), m (per share), V (price × shares),
            control (shares per time).
        """
        import polars as pl

        J, n1, n_x = self.m.shape
        t, x = self.grid.t, self.grid.x
        return pl.DataFrame({
            "type": np.repeat(np.arange(J, dtype=np.int64), n1 * n_x),
            "t": np.tile(np.repeat(t, n_x), J),
            "x": np.tile(x, J * n1),
            "m": self.m.ravel(),
            "V": self.value.ravel(),
            "control": self.control.ravel(),
        })

    def write_parquet(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_polars` atomically (temporary file, then rename).

        Parameters
        ----------
        path : str or os.PathLike
            The Parquet file.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        return atomic_write(path, self.to_polars().write_parquet)


class _Sweeper:
    """Φ: coupling -> (HJB backward, FP forward for every type) -> next coupling."""

    def __init__(self, model: MFGModel, grid: Grid, newton_tol: float, max_newton: int):
        self.model, self.grid = model, grid
        J, N, n_x = model.n_types, grid.n_t, grid.n_x
        self.x = grid.x
        self.m0 = model.initial_densities(grid)
        self.terminal = model.terminal_costs(grid)
        self.u = np.empty((J, N + 1, n_x))
        self.bplus = np.empty((J, N + 1, n_x))
        self.bminus = np.empty((J, N + 1, n_x))
        self.m = np.empty((J, N + 1, n_x))
        self.rates = np.empty((J, N))
        self.newton_tol, self.max_newton = newton_tol, max_newton
        self.evaluations = 0
        self.last_residual = np.zeros(1)

    def __call__(self, coupling: np.ndarray) -> np.ndarray:
        g, model = self.grid, self.model
        terms = model.hamiltonian_terms(coupling, g)
        no_dense = np.empty((0, g.n_x))
        for j in range(model.n_types):
            dense = no_dense if terms.dense is None else np.ascontiguousarray(terms.dense[j], dtype=np.float64)
            status = K.hjb_backward(
                self.x, g.dt, model.sigma, model.k, float(model.cost_exponent), float(model.spread_cost),
                np.ascontiguousarray(terms.shift[j], dtype=np.float64),
                np.ascontiguousarray(terms.base[j], dtype=np.float64),
                np.ascontiguousarray(terms.slope[j], dtype=np.float64),
                dense, self.terminal[j], self.u[j], self.bplus[j], self.bminus[j],
                self.newton_tol, self.max_newton, self.last_residual, self.evaluations > 0)
            if status < 0:
                raise MFGConvergenceError(self._newton_failure(-status - 1, j), [])
            K.fp_forward(g.dx, g.dt, model.sigma, self.bplus[j], self.bminus[j], self.m0[j], self.m[j], self.rates[j])
        self.evaluations += 1
        return model.coupling_from(self.m, self.rates, g)

    def _newton_failure(self, step: int, j: int) -> str:
        g, r = self.grid, float(self.last_residual[0])
        where = f"HJB Newton solve failed at time step {step} of {g.n_t} (type {j}, dt={g.dt:.3g}, dx={g.dx:.3g})"
        if not math.isfinite(r):
            return (f"{where}: the value overflowed (max |u| = {np.nanmax(np.abs(self.u[j, step + 1])):.3g}); "
                    "the model's costs are too large for float64 on this grid")
        return (f"{where}: scaled residual {r:.3g} after max_newton={self.max_newton} iterations "
                f"(newton_tol={self.newton_tol:g}); raise max_newton or newton_tol, or take smaller time "
                "steps (n_t) if the upwind direction keeps switching")


def memory_estimate(model: MFGModel, grid: Grid, order: int = 1, anderson_depth: int = 6) -> int:
    """Rough peak memory of :func:`solve` and of writing its solution as Parquet.

    Per type and node of the (N+1) × I grid: the sweeps' value, velocities and density, the
    solution's copies and its long table; per time step (and node, for a coupling per node)
    the fixed point's history. ``order=2`` adds the solve on the grid refined twice.

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    order : int
        1 or 2, as :func:`solve`.
    anderson_depth : int
        Iterates kept by the Anderson mixing.

    Returns
    -------
    int
        Bytes.
    """
    cells = model.n_types * (grid.n_t + 1) * grid.n_x
    per_step = grid.n_x if model.coupling_per_node else 1
    need = 8 * (18 * cells + (2 * anderson_depth + 8) * grid.n_t * per_step)
    if order == 2:
        fine = Grid(grid.x_min, grid.x_max, 2 * grid.n_x - 1, grid.T, 2 * grid.n_t)
        need += memory_estimate(model, fine, 1, anderson_depth)
    return int(need)


def solve(model: MFGModel, grid: Grid, *, method: str = "anderson", damping: float = 0.5,
          tol: float = 1e-8, max_iter: int = 500, anderson_depth: int = 6,
          newton_tol: float = 1e-12, max_newton: int = 50, order: int = 1,
          initial_coupling: np.ndarray | None = None) -> MFGSolution:
    """Solve the MFG on ``grid``.

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    method : str
        ``"anderson"`` (Anderson-accelerated damped Picard, default), ``"newton"``
        (Jacobian-free Newton–Krylov on Φ(c) - c = 0), ``"picard"`` (damped,
        c ← (1-θ)c + θΦ(c) with θ = ``damping``), ``"fictitious"`` (θ_k = 1/(k+2)).
    damping : float
        θ in (0, 1].
    tol : float
        Stop when the sup norm of Φ(c) - c is below this (units of the coupling).
    max_iter : int
        Outer iterations (Newton: Φ evaluations) before giving up.
    anderson_depth : int
        Past iterates Anderson mixes.
    newton_tol : float
        Scaled residual at which each HJB Newton solve stops.
    max_newton : int
        Newton iterations allowed per HJB time step.
    order : int
        1, the monotone scheme (m >= 0, mass to round-off); or 2, Richardson extrapolation
        of the scheme on ``grid`` and on the grid refined twice in x and t
        (``2 f_fine - f_coarse`` on the coarse nodes). Second order in dx and dt for smooth
        solutions, at about 5x the cost of the coarse solve; it conserves mass but is not
        monotone, so the density may dip slightly below zero in the tails.
    initial_coupling : numpy.ndarray of float64, optional
        The fixed point's starting guess (a solution of a nearby model, say), shaped as
        ``model.initial_coupling(grid)``; that is the default.

    Returns
    -------
    MFGSolution

    Raises
    ------
    MFGConvergenceError
        With the residual history, when the iteration does not converge (or diverges), or
        when an HJB step fails.
    """
    import time

    check.choice("order", order, (1, 2))
    if order == 2:
        options = dict(method=method, damping=damping, tol=tol, max_iter=max_iter, anderson_depth=anderson_depth,
                       newton_tol=newton_tol, max_newton=max_newton)
        coarse = solve(model, grid, initial_coupling=initial_coupling, **options)
        fine = solve(model, Grid(grid.x_min, grid.x_max, 2 * grid.n_x - 1, grid.T, 2 * grid.n_t),
                     initial_coupling=model.refine_coupling(coarse.coupling, grid), **options)
        return _richardson(coarse, fine)
    check_options(method, damping, tol, max_iter, anderson_depth)
    check.number("newton_tol", newton_tol, lo=0.0, lo_open=True)
    check.integer("max_newton", max_newton, lo=1, hi=10_000)
    if abs(grid.T - model.T) > 1e-12 * model.T:
        raise ValueError(f"grid.T={grid.T} differs from the model's horizon T={model.T}")
    t0 = time.perf_counter()
    phi = _Sweeper(model, grid, newton_tol, max_newton)
    _check_edges(phi.m0, grid, "the initial law m0")
    default = np.asarray(model.initial_coupling(grid), dtype=np.float64)
    if initial_coupling is None:
        initial_coupling = default
    else:
        initial_coupling = np.asarray(initial_coupling, dtype=np.float64)
        if initial_coupling.shape != default.shape or not np.all(np.isfinite(initial_coupling)):
            raise ValueError(f"initial_coupling must be finite and shaped {default.shape} (as "
                             f"model.initial_coupling(grid)); got shape {initial_coupling.shape}")
    c, residuals = iterate(phi, initial_coupling, method=method, damping=damping, tol=tol,
                           max_iter=max_iter, anderson_depth=anderson_depth)
    evaluations = phi.evaluations
    phi(c)  # leave the sweeper at the converged coupling
    return _finish(model, grid, phi, c, residuals, method, time.perf_counter() - t0, evaluations)


def best_response(model: MFGModel, grid: Grid, coupling: np.ndarray, *, newton_tol: float = 1e-12,
                  max_newton: int = 50) -> MFGSolution:
    """The players' best response to a given coupling, and the population it produces.

    One sweep of the fixed-point map: the HJB backward against ``coupling`` (a belief about
    the crowd: its mean rate μ for :class:`LQCrowdingModel`), then the FP forward under the
    optimal feedback. Fictitious play and the learners of :mod:`mfgsim` call it with the
    population they believe in; at the equilibrium the population it returns is the coupling.

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    coupling : numpy.ndarray of float64
        Shaped as ``model.initial_coupling(grid)``.
    newton_tol, max_newton
        As in :func:`solve`.

    Returns
    -------
    MFGSolution
        ``value`` and ``control``: the best response's cost-to-go and feedback; ``m`` and
        ``mean_rate``: the population that plays it; ``coupling``: the one given;
        ``residuals``: (sup |Φ(c) - c|,), how far the coupling is from the population it
        makes; ``method`` ``"best_response"``.

    Raises
    ------
    ValueError
        If the coupling is not finite or not shaped as the model's.
    MFGConvergenceError
        When an HJB step fails.
    """
    import time

    if abs(grid.T - model.T) > 1e-12 * model.T:
        raise ValueError(f"grid.T={grid.T} differs from the model's horizon T={model.T}")
    default = np.asarray(model.initial_coupling(grid), dtype=np.float64)
    c = np.asarray(coupling, dtype=np.float64)
    if c.shape != default.shape or not np.all(np.isfinite(c)):
        raise ValueError(f"coupling must be finite and shaped {default.shape} (as model.initial_coupling(grid)); "
                         f"got shape {c.shape}")
    t0 = time.perf_counter()
    phi = _Sweeper(model, grid, newton_tol, max_newton)
    _check_edges(phi.m0, grid, "the initial law m0")
    produced = phi(c)
    residual = float(np.max(np.abs(produced - c), initial=0.0))
    return _finish(model, grid, phi, c, [residual], "best_response", time.perf_counter() - t0, 1)


@dataclass(frozen=True)
class Policy:
    """A population's policy on the grid and what it makes and pays, linear in mixtures.

    A player's expected cost against a coupling is affine in the Hamiltonian terms the
    coupling sets (:class:`HamiltonianTerms`): the shift multiplies the rates traded, the
    slope the mean inventories, the dense potential the density. So a policy is kept as its
    coupling-free cost and those three statistics; a mixture of policies (a share of the
    players on each, as fictitious play averages them) is the same average of them. The
    statistics weigh step n with the density after it, as the implicit scheme does: the
    cost of a policy computed so is exactly the value its linear HJB would give (the FP
    sweep is the adjoint of the HJB's), and for a best response it is the HJB's value.

    Parameters
    ----------
    cost : numpy.ndarray of float64, shape (J,)
        Σ_n dt Σ_i dx m_{n+1}(x_i) [k|ν|^α + a|ν| + base(x_i)] + Σ_i dx m_N(x_i) g(x_i):
        the cost every coupling leaves in place (price × shares).
    rates : numpy.ndarray of float64, shape (J, N)
        Mean rate over each step (shares per time).
    means : numpy.ndarray of float64, shape (J, N)
        Mean inventory after each step (shares).
    density : numpy.ndarray of float64, shape (J, N, I) or None
        The density after each step, for models with a density-dependent potential.
    coupling : numpy.ndarray of float64
        The coupling the population makes (``model.coupling_from``).
    """

    cost: np.ndarray
    rates: np.ndarray
    means: np.ndarray
    density: np.ndarray | None
    coupling: np.ndarray

    def mixed(self, other: Policy, weight: float) -> Policy:
        """The mixture with a share ``weight`` of the players on ``other``.

        Exact for couplings linear in the population (the mean rate, the density), as both
        of the FD models' are.

        Parameters
        ----------
        other : Policy
        weight : float
            In [0, 1].

        Returns
        -------
        Policy
        """
        def mix(a, b):
            return None if a is None else a + weight * (b - a)

        return Policy(mix(self.cost, other.cost), mix(self.rates, other.rates), mix(self.means, other.means),
                      mix(self.density, other.density), mix(self.coupling, other.coupling))

    def expected_cost(self, model: MFGModel, grid: Grid, coupling: np.ndarray) -> np.ndarray:
        """Each type's expected cost of this policy against ``coupling`` (price × shares).

        Parameters
        ----------
        model : MFGModel
        grid : Grid
        coupling : numpy.ndarray of float64

        Returns
        -------
        numpy.ndarray of float64, shape (J,)
        """
        terms = model.hamiltonian_terms(coupling, grid)
        out = self.cost + grid.dt * ((terms.shift * self.rates).sum(axis=1) + (terms.slope * self.means).sum(axis=1))
        if terms.dense is not None:
            out = out + grid.dt * grid.dx * (terms.dense * self.density).sum(axis=(1, 2))
        return out


def policy(model: MFGModel, grid: Grid, bplus: np.ndarray, bminus: np.ndarray) -> Policy:
    """The statistics of a policy given by its upwind velocities (see :class:`Policy`).

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    bplus, bminus : numpy.ndarray of float64, shape (J, N+1, I)
        Velocities >= 0 and <= 0 (shares per time), as :class:`MFGSolution` holds them.

    Returns
    -------
    Policy
    """
    J, N, n_x = model.n_types, grid.n_t, grid.n_x
    bplus, bminus = (np.ascontiguousarray(b, dtype=np.float64) for b in (bplus, bminus))
    check.require(bplus.shape == (J, N + 1, n_x) and bminus.shape == bplus.shape and bool(np.all(bplus >= 0))
                  and bool(np.all(bminus <= 0)), "bplus, bminus", f"arrays of shape {bplus.shape}",
                  f"shape (J, N+1, I) = {(J, N + 1, n_x)}, bplus >= 0 and bminus <= 0")
    m0, terminal = model.initial_densities(grid), model.terminal_costs(grid)
    base = model.hamiltonian_terms(model.initial_coupling(grid), grid).base
    m = np.empty((J, N + 1, n_x))
    rates = np.empty((J, N))
    k, alpha, a = model.k, float(model.cost_exponent), float(model.spread_cost)
    for j in range(J):
        K.fp_forward(grid.dx, grid.dt, model.sigma, bplus[j], bminus[j], m0[j], m[j], rates[j])
    speed = k * (bplus[:, :-1] ** alpha + np.abs(bminus[:, :-1]) ** alpha) + a * (bplus[:, :-1] - bminus[:, :-1])
    after = m[:, 1:]
    cost = grid.dt * grid.dx * ((speed + base[:, None, :]) * after).sum(axis=(1, 2)) \
        + grid.dx * (m[:, -1] * terminal).sum(axis=1)
    means = grid.dx * after @ grid.x
    coupling = np.asarray(model.coupling_from(m, rates, grid), dtype=np.float64)
    return Policy(cost, rates, means, after.copy() if model.coupling_per_node else None, coupling)


def policy_value(model: MFGModel, grid: Grid, bplus: np.ndarray, bminus: np.ndarray,
                 coupling: np.ndarray) -> np.ndarray:
    """The cost-to-go of fixed upwind velocities against a coupling: the linear HJB.

    Its mean under the initial law is :meth:`Policy.expected_cost` (the FP sweep is this
    one's adjoint); for the velocities of a best response it is the HJB's value.

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    bplus, bminus : numpy.ndarray of float64, shape (J, N+1, I)
        Velocities >= 0 and <= 0 (shares per time); the last node's bplus and the first's
        bminus are not used (no flow off the grid).
    coupling : numpy.ndarray of float64

    Returns
    -------
    numpy.ndarray of float64, shape (J, N+1, I)
        u (price × shares; cost form).
    """
    terms = model.hamiltonian_terms(coupling, grid)
    J = model.n_types
    u = np.empty((J, grid.n_t + 1, grid.n_x))
    no_dense = np.empty((0, grid.n_x))
    terminal = model.terminal_costs(grid)
    for j in range(J):
        dense = no_dense if terms.dense is None else np.ascontiguousarray(terms.dense[j], dtype=np.float64)
        K.policy_backward(grid.x, grid.dt, model.sigma, model.k, float(model.cost_exponent),
                          float(model.spread_cost), np.ascontiguousarray(terms.shift[j], dtype=np.float64),
                          np.ascontiguousarray(terms.base[j], dtype=np.float64),
                          np.ascontiguousarray(terms.slope[j], dtype=np.float64), dense,
                          np.ascontiguousarray(terminal[j], dtype=np.float64),
                          np.ascontiguousarray(bplus[j], dtype=np.float64),
                          np.ascontiguousarray(bminus[j], dtype=np.float64), u[j])
    return u


def exploitability(model: MFGModel, grid: Grid, population: Policy) -> tuple[float, MFGSolution]:
    """What a best response saves over a population's policy, against the coupling it makes.

    Σ_j w_j (E[cost of the policy] - E[u_BR(0, X_0)]) for type j's initial law: >= 0, zero
    only at an equilibrium (to the grid's round-off: both sides are the same discrete costs).

    Parameters
    ----------
    model : MFGModel
    grid : Grid
    population : Policy

    Returns
    -------
    (float, MFGSolution)
        The exploitability (price × shares per player) and the best response.
    """
    br = best_response(model, grid, population.coupling)
    best = grid.dx * (br.value[:, 0] * model.initial_densities(grid)).sum(axis=1)
    gap = population.expected_cost(model, grid, population.coupling) - best
    return float(np.asarray(model.weights) @ gap), br


def _richardson(coarse: MFGSolution, fine: MFGSolution) -> MFGSolution:
    """``2 fine - coarse`` on the coarse nodes: the first-order errors cancel."""
    def nodes(a):  # (J, 2N+1, 2I-1) -> (J, N+1, I)
        return a[:, ::2, ::2]

    def density(a):  # full weighting in x (1/4, 1/2, 1/4): keeps the mass and the mean exactly
        a = a[:, ::2]
        out = 0.5 * a[:, :, ::2]
        out[:, :, 1:] += 0.25 * a[:, :, 1::2]
        out[:, :, :-1] += 0.25 * a[:, :, 1::2]
        return out

    def steps(a):  # per-step quantities: the two fine steps of each coarse step, averaged
        a = np.asarray(a)
        if a.ndim == 1:
            return a.reshape(-1, 2).mean(axis=1)
        return a[1::2, ::2]  # (2N, 2I-1) at times 1..2N -> the coarse times 1..N

    return MFGSolution(
        grid=coarse.grid, weights=coarse.weights, m=2 * density(fine.m) - coarse.m,
        value=2 * nodes(fine.value) - coarse.value, control=2 * nodes(fine.control) - coarse.control,
        mean_rate=2 * steps(fine.mean_rate) - coarse.mean_rate,
        coupling=2 * steps(fine.coupling) - coarse.coupling,
        residuals=coarse.residuals + fine.residuals, method=f"{coarse.method}, order 2 (Richardson)",
        seconds=coarse.seconds + fine.seconds, evaluations=coarse.evaluations + fine.evaluations)


def _check_edges(m: np.ndarray, grid: Grid, what: str) -> None:
    """Refuse densities with more than 1e-6 of their mass within two cells of an end."""
    edge_mass = float((m[..., :2].sum(axis=-1) + m[..., -2:].sum(axis=-1)).max()) * grid.dx
    if edge_mass > 1e-6:
        raise ValueError(f"{what} puts mass {edge_mass:.2g} at the ends of the grid [{grid.x_min}, {grid.x_max}]; "
                         "widen the grid (x_min/x_max)")


def _finish(model, grid, phi, c, residuals, method, seconds, evaluations) -> MFGSolution:
    mass = phi.m.sum(axis=2) * grid.dx
    if np.max(np.abs(mass - 1.0)) > 1e-9:
        raise AssertionError(f"FP mass drifted to {mass.min():.12g}..{mass.max():.12g}; the scheme is broken")
    if phi.m.min() < -1e-14:
        raise AssertionError(f"FP density went negative ({phi.m.min():.3g}); the scheme is broken")
    _check_edges(phi.m, grid, "the solution's density")
    control = phi.bplus + phi.bminus
    rates = model.weights @ phi.rates
    return MFGSolution(grid=grid, weights=np.asarray(model.weights), m=phi.m.copy(), value=phi.u.copy(),
                       control=control, mean_rate=rates, coupling=np.asarray(c).copy(),
                       residuals=tuple(residuals), method=method, seconds=seconds, evaluations=evaluations,
                       bplus=phi.bplus.copy(), bminus=phi.bminus.copy())
