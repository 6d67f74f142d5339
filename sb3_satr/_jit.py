"""numba helpers shared by the kernels: a caching decorator that survives read-only
installs, and LLVM bit intrinsics on ``uint64`` words."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numba
from numba import types
from numba.extending import intrinsic

_cache_warning_issued = False


def njit_kernel(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Compile with ``numba.njit(cache=True, **options)``, falling back to no caching.

    numba raises ``RuntimeError`` at decoration time when neither the package folder nor
    the user cache folder (``NUMBA_CACHE_DIR``, ``~/.cache``) is writable, as in a read-only
    install with an unwritable home directory. The kernel is then compiled on first use in
    every process instead, and one ``RuntimeWarning`` reports it.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        global _cache_warning_issued
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError as error:
            if not _cache_warning_issued:
                _cache_warning_issued = True
                warnings.warn(
                    f"sb3_satr cannot cache its compiled numba kernels ({error}). They are "
                    "compiled again in every process. Set NUMBA_CACHE_DIR to a writable "
                    "folder to keep them.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return numba.njit(cache=False, **options)(function)

    return decorate


@intrinsic
def popcount64(typingctx: Any, word: Any) -> Any:
    """Count the set bits of a ``uint64`` word with ``llvm.ctpop.i64`` and return an ``int64``.

    On x86-64 with ``popcnt`` this is one instruction, and loops over arrays of words
    vectorise to ``vpopcntq`` where AVX-512 VPOPCNTDQ is available.
    """
    if word != types.uint64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@intrinsic
def trailing_zeros64(typingctx: Any, word: Any) -> Any:
    """Index of the lowest set bit of a non-zero ``uint64`` word, as ``int64``."""
    if word != types.uint64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], context.get_constant(types.boolean, True))

    return types.int64(types.uint64), codegen
