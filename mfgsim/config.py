"""TOML configuration: strict readers that turn a file into frozen specs.

Every problem is a :class:`ConfigError` naming the file, the key path and the value, and
unknown keys get a close-match suggestion. Nothing is written before a config validates.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfg import validation as check
from mfg.io import memory_limit
from mfg.closed_form import LQCrowding, PreferenceType
from mfg.fd import METHODS, CrowdAversionModel, Grid, LQCrowdingModel
from mfg.fd import memory_estimate as fd_memory_estimate
from mfg.jump import memory_estimate as jump_memory_estimate
from mfg.laws import GaussianMixture
from mfg.market_making import MarketMakingMFG


class ConfigError(ValueError):
    """A configuration file is malformed; the message names file, key and value.

    Parameters
    ----------
    message : str
        The one-line message.
    """


class Section:
    """A TOML table being read: typed getters, and a final check that no key was left over.

    The getters check with :mod:`mfg.validation`, so a config file gets the same one-line
    messages as the constructors, with the file and the key path in front. Where a value
    goes straight into a spec dataclass, :meth:`dataclass` passes it on unchecked and lets
    the dataclass's own checks speak (:meth:`located` puts the key path in front).

    Parameters
    ----------
    data : dict
        The table as ``tomllib`` parsed it.
    path : str
        Its dotted key path in the file (``""`` for the root).
    source : str
        The file, for messages.
    """

    def __init__(self, data: dict, path: str, source: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.data, self.path, self.source = data, path, source
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _where(self, key: str) -> str:
        return f"{self.source}: {self._key(key)}"

    def error(self, key: str, value: Any, allowed: str, fix: str | None = None) -> ConfigError:
        """The ConfigError for ``key = value``: file, key path, value, what is allowed.

        Parameters
        ----------
        key : str
            The key in this table.
        value : object
        allowed : str
        fix : str, optional

        Returns
        -------
        ConfigError
        """
        return ConfigError(f"{self.source}: " + check.problem(self._key(key), value, allowed, fix))

    @contextmanager
    def located(self) -> Iterator[None]:
        """Turn the checks of a spec built from this table into ConfigErrors that name the file and the key path.

        Yields
        ------
        None
            Inside the ``with`` block an :class:`mfg.validation.InvalidValue` becomes a ConfigError.
        """
        try:
            yield
        except ConfigError:
            raise
        except check.InvalidValue as exc:
            raise ConfigError(f"{self.source}: {exc.relabel(_key_path(self.path, exc.field))}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.source}: {self.path + ': ' if self.path else ''}{exc}") from None

    def get(self, key: str, default: Any = ...) -> Any:
        """The raw value of ``key``.

        Parameters
        ----------
        key : str
        default : object, optional
            Returned when the key is absent; without it the key is required.

        Returns
        -------
        object
        """
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                typo = difflib.get_close_matches(key, [k for k in self.data if k not in self.used], n=1)
                hint = f" (found {typo[0]!r}: did you mean {key!r}?)" if typo else ""
                raise ConfigError(f"{self._where(key)} is missing{hint}")
            return default
        return self.data[key]

    def _checked(self, key: str, default: Any, checker, **bounds) -> Any:
        value = self.get(key, default)
        with self.located():
            return checker(self._key(key), value, **bounds)

    def number(self, key: str, default: Any = ..., *, lo: float = -math.inf, hi: float = math.inf,
               lo_open: bool = False, allow_inf: bool = False) -> float:
        """A real number in [lo, hi] (``"inf"`` allowed as a string with ``allow_inf``).

        Parameters
        ----------
        key : str
        default : object, optional
        lo, hi : float
        lo_open, allow_inf : bool
            As in :func:`mfg.validation.number`.

        Returns
        -------
        float
        """
        value = self.get(key, default)
        if isinstance(value, str) and allow_inf and value.lower() in ("inf", "infinity"):
            value = math.inf
        with self.located():
            return check.number(self._key(key), value, lo=lo, hi=hi, lo_open=lo_open, allow_inf=allow_inf)

    def integer(self, key: str, default: Any = ..., *, lo: int | None = None, hi: int | None = None) -> int:
        """An integer in [lo, hi].

        Parameters
        ----------
        key : str
        default : object, optional
        lo, hi : int or None
            Inclusive bounds.

        Returns
        -------
        int
        """
        return self._checked(key, default, check.integer, lo=lo, hi=hi)

    def boolean(self, key: str, default: Any = ...) -> bool:
        """true or false.

        Parameters
        ----------
        key : str
        default : object, optional

        Returns
        -------
        bool
        """
        return self._checked(key, default, check.boolean)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        """One of ``options``.

        Parameters
        ----------
        key : str
        options : tuple of str
        default : object, optional

        Returns
        -------
        str
        """
        return self._checked(key, default, check.choice, options=options)

    def numbers(self, key: str, default: Any = ...) -> tuple[float, ...]:
        """A non-empty list of numbers, as floats.

        Parameters
        ----------
        key : str
        default : object, optional

        Returns
        -------
        tuple of float
        """
        value = self.get(key, default)
        if not isinstance(value, list) or not value or not all(check.is_real(v) for v in value):
            raise self.error(key, value, "expected a non-empty list of numbers")
        return tuple(float(v) for v in value)

    def table(self, key: str, default: Any = ...) -> Section:
        """The sub-table ``key`` as a Section.

        Parameters
        ----------
        key : str
        default : object, optional
            Returned when the key is absent.

        Returns
        -------
        Section
        """
        return Section(self.get(key, default), self._key(key), self.source)

    def tables(self, key: str) -> list[Section]:
        """An array of tables (``[[key]]``), one Section each.

        Parameters
        ----------
        key : str

        Returns
        -------
        list of Section
        """
        value = self.get(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, value, "expected one or more [[tables]]")
        return [Section(v, f"{self._key(key)}[{i}]", self.source) for i, v in enumerate(value)]

    def dataclass(self, cls: type, **given: Any) -> Any:
        """Build the spec dataclass ``cls`` from this table.

        Its fields are the known keys (an integer given for a ``float`` field becomes a float, as
        TOML users write ``kappa = 5``), ``given`` sets fields the file does not (sub-specs read
        with :meth:`table`, the model), and every other key is a typo. The dataclass checks the
        values itself.

        Parameters
        ----------
        cls : type
            A frozen dataclass.
        **given : object
            Fields set by the caller.

        Returns
        -------
        object
            An instance of ``cls``.
        """
        kwargs = dict(given)
        for f in dataclasses.fields(cls):
            if f.name in given:  # a key of that name in the file is unknown (sub-tables are read by .table)
                continue
            self.used.add(f.name)
            if f.name not in self.data:
                continue
            value = self.data[f.name]
            if f.type in ("float", float, "float | None") and check.is_integer(value):
                value = float(value)
            kwargs[f.name] = value
        self.done()
        with self.located():
            return cls(**kwargs)

    def done(self) -> None:
        """Raise for keys nobody asked for (typos), suggesting the closest known key.

        Returns
        -------
        None

        Raises
        ------
        ConfigError
        """
        for key in self.data:
            if key not in self.used:
                close = difflib.get_close_matches(key, sorted(self.used), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(self.used))}"
                raise ConfigError(f"{self._where(key)} is not a known key{hint}")


def _key_path(path: str, field: str) -> str:
    """The key path of a spec's ``field`` read from the table at ``path``. Specs name some
    fields as a campaign file does (``market.noise.limit_rate``): the part they share with
    the end of ``path`` is not repeated (``books.x.market.noise`` + ``market.noise.limit_rate``
    -> ``books.x.market.noise.limit_rate``)."""
    if not path:
        return field
    here, there = path.split("."), field.split(".")
    bare = [re.sub(r"\[\d+\]$", "", part) for part in here]  # market.latent[1] shares market.latent
    shared = next((k for k in range(min(len(here), len(there) - 1), 0, -1) if bare[-k:] == there[:k]), 0)
    return ".".join(here + there[shared:])


def check_memory(need: int, source: str, what: str, fix: str, per: str = "") -> None:
    """Refuse up front work that cannot fit in this machine's memory, in one line.

    Parameters
    ----------
    need : int
        The work's estimated peak (bytes).
    source : str
        The file, for the message.
    what : str
        What needs it (``"crowd.n_agents=100000"``, ``"grid.n_x=2001, grid.n_t=1000"``).
    fix : str
        Which keys to lower.
    per : str
        What the amount is for (``"per run"``), when not the whole command.

    Raises
    ------
    ConfigError
        ``<source>: <what> needs about X GiB [per], more than this machine's Y GiB allow; <fix>``.
    """
    limit = memory_limit()
    if limit is not None and need > limit:
        raise ConfigError(f"{source}: {what} needs about {need / 2**30:.3g} GiB{' ' + per if per else ''}, more "
                          f"than this machine's {limit / 0.8 / 2**30:.3g} GiB allow; {fix}")


def output_name(sec: Section, path: str | Path) -> str:
    """The ``name`` of a campaign or study: the folder its outputs go to under the output root.

    One plain path component (:func:`mfg.validation.plain_name`; ``..`` would write outside
    the root).

    Parameters
    ----------
    sec : Section
        The file's top-level table.
    path : str or os.PathLike
        The file (its stem is the default name).

    Returns
    -------
    str
    """
    return sec._checked("name", Path(path).stem, check.plain_name)


def read_toml(path: str | Path) -> Section:
    """Read a TOML file into a :class:`Section` that names the file in its errors.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Section

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or not valid TOML.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (TOML must be UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return Section(data, "", str(path))


# ---- `mfgsim solve` configs ---------------------------------------------------------------
@dataclass(frozen=True)
class SolveConfig:
    """A model, its grid, the solver options and where to write (``mfgsim solve``).

    Parameters
    ----------
    model : mfg.fd.MFGModel or mfg.market_making.MarketMakingMFG
    grid : mfg.fd.Grid or None
        The FD grid (None for the market-making model).
    method : str
        The fixed-point method.
    damping : float
        Picard damping.
    tol : float
        Fixed-point tolerance.
    max_iter : int
        Outer iterations allowed.
    out_dir : pathlib.Path
        Where the solution is written.
    n_t : int or None
        Time steps of the market-making solver.
    order : int
        1 or 2 (Richardson) for the FD solver.
    """

    model: Any
    grid: Any
    method: str
    damping: float
    tol: float
    max_iter: int
    out_dir: Path
    n_t: int | None = None  # the market-making game's time steps (it has no state grid)
    order: int = 1  # 2: Richardson extrapolation (second order, not monotone)


def _mixture(sec: Section):
    means = sec.numbers("means")
    stds = sec.numbers("stds")
    weights = sec.numbers("weights", [1.0 / len(means)] * len(means))
    sec.done()
    try:
        return GaussianMixture(weights, means, stds)
    except ValueError as exc:
        raise ConfigError(f"{sec.source}: {sec.path}: {exc}") from None


def lq_model(sec: Section):
    """An LQ crowding model from a [model] table (k, kappa, T, sigma, c, rho, [[types]]).

    Parameters
    ----------
    sec : Section
        The ``[model]`` table; keys other than these must have been read already.

    Returns
    -------
    mfg.closed_form.LQCrowding
    """
    types = tuple(t.dataclass(PreferenceType, m0=_mixture(t.table("m0"))) for t in sec.tables("types"))
    return sec.dataclass(LQCrowding, types=types)


def _market_making_config(root: Section, model_sec: Section, path) -> SolveConfig:
    m0 = model_sec.get("m0", None)
    with model_sec.located():
        model = MarketMakingMFG(
            gamma=model_sec.number("gamma", lo=0.0, lo_open=True),
            sigma=model_sec.number("sigma", lo=0.0, lo_open=True),
            A=model_sec.number("A", lo=0.0, lo_open=True), k=model_sec.number("k", lo=0.0, lo_open=True),
            competition=model_sec.number("competition", 0.0, lo=0.0),
            max_inventory=model_sec.integer("max_inventory", lo=1, hi=10_000),
            T=model_sec.number("T", lo=0.0, lo_open=True), m0=None if m0 is None else tuple(m0))
    model_sec.done()
    grid_sec = root.table("grid")
    n_t = grid_sec.integer("n_t", lo=10, hi=10**7)
    grid_sec.done()
    solver = root.table("solver", {})
    method = solver.choice("method", METHODS, "anderson")
    damping = solver.number("damping", 0.7, lo=0.0, hi=1.0, lo_open=True)
    tol = solver.number("tol", 1e-10, lo=0.0, lo_open=True)
    max_iter = solver.integer("max_iter", 200, lo=1, hi=10**6)
    solver.done()
    output = root.table("output", {})
    out_dir = Path(output.get("dir", str(Path("runs/out") / Path(path).stem)))
    output.done()
    root.done()
    check_memory(jump_memory_estimate(model, n_t), root.source,
                 f"model.max_inventory={model.max_inventory} with grid.n_t={n_t}",
                 "lower grid.n_t or model.max_inventory")
    return SolveConfig(model, None, method, damping, tol, max_iter, out_dir, n_t)


def parse_solve_config(path: str | Path) -> SolveConfig:
    """Read a ``mfgsim solve`` TOML file (see ``runs/solve_lq_crowding.toml``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    SolveConfig
    """
    root = read_toml(path)
    model_sec = root.table("model")
    kind = model_sec.choice("kind", ("lq_crowding", "crowd_aversion", "market_making"))
    if kind == "market_making":
        return _market_making_config(root, model_sec, path)
    if kind == "lq_crowding":
        alpha = model_sec.number("cost_exponent", 2.0, lo=1.0, hi=2.0, lo_open=True)
        model = LQCrowdingModel(lq_model(model_sec), cost_exponent=alpha)
    else:
        k = model_sec.number("k", lo=0.0, lo_open=True)
        T = model_sec.number("T", lo=0.0, lo_open=True)
        model = CrowdAversionModel(k=k, phi=model_sec.number("phi", lo=0.0), A=model_sec.number("A", lo=0.0),
                                   alpha=model_sec.number("alpha", lo=0.0), T=T, m0=_mixture(model_sec.table("m0")),
                                   sigma=model_sec.number("sigma", 0.0, lo=0.0),
                                   beta=model_sec.number("beta", 1.0, lo=0.0, lo_open=True))
    model_sec.done()

    grid_sec = root.table("grid")
    x_min, x_max = grid_sec.number("x_min"), grid_sec.number("x_max")
    if x_max <= x_min:
        raise grid_sec.error("x_max", x_max, f"must exceed grid.x_min = {x_min}")
    grid = Grid(x_min, x_max, grid_sec.integer("n_x", lo=5, hi=10**6), model.T,
                grid_sec.integer("n_t", lo=1, hi=10**6))
    grid_sec.done()

    solver = root.table("solver", {})
    method = solver.choice("method", METHODS, "anderson")
    damping = solver.number("damping", 0.5, lo=0.0, hi=1.0, lo_open=True)
    tol = solver.number("tol", 1e-8, lo=0.0, lo_open=True)
    max_iter = solver.integer("max_iter", 500, lo=1, hi=10**6)
    order = solver.integer("order", 1, lo=1, hi=2)
    solver.done()

    output = root.table("output", {})
    out_dir = Path(output.get("dir", str(Path("runs/out") / Path(path).stem)))
    output.done()
    root.done()
    check_memory(fd_memory_estimate(model, grid, order), root.source,
                 f"grid.n_x={grid.n_x} x grid.n_t={grid.n_t}" + (" (order 2)" if order == 2 else ""),
                 "lower grid.n_x or grid.n_t")
    return SolveConfig(model, grid, method, damping, tol, max_iter, out_dir, order=order)
