"""Save and restore the generator of numba's compiled ``np.random`` (private).

numba keeps one Mersenne Twister per thread for ``np.random`` in compiled code and has no
public way to read or set it. Compiled code reaches it through the C function
``numba_get_np_random_state``, which numba's own ``np.random`` calls; :func:`_address`
calls it too (through numba's extension API) and the state is copied whole, as the struct
``rnd_state_t`` numba declares in ``numba/_random.c``: the twister's words and the normal
deviate the polar method keeps for the next call. Before the first copy, the layout is
checked against NumPy's own seeding of the same twister, so a numba that changes it gives
an error, never a different stream.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_MT_WORDS = 624


class _State(ctypes.Structure):
    _fields_ = [("index", ctypes.c_int), ("mt", ctypes.c_uint * _MT_WORDS), ("has_gauss", ctypes.c_int),
                ("gauss", ctypes.c_double), ("is_initialized", ctypes.c_int)]


@intrinsic
def _state_pointer(typingctx):
    def codegen(context, builder, signature, args):
        name = "numba_get_np_random_state"
        fn = builder.module.globals.get(name)
        if fn is None:
            fn = ir.Function(builder.module, ir.FunctionType(ir.IntType(8).as_pointer(), []), name)
        return builder.ptrtoint(builder.call(fn, []), context.get_value_type(types.intp))

    return types.intp(), codegen


@njit(cache=True)
def _address():
    return _state_pointer()


@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@njit(cache=True)
def _normal():
    return np.random.standard_normal()


@functools.cache
def _check_layout() -> None:
    """Raise unless numba's state reads as ``_State`` (on a scratch seed; the caller's state is kept)."""
    address = _address()
    kept = ctypes.string_at(address, ctypes.sizeof(_State))
    try:
        _seed(20261130)
        state = _State.from_address(address)
        _, words, index, _, _ = np.random.RandomState(20261130).get_state()
        ok = state.index == index and np.array_equal(np.array(state.mt, dtype=np.uint32), words)
        first = _normal()  # the polar method draws a pair and keeps the second
        ok = ok and state.has_gauss == 1 and _normal() == state.gauss and state.has_gauss == 0 and first != 0.0
    finally:
        ctypes.memmove(address, kept, len(kept))
    if not ok:
        raise RuntimeError("numba's random state does not have the layout simulator._generator copies "
                           "(numba/_random.c, rnd_state_t); run without warm starts")


def save() -> bytes:
    """The calling thread's generator state.

    Returns
    -------
    bytes

    Raises
    ------
    RuntimeError
        When numba's state does not have the layout this module copies.
    """
    _check_layout()
    return ctypes.string_at(_address(), ctypes.sizeof(_State))


def restore(state: bytes) -> None:
    """Make ``state`` (from :func:`save`) the calling thread's generator state.

    Parameters
    ----------
    state : bytes
    """
    if len(state) != ctypes.sizeof(_State):
        raise ValueError(f"a generator state has {ctypes.sizeof(_State)} bytes, not {len(state)}")
    ctypes.memmove(_address(), state, len(state))
