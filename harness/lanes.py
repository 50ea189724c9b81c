"""Four 64-bit integer lanes held as one value, for compiled kernels that add 32-byte rows
or count the bits of four words at once.

numba has no vector type, and LLVM's vectorisers do not see that the four additions of a
32-byte table entry (``a0 += entry[0]; …; a3 += entry[3]``) are one: the table look-ups
of :func:`kernels.lattice_products` compiled to four scalar loads and adds each. A
``Lanes`` value is LLVM's ``<4 x i64>``: a load of four consecutive ``uint64`` and an
addition are one instruction each where the processor has 256-bit integer vectors
(AVX2), two on 128-bit ones, and LLVM lowers them on any processor it targets. The
arithmetic is the integers' own (wrapping modulo 2^64, lane by lane): the same numbers
as the four scalar additions, in any order. The sign-bit inner products count the
differing bits of a codeword against four picks at once the same way
(:func:`kernels._sign_counts`).

Inside ``@njit`` code::

    total = lanes_zero()
    total = lanes_add(total, lanes_load(table, (p, v)))   # table[p, v, 0:4]
    lanes_store(sums, (c,), total)                        # sums[c, 0:4] = total
    first = lane(total, 0)
    word = lanes_splat(packed[c, t])                      # packed[c, t] in every lane
    bits = lanes_popcount(lanes_xor(word, lanes_load(picks, (t, b))))   # picks[t, b:b + 4]

``lanes_load`` and ``lanes_store`` take a C-contiguous ``uint64`` array (writable, for a
store) and a tuple of indices: one for every axis but the last (the lanes are that
row's first four entries), or, for a load, one for every axis (the lanes are the four
entries from there on). They check nothing at run time, unlike numba's own indexing:
the indices must lie in range and be non-negative (a negative one does not count from
the end), and the four entries must lie inside the last axis; the caller's loops
guarantee both. ``lane`` takes a literal position, 0 to 3. ``lanes_popcount`` counts
each lane's set bits: one instruction for all four where the processor has a vector
population count (AVX-512 VPOPCNTDQ), a few byte shuffles and adds on AVX2.

numba's on-disk cache knows a compiled function by its own module's source: after
editing this file, clear ``harness/__pycache__`` (or touch ``kernels.py``), or the
kernels that use these intrinsics load their old code.
"""

from __future__ import annotations

from typing import Any

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
    """A ``<4 x i64>*`` to ``array[index…, 0]``, or to ``array[index…]`` where the index
    has one entry for every axis."""
    indices = [context.cast(builder, value, kind, types.intp)
               for value, kind in zip(cgutils.unpack_tuple(builder, index), index_type.types, strict=True)]
    if len(indices) < array_type.ndim:
        indices.append(ir.Constant(ir.IntType(64), 0))
    view = context.make_array(array_type)(context, builder, array)
    pointer = cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)
    return builder.bitcast(pointer, _VECTOR.as_pointer())


def _row_of(array: Any, index: Any, whole: bool = False) -> bool:
    """Whether ``(array, index)`` are types ``lanes_store`` takes (an index for every axis
    but the last) or, with ``whole``, ``lanes_load`` takes (or one for every axis)."""
    if not (isinstance(array, types.Array) and array.dtype == types.uint64 and array.layout == "C"
            and isinstance(index, types.BaseTuple)):
        return False
    sizes = (array.ndim - 1, array.ndim) if whole else (array.ndim - 1,)
    return len(index) in sizes and all(isinstance(kind, types.Integer) for kind in _members(index))


def _members(index: Any) -> tuple:
    """The types of a tuple type's members."""
    return tuple(index.types)


@intrinsic
def _lanes_zero(typingctx):  # noqa: ANN001
    """Four zero lanes."""
    def codegen(context, builder, signature, args):  # noqa: ANN001
        return ir.Constant(_VECTOR, None)

    return Lanes(), codegen


@intrinsic
def _lanes_load(typingctx, array, index):  # noqa: ANN001
    """``array[index…, 0:4]``, or ``array[i, …, j:j + 4]`` for a whole index ``(i, …, j)``,
    as one value (one unaligned 32-byte load)."""
    if not _row_of(array, index, whole=True):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        pointer = _row_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        return builder.load(pointer, align=8)

    return Lanes(array, index), codegen


@intrinsic
def _lanes_store(typingctx, array, index, value):  # noqa: ANN001
    """``array[index…, 0:4] = value``."""
    if not _row_of(array, index) or not array.mutable or value != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        pointer = _row_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        builder.store(args[2], pointer, align=8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def _lanes_add(typingctx, first, second):  # noqa: ANN001
    """Lane by lane ``first + second``, modulo 2^64."""
    if first != Lanes or second != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        return builder.add(args[0], args[1])

    return Lanes(Lanes, Lanes), codegen


@intrinsic
def _lanes_xor(typingctx, first, second):  # noqa: ANN001
    """Lane by lane ``first ^ second``."""
    if first != Lanes or second != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        return builder.xor(args[0], args[1])

    return Lanes(Lanes, Lanes), codegen


@intrinsic
def _lanes_splat(typingctx, word):  # noqa: ANN001
    """``word`` (a uint64) in all four lanes."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        value = ir.Constant(_VECTOR, None)
        for position in range(4):
            value = builder.insert_element(value, args[0], ir.Constant(ir.IntType(32), position))
        return value

    return Lanes(word), codegen


@intrinsic
def _lanes_popcount(typingctx, value):  # noqa: ANN001
    """The number of set bits of each lane (LLVM's ``ctpop`` on the vector)."""
    if value != Lanes:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        count = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]),
                                               "llvm.ctpop.v4i64")
        return builder.call(count, [args[0]])

    return Lanes(Lanes), codegen


@intrinsic
def _lane(typingctx, value, position):  # noqa: ANN001
    """Lane ``position`` of ``value``, a uint64; ``position`` is a literal 0, 1, 2 or 3
    (a lane outside them is refused when the kernel is compiled)."""
    literal = isinstance(position, types.IntegerLiteral)
    if value != Lanes or not literal or not 0 <= position.literal_value < 4:
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001
        return builder.extract_element(args[0], context.cast(builder, args[1], signature.args[1], types.intp))

    return types.uint64(value, position), codegen


# The intrinsics as kernels call them. An intrinsic's Python signature starts with numba's
# typing context, which a call in compiled code does not pass: to a type checker the
# calls would look wrong, so the public names are typed as Any.
lanes_zero: Any = _lanes_zero
lanes_load: Any = _lanes_load
lanes_store: Any = _lanes_store
lanes_add: Any = _lanes_add
lanes_xor: Any = _lanes_xor
lanes_splat: Any = _lanes_splat
lanes_popcount: Any = _lanes_popcount
lane: Any = _lane
