"""Four 64-bit integer lanes held as one value, for compiled kernels that add 32-byte rows.

numba has no vector type, and LLVM's vectorisers do not see that the four additions of a
32-byte table entry (``a0 += entry[0]; …; a3 += entry[3]``) are one: the table look-ups
of :func:`kernels.lattice_products` compiled to four scalar loads and adds each. A
``Lanes`` value is LLVM's ``<4 x i64>``: a load of four consecutive ``uint64`` and an
addition are one instruction each where the processor has 256-bit integer vectors
(AVX2), two on 128-bit ones, and LLVM lowers them on any processor it targets. The
arithmetic is the integers' own (wrapping modulo 2^64, lane by lane): the same numbers
as the four scalar additions, in any order.

Inside ``@njit`` code::

    total = lanes_zero()
    total = lanes_add(total, lanes_load(table, (p, v)))   # table[p, v, 0:4]
    lanes_store(sums, (c,), total)                        # sums[c, 0:4] = total
    first = lane(total, 0)

``lanes_load`` and ``lanes_store`` take a C-contiguous ``uint64`` array whose last axis
holds at least four entries and a tuple with one index for every other axis. They do no
bounds check: the caller's loops keep the indices in range (as numba's own indexing does
without ``boundscheck``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_VECTOR = ir.VectorType(ir.IntType(64), 4)


class LanesType(types.Type):
    """numba's type of a ``Lanes`` value: four uint64 lanes."""

    def __init__(self) -> None:
        super().__init__(name="Lanes(4 x uint64)")


Lanes = LanesType()


@register_model(LanesType)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001 - numba's signature
        super().__init__(dmm, fe_type, _VECTOR)


def _row_pointer(context, builder, array_type, array, index_type, index):  # noqa: ANN001
    """A ``<4 x i64>*`` to ``array[index…, 0]``."""
    indices = [context.cast(builder, value, kind, types.intp)
               for value, kind in zip(cgutils.unpack_tuple(builder, index), index_type, strict=True)]
    indices.append(ir.Constant(ir.IntType(64), 0))
    view = context.make_array(array_type)(context, builder, array)
    pointer = cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)
    return builder.bitcast(pointer, _VECTOR.as_pointer())


def _row_of(array, index) -> bool:  # noqa: ANN001
    """Whether ``(array, index)`` are types ``lanes_load`` and ``lanes_store`` take."""
    return (isinstance(array, types.Array) and array.dtype == types.uint64 and array.layout == "C"
            and isinstance(index, types.BaseTuple) and len(index) == array.ndim - 1
            and all(isinstance(kind, types.Integer) for kind in index))


@intrinsic
def lanes_zero(typingctx):  # noqa: ANN001
    """Four zero lanes."""
    def codegen(context, builder, signature, args):  # noqa: ANN001
        return ir.Constant(_VECTOR, None)

    return Lanes(), codegen


@intrinsic
def lanes_load(typingctx, array, index):  # noqa: ANN001
    """``array[index…, 0:4]`` as one value (one unaligned 32-byte load)."""
    if not _row_of(array, index):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        pointer = _row_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        return builder.load(pointer, align=8)

    return Lanes(array, index), codegen


@intrinsic
def lanes_store(typingctx, array, index, value):  # noqa: ANN001
    """``array[index…, 0:4] = value``."""
    if not _row_of(array, index) or value != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        pointer = _row_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        builder.store(args[2], pointer, align=8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def lanes_add(typingctx, first, second):  # noqa: ANN001
    """Lane by lane ``first + second``, modulo 2^64."""
    if first != Lanes or second != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        return builder.add(args[0], args[1])

    return Lanes(Lanes, Lanes), codegen


@intrinsic
def lane(typingctx, value, position):  # noqa: ANN001
    """Lane ``position`` (0 to 3) of ``value``, a uint64."""
    if value != Lanes or not isinstance(position, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        return builder.extract_element(args[0], context.cast(builder, args[1], signature.args[1], types.intp))

    return types.uint64(value, position), codegen
