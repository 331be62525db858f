"""Let LLVM use the CPU's full SIMD width inside one compiled kernel.

On CPUs with AVX-512 (Skylake-SP and later) LLVM's default is to vectorise with 256-bit
registers (the target tuning ``prefer-256-bit``, chosen because 512-bit instructions lower the
clock on the first such CPUs). A hot loop that is compute-bound, not memory-bound, runs faster
with 512-bit vectors on recent ones (Ice Lake, Rocket Lake, Sapphire Rapids, Zen 4). Calling
:func:`prefer_wide_vectors` inside a numba function sets, for that LLVM function only, the
attributes clang's ``-mprefer-vector-width=512`` sets (``"prefer-vector-width"="512"`` and
``"min-legal-vector-width"="512"``); on a CPU without AVX-512 LLVM caps the width at what
there is. The arithmetic is unchanged — no fast-math, so the same bits as with any width — and
nothing outside the function is affected (a global ``NUMBA_CPU_FEATURES`` would change every
kernel of the process).

Inside a ``numba.prange`` loop call it in the loop body: numba outlines the body into its own
function, which is the one that carries the hot loops.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

__all__ = ["prefer_wide_vectors"]

_ATTRIBUTES = ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"')


@intrinsic
def prefer_wide_vectors(typingctx):  # type: ignore[no-untyped-def]
    """Mark the enclosing compiled function for 512-bit vectorisation (module docstring)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        attrs = builder.function.attributes
        for attr in _ATTRIBUTES:
            # llvmlite's FunctionAttributes.add accepts only keyword attributes; LLVM's
            # string attributes are printed verbatim, so they go in through the set itself
            set.add(attrs, attr)
        return context.get_dummy_value()

    return types.none(), codegen
