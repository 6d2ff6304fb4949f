"""The window kernel's C entry point: `observe_events` callable through a plain function pointer.

Python reaches the kernel through Numba's dispatcher, which checks its arguments' types on every
call. Compiled callers (the fast lane, shieldware/fastlane/) call this entry point instead, with
the table's and the buffers' raw addresses; it is the same kernel, compiled into the same
machine code path, so every answer is identical.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba import carray, cfunc, types

from shieldware.store import base as store_base
from shieldware.windows import kernels, layout, prefetch
from shieldware.windows.kernels import observe_events
from shieldware.windows.layout import EV_FLOAT_WIDTH, EV_INT_WIDTH, OUT_WIDTH, REGISTER_WIDTH, STATE_WIDTH

_int64_p = types.CPointer(types.int64)
_float64_p = types.CPointer(types.float64)
_uint8_p = types.CPointer(types.uint8)

# int64 observe(keys, state, registers, capacity, ev_int, ev_float, n_events, out, out_rows):
# the C signature the fast lane declares (shieldware/fastlane/_lane.c, `kernel_fn`).
SIGNATURE = types.int64(_int64_p, _float64_p, _uint8_p, types.int64,
                        _int64_p, _float64_p, types.int64, _float64_p, types.int64)


def _kernel_stamp() -> str:
    """A digest of the sources compiled into the entry point. Numba's cache checks only the file
    that defines a function: after an edit to the kernel alone, this entry loaded the old kernel's
    machine code from the cache (seen in a checkout: the fast lane stopped counting a new flag).
    The digest goes into the function's name, which names its cache file."""
    digest = hashlib.blake2b(digest_size=6)
    for module in (kernels, layout, prefetch, store_base):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _entry(keys_p, state_p, registers_p, capacity, ev_int_p, ev_float_p, n_events, out_p, out_rows):
    keys = carray(keys_p, (capacity,))
    state = carray(state_p, (capacity, STATE_WIDTH))
    registers = carray(registers_p, (capacity, REGISTER_WIDTH))
    ev_int = carray(ev_int_p, (n_events, EV_INT_WIDTH))
    ev_float = carray(ev_float_p, (n_events, EV_FLOAT_WIDTH))
    out = carray(out_p, (out_rows, OUT_WIDTH))
    return observe_events(keys, state, registers, ev_int, ev_float, n_events, out)


# Compiled (or loaded from Numba's cache) when this module is first imported: only the fast lane
# imports it. The module keeps the compiled object, so its code lives as long as the process.
_entry.__qualname__ = _entry.__name__ = f"observe_{_kernel_stamp()}"
_observe = cfunc(SIGNATURE, cache=True, nopython=True)(_entry)


def observe_entry() -> int:
    """The address of the compiled entry point."""
    return _observe.address
