"""Checks of input values shared by the library's entry points, with NumPy alone (the exported
predictor uses them in a process without JAX)."""

from __future__ import annotations

import numpy as np


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
    where = "" if column is None else f" in column {column!r}" if isinstance(column, str) else f" in column {column}"
    raise ValueError(f"X contains infinite values{where} (NaN is accepted as missing, inf is not)")
