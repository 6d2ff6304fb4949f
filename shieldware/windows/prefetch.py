"""A cache prefetch hint for the Numba kernels (LLVM's llvm.prefetch), which Numba does not expose.

Replaying millions of events touches a random key's state row per event; the row is usually in
main memory or the last-level cache, and the CPU waits for it. Asking for the row of an event a
few places ahead lets those loads overlap with the work on the current one. A prefetch never
faults and never changes a value, so results are identical with or without it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
_BYTES = ir.IntType(8).as_pointer()
_READ_WRITE = ir.Constant(_I32, 1)  # the kernel writes the row it reads
_KEEP = ir.Constant(_I32, 3)         # high temporal locality: keep it in every cache level
_DATA = ir.Constant(_I32, 1)         # data cache, not instruction cache


@intrinsic
def prefetch(typingctx, array, row, col):
    """Hint that `array[row, col]` (`array[row]` for a 1-d array; `col` ignored) is needed soon."""
    if not isinstance(array, types.Array) or array.ndim not in (1, 2):
        return None
    sig = types.void(array, row, col)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        indices = [context.cast(builder, args[1], signature.args[1], types.intp)]
        if array_type.ndim == 2:
            indices.append(context.cast(builder, args[2], signature.args[2], types.intp))
        pointer = builder.bitcast(cgutils.get_item_pointer(context, builder, array_type, view, indices), _BYTES)
        hint_type = ir.FunctionType(ir.VoidType(), [_BYTES, _I32, _I32, _I32])
        hint = cgutils.get_or_insert_function(builder.module, hint_type, "llvm.prefetch.p0")
        builder.call(hint, [pointer, _READ_WRITE, _KEEP, _DATA])
        return context.get_dummy_value()

    return sig, codegen
