"""Compiled kernel of the decaying impact path (private; see :func:`mfg.closed_form.decaying_impact`)."""

from numba import njit


@njit(cache=True)
def decaying_sum(mu, decay, gain, out):
    """out[0] = 0, out[n+1] = decay out[n] + gain mu[n]: the exact update of
    dY = (μ - ρY) dt over a step with μ constant (decay = e^{-ρ dt}, gain = (1 - decay)/ρ).
    A recursion, O(n), and stable since decay <= 1."""
    acc = 0.0
    out[0] = 0.0
    for n in range(mu.shape[0]):
        acc = acc * decay + gain * mu[n]
        out[n + 1] = acc
