"""The window kernel's C entry point: `observe_events` callable through a plain function pointer.

Python reaches the kernel through Numba's dispatcher, which checks its arguments' types on every
call. Compiled callers (the fast lane, shieldware/fastlane/) call this entry point instead, with
the table's and the buffers' raw addresses; it is the same kernel, compiled into the same
machine code path, so every answer is identical.
"""

from __future__ import annotations

from numba import carray, cfunc, types

from shieldware.windows.kernels import observe_events
from shieldware.windows.layout import EV_FLOAT_WIDTH, EV_INT_WIDTH, OUT_WIDTH, REGISTER_WIDTH, STATE_WIDTH

_int64_p = types.CPointer(types.int64)
_float64_p = types.CPointer(types.float64)
_uint8_p = types.CPointer(types.uint8)

# int64 observe(keys, state, registers, capacity, ev_int, ev_float, n_events, out, out_rows):
# the C signature the fast lane declares (shieldware/fastlane/_lane.c, `kernel_fn`).
SIGNATURE = types.int64(_int64_p, _float64_p, _uint8_p, types.int64,
                        _int64_p, _float64_p, types.int64, _float64_p, types.int64)


# Compiled (or loaded from Numba's cache) when this module is first imported: only the fast lane
# imports it. The module keeps the compiled object, so its code lives as long as the process.
@cfunc(SIGNATURE, cache=True, nopython=True)
def _observe(keys_p, state_p, registers_p, capacity, ev_int_p, ev_float_p, n_events, out_p, out_rows):
    keys = carray(keys_p, (capacity,))
    state = carray(state_p, (capacity, STATE_WIDTH))
    registers = carray(registers_p, (capacity, REGISTER_WIDTH))
    ev_int = carray(ev_int_p, (n_events, EV_INT_WIDTH))
    ev_float = carray(ev_float_p, (n_events, EV_FLOAT_WIDTH))
    out = carray(out_p, (out_rows, OUT_WIDTH))
    return observe_events(keys, state, registers, ev_int, ev_float, n_events, out)


def observe_entry() -> int:
    """The address of the compiled entry point."""
    return _observe.address
