"""Checks of input values shared by the library's entry points, with NumPy alone (the exported
predictor uses them in a process without JAX)."""

from __future__ import annotations

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38: the model computes in float32


def _where(column: int | str | None) -> str:
    if column is None:
        return ""
    return f" in column {column!r}" if isinstance(column, str) else f" in column {column}"


def reject_infinite(values, column: int | str | None = None) -> None:
    """ValueError, in one line naming the column, if `values` hold an infinite number.

    values: a table (n, d), whose first column holding inf is named by its index, or one column
    (n,), named `column` (an index or a name). Missing values (NaN) are accepted; arrays that hold
    no floating-point numbers (integers, text, objects) are left alone.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fc" or not np.isinf(values).any():
        return
    if values.ndim == 2 and column is None:
        column = int(np.flatnonzero(np.isinf(values).any(axis=0))[0])
    raise ValueError(
        f"X contains infinite values{_where(column)} (NaN is accepted as missing, inf is not)"
    )


def reject_beyond_float32(values, column: int | str | None = None) -> None:
    """`reject_infinite`, and ValueError in one line naming the column if a finite value lies
    beyond float32's range (|x| > 3.4e38): the model computes in float32, where such a value would
    become inf and silently spoil the column's standardisation. Rescale such a column (or take its
    logarithm) before fitting. values, column: as `reject_infinite`; NaN is accepted."""
    reject_infinite(values, column)
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return
    with np.errstate(invalid="ignore"):
        beyond = np.abs(values) > FLOAT32_MAX
    if not beyond.any():
        return
    if values.ndim == 2 and column is None:
        column = int(np.flatnonzero(beyond.any(axis=0))[0])
    largest = float(np.nanmax(np.abs(values)))
    raise ValueError(
        f"X contains values beyond float32's range{_where(column)} (|x| up to {largest:.3g} > 3.4e38; "
        "the model computes in float32): rescale the column, e.g. take its logarithm"
    )
