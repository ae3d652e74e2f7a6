"""Argument checks shared by every public constructor of every package.

One message format everywhere, so that a user learns it once::

    <field>=<value> is not allowed; <what is allowed>[; <the fix>]

Every check raises :class:`InvalidValue` (a ``ValueError``; a ``TypeError`` for
:func:`integer` with ``wrong_type=TypeError``) which keeps the field, the value, what is
allowed and the fix as attributes, so that a config reader can say where in its file the
field sits (:meth:`InvalidValue.relabel`) without repeating the check. This module lives on
the ground floor (``mfg``) because ``simulator``, ``analysis`` and ``mfgsim`` all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def problem(field: str, value: Any, allowed: str, fix: str | None = None) -> str:
    """The one-line message ``field=value is not allowed; allowed[; fix]``.

    Parameters
    ----------
    field : str
        The parameter's name.
    value : object
        What was given (shown with ``repr``).
    allowed : str
        What would be accepted.
    fix : str, optional
        What to do about it.

    Returns
    -------
    str
    """
    return f"{field}={value!r} is not allowed; {allowed}" + (f"; {fix}" if fix else "")


class InvalidValue(ValueError):
    """A value a constructor or config refuses.

    Parameters
    ----------
    field : str
        The name of the parameter (dotted as in a config file where that helps).
    value : object
        What was given.
    allowed : str
        What would be accepted, as a phrase ("must be an integer >= 1").
    fix : str, optional
        What to do about it, when that is not obvious from ``allowed``.
    """

    def __init__(self, field: str, value: Any, allowed: str, fix: str | None = None):
        self.field, self.value, self.allowed, self.fix = field, value, allowed, fix
        super().__init__(problem(field, value, allowed, fix))

    def __reduce__(self):
        # a worker process sends the exception back pickled; the default would call
        # __init__ with the message alone and break the pool
        return (type(self), (self.field, self.value, self.allowed, self.fix))

    def relabel(self, field: str) -> str:
        """The same message about another field name (e.g. the key path in a config file).

        Parameters
        ----------
        field : str

        Returns
        -------
        str
        """
        return problem(field, self.value, self.allowed, self.fix)


class InvalidType(InvalidValue, TypeError):
    """A value of the wrong type where a ``TypeError`` is the documented answer.

    Parameters
    ----------
    field, value, allowed, fix
        As in :class:`InvalidValue`.
    """


def require(condition: bool, field: str, value: Any, allowed: str, fix: str | None = None) -> None:
    """Raise :class:`InvalidValue` unless ``condition`` holds.

    Parameters
    ----------
    condition : bool
    field, value, allowed, fix
        As in :class:`InvalidValue`.

    Raises
    ------
    InvalidValue
    """
    if not condition:
        raise InvalidValue(field, value, allowed, fix)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy integer (bools, floats and all else are not).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy integer or float that is not NaN (bools are not).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and not math.isnan(value))


def _number_rule(lo: float, hi: float, lo_open: bool, hi_open: bool, allow_inf: bool) -> str:
    finite = "" if allow_inf else "finite and "
    if lo == -math.inf and hi == math.inf:
        return "must be a number" if allow_inf else "must be a finite number"
    if hi == math.inf:
        return f"must be {finite}{'>' if lo_open else '>='} {lo:g}"
    if lo == -math.inf:
        return f"must be {finite}{'<' if hi_open else '<='} {hi:g}"
    return f"must be {finite}in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(field: str, value: Any, *, lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False,
           hi_open: bool = False, allow_inf: bool = False) -> float:
    """A real number in [lo, hi] (ends open as asked), finite unless ``allow_inf``.

    Parameters
    ----------
    field : str
        The name in the message.
    value : object
        The number to check.
    lo, hi : float
        Bounds (default unbounded).
    lo_open, hi_open : bool
        Exclude the bound itself.
    allow_inf : bool
        Accept ±inf (within the bounds).

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    InvalidValue
    """
    if (not is_real(value) or (math.isinf(value) and not allow_inf) or value < lo or value > hi
            or (lo_open and value == lo) or (hi_open and value == hi)):
        raise InvalidValue(field, value, _number_rule(lo, hi, lo_open, hi_open, allow_inf))
    return float(value)


def _integer_rule(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"must be an integer in [{lo}, {hi}]"
    if lo is not None:
        return f"must be an integer >= {lo}"
    return "must be an integer" if hi is None else f"must be an integer <= {hi}"


def integer(field: str, value: Any, *, lo: int | None = None, hi: int | None = None,
            wrong_type: type[Exception] = ValueError) -> int:
    """An integer (not a bool, not a float) in [lo, hi].

    Parameters
    ----------
    field : str
        The name in the message.
    value : object
        The integer to check.
    lo, hi : int or None
        Inclusive bounds; None is unbounded.
    wrong_type : type
        ``TypeError`` raises :class:`InvalidType` for a non-integer, as the order book's
        methods document; the default raises :class:`InvalidValue`.

    Returns
    -------
    int
        ``value`` as a Python int.
    """
    if not is_integer(value):
        raise (InvalidType if wrong_type is TypeError else InvalidValue)(field, value, _integer_rule(lo, hi))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidValue(field, value, _integer_rule(lo, hi))
    return int(value)


def boolean(field: str, value: Any) -> bool:
    """True or False (numpy's bool too); not 0, 1 or a string.

    Parameters
    ----------
    field : str
    value : object

    Returns
    -------
    bool
    """
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidValue(field, value, "expected true or false")
    return bool(value)


def choice(field: str, value: Any, options: Iterable[Any]) -> Any:
    """One of ``options``.

    Parameters
    ----------
    field : str
    value : object
    options : iterable
        The accepted values.

    Returns
    -------
    object
        ``value``.
    """
    options = tuple(options)
    if isinstance(value, (list, dict)) or value not in options:
        raise InvalidValue(field, value, "expected one of " + ", ".join(repr(o) for o in options))
    return value


def seed(field: str, value: Any) -> int:
    """A random seed: an integer in [0, 2**32).

    Parameters
    ----------
    field : str
    value : object

    Returns
    -------
    int
    """
    return integer(field, value, lo=0, hi=2**32 - 1)


def time_step(T: Any, dt: Any) -> int:
    """A horizon ``T`` and a step ``dt``, both finite and > 0, ``dt`` dividing ``T``.

    Parameters
    ----------
    T : float
        Horizon (time units).
    dt : float
        Step (time units).

    Returns
    -------
    int
        The number of steps, ``round(T / dt)``.
    """
    for name, v in (("T", T), ("dt", dt)):
        number(name, v, lo=0.0, lo_open=True)
    ratio = T / dt
    require(abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio), "dt", dt, f"must divide T={T} (T/dt = {ratio})",
            "choose dt = T/n")
    return int(round(ratio))


def times(t: Any, T: float) -> np.ndarray:
    """Times as a float64 array, each in [0, T].

    NaN is refused; a relative slack of 1e-12 at the ends absorbs round-off in ``n * dt``.

    Parameters
    ----------
    t : array_like of float
        Times (time units).
    T : float
        Horizon (time units).

    Returns
    -------
    numpy.ndarray of float64
    """
    t = np.asarray(t, dtype=np.float64)
    inside = (t >= -1e-12 * T) & (t <= T * (1 + 1e-12))
    if not np.all(inside):
        raise InvalidValue("t", float(t[~inside].ravel()[0]), f"t must lie in [0, T={T}]")
    return t


def plain_name(field: str, value: Any) -> str:
    """A name that is one plain path component, so that ``root / name`` stays inside root.

    Refused: anything but a non-empty string, ``/``, ``\\`` or NUL in it, ``.``, ``..`` and
    any name starting with ``.`` (hidden, and the start of ``..``).

    Parameters
    ----------
    field : str
    value : object

    Returns
    -------
    str
    """
    allowed = "expected one plain folder name (no '/', '\\' or NUL; not '.', '..' or starting with '.')"
    if not isinstance(value, str) or not value or value.startswith(".") or any(c in value for c in "/\\\0"):
        raise InvalidValue(field, value, allowed)
    return value
