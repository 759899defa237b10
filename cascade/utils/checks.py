"""Argument checks: every public function of the package checks its input with these.

One signature: ``check_<kind>(name, value, ...)``, ``name`` being the argument as the caller wrote it; each
returns the value it accepted (an int as a Python int), so a check can sit in an assignment.

One rule for the exception: **``ValueError`` for every bad argument**, one of the wrong type included (a str
where an int goes, a list where a tensor goes), with a message naming the argument, its value and what is
allowed. For a user an argument is wrong either way, and one exception class to catch covers every check.
``TypeError`` is left to Python itself: a call with a missing or unknown argument.
"""

import math
from collections.abc import Iterable
from numbers import Integral, Real


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or numpy), bools excluded."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a finite real number (Python or numpy), bools excluded."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an int in [{minimum}, {maximum}]"
    if minimum == 1:
        return "a positive int"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(
    name: str,
    value,
    minimum: int | None = None,
    maximum: int | None = None,
    multiple_of: int = 1,
    meaning: str = "",
    optional: bool = False,
) -> int | None:
    """An integer in ``[minimum, maximum]`` (either end open when ``None``) and a multiple of ``multiple_of``
    (``None`` too when ``optional``); ``meaning`` is added to the message after the allowed range (e.g.
    ``" (the scheduler's levels)"``)."""
    if optional and value is None:
        return None
    allowed = ("None or " if optional else "") + _int_range(minimum, maximum)
    if (
        not is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"`{name}` must be {allowed}{meaning}, got {value!r}.")
    if value % multiple_of:
        raise ValueError(f"`{name}` must be a multiple of {multiple_of}{meaning}, got {value}.")
    return int(value)


def check_optional_int(name: str, value, **limits) -> int | None:
    """``None``, or an integer as :func:`check_int` takes it."""
    return check_int(name, value, optional=True, **limits)


def check_number(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    greater_than: float | None = None,
    less_than: float | None = None,
) -> float:
    """A finite real number within the given bounds: ``minimum``/``maximum`` inclusive,
    ``greater_than``/``less_than`` exclusive. Returns it as a float."""
    low = f"[{minimum}" if minimum is not None else f"({greater_than}" if greater_than is not None else None
    high = f"{maximum}]" if maximum is not None else f"{less_than})" if less_than is not None else None
    if low and high:
        allowed = f"a number in {low}, {high}"
    elif low:
        allowed = f"a finite number {'>=' if minimum is not None else '>'} {low[1:]}"
    elif high:
        allowed = f"a finite number {'<=' if maximum is not None else '<'} {high[:-1]}"
    else:
        allowed = "a finite number"
    if (
        not is_number(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (greater_than is not None and value <= greater_than)
        or (less_than is not None and value >= less_than)
    ):
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")
    return float(value)


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (not 0, 1 or a truthy object)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return value


def check_choice(name: str, value, allowed: Iterable):
    """One of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


def check_tensor_shape(name: str, value, shape: tuple):
    """A tensor of ``shape``, where ``None`` entries match any size."""
    import torch  # here, so that the checks import without torch (``cascade --help``)

    actual = tuple(value.shape) if isinstance(value, torch.Tensor) else None
    if (
        actual is None
        or len(actual) != len(shape)
        or any(want is not None and want != got for want, got in zip(shape, actual, strict=True))
    ):
        wanted = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        got = actual if actual is not None else type(value).__name__
        raise ValueError(f"`{name}` must be a tensor of shape {wanted}, got {got}.")
    return value
