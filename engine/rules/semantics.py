"""What conditions mean at run time: the helpers generated condition code calls.

The compiler (`conditions.py`) rewrites every comparison, arithmetic operation and field read
into a call to one of these, so that a missing value or a type mismatch yields False/None
instead of an exception in the middle of a decision. They are the only globals the generated
code can reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_POW_BITS = 10_000
"""An integer power whose result would be larger than this many bits gives None."""


NUMBER_TYPES = (int, float)
_EMPTY: dict[str, Any] = {}


def _lt(a: Any, b: Any) -> bool:
    try:
        return a < b  # type: ignore[no-any-return]
    except Exception:
        return False


def _le(a: Any, b: Any) -> bool:
    try:
        return a <= b  # type: ignore[no-any-return]
    except Exception:
        return False


def _gt(a: Any, b: Any) -> bool:
    try:
        return a > b  # type: ignore[no-any-return]
    except Exception:
        return False


def _ge(a: Any, b: Any) -> bool:
    try:
        return a >= b  # type: ignore[no-any-return]
    except Exception:
        return False


def _in(a: Any, b: Any) -> bool:
    if b is None:
        return False
    try:
        return a in b
    except Exception:
        return False


def _not_in(a: Any, b: Any) -> bool:
    if b is None:
        return False
    try:
        return a not in b
    except Exception:
        return False


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a + b
        except Exception:
            return None
    # Concatenation stays bounded by the inputs' sizes, unlike repetition, which is refused.
    if type(a) is type(b) and type(a) in (str, list, tuple):
        return a + b
    return None


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a - b
        except Exception:
            return None
    return None


def _mul(a: Any, b: Any) -> Any:
    # Numbers only: `'x' * 10**15` would exhaust memory.
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a * b
        except Exception:
            return None
    return None


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a / b
        except Exception:
            return None
    return None


def _floordiv(a: Any, b: Any) -> Any:
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a // b
        except Exception:
            return None
    return None


def _mod(a: Any, b: Any) -> Any:
    # Numbers only: `'%s' % x` is string formatting, a different (and abusable) operation.
    if isinstance(a, NUMBER_TYPES) and isinstance(b, NUMBER_TYPES):
        try:
            return a % b
        except Exception:
            return None
    return None


def _pow(a: Any, b: int | float) -> Any:
    if not isinstance(a, NUMBER_TYPES):
        return None
    if isinstance(a, int) and b > 0 and a.bit_length() * b > MAX_POW_BITS:
        return None
    try:
        result = a**b
    except Exception:
        return None
    return None if isinstance(result, complex) else result


def _neg(a: Any) -> Any:
    return -a if isinstance(a, NUMBER_TYPES) else None


def _pos(a: Any) -> Any:
    return +a if isinstance(a, NUMBER_TYPES) else None


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:
        return obj.get(key)
    if isinstance(obj, Mapping):
        return obj.get(key)
    return None


HELPERS: dict[str, Any] = {
    "__builtins__": {},
    "_bool": bool,
    "_E": _EMPTY,
    "_lt": _lt,
    "_le": _le,
    "_gt": _gt,
    "_ge": _ge,
    "_in": _in,
    "_not_in": _not_in,
    "_add": _add,
    "_sub": _sub,
    "_mul": _mul,
    "_div": _div,
    "_floordiv": _floordiv,
    "_mod": _mod,
    "_pow": _pow,
    "_neg": _neg,
    "_pos": _pos,
    "_get": _get,
}
