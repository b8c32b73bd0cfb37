"""Feature encoding for the estimators: raw columns -> one numeric table, in NumPy alone.

`FeatureEncoder` turns a raw table (numbers, strings, missing values) into the *encoded columns*
that ensemble members read. It is fitted once on the training rows and stored with an exported
predictor, so it belongs to the NumPy-only runtime. The encoded columns, in blocks:

- ``raw``: each numeric column as a float (numbers stored as text parsed; dates and times as seconds
  since 1970-01-01 UTC, durations as seconds: `to_numbers`);
- ``quantile``: each numeric column through its training quantiles, mapped to [0, 1];
- ``ordinal``: each categorical column as its level's index in the sorted training levels; a column
  that had missing training values gets one more level for "missing";
- ``onehot``: one 0/1 column per level (the "missing" level included) of each categorical column
  with at most `MAX_ONEHOT_LEVELS` levels;
- ``indicator``: a 0/1 "was missing" column for each numeric column with missing training values.

Missing values: numeric NaN (and None, pandas NA) are imputed with the column's training mean after
the encoding (so `raw` and `quantile` impute in their own scale); categorical ones go to the
"missing" level. A level never seen in training counts as missing. Infinite values, and numbers
beyond float32's range (|x| > 3.4e38, which the model would see as inf), raise ValueError naming the
column.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import numbers
import warnings
from typing import Any

import numpy as np

from mothernet_jax.runtime.checks import reject_beyond_float32, reject_infinite

MAX_ONEHOT_LEVELS = 10  # wider categorical columns stay ordinal in every member (as the reference)
MAX_QUANTILES = 1000  # quantile-table size, as scikit-learn's QuantileTransformer
NUMERIC_KINDS = "biufmM"  # dtype kinds read as numbers (datetime64 and timedelta64 as seconds)
IDENTIFIER_LEVELS = 0.9  # a categorical column with this many levels per present value gets a warning
IDENTIFIER_MIN_ROWS = 20  # ... once it has this many present values

RAW, QUANTILE, ORDINAL, ONEHOT, INDICATOR = range(5)
KIND_NAMES = ("raw", "quantile", "ordinal", "onehot", "indicator")


# -- column types and missing values -----------------------------------------------------------------


def _is_missing_object(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def missing_mask(column: np.ndarray) -> np.ndarray:
    """(n,) bool: which entries of a 1-D column are missing (NaN, None, pandas NA)."""
    if column.dtype.kind in "fc":
        return np.isnan(column)
    if column.dtype.kind in "mM":
        return np.isnat(column)
    if column.dtype.kind == "O":
        return np.fromiter((_is_missing_object(v) for v in column), bool, len(column))
    return np.zeros(len(column), bool)


EPOCH = datetime.datetime(1970, 1, 1)  # dates and times become seconds since this instant (UTC)


def _seconds(values: np.ndarray) -> np.ndarray:
    """datetime64 (since the epoch) or timedelta64 values as float64 seconds; NaT -> NaN."""
    if values.dtype.kind == "M":
        values = values - np.datetime64(0, "s")
    return values / np.timedelta64(1, "s")


def _number(value) -> float:
    """One raw value as a float: a number, text that parses as one (empty text is missing), a date
    or time (seconds since 1970-01-01 UTC; a naive one is read as UTC), a duration (seconds); NaN
    for missing. ValueError for anything else."""
    if _is_missing_object(value):
        return np.nan
    if isinstance(value, np.datetime64 | np.timedelta64):  # before Real: timedelta64 is an integer
        return float(_seconds(np.asarray([value])).item())
    if isinstance(value, numbers.Real | np.bool_):
        return float(value)
    if isinstance(value, str):
        return float(value) if value.strip() else np.nan
    if isinstance(value, datetime.datetime):  # before date: a datetime is a date
        return value.timestamp() if value.tzinfo is not None else (value - EPOCH).total_seconds()
    if isinstance(value, datetime.date):
        return float((value - EPOCH.date()).days * 86400)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise ValueError(f"{value!r} is not a number")


def to_numbers(column: np.ndarray) -> np.ndarray:
    """A 1-D raw column as float64 (NaN for missing), by `_number`'s rules whatever the storage
    (numeric, text, object, datetime64, timedelta64). ValueError naming the first value that is
    not a number."""
    if column.dtype.kind in "mM":
        return _seconds(column)
    if column.dtype.kind != "O" or not any(
        issubclass(t, np.datetime64 | np.timedelta64) for t in set(map(type, column))
    ):  # numpy would read these as counts of their unit
        try:
            return column.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
    values = np.empty(len(column))
    for i, value in enumerate(column):
        try:
            values[i] = _number(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{value!r} is not a number") from None
    return values


def _text_is_numbers(column: np.ndarray) -> bool:
    """Whether a column stored as text or objects holds numbers: every value a number, numeric
    text, a date or a duration, or missing (`to_numbers` succeeds), and at least one present. A
    column with no present value is categorical: whatever text its new rows bring is then an
    unseen level (missing), not an error."""
    try:
        values = to_numbers(column)
    except ValueError:
        return False
    return not np.isnan(values).all()


def infer_categorical(X) -> np.ndarray:
    """The "auto" rule: (d,) bool, True for the columns holding a value that is not a number.

    Numbers stored as text, dates, times and durations count as numbers (`to_numbers`), whatever
    the column's storage: a pandas object or string column, a NumPy string or object array; such a
    column with every training value missing is categorical (`_text_is_numbers`). The pandas
    category dtype is always categorical (the user declared it).
    """
    if hasattr(X, "dtypes") and hasattr(X, "columns"):
        mask = []
        for j, dtype in enumerate(X.dtypes):
            if str(dtype) == "category":
                mask.append(True)
            elif getattr(dtype, "kind", "O") in NUMERIC_KINDS:
                mask.append(False)
            else:
                mask.append(not _text_is_numbers(X.iloc[:, j].to_numpy(dtype=object)))
        return np.array(mask, bool)
    X = np.asarray(X)
    if X.ndim != 2:
        return np.zeros(X.shape[-1] if X.ndim else 0, bool)
    if X.dtype.kind not in "USO":
        return np.zeros(X.shape[1], bool)
    return np.array([not _text_is_numbers(X[:, j]) for j in range(X.shape[1])], bool)


def plain_dtypes(X):
    """A pandas DataFrame with every column in a NumPy dtype that scikit-learn's validation can mix
    with the others (it cannot mix pandas' extension dtypes, e.g. a category of strings with a bool
    or ``Int64`` column: "Cannot cast str dtype to float64"); anything that is not a DataFrame is
    returned unchanged. Nullable numbers and booleans (``Int64``, ``Float64``, ``boolean``) become
    float64 with NaN for missing; other extension dtypes (category, string, datetimes with a time
    zone, periods, ...) become object (their values, NaN / NA / NaT for missing); datetime64 and
    timedelta64 columns become object (Timestamps) unless every column is one. The values, and so
    the encoding, are those of the original columns (`to_numbers`, `missing_mask`)."""
    if not (hasattr(X, "dtypes") and hasattr(X, "columns")):
        return X
    dtypes = list(X.dtypes)
    all_datetimes = all(isinstance(d, np.dtype) and d.kind in "mM" for d in dtypes)
    changes = {}
    for j, dtype in enumerate(dtypes):
        if isinstance(dtype, np.dtype):
            if dtype.kind in "mM" and not all_datetimes:
                changes[j] = X.iloc[:, j].astype(object)
        elif str(dtype) != "category" and getattr(dtype, "kind", "O") in "biuf":
            changes[j] = X.iloc[:, j].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            changes[j] = X.iloc[:, j].astype(object)
    if not changes:
        return X
    X = X.copy()
    for j, column in changes.items():
        X.isetitem(j, column)
    return X


def numeric_column(
    column: np.ndarray, index: int, name: str | None = None, held: str | None = None
) -> np.ndarray:
    """A raw column as float64 with NaN for missing (`to_numbers`); ValueError for text, infinite
    values or values beyond float32's range (`runtime.checks.reject_beyond_float32`), in one line naming
    the column (`name`, else its index) and, after a fit, what it held then (`held`)."""
    try:
        values = to_numbers(column)
    except ValueError as error:
        label = f"column {name!r} (index {index})" if name is not None else f"column {index}"
        if held is None:
            raise ValueError(
                f"{label} holds non-numeric values ({error}); declare it in categorical_features"
            ) from None
        raise ValueError(
            f"{label} held {held} at fit; now it holds non-numeric values ({error}): give it {held} as "
            "at fit, or declare it in categorical_features and fit again"
        ) from None
    reject_beyond_float32(values, column=index)
    return values


def held_values(column: np.ndarray) -> str:
    """What a numeric column's present values are, in words, for messages: "dates and times",
    "durations", "numbers stored as text" or "numbers"."""
    if column.dtype.kind == "M":
        return "dates and times"
    if column.dtype.kind == "m":
        return "durations"
    if column.dtype.kind != "O" and column.dtype.kind not in "US":
        return "numbers"
    present = [v for v in column.tolist() if not _is_missing_object(v)]
    if present and all(isinstance(v, datetime.date | np.datetime64) for v in present):
        return "dates and times"
    if present and all(isinstance(v, datetime.timedelta | np.timedelta64) for v in present):
        return "durations"
    if present and all(isinstance(v, str) for v in present):
        return "numbers stored as text"
    return "numbers"


def _numeric_levels(column: np.ndarray, missing: np.ndarray) -> bool:
    """Whether a categorical column's levels are numbers (compared as floats) rather than text."""
    if column.dtype.kind in "biuf":
        return True
    if column.dtype.kind != "O":
        return False
    return all(isinstance(v, numbers.Real | np.bool_) for v in column[~missing])


def _level_keys(present: np.ndarray, numeric: bool) -> np.ndarray:
    """The comparable key of each present entry: float for numeric levels (NaN where an entry is
    not a number, so that it matches no level), str for text levels."""
    if not numeric:
        return present.astype(str) if present.dtype.kind != "O" else np.array([str(v) for v in present], str)
    try:
        return present.astype(np.float64)
    except (TypeError, ValueError):
        keys = np.full(len(present), np.nan)
        for i, v in enumerate(present):
            if isinstance(v, numbers.Real | np.bool_):
                keys[i] = float(v)
        return keys


# -- the encoder ---------------------------------------------------------------------------------------


def _quantile_transform(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Map values through a column's quantile table to [0, 1], as QuantileTransformer (uniform):
    interpolating from both ends and averaging places ties in the middle of their plateau; values
    at or beyond the training minimum (maximum) map to 0 (1)."""
    references = np.linspace(0.0, 1.0, len(quantiles))
    order = np.argsort(values)  # np.interp is several times faster on sorted values
    ordered = values[order]
    mapped = np.interp(ordered, quantiles, references)
    if not np.all(np.diff(quantiles) > 0):  # ties: both directions are needed
        mapped = 0.5 * (mapped - np.interp(-ordered, -quantiles[::-1], -references[::-1]))
    mapped = np.where(ordered >= quantiles[-1], 1.0, mapped)
    mapped = np.where(ordered <= quantiles[0], 0.0, mapped)
    out = np.empty_like(mapped)
    out[order] = mapped
    return out


@dataclasses.dataclass(kw_only=True, eq=False)
class FeatureEncoder:
    """Raw table (n, n_features) -> encoded columns (n, n_columns) float64, NaN imputed.

    numeric, categorical: raw column indices of each type. quantiles: (n_q, len(numeric)) training
    quantiles. levels: per categorical column, its sorted training levels (float64 or str).
    level_missing: per categorical column, whether it has a "missing" level. onehot: per
    categorical column, whether it has a one-hot block. indicator: per numeric column, whether it
    has a "was missing" column. fill: (n_columns,) the imputation value of each encoded column.
    """

    n_features: int
    numeric: np.ndarray
    categorical: np.ndarray
    quantiles: np.ndarray
    levels: list[np.ndarray]
    level_missing: np.ndarray
    onehot: np.ndarray
    indicator: np.ndarray
    fill: np.ndarray
    names: list[str] | None = None  # the raw columns' names (a DataFrame's), for messages
    held: list[str] | None = None  # per numeric column, what it held at fit (`held_values`)

    # -- layout of the encoded columns -------------------------------------------------------

    def n_levels(self, i: int) -> int:
        return len(self.levels[i]) + int(self.level_missing[i])

    def layout(self) -> tuple[np.ndarray, np.ndarray]:
        """kind (n_columns,) in RAW..INDICATOR and source (n_columns,) raw column index."""
        n_num = len(self.numeric)
        kinds = [np.full(n_num, RAW), np.full(n_num, QUANTILE), np.full(len(self.categorical), ORDINAL)]
        sources = [self.numeric, self.numeric, self.categorical]
        for i, j in enumerate(self.categorical):
            if self.onehot[i]:
                kinds.append(np.full(self.n_levels(i), ONEHOT))
                sources.append(np.full(self.n_levels(i), j))
        kinds.append(np.full(int(self.indicator.sum()), INDICATOR))
        sources.append(self.numeric[self.indicator])
        return np.concatenate(kinds).astype(np.int64), np.concatenate(sources).astype(np.int64)

    @property
    def n_columns(self) -> int:
        return len(self.layout()[0])

    # -- fit and transform ---------------------------------------------------------------------

    @classmethod
    def fit(cls, X: np.ndarray, categorical: np.ndarray, names: list[str] | None = None) -> FeatureEncoder:
        """Fit on the training table X (n, d) (any dtype) with the (d,) bool mask of categorical
        columns. A categorical column with nearly one level per row (an identifier, dates stored as
        text) gets a UserWarning naming it (`names`: the column names, else its index)."""
        X = np.asarray(X)
        categorical = np.asarray(categorical, bool)
        numeric_idx, categorical_idx = np.flatnonzero(~categorical), np.flatnonzero(categorical)
        names = None if names is None else [str(name) for name in names]
        columns = [numeric_column(X[:, j], j, None if names is None else names[j]) for j in numeric_idx]
        numeric = np.stack(columns, 1) if columns else None
        n = X.shape[0]
        n_q = max(2, min(MAX_QUANTILES, n))
        if numeric is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                quantiles = np.nanquantile(numeric, np.linspace(0.0, 1.0, n_q), axis=0)
            quantiles = np.maximum.accumulate(np.nan_to_num(quantiles, nan=0.0), axis=0)
            indicator = np.isnan(numeric).any(axis=0)
        else:
            quantiles, indicator = np.zeros((n_q, 0)), np.zeros(0, bool)
        levels, level_missing = [], []
        for j in categorical_idx:
            missing = missing_mask(X[:, j])
            keys = _level_keys(X[~missing, j], _numeric_levels(X[:, j], missing))
            reject_infinite(keys, column=int(j))
            levels.append(np.unique(keys))
            level_missing.append(bool(missing.any()))
            if len(keys) >= IDENTIFIER_MIN_ROWS and len(levels[-1]) >= IDENTIFIER_LEVELS * len(keys):
                name = f"column {names[j]!r}" if names is not None else f"column {j}"
                warnings.warn(
                    f"{name} has {len(levels[-1])} distinct values in {len(keys)} rows: it looks like "
                    "an identifier or a date stored as text, and as a categorical column it cannot "
                    "generalise to new rows; drop it, or convert dates to numbers (pandas.to_datetime)",
                    UserWarning,
                    stacklevel=3,
                )
        encoder = cls(
            n_features=X.shape[1],
            numeric=numeric_idx,
            categorical=categorical_idx,
            quantiles=quantiles,
            levels=levels,
            level_missing=np.array(level_missing, bool),
            onehot=np.array(
                [len(lv) + m <= MAX_ONEHOT_LEVELS for lv, m in zip(levels, level_missing, strict=True)], bool
            ),
            indicator=indicator,
            fill=np.zeros(0),
            names=names,
            held=[held_values(X[:, j]) for j in numeric_idx],
        )
        encoded = encoder.transform(X, impute=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            encoder.fill = np.nan_to_num(np.nanmean(encoded, axis=0), nan=0.0) if n else np.zeros(0)
        return encoder

    def transform(self, X, *, kinds: set[int] | None = None, impute: bool = True) -> np.ndarray:
        """X: (n, n_features) raw -> (n, n_columns) float64. Blocks whose kind is not in `kinds`
        are left at zero (not computed). Raises ValueError on infinite or non-numeric values."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        kinds = set(range(5)) if kinds is None else kinds
        n, n_num = X.shape[0], len(self.numeric)
        blocks = []
        numeric = np.zeros((n, n_num))
        if kinds & {RAW, QUANTILE, INDICATOR}:
            for i, j in enumerate(self.numeric):
                name = None if self.names is None else self.names[j]
                held = None if self.held is None else self.held[i]
                numeric[:, i] = numeric_column(X[:, j], int(j), name, held)
        blocks.append(numeric if RAW in kinds else np.zeros((n, n_num)))
        quantile = np.zeros((n, n_num))
        if QUANTILE in kinds:
            for i in range(n_num):
                quantile[:, i] = _quantile_transform(numeric[:, i], self.quantiles[:, i])
            quantile[np.isnan(numeric)] = np.nan
        blocks.append(quantile)
        codes = [self._codes(X[:, j], i) for i, j in enumerate(self.categorical)]
        ordinal = np.zeros((n, len(codes)))
        for i, code in enumerate(codes):
            ordinal[:, i] = np.where(code < 0, np.nan, code)
        blocks.append(ordinal if ORDINAL in kinds else np.zeros_like(ordinal))
        for i, code in enumerate(codes):
            if self.onehot[i]:
                block = np.zeros((n, self.n_levels(i)))
                if ONEHOT in kinds:
                    present = code >= 0
                    block[np.flatnonzero(present), code[present]] = 1.0
                blocks.append(block)
        missing = np.isnan(numeric[:, self.indicator]).astype(np.float64)
        blocks.append(missing if INDICATOR in kinds else np.zeros_like(missing))
        encoded = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
        if impute:
            encoded = np.where(np.isnan(encoded), self.fill, encoded)
        return encoded

    def _codes(self, column: np.ndarray, i: int) -> np.ndarray:
        """(n,) int level index of each entry; the "missing" level (or -1) for missing/unseen."""
        levels = self.levels[i]
        missing = missing_mask(column)
        codes = np.full(len(column), len(levels) if self.level_missing[i] else -1, np.int64)
        if len(levels):
            keys = _level_keys(column[~missing], levels.dtype.kind == "f")
            reject_infinite(keys, column=int(self.categorical[i]))
            position = np.clip(np.searchsorted(levels, keys), 0, len(levels) - 1)
            found = levels[position] == keys
            present = np.flatnonzero(~missing)
            codes[present[found]] = position[found]
        return codes

    # -- pickle-free storage: a JSON header and plain arrays -----------------------------------

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        header = {
            "n_features": self.n_features,
            "n_levels": [len(lv) for lv in self.levels],
            "names": self.names,
            "held": self.held,
        }
        arrays = {
            f"{prefix}numeric": self.numeric,
            f"{prefix}categorical": self.categorical,
            f"{prefix}quantiles": self.quantiles,
            f"{prefix}level_missing": self.level_missing,
            f"{prefix}onehot": self.onehot,
            f"{prefix}indicator": self.indicator,
            f"{prefix}fill": self.fill,
        }
        for i, levels in enumerate(self.levels):
            arrays[f"{prefix}levels{i}"] = levels
        return header, arrays

    @classmethod
    def from_arrays(cls, header: dict[str, Any], data, prefix: str) -> FeatureEncoder:
        return cls(
            n_features=int(header["n_features"]),
            numeric=np.asarray(data[f"{prefix}numeric"], np.int64),
            categorical=np.asarray(data[f"{prefix}categorical"], np.int64),
            quantiles=np.asarray(data[f"{prefix}quantiles"], np.float64),
            levels=[np.asarray(data[f"{prefix}levels{i}"]) for i in range(len(header["n_levels"]))],
            level_missing=np.asarray(data[f"{prefix}level_missing"], bool),
            onehot=np.asarray(data[f"{prefix}onehot"], bool),
            indicator=np.asarray(data[f"{prefix}indicator"], bool),
            fill=np.asarray(data[f"{prefix}fill"], np.float64),
            names=header.get("names"),  # files before 2026-12 lack these two
            held=header.get("held"),
        )

    def describe(self) -> str:
        kinds, _ = self.layout()
        counts = {KIND_NAMES[k]: int((kinds == k).sum()) for k in range(5)}
        return json.dumps(counts)
