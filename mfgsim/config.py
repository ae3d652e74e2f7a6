"""TOML configuration: strict readers that turn a file into frozen specs.

Every problem is a :class:`ConfigError` naming the file, the key path and the value, and
unknown keys get a close-match suggestion. Nothing is written before a config validates.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file is malformed; the message names file, key and value."""


class Section:
    """A TOML table being read: typed getters, and a final check that no key was left over."""

    def __init__(self, data: dict, path: str, source: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.data, self.path, self.source = data, path, source
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.source}: {self.path}.{key}" if self.path else f"{self.source}: {key}"

    def error(self, key: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self._where(key)} = {value!r} is not allowed; {allowed}")

    def get(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                typo = difflib.get_close_matches(key, [k for k in self.data if k not in self.used], n=1)
                hint = f" (found {typo[0]!r}: did you mean {key!r}?)" if typo else ""
                raise ConfigError(f"{self._where(key)} is missing{hint}")
            return default
        return self.data[key]

    def number(self, key: str, default: Any = ..., *, lo: float = -math.inf, hi: float = math.inf,
               lo_open: bool = False, allow_inf: bool = False) -> float:
        value = self.get(key, default)
        if isinstance(value, str) and allow_inf and value.lower() in ("inf", "infinity"):
            value = math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.error(key, value, "expected a number")
        if math.isinf(value) and not allow_inf:
            raise self.error(key, value, "expected a finite number")
        if value < lo or value > hi or (lo_open and value == lo):
            raise self.error(key, value, f"must be in {'(' if lo_open else '['}{lo}, {hi}]")
        return float(value)

    def integer(self, key: str, default: Any = ..., *, lo: int = -(2**63), hi: int = 2**63 - 1) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "expected an integer")
        if not lo <= value <= hi:
            raise self.error(key, value, f"must be in [{lo}, {hi}]")
        return value

    def boolean(self, key: str, default: Any = ...) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, value, "expected true or false")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, default)
        if value not in options:
            raise self.error(key, value, f"expected one of {', '.join(options)}")
        return value

    def numbers(self, key: str, default: Any = ...) -> tuple[float, ...]:
        value = self.get(key, default)
        if not isinstance(value, list) or not value or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.error(key, value, "expected a non-empty list of numbers")
        return tuple(float(v) for v in value)

    def table(self, key: str, default: Any = ...) -> Section:
        return Section(self.get(key, default), f"{self.path}.{key}" if self.path else key, self.source)

    def tables(self, key: str) -> list[Section]:
        value = self.get(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, value, "expected one or more [[tables]]")
        return [Section(v, f"{self.path}.{key}[{i}]", self.source) for i, v in enumerate(value)]

    def done(self) -> None:
        """Raise for keys nobody asked for (typos), suggesting the closest known key."""
        for key in self.data:
            if key not in self.used:
                close = difflib.get_close_matches(key, sorted(self.used), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(self.used))}"
                raise ConfigError(f"{self._where(key)} is not a known key{hint}")


@contextmanager
def config_errors(where: str):
    """Turn a spec's ValueError/TypeError into a ConfigError that names ``where``."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def output_name(sec: Section, path: str | Path) -> str:
    """The ``name`` of a campaign or study (default: the file's stem), a folder name."""
    name = sec.get("name", Path(path).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise sec.error("name", name, "expected a non-empty name without '/'")
    return name


def read_toml(path: str | Path) -> Section:
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
    """A model, its grid, the solver options and where to write."""

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
    from mfg.laws import GaussianMixture

    means = sec.numbers("means")
    stds = sec.numbers("stds")
    weights = sec.numbers("weights", [1.0 / len(means)] * len(means))
    sec.done()
    try:
        return GaussianMixture(weights, means, stds)
    except ValueError as exc:
        raise ConfigError(f"{sec.source}: {sec.path}: {exc}") from None


def lq_model(sec: Section):
    """An LQ crowding model from a [model] table (k, kappa, T, sigma, c, rho, [[types]])."""
    from mfg.closed_form import LQCrowding, PreferenceType

    types = []
    for t in sec.tables("types"):
        types.append(PreferenceType(phi=t.number("phi", lo=0.0), A=t.number("A", lo=0.0),
                                    weight=t.number("weight", 1.0, lo=0.0, lo_open=True),
                                    m0=_mixture(t.table("m0"))))
        t.done()
    return LQCrowding(k=sec.number("k", lo=0.0, lo_open=True), kappa=sec.number("kappa", lo=0.0),
                      T=sec.number("T", lo=0.0, lo_open=True), types=tuple(types),
                      sigma=sec.number("sigma", 0.0, lo=0.0), c=sec.number("c", 0.0, lo=0.0),
                      rho=sec.number("rho", 0.0, lo=0.0))


def _market_making_config(root: Section, model_sec: Section, path) -> SolveConfig:
    from mfg.market_making import MarketMakingMFG

    m0 = model_sec.get("m0", None)
    with config_errors(f"{root.source}: model"):
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
    from mfg.jump import METHODS

    solver = root.table("solver", {})
    method = solver.choice("method", METHODS, "anderson")
    damping = solver.number("damping", 0.7, lo=0.0, hi=1.0, lo_open=True)
    tol = solver.number("tol", 1e-10, lo=0.0, lo_open=True)
    max_iter = solver.integer("max_iter", 200, lo=1)
    solver.done()
    output = root.table("output", {})
    out_dir = Path(output.get("dir", str(Path("runs/out") / Path(path).stem)))
    output.done()
    root.done()
    return SolveConfig(model, None, method, damping, tol, max_iter, out_dir, n_t)


def parse_solve_config(path: str | Path) -> SolveConfig:
    """Read a ``mfgsim solve`` TOML file (see ``runs/solve_lq_crowding.toml``)."""
    from mfg.fd import METHODS, CrowdAversionModel, Grid, LQCrowdingModel

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
    max_iter = solver.integer("max_iter", 500, lo=1)
    order = solver.integer("order", 1, lo=1, hi=2)
    solver.done()

    output = root.table("output", {})
    out_dir = Path(output.get("dir", str(Path("runs/out") / Path(path).stem)))
    output.done()
    root.done()
    return SolveConfig(model, grid, method, damping, tol, max_iter, out_dir, order=order)
