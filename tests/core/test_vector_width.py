"""``numerics.vector_width``: the attribute reaches the compiled function, the bits do not
change."""

from __future__ import annotations

import numba
import numpy as np

from medtransport.numerics.normal import _pair_compact, stream_key
from medtransport.numerics.vector_width import prefer_wide_vectors


@numba.njit(inline="always", nogil=True, error_model="numpy")
def _fill(z, key):  # type: ignore[no-untyped-def]
    for j in range(z.shape[0] // 2):
        a, b = _pair_compact(key, np.uint64(j))
        z[2 * j] = a
        z[2 * j + 1] = b


@numba.njit(nogil=True, error_model="numpy")
def _plain(z, key):  # type: ignore[no-untyped-def]
    _fill(z, key)


@numba.njit(nogil=True, error_model="numpy")
def _wide(z, key):  # type: ignore[no-untyped-def]
    prefer_wide_vectors()
    _fill(z, key)


def test_attribute_is_set_on_the_function_and_bits_are_unchanged() -> None:
    key = stream_key(5)
    a, b = np.empty(1000), np.empty(1000)
    _plain(a, key)
    _wide(b, key)
    assert np.array_equal(a, b)
    ir_wide = "\n".join(_wide.inspect_llvm().values())
    ir_plain = "\n".join(_plain.inspect_llvm().values())
    assert '"prefer-vector-width"="512"' in ir_wide
    assert '"min-legal-vector-width"="512"' in ir_wide
    assert '"prefer-vector-width"="512"' not in ir_plain
